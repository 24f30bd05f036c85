"""A read whose rows are taken a batch at a time: the SQL cursors of the PostgreSQL front end.

``Database.open_cursor`` starts a read transaction on a reader connection of the cursor's own and prepares
the statement there; ``RowCursor.fetch(n)`` steps it ``n`` rows further (on a worker thread: a step may
sort or scan), ``close`` ends the transaction and gives the connection back. The rows are those of the
snapshot taken when the statement first stepped (at open), whatever is written meanwhile, as PostgreSQL's
cursors show their DECLARE's snapshot.

What that costs: a connection, and a read transaction that WAL mode must keep visible, so while a cursor is
open a checkpoint cannot move past its snapshot and the WAL file grows with the writes made meanwhile. It
holds no lock that a writer waits for. So an open cursor is cheap for a while and expensive forgotten: the
front end closes its cursors when the client does, at the end of the transaction (WITHOUT HOLD) and when
the session ends, and one that is dropped without being closed is closed when it is collected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import apsw

from sqlite_ha.db.authorizer import Permission
from sqlite_ha.db.connection import Guarded
from sqlite_ha.db.params import Bindings
from sqlite_ha.db.runner import Budget, on_thread, too_many_bytes, too_many_rows
from sqlite_ha.db.sqlerrors import translate
from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.errors import BadRequest, HAError

if TYPE_CHECKING:
    from sqlite_ha.db.database import Database

Row = tuple[SQLiteValue, ...]


class RowCursor:
    """One open read, stepped on demand. Not for concurrent use: one fetch at a time (a session's)."""

    def __init__(self, db: Database, c: Guarded, cursor: apsw.Cursor) -> None:
        self._db = db
        self._c: Guarded | None = c
        self._rows: Any = iter(cursor)
        self._cursor: apsw.Cursor | None = cursor
        self.done = False

    @classmethod
    def open_on(
        cls, db: Database, c: Guarded, sql: str, bindings: Bindings | None, grant: Permission | None
    ) -> RowCursor:
        """Begin the read on ``c`` and run the statement's first step (on the caller's thread)."""
        limits = db.options.limits
        c.deadline.arm(limits.timeout)
        if grant is not None:
            c.authorizer.restrict(c.conn, grant)
        try:
            c.control("BEGIN")
            cursor = c.conn.execute(sql, bindings)
        except HAError:
            raise
        except apsw.InterruptError as e:
            raise db._interrupted(c, e, 0) from e
        except apsw.AuthError as e:
            raise db._refused(c, e, 0) from e
        except apsw.Error as e:
            raise translate(e, 0, conn=c.conn) from e
        finally:
            c.deadline.disarm()
            if grant is not None:
                c.authorizer.unrestrict()
        return cls(db, c, cursor)

    async def fetch(self, count: int | None) -> list[Row]:
        """The next ``count`` rows (None: all that are left); fewer once the end is reached."""
        c = self._c
        if c is None:
            raise BadRequest("the cursor is closed")
        if self.done:
            return []
        try:
            return await on_thread(self._db._slow, c.conn, c.deadline, self._step, c, count)
        except BaseException:
            self.close()  # an error, a timeout or a cancel leaves the statement where it cannot go on
            raise

    def _step(self, c: Guarded, count: int | None) -> list[Row]:
        limits = self._db.options.limits
        budget = Budget(limits)
        # one row past the limit is stepped, so that more than it is refused, never cut silently
        left_rows = limits.max_rows + 1 if count is None else min(count, limits.max_rows + 1)
        left_bytes = budget.bytes
        rows: list[Row] = []
        c.deadline.arm(limits.timeout)
        try:
            while left_rows > 0:
                row = next(self._rows, None)
                if row is None:
                    self.done = True
                    break
                for value in row:
                    kind = type(value)
                    left_bytes -= len(value) if kind is str or kind is bytes else 8
                if left_bytes < 0:
                    raise too_many_bytes(budget.max_bytes)
                rows.append(row)
                left_rows -= 1
            if len(rows) > limits.max_rows:
                raise too_many_rows()
        except HAError:
            raise
        except apsw.InterruptError as e:
            raise self._db._interrupted(c, e, 0) from e
        except apsw.Error as e:
            raise translate(e, 0, conn=c.conn) from e
        finally:
            c.deadline.disarm()
        return rows

    def close(self) -> None:
        """End the read and give the connection back (idempotent)."""
        c, self._c = self._c, None
        cursor, self._cursor = self._cursor, None
        self._rows = iter(())
        if c is None:
            return
        try:
            if cursor is not None:
                cursor.close(True)
            if c.conn.in_transaction:
                c.control("ROLLBACK")
        except apsw.Error:
            c.conn.close()  # a connection that cannot end its read must not serve another one
            return
        self._db._reader_back(c)

    def __del__(self) -> None:
        if self._c is not None:
            self.close()
