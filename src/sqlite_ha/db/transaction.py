"""Interactive write transactions: a client's BEGIN … COMMIT that spans several messages (PostgreSQL wire).

An HTTP request is one transaction run in one go; a PostgreSQL session instead sends statements one at a
time between BEGIN and COMMIT and must see its own writes. Such a transaction holds the database's write lock
from its first write to its end (SQLite has one writer anyway), runs every statement on the writer connection
with the change-set capture attached, and produces one change set at COMMIT, exactly like a request.

Statements run on the worker thread, not inline: a slow one must not stall the event loop, and unlike a
request it cannot be interrupted and re-run (interrupting a statement inside an explicit transaction makes
SQLite roll the whole transaction back). The query timeout still applies; when it fires, the transaction is
gone and says so. A cancelled statement (PostgreSQL's CancelRequest) is interrupted the same way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

import apsw

from sqlite_ha.db.runner import QueryTimeout
from sqlite_ha.db.schema import quote
from sqlite_ha.db.sqlerrors import translate
from sqlite_ha.db.statement import Result, Statement
from sqlite_ha.errors import HAError

if TYPE_CHECKING:
    from sqlite_ha.changes.changeset import ChangeSet
    from sqlite_ha.db.connection import Guarded
    from sqlite_ha.db.database import Database, Execution


class TransactionAborted(HAError):
    """SQLite ended the transaction by itself (timeout, disk full, …): only ROLLBACK is left."""

    code = "transaction_aborted"


class TransactionTimedOut(TransactionAborted):
    """A statement ran out of time, which ended its transaction: a timeout to the client (PostgreSQL's 57014,
    not a deadlock, which clients would retry)."""

    code = "query_timeout"


# Rows a transaction changed from which ``commit_off_loop`` builds its change set and commits on the worker
# thread: capturing costs some microseconds per row, seconds for a bulk load, during which the event loop
# would serve no one. Below it, the thread hop would cost more than it saves.
OFF_LOOP_ROWS = 2000


class WriteTransaction:
    def __init__(self, db: Database, c: Guarded) -> None:
        self._db = db
        self._c = c
        self._savepoints: list[tuple[str, int]] = []  # (name, capture mark)
        self.open = True
        self._changes_at_begin = c.conn.total_changes()

    @property
    def connection(self) -> apsw.Connection:
        """The writer connection, for reads that must see this transaction's own changes (its schema)."""
        return self._c.conn

    async def run(self, statements: Sequence[Statement]) -> list[Result]:
        """Run statements inside the transaction; an error leaves it open (the caller decides)."""
        self._check_open()
        return await self._db.lend(self._c, self._run, statements)

    def _run(self, statements: Sequence[Statement]) -> list[Result]:
        c = self._c
        capture = self._db.capture
        c.deadline.arm(self._db.options.limits.timeout)
        try:
            return self._db._run_request(
                c, statements, capture.record_statement if capture is not None else None, escalate=False
            )
        except QueryTimeout as e:
            self._lost()
            raise TransactionTimedOut(f"{e.message}; the transaction was rolled back", hint=e.hint) from e
        finally:
            c.deadline.disarm()
            if not c.conn.in_transaction and self.open:
                self._lost()

    def savepoint(self, name: str) -> None:
        self._check_open()
        self._control(f"SAVEPOINT {quote(name)}")
        capture = self._db.capture
        self._savepoints.append((name, capture.mark() if capture is not None else 0))

    def release(self, name: str) -> None:
        index = self._find(name)
        self._control(f"RELEASE {quote(name)}")
        del self._savepoints[index:]

    def rollback_to(self, name: str) -> None:
        index = self._find(name)
        self._control(f"ROLLBACK TO {quote(name)}")
        capture = self._db.capture
        if capture is not None:
            capture.rewind(self._savepoints[index][1])
        del self._savepoints[index + 1 :]

    def commit(self) -> Execution:
        """Build the change set, COMMIT, release the writer. An error rolls back and releases too."""
        self._check_open()
        committed = False
        try:
            captured = self._capture_and_commit()
            committed = True
        finally:
            self._end(committed)
        return self._committed(captured)

    async def commit_off_loop(self) -> Execution:
        """``commit``; for a large transaction of a file database, with the change set built and COMMIT run
        on the worker thread. Once started it runs to its end even if the caller is cancelled (then the
        cancellation goes on), and the writer is given back on the event loop."""
        if self._db.spec.memory or self._c.conn.total_changes() - self._changes_at_begin < OFF_LOOP_ROWS:
            return self.commit()
        self._check_open()
        job = asyncio.get_running_loop().run_in_executor(self._db._slow, self._capture_and_commit)
        cancelled = False
        while not job.done():
            try:
                await asyncio.wait({job})
            except asyncio.CancelledError:
                cancelled = True  # the writer can be given back only once COMMIT has or has not happened
        self._end(job.exception() is None)
        if cancelled:
            raise asyncio.CancelledError
        return self._committed(job.result())

    async def commit_held(self) -> Execution:
        """``commit`` in a writer mode: the log takes the change set first (``WriteHooks.publish_held``, with
        the transaction still open), then COMMIT; if the log refuses or does not answer, ROLLBACK and the
        error. A deposed writer keeps nothing the log does not have."""
        self._check_open()
        db, c = self._db, self._c
        committed = False
        captured: tuple[ChangeSet, bytes] | None = None
        seq = None
        try:
            if not db.spec.memory and c.conn.total_changes() - self._changes_at_begin >= OFF_LOOP_ROWS:
                job = asyncio.get_running_loop().run_in_executor(db._slow, db._capture_changeset, c)
                await asyncio.wait({job})  # not cancelled half-way: the change set is built or not
                captured = job.result()
            else:
                captured = db._capture_changeset(c)
            if captured is not None and db.hooks is not None:
                seq = await db.hooks.publish_held(*captured)
            self._control("COMMIT")
            committed = True
        finally:
            self._end(committed)
            if captured is not None and db.hooks is not None:
                db.hooks.held_done(captured[0], committed)
        execution = self._committed(captured)
        execution.seq = seq
        return execution

    def _capture_and_commit(self) -> tuple[ChangeSet, bytes] | None:
        c = self._c
        captured = self._db._capture_changeset(c)
        try:
            c.control("COMMIT")
        except apsw.Error as e:
            raise translate(e, conn=c.conn) from e
        return captured

    def _committed(self, captured: tuple[ChangeSet, bytes] | None) -> Execution:
        from sqlite_ha.db.database import Execution

        cs, payload = captured if captured is not None else (None, None)
        self._db.stats.writes += 1
        return Execution([], cs, payload)

    def rollback(self) -> None:
        if not self.open:
            return
        self._end(False)

    # ------------------------------------------------------------------------------------------------
    def _end(self, committed: bool) -> None:
        try:
            self._db.end_write(committed)
        finally:
            self.open = False
            self._savepoints.clear()
            self._db._write_lock.release()

    def _lost(self) -> None:
        """SQLite rolled the transaction back on its own: give the writer back now."""
        if self.open:
            self._end(False)

    def _check_open(self) -> None:
        if not self.open:
            raise TransactionAborted(
                "the transaction was rolled back (a statement ran out of time or failed)"
            )

    def _find(self, name: str) -> int:
        self._check_open()
        for i in range(len(self._savepoints) - 1, -1, -1):
            if self._savepoints[i][0] == name:
                return i
        raise HAError(f'savepoint "{name}" does not exist')

    def _control(self, sql: str) -> None:
        try:
            self._c.control(sql)
        except apsw.Error as e:
            raise translate(e, conn=self._c.conn) from e
