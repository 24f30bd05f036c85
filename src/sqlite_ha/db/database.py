"""One SQLite database served by a node: its connections, how requests run on them, and backups.

A file database has one writer connection and one reader connection (WAL lets the reader see committed data
while a write is in progress); an in-memory database has a single connection. Requests run inline on the
caller's thread, which is the node's event loop: a point query costs a few microseconds, far less than a hop
to a thread. A progress handler bounds how long any request may keep SQLite busy. Backups use their own
connection on a worker thread and never hold the writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import apsw

from sqlite_ha.db import rebuild
from sqlite_ha.db.authorizer import Permission
from sqlite_ha.db.connection import Guarded, Opener, open_query_only
from sqlite_ha.db.cursor import RowCursor
from sqlite_ha.db.dsn import DatabaseSpec
from sqlite_ha.db.group_commit import Execution as Execution  # where every caller looks for it
from sqlite_ha.db.group_commit import GroupCommit, first_outcome
from sqlite_ha.db.hooks import WriteHooks
from sqlite_ha.db.params import Bindings
from sqlite_ha.db.runner import (
    CLIENT_PREPARE,
    Budget,
    Limits,
    QueryTimeout,
    collect,
    on_thread,
    prepared_columns,
    run_statement,
    too_many_bytes,
)
from sqlite_ha.db.sqlerrors import translate
from sqlite_ha.db.statement import Result, Statement
from sqlite_ha.db.transaction import WriteTransaction
from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.errors import BadRequest, ConfigError, HAError, PermissionDenied, StatementNotAllowed

if (
    TYPE_CHECKING
):  # the storage side of replication plugs in (hooks, key choice); this package needs only types
    from sqlite_ha.changes.capture import Capture
    from sqlite_ha.changes.changeset import ChangeSet
    from sqlite_ha.changes.rowids import Rowids

log = logging.getLogger(__name__)

T = TypeVar("T")

_CLASSIFY_CACHE_MAX = 4096
_WRITER_FUNCTIONS = re.compile(r"\b(?:nextval|setval|currval|lastval)\s*\(", re.IGNORECASE)


@dataclass(frozen=True, kw_only=True)
class DatabaseOptions:
    synchronous: str = "full"
    busy_timeout: float = 5.0
    limits: Limits = field(default_factory=Limits)
    # How keys SQLite would choose are chosen (shared by the node's databases); None: SQLite's own way.
    rowids: Rowids | None = None


@dataclass(slots=True)
class DatabaseStats:
    reads: int = 0
    writes: int = 0
    errors: int = 0
    slow: int = 0  # requests that outran the inline budget and finished on a worker thread


@dataclass(frozen=True, slots=True)
class Described:
    columns: list[tuple[str, str | None]]


class _Escalate(Exception):
    """The inline budget ran out: run the request again on a worker thread."""


class Database(GroupCommit):
    def __init__(self, spec: DatabaseSpec, options: DatabaseOptions | None = None) -> None:
        self.spec = spec
        self.id = spec.id
        self.options = options or DatabaseOptions()
        self.stats = DatabaseStats()
        self._readonly_cache: dict[str, bool] = {}
        self._write_lock = asyncio.Lock()
        self._slow = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"sqlite-{spec.id}")
        self._slow_readers: list[Guarded] = []
        # An in-memory database has one connection. A request that outlasts the inline budget runs on a
        # worker thread like any other (so the event loop keeps answering, /healthz included), and the
        # connection is lent to it: every other use of it waits until it is back (see ``connection_back``).
        self._lent: asyncio.Event | None = None
        # The layer above (replication), given once by ``attach``; ``capture`` is its capture, kept here
        # for the write path.
        self.hooks: WriteHooks | None = None
        self.capture: Capture | None = None
        self._queue: list[tuple[Sequence[Statement], asyncio.Future[Execution]]] = []  # writes to commit
        self._committers: set[asyncio.Task[None]] = set()
        self.synchronous = "off"  # of client commits: "full", "normal"; "off" for memory and read-only
        busy = spec.busy_timeout if spec.busy_timeout is not None else self.options.busy_timeout
        self._busy_ms = int(busy * 1000)
        self._opener = Opener(spec, self.options.limits, self._busy_ms)
        try:
            if spec.memory:
                self._writer = self._opener.memory()
                self._reader = self._writer
            else:
                self._writer = self._opener.writer(self.spec.synchronous or self.options.synchronous)
                self.synchronous = "off" if spec.read_only else self._writer.synchronous
                self._reader = self._opener.reader()
        except apsw.Error as e:
            raise ConfigError(f"database {spec.path!r}", f"cannot open: {e}") from e
        rowids = self.options.rowids
        self.keys = (
            rowids.allocator(self._writer.conn, self._writer.authorizer)
            if rowids is not None and not spec.read_only
            else None
        )

    def attach(self, hooks: WriteHooks) -> None:
        """Give the database the layer above it (replication: capture, commit pacing, held commits in
        writer modes), once, before its first write."""
        if self.hooks is not None and self.hooks is not hooks:
            raise RuntimeError(f"database {self.id} already has its write hooks")
        self.hooks = hooks
        self.capture = hooks.capture

    # ------------------------------------------------------------------------------------ requests
    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[apsw.Connection]:
        """The writer connection for the node's own work (applying change sets): the write lock is held and
        the client authorizer is off. Use it inline on the event loop, or on one worker thread that the
        holder awaits before it lets go (the applier does so for a large batch)."""
        async with self._write_lock:
            await self.connection_back()
            self._writer.authorizer.internal = True
            last_rowid = self._writer.conn.last_insert_rowid()
            try:
                yield self._writer.conn
            finally:
                self._writer.authorizer.internal = False
                self._writer.conn.set_last_insert_rowid(last_rowid)  # clients see only their own inserts

    @property
    def writing(self) -> bool:
        """Whether the writer connection is taken now (a write transaction, or the node's own work)."""
        return self._write_lock.locked()

    def describe(
        self, sql: str, params: int, *, on_writer: bool = False, grant: Permission | None = None
    ) -> Described:
        """The result columns (name, declared type) of ``sql`` without running it: SQLite prepares it and
        the execution trace stops it before the first step. ``on_writer`` inside an interactive
        transaction, which may have created the tables it names. Prepared under ``grant``, as it will run."""
        if rebuild.mentioned(sql):
            return Described(
                columns=[]
            )  # a table rebuild (``rebuild``) returns no rows; SQLite cannot prepare it
        c = self._writer if on_writer else self._reader
        # apsw caches prepared statements by text, and an expired one keeps the column types it was prepared
        # with until it runs (describing never runs it): keyed by the schema version, a text is prepared anew
        # after every schema change. A comment changes nothing else.
        sql = f"{sql}\n/* schema {c.current_schema()} */"
        if grant is not None:
            c.authorizer.restrict(c.conn, grant)
        try:
            columns = prepared_columns(c.conn, sql, params, prepare_flags=CLIENT_PREPARE)
        except apsw.AuthError as e:
            raise self._refused(c, e, 0) from e
        except apsw.Error as e:
            raise translate(e) from e
        finally:
            if grant is not None:
                c.authorizer.unrestrict()
        return Described(columns=columns)

    def table_types(self, table: str, *, on_writer: bool = False) -> dict[str, str]:
        """Declared type of each column of ``table`` (lower-case names), for parameter type inference.
        ``on_writer`` inside an interactive transaction, which may have created or changed the table."""
        c = self._writer if on_writer else self._reader
        rows = c.conn.execute("SELECT name, type FROM pragma_table_info(?)", (table,)).fetchall()
        return {str(name).lower(): str(decl or "") for name, decl in rows}

    async def begin_transaction(self) -> WriteTransaction:
        """Take the writer for an interactive transaction (see ``transaction.py``): BEGIN IMMEDIATE with
        the change-set capture attached. The write lock is held until it commits or rolls back."""
        await self._write_lock.acquire()
        c = self._writer
        try:
            await self.connection_back()
            try:
                c.control("BEGIN IMMEDIATE")
            except apsw.Error as e:
                raise translate(e, conn=c.conn) from e
            if self.capture is not None:
                self.capture.begin(c.conn)
        except BaseException:
            if c.conn.in_transaction:
                c.control("ROLLBACK")
            self._write_lock.release()
            raise
        return WriteTransaction(self, c)

    @contextlib.contextmanager
    def internal(self) -> Iterator[apsw.Connection]:
        """The writer connection with the client authorizer off, for set-up before requests are served."""
        self._writer.authorizer.internal = True
        try:
            yield self._writer.conn
        finally:
            self._writer.authorizer.internal = False

    def set_synchronous(self, mode: str) -> None:
        """Change how client commits reach the disk (between transactions only)."""
        if self.synchronous != "off" and mode != self.synchronous:
            self._writer.control(f"PRAGMA synchronous={mode.upper()}")
            self.synchronous = mode

    def sync_to_disk(self) -> None:
        """fsync the WAL: all committed transactions survive a power cut. Blocking: run it on a thread."""
        if self.synchronous == "off":
            return
        with contextlib.suppress(FileNotFoundError), open(self.spec.path + "-wal", "rb") as wal:
            os.fsync(wal.fileno())

    @property
    def reader_connection(self) -> apsw.Connection:
        """For the node's own reads outside the write lock: never sees a transaction in progress."""
        return self._reader.conn

    async def execute(self, statements: Sequence[Statement]) -> Execution:
        """Run the statements as one transaction and return one result per statement.

        Read-only requests run on the reader; anything else runs on the writer inside ``BEGIN IMMEDIATE``,
        and the first error rolls the whole request back.
        """
        if not statements:
            raise BadRequest("no statements to run")
        for i, stmt in enumerate(statements):
            if not stmt.sql.strip():
                raise BadRequest(f"statement {i + 1} is empty")
        if self._lent is not None:
            await self.connection_back()  # classifying prepares on the connection a thread holds
        try:
            if self._all_read_only(statements):
                self.stats.reads += 1
                begin = "BEGIN" if len(statements) > 1 else None
                return first_outcome(await self._execute(self._reader, [statements], begin, write=False))
            self.stats.writes += 1
            return await self._write(statements)
        except HAError:
            self.stats.errors += 1
            raise

    def read_rows_now(
        self, sql: str, bindings: Bindings | None, grant: Permission | None = None
    ) -> list[tuple[SQLiteValue, ...]] | None:
        """The rows of one read-only statement, run right here on the event loop; None when it outlasts
        the inline budget (nothing happened then: run it with ``execute``, which moves it to a thread).

        For a caller that answers from a synchronous callback and already knows the statement's columns
        and that it reads only (the PostgreSQL wire's prepared statements): no await, no task switch and
        none of the per-statement bookkeeping of ``execute``, which is most of a point read's cost.
        """
        c, limits = self._reader, self.options.limits
        if self._lent is not None:
            return None  # an in-memory database's connection is busy on a thread: ``execute`` waits for it
        inline = limits.inline_budget >= limits.timeout
        c.deadline.arm(limits.timeout if inline else limits.inline_budget)
        if grant is not None:
            c.authorizer.restrict(c.conn, grant)
        try:
            cursor = c.conn.execute(sql, bindings, prepare_flags=CLIENT_PREPARE)
            try:
                rows = collect(cursor, Budget(limits))
            finally:
                cursor.close(True)
        except HAError:
            self.stats.errors += 1
            raise
        except apsw.TooBigError as e:
            self.stats.errors += 1
            raise too_many_bytes(limits.max_bytes) from e
        except apsw.InterruptError as e:
            if c.deadline.fired and not inline:
                return None
            self.stats.errors += 1
            raise self._interrupted(c, e, 0) from e
        except apsw.AuthError as e:
            self.stats.errors += 1
            raise self._refused(c, e, 0) from e
        except Exception as e:
            self.stats.errors += 1
            raise translate(e, 0) from e
        finally:
            c.deadline.disarm()
            if grant is not None:
                c.authorizer.unrestrict()
        self.stats.reads += 1
        return rows

    async def _execute(
        self,
        c: Guarded,
        requests: Sequence[Sequence[Statement]],
        begin: str | None,
        *,
        write: bool,
        hold: bool = False,
    ) -> list[Execution | HAError]:
        """Run inline first; a request still running after the inline budget moves to a worker thread.

        Most requests finish in microseconds and a thread hop would cost more than the work. A slow one is
        interrupted, rolled back and run again on a thread, so the event loop keeps serving everyone else.
        Re-running is safe: the interrupted attempt was rolled back and left no trace.
        """
        limits = self.options.limits
        memory = self.spec.memory
        if memory:
            await self.connection_back()
        started = time.monotonic()
        if limits.inline_budget >= limits.timeout:
            return self._run(c, requests, begin, limits.timeout, hold=hold)
        try:
            return self._run(c, requests, begin, limits.inline_budget, escalate=True, hold=hold)
        except _Escalate:
            pass
        self.stats.slow += 1
        remaining = max(limits.timeout - (time.monotonic() - started), 0.001)
        if memory:  # its only connection: lent to the thread meanwhile
            return await self.lend(c, self._run, c, requests, begin, remaining, False, hold)
        worker = c if write else self._take_slow_reader()
        try:
            return await on_thread(
                self._slow,
                worker.conn,
                worker.deadline,
                self._run,
                worker,
                requests,
                begin,
                remaining,
                False,
                hold,
            )
        finally:
            if not write:
                self._slow_readers.append(worker)

    async def connection_back(self) -> None:
        """Wait until an in-memory database's connection is back from the thread it was lent to."""
        while self._lent is not None:
            await self._lent.wait()

    async def lend(self, c: Guarded, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a worker thread that uses ``c``; for an in-memory database (whose one
        connection ``c`` is) every other use of the connection waits until it returns."""
        if not self.spec.memory:
            return await on_thread(self._slow, c.conn, c.deadline, fn, *args)
        await self.connection_back()
        lent = self._lent = asyncio.Event()
        try:
            return await on_thread(self._slow, c.conn, c.deadline, fn, *args)
        finally:
            self._lent = None
            lent.set()

    async def open_cursor(
        self, sql: str, bindings: Bindings | None = None, grant: Permission | None = None
    ) -> RowCursor:
        """A read of one statement whose rows are taken a batch at a time (``cursor.RowCursor``), on a
        reader connection of its own. Refused for a statement that writes, and for an in-memory database
        (its one connection cannot keep a read open for a cursor)."""
        if self.spec.memory:
            raise StatementNotAllowed("an in-memory database has no reader connection to give a cursor")
        if not self.is_read_only([Statement(sql=sql, bindings=bindings, grant=grant)]):
            raise StatementNotAllowed("a cursor reads: its statement must not write")
        c = self._take_slow_reader()
        try:
            cursor = await on_thread(
                self._slow, c.conn, c.deadline, RowCursor.open_on, self, c, sql, bindings, grant
            )
        except BaseException:
            if c.conn.in_transaction:
                c.control("ROLLBACK")
            self._slow_readers.append(c)
            raise
        self.stats.reads += 1
        return cursor

    def _reader_back(self, c: Guarded) -> None:
        """A reader connection a cursor used, its read ended: for the next slow read or cursor."""
        self._slow_readers.append(c)

    def read_view(self) -> ReadView:
        """A read transaction of its own, for a REPEATABLE READ block: every read sees one snapshot."""
        if self.spec.memory:
            raise StatementNotAllowed(
                "REPEATABLE READ needs a reader connection of its own, which an in-memory database has not",
                hint="use READ COMMITTED, or serve the database from a file",
            )
        c = self._take_slow_reader()
        try:
            c.control("BEGIN")
            c.conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()  # the snapshot starts here
        except BaseException:
            if c.conn.in_transaction:
                c.control("ROLLBACK")
            self._slow_readers.append(c)
            raise
        return ReadView(self, c)

    async def _read_in_view(self, c: Guarded, statements: Sequence[Statement]) -> Execution:
        """Run reads inside a ReadView's open transaction (on a thread: it may not be interrupted and
        moved to another connection as a slow inline read is)."""
        timeout = self.options.limits.timeout
        self.stats.reads += 1
        outcomes = await on_thread(
            self._slow, c.conn, c.deadline, self._run, c, [statements], None, timeout, False, True
        )
        return first_outcome(outcomes)

    def _end_read_view(self, c: Guarded) -> None:
        if c.conn.in_transaction:
            c.control("ROLLBACK")
        self._slow_readers.append(c)

    def _take_slow_reader(self) -> Guarded:
        return self._slow_readers.pop() if self._slow_readers else self._opener.reader()

    def _run(
        self,
        c: Guarded,
        requests: Sequence[Sequence[Statement]],
        begin: str | None,
        seconds: float,
        escalate: bool = False,
        hold: bool = False,
    ) -> list[Execution | HAError]:
        """Run requests in one transaction; with several, each in a savepoint so that one failing rolls
        back alone (its error takes its place in the outcomes). A single request's error is raised.
        With ``hold`` the transaction is left open once its change set is built (see ``_settle_held``)."""
        outcomes: list[list[Result] | HAError] = []
        capture = self.capture if c is self._writer else None
        captured: tuple[ChangeSet, bytes] | None = None
        grouped = len(requests) > 1
        committed = held = False
        c.deadline.arm(seconds)
        try:
            if begin:
                try:
                    c.control(begin)
                except apsw.Error as e:
                    raise translate(e, conn=c.conn) from e
            if capture is not None:
                capture.begin(c.conn)
            on_statement = capture.record_statement if capture is not None else None
            for statements in requests:
                if not grouped:
                    outcomes.append(self._run_request(c, statements, on_statement, escalate))
                    continue
                c.control("SAVEPOINT _ha_request")
                mark = capture.mark() if capture is not None else 0
                try:
                    outcomes.append(self._run_request(c, statements, on_statement, escalate))
                except HAError as e:
                    if not c.conn.in_transaction:
                        raise  # SQLite rolled the whole transaction back: the group failed as a whole
                    c.control("ROLLBACK TO _ha_request")
                    if capture is not None:
                        capture.rewind(mark)
                    outcomes.append(e)
                c.control("RELEASE _ha_request")
            if capture is not None:
                c.deadline.disarm()  # the statements are done: building the change set is not theirs to time
                captured = self._capture_changeset(c)
            if hold and begin:
                held = True
            elif begin:
                try:
                    c.control("COMMIT")
                except apsw.Error as e:
                    raise translate(e, conn=c.conn) from e
            committed = True
        finally:
            c.deadline.disarm()
            if held:
                pass  # ``_settle_held`` commits or rolls back once the log answered
            elif capture is not None:
                self.end_write(committed)
            elif c.conn.in_transaction and not (hold and not begin):  # a ReadView's transaction stays
                c.control("ROLLBACK")
        cs, payload = captured if captured is not None else (None, None)
        return [o if isinstance(o, HAError) else Execution(o, cs, payload) for o in outcomes]

    def _capture_changeset(self, c: Guarded) -> tuple[ChangeSet, bytes] | None:
        """The open transaction's change set (and its outbox entry), built with the authorizer off."""
        if self.capture is None:
            return None
        c.authorizer.internal = True
        last_rowid = c.conn.last_insert_rowid()  # the node's own inserts must not show to clients
        try:
            if self.keys is not None:
                self.keys.remember(c.conn)
            return self.capture.finish(c.conn)
        except apsw.Error as e:  # writing the outbox entry: a full disk shows here first
            raise translate(e, conn=c.conn) from e
        finally:
            c.authorizer.internal = False
            c.conn.set_last_insert_rowid(last_rowid)

    def _run_request(
        self,
        c: Guarded,
        statements: Sequence[Statement],
        on_statement: Callable[[apsw.Cursor, str], None] | None,
        escalate: bool,
    ) -> list[Result]:
        results: list[Result] = []
        budget = Budget(self.options.limits)
        c.conn.set_last_insert_rowid(0)  # each request's last_insert_id is its own (see ``runner``)
        keys = self.keys if c is self._writer else None
        for i, stmt in enumerate(statements):
            grant = stmt.grant
            if grant is not None:
                c.authorizer.restrict(c.conn, grant)
            try:
                if keys is not None and (sql := keys.sql_for(stmt.sql)) is not stmt.sql:
                    stmt = Statement(sql=sql, bindings=stmt.bindings, grant=grant)
                if c is self._writer and rebuild.mentioned(stmt.sql):
                    result = rebuild.execute(c, stmt, budget, on_statement, self.capture, self.id)
                else:
                    result = run_statement(c.conn, stmt, budget, on_statement)
            except apsw.AuthError as e:
                raise self._refused(c, e, i) from e
            except apsw.TooBigError as e:
                if c is self._writer:  # a value too large to write is the statement's error, not the result's
                    raise translate(e, i, conn=c.conn) from e
                raise too_many_bytes(self.options.limits.max_bytes) from e
            except apsw.InterruptError as e:
                if c.deadline.fired and escalate:
                    raise _Escalate from e
                raise self._interrupted(c, e, i) from e
            except HAError:
                raise
            except Exception as e:
                raise translate(e, i, conn=c.conn) from e
            finally:
                if grant is not None:
                    c.authorizer.unrestrict()
            results.append(result)
        return results

    def _refused(self, c: Guarded, e: apsw.AuthError, i: int) -> HAError:
        """The authorizer's refusal: a permission the user lacks, or a statement no client may run."""
        if c.authorizer.grant is not None and c.authorizer.missing is not None:
            return PermissionDenied(c.authorizer.missing.names[0], self.id)
        return StatementNotAllowed(f"statement {i + 1}: {c.authorizer.denied or e}")

    def _interrupted(self, c: Guarded, e: apsw.InterruptError, i: int) -> HAError:
        if c.deadline.fired:
            return QueryTimeout(
                f"statement {i + 1} ran longer than {self.options.limits.timeout:g}s",
                hint="add an index, a LIMIT, or raise --query-timeout",
            )
        return translate(e, i)

    def is_read_only(self, statements: Sequence[Statement]) -> bool:
        """Whether the request would run as a read (on the reader, changing nothing)."""
        return self._all_read_only(statements)

    def _all_read_only(self, statements: Sequence[Statement]) -> bool:
        for stmt in statements:
            ro = self._readonly_cache.get(stmt.sql)
            if ro is None:
                ro = self._classify(stmt)
                if ro is None:
                    return False
                if len(self._readonly_cache) >= _CLASSIFY_CACHE_MAX:
                    self._readonly_cache.clear()
                self._readonly_cache[stmt.sql] = ro
            if not ro:
                return False
        return True

    def _classify(self, stmt: Statement) -> bool | None:
        """Prepare without running: True when SQLite says the text is one read-only statement.

        None means "could not tell" (a table made earlier in the same request, bad parameters, several
        statements in one text): such requests go to the writer, which reports any real error.
        """
        if ("val(" in stmt.sql or "VAL(" in stmt.sql) and _WRITER_FUNCTIONS.search(stmt.sql):
            return False  # nextval()/setval(): the writer's (changes/sequences.py), even in a SELECT
        seen: dict[str, Any] = {}

        def trace(cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
            seen["ro"] = cursor.is_readonly
            seen["sql"] = sql
            return False

        c = self._reader
        cur = c.conn.cursor()
        cur.exec_trace = trace
        if stmt.grant is not None:
            c.authorizer.restrict(c.conn, stmt.grant)  # not to leave statements prepared unrestricted
        try:
            cur.execute(stmt.sql, stmt.bindings, prepare_flags=CLIENT_PREPARE)
        except apsw.ExecTraceAbort:
            pass
        except Exception:
            return None
        finally:
            if stmt.grant is not None:
                c.authorizer.unrestrict()
        if "ro" not in seen:
            return None
        rest = stmt.sql.strip()
        first = str(seen["sql"]).strip()
        if rest.startswith(first) and rest[len(first) :].strip(" \t\r\n;"):
            return None  # more statements follow in the same text
        return bool(seen["ro"])

    # ------------------------------------------------------------------------------------ backups
    def backup_to(self, dest_path: str) -> None:
        """Write a consistent copy to ``dest_path``. Safe to call from a worker thread.

        A file database is copied from its own connection holding one read transaction, so the copy is a
        single snapshot while writers go on (WAL). An in-memory database is serialized, which is a memory
        copy; call it from the thread that owns the database.
        """
        if self.spec.memory:
            data = bytearray(self._writer.conn.serialize("main") or b"")
            if len(data) >= 20 and data[18:20] == b"\x02\x02":
                data[18:20] = b"\x01\x01"  # loaded from a WAL file: the copy has no WAL, so say so
            with open(dest_path, "wb") as f:
                f.write(data)
            return
        src = open_query_only(self.spec.path)
        try:
            src.set_busy_timeout(self._busy_ms)
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_schema").fetchall()  # pins the read snapshot
            dest = apsw.Connection(dest_path)
            try:
                with dest.backup("main", src, "main") as backup:
                    while not backup.done:
                        backup.step(4096)
                dest.execute("PRAGMA journal_mode=DELETE")
            finally:
                dest.close()
            src.execute("COMMIT")
        finally:
            src.close()

    def close(self) -> None:
        for c in (self._reader, self._writer, *self._slow_readers):
            c.conn.interrupt()  # a request still running on a worker thread stops now
        self._slow.shutdown(wait=True, cancel_futures=True)
        for c in {id(c): c for c in (self._reader, self._writer, *self._slow_readers)}.values():
            try:
                c.conn.close()
            except apsw.Error as e:  # closing must not stop the shutdown of the other databases
                log.warning("closing %s: %s", self.id, e)


class ReadView:
    """A snapshot of the database that stays while a transaction block runs (REPEATABLE READ): reads run in
    one open read transaction on a reader connection of its own; WAL keeps what it sees until it ends."""

    def __init__(self, db: Database, c: Guarded) -> None:
        self._db = db
        self._c: Guarded | None = c

    async def execute(self, statements: Sequence[Statement]) -> Execution:
        if self._c is None:
            raise BadRequest("the read view has ended")
        if not self._db.is_read_only(statements):
            raise StatementNotAllowed("cannot execute a write in a read-only transaction")
        return await self._db._read_in_view(self._c, statements)

    def close(self) -> None:
        c, self._c = self._c, None
        if c is not None:
            self._db._end_read_view(c)
