"""One DB-API connection's state and logic, run on the driver's event loop: its transaction, ``sqlite3``'s
rules for implicit transactions, and how each statement reaches the node.

The sync ``Connection`` and the async one (``sqlite_ha.aio``) are thin shells over a ``Session``: each of its
coroutines runs on the runtime's loop, one at a time (an ``asyncio.Lock``), so the session's state is only
ever touched from that loop's thread.

How statements run:

- **Outside a transaction** a statement is a request of its own (``served.execute``): a read runs on the
  database's reader; a write commits at once, group-committed with other connections' writes and replicated
  before the call returns.
- **Inside a transaction** (opened implicitly, as ``sqlite3`` does, or by ``BEGIN``) every statement runs on
  the database's one writer connection (``served.begin`` → ``tx.run``) and sees the transaction's own
  changes; ``commit()`` produces one change set and returns once the log holds it (``served.commit``).

A transaction holds the database's writer from its first statement to its end: other connections' writes
wait meanwhile, and so does applying what other nodes write. A transaction left open and idle for
``transaction_idle_timeout`` seconds (60 by default, as the PostgreSQL front end's idle-in-transaction
timeout) is rolled back, and the connection's next call raises ``OperationalError`` saying so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlite_ha.db.params import Bindings
from sqlite_ha.db.statement import Result, Statement
from sqlite_ha.db.transaction import TransactionAborted
from sqlite_ha.driver.exceptions import OperationalError, ProgrammingError, make, to_dbapi
from sqlite_ha.driver.sqltext import Kind, Parsed, classify, inspect, split
from sqlite_ha.errors import HAError

if TYPE_CHECKING:
    from sqlite_ha.db.database import Execution
    from sqlite_ha.db.transaction import WriteTransaction

log = logging.getLogger(__name__)

IDLE_TIMEOUT = 60.0  # seconds an open transaction may sit idle holding the writer (as the PG front end)
LEGACY = -1  # ``autocommit`` of sqlite3's legacy transaction control (sqlite3.LEGACY_TRANSACTION_CONTROL)


class Served(Protocol):
    """What a session needs of the served database (``node.database(id)``: a ``ServedDatabase``)."""

    def is_read_only(self, statements: Sequence[Statement]) -> bool: ...

    async def execute(self, statements: Sequence[Statement]) -> tuple[Execution, int | None]: ...

    async def begin(self) -> WriteTransaction: ...

    async def commit(self, tx: WriteTransaction) -> tuple[Execution, int | None]: ...


@dataclass(slots=True)
class Outcome:
    """What one ``execute`` produced, for the cursor: its column names (None: no result set), rows,
    ``rowcount`` and the connection's last inserted rowid (None: leave the cursor's as it is)."""

    columns: list[str] | None = None
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    rowcount: int = -1
    lastrowid: int | None = None


class OpenTransactions:
    """The driver transactions open on one database, shared by its connector's sessions.

    An autocommit write queues for the writer, where it would wait behind an open transaction for as long
    as that stays open: forever if the thread that opened it is the one now waiting (two connections in one
    thread). So a write outside a transaction first waits at most its connection's ``timeout`` for the
    other connections' transactions to end, then fails with "database is locked", as in ``sqlite3``.
    Brief holds of the writer (group commits, applying replicated changes) are not waited for here."""

    def __init__(self) -> None:
        self.count = 0
        self._none: asyncio.Event | None = None

    def _event(self) -> asyncio.Event:
        if self._none is None:
            self._none = asyncio.Event()
            if self.count == 0:
                self._none.set()
        return self._none

    def opened(self) -> None:
        self.count += 1
        self._event().clear()

    def closed(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._event().set()

    async def wait_none(self, timeout: float) -> None:
        if self.count:
            try:
                await asyncio.wait_for(self._event().wait(), timeout)
            except TimeoutError:
                raise _busy() from None


def _busy() -> OperationalError:
    err = make(
        OperationalError,
        "database is locked",
        sqlite_name="SQLITE_BUSY",
        code="busy",
        hint="another connection holds the database's writer in an open transaction: commit or roll it back",
    )
    assert isinstance(err, OperationalError)
    return err


class Session:
    def __init__(
        self,
        served: Callable[[], Served],
        *,
        isolation_level: str | None = "",
        autocommit: int | bool = LEGACY,
        timeout: float = 5.0,
        idle_timeout: float = IDLE_TIMEOUT,
        transactions: OpenTransactions | None = None,
    ) -> None:
        # the database as the node serves it now (asked each time: recovery may reopen it; refuses while
        # the node may be stale)
        self.served = served
        self.isolation_level = isolation_level
        self.autocommit = autocommit
        self.timeout = timeout  # waiting for the writer to begin a transaction (sqlite3's ``timeout``)
        self.idle_timeout = idle_timeout
        self.tx: WriteTransaction | None = None
        self._transactions = transactions if transactions is not None else OpenTransactions()
        self.total_changes = 0
        self.last_rowid = 0  # the connection's last_insert_rowid(), as sqlite3 reports it
        self.seq: int | None = None  # log seq of this connection's last replicated write
        self.closed = False
        self._lock: asyncio.Lock | None = None
        self._outer_savepoint: str | None = None  # a SAVEPOINT that opened the transaction: RELEASE commits
        self._lost: str | None = None  # why the transaction was rolled back behind the caller's back
        self._running = 0
        self._last_used = 0.0
        self._idle: asyncio.TimerHandle | None = None

    @property
    def in_transaction(self) -> bool:
        return self.tx is not None

    @property
    def lost(self) -> bool:
        """A transaction was rolled back behind the caller's back, and the next call must say so."""
        return self._lost is not None

    def _locked(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    # ------------------------------------------------------------------------------------ statements
    async def execute(self, sql: str, params: Sequence[Bindings], *, many: bool = False) -> Outcome:
        """Run one statement once (``params`` of one element) or once per element (``executemany``)."""
        async with self._locked():
            try:
                return await self._execute(sql, params, many)
            except HAError as e:
                raise to_dbapi(e) from e

    async def _execute(self, sql: str, params: Sequence[Bindings], many: bool) -> Outcome:
        self._check_usable()
        count, parsed = inspect(sql)
        if count > 1:
            raise ProgrammingError("You can only execute one statement at a time.")
        if count == 0:  # blank, or only comments: nothing to run, as in sqlite3
            return Outcome()
        if parsed.kind not in (Kind.DML, Kind.OTHER):
            if many:
                raise ProgrammingError("executemany() can only execute DML statements.")
            await self._control(parsed)
            return Outcome(lastrowid=self.last_rowid)
        statements = [Statement(sql=sql, bindings=b) for b in params]
        if many and statements and self.served().is_read_only(statements[:1]):
            raise ProgrammingError("executemany() can only execute DML statements.")
        if not statements:  # executemany over nothing: no transaction opened (sqlite3 begins per row)
            return Outcome(rowcount=0 if parsed.kind is Kind.DML else -1)
        if self.tx is None and self._implicit_begin(parsed, statements):
            await self._begin()
        results = await self._run(statements)
        return self._outcome(parsed, results, many)

    def _implicit_begin(self, parsed: Parsed, statements: list[Statement]) -> bool:
        """sqlite3's rule: in legacy mode, a transaction opens before INSERT/UPDATE/DELETE/REPLACE unless
        ``isolation_level`` is None; with ``autocommit=False`` one is always open (here: from the first
        statement that is not a read, so reads before it do not hold the writer)."""
        if self.autocommit is True:
            return False
        if self.autocommit is False:
            return not self.served().is_read_only(statements[:1]) if statements else False
        return self.isolation_level is not None and parsed.kind is Kind.DML

    async def _run(self, statements: list[Statement]) -> list[Result]:
        tx = self.tx
        if tx is None:
            served = self.served()
            if self._transactions.count and not served.is_read_only(statements):
                await self._transactions.wait_none(self.timeout)
            execution, seq = await served.execute(statements)
            if seq is not None:
                self.seq = seq
            return execution.results
        self._running += 1
        try:
            return await tx.run(statements)
        except TransactionAborted:
            self._ended()
            raise
        finally:
            self._running -= 1
            self._last_used = time.monotonic()
            if self.tx is not None and not self.tx.open:
                self._ended()  # SQLite rolled it back by itself (a constraint's ROLLBACK, a timeout)

    def _outcome(self, parsed: Parsed, results: list[Result], many: bool) -> Outcome:
        last = results[-1]
        dml = parsed.kind is Kind.DML
        # INSERT/UPDATE/DELETE … RETURNING: one row per changed row (the node counts changes only for
        # statements without rows)
        changed = sum(len(r.rows) if dml and r.columns else r.rows_affected for r in results)
        self.total_changes += changed  # SQLite counts every INSERT/UPDATE/DELETE, also after WITH
        for r in results:
            if r.last_insert_id:
                self.last_rowid = r.last_insert_id
        return Outcome(
            columns=list(last.columns) if last.columns else None,
            rows=last.rows if last.columns else [],
            rowcount=changed if dml else -1,  # sqlite3: only for statements that start as DML
            lastrowid=None if many else self.last_rowid,
        )

    async def executescript(self, script: str) -> None:
        """Commit a pending transaction (as sqlite3 does), then run the statements one by one as written:
        no implicit transactions; the script's own BEGIN/COMMIT take effect."""
        async with self._locked():
            try:
                self._check_usable()
                if self.tx is not None and self.autocommit == LEGACY:
                    await self._commit()
                for sql in split(script):
                    parsed = classify(sql)
                    if parsed.kind not in (Kind.DML, Kind.OTHER):
                        await self._control(parsed)
                        continue
                    results = await self._run([Statement(sql=sql)])
                    self._outcome(parsed, results, True)
            except HAError as e:
                raise to_dbapi(e) from e

    # ------------------------------------------------------------------------------------ transactions
    async def _control(self, parsed: Parsed) -> None:
        """BEGIN, COMMIT, ROLLBACK and savepoints written in SQL, with SQLite's own errors."""
        kind, tx = parsed.kind, self.tx
        if kind is Kind.BEGIN:
            if tx is not None:
                raise _sqlite_error("cannot start a transaction within a transaction")
            await self._begin()
        elif kind is Kind.COMMIT:
            if tx is None:
                raise _sqlite_error("cannot commit - no transaction is active")
            await self._commit()
        elif kind is Kind.ROLLBACK:
            if tx is None:
                raise _sqlite_error("cannot rollback - no transaction is active")
            self._rollback()
        elif parsed.savepoint is None:
            raise _sqlite_error(f'near "{kind.value.upper()}": syntax error')
        elif kind is Kind.SAVEPOINT:
            if tx is None:
                await self._begin()
                self._outer_savepoint = parsed.savepoint
            assert self.tx is not None
            self.tx.savepoint(parsed.savepoint)
        elif kind is Kind.RELEASE:
            if tx is None:
                raise _sqlite_error(f"no such savepoint: {parsed.savepoint}")
            self._savepoint_call(tx.release, parsed.savepoint)
            if parsed.savepoint == self._outer_savepoint:
                await self._commit()
        elif kind is Kind.ROLLBACK_TO:
            if tx is None:
                raise _sqlite_error(f"no such savepoint: {parsed.savepoint}")
            self._savepoint_call(tx.rollback_to, parsed.savepoint)

    @staticmethod
    def _savepoint_call(fn: Any, name: str) -> None:
        try:
            fn(name)
        except HAError as e:
            if e.code == "internal_error" and "does not exist" in e.message:
                raise _sqlite_error(f"no such savepoint: {name}") from e
            raise

    async def _begin(self) -> None:
        """Take the database's writer, waiting at most ``timeout`` for another transaction to end."""
        task = asyncio.ensure_future(self.served().begin())
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        if not done:
            task.cancel()
            try:
                tx = await task
            except asyncio.CancelledError:
                raise _busy() from None
        else:
            tx = task.result()
        self.tx = tx
        self._transactions.opened()
        self._last_used = time.monotonic()
        self._arm_idle(self.idle_timeout)

    async def _commit(self) -> None:
        tx = self.tx
        assert tx is not None
        self._ended()
        # shielded: a caller that gives up (Ctrl-C) must not cut a commit and its publish half-way
        _, seq = await asyncio.shield(self.served().commit(tx))
        if seq is not None:
            self.seq = seq

    def _rollback(self) -> None:
        tx = self.tx
        self._ended()
        if tx is not None:
            tx.rollback()

    def _ended(self) -> None:
        if self.tx is not None:
            self._transactions.closed()
        self.tx = None
        self._outer_savepoint = None
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    async def commit(self) -> None:
        async with self._locked():
            try:
                self._check_usable()  # a transaction rolled back behind the caller's back is an error here
                if self.tx is not None:
                    await self._commit()
            except HAError as e:
                raise to_dbapi(e) from e

    async def rollback(self) -> None:
        async with self._locked():
            self._check_usable(lost_ok=True)
            self._rollback()

    async def close(self) -> None:
        """Roll back an open transaction (as sqlite3's close does: it never commits)."""
        async with self._locked():
            self._rollback()
            self.closed = True

    def abandon(self) -> None:
        """The connection was dropped without close: give the writer back now (called on the loop)."""
        if not self.closed:
            self._rollback()
            self.closed = True

    # ------------------------------------------------------------------------------------ idle transactions
    def _arm_idle(self, delay: float) -> None:
        if self.idle_timeout > 0:
            self._idle = asyncio.get_running_loop().call_later(delay, self._idle_check)

    def _idle_check(self) -> None:
        self._idle = None
        tx = self.tx
        if tx is None:
            return
        idle = time.monotonic() - self._last_used
        if self._running or idle < self.idle_timeout:
            self._arm_idle(max(self.idle_timeout - idle, 0.05))
            return
        self._rollback()
        self._lost = (
            f"the transaction was rolled back after {self.idle_timeout:g}s idle: an open transaction holds "
            "the database's writer (other writes and applying replicated changes wait for it)"
        )
        log.warning("sqlite-ha driver: %s", self._lost)

    def _check_usable(self, *, lost_ok: bool = False) -> None:
        if self.closed:
            raise ProgrammingError("Cannot operate on a closed database.")
        lost, self._lost = self._lost, None
        if lost is not None and not lost_ok:
            raise make(
                OperationalError,
                lost,
                code="transaction_idle_timeout",
                hint="commit or roll back promptly; or raise transaction_idle_timeout",
            )


def _sqlite_error(message: str) -> OperationalError:
    err = make(OperationalError, message, sqlite_name="SQLITE_ERROR")
    assert isinstance(err, OperationalError)
    return err


async def rollback_all(sessions: list[Session]) -> None:
    """Before a node stops: every open transaction of its connections rolled back (a closing connector)."""
    for session in sessions:
        try:
            session.abandon()
        except Exception:  # the others still get theirs rolled back; this one's cause is in the log
            log.warning("rolling back a connection's transaction at close failed", exc_info=True)
