"""A query-only connection of one client's own, used on the client's thread: the embedded driver's reads
outside a transaction, without a hop to the node's event loop and back.

A point read through the node's loop costs two thread switches (tens of microseconds, more on a busy
machine); on a connection of its own it costs what SQLite does (about 5 us). WAL makes this safe: every
statement reads the last committed state, exactly what the node's own reader would have read, and the
client's own commits are in the file before its ``commit()`` returns. The connection carries the same guards
as the node's readers (``Opener.reader``: query-only, the client authorizer, the deadline, the node's SQL
functions, the result limits). A statement that would write is not run: ``read`` answers None and the
caller hands it to the node.
"""

from __future__ import annotations

import contextlib
import threading

import apsw

from sqlite_ha.db.connection import Opener
from sqlite_ha.db.database import Database
from sqlite_ha.db.runner import Budget, QueryTimeout, run_statement, too_many_bytes
from sqlite_ha.db.sqlerrors import translate
from sqlite_ha.db.statement import Result, Statement
from sqlite_ha.errors import HAError, StatementNotAllowed


class _Writes(Exception):
    """The prepared statement would write: stop before its first step."""


def _reads_only(cursor: apsw.Cursor, sql: str) -> None:
    if not cursor.is_readonly:
        raise _Writes


class DirectReader:
    """Reads of ``db`` (a file database; an in-memory one has a single connection, the node's) on the
    calling thread. One thread at a time (a lock): one per client connection."""

    def __init__(self, db: Database) -> None:
        self.db = db
        spec, options = db.spec, db.options
        busy = spec.busy_timeout if spec.busy_timeout is not None else options.busy_timeout
        self._c = Opener(spec, options.limits, int(busy * 1000)).reader()
        self._lock = threading.Lock()

    def read(self, stmt: Statement) -> Result | None:
        """The result of ``stmt`` if it only reads; None, having run nothing, if it would write."""
        c, limits = self._c, self.db.options.limits
        with self._lock:
            c.deadline.arm(limits.timeout)
            try:
                result = run_statement(c.conn, stmt, Budget(limits), _reads_only)
            except _Writes:
                return None
            except HAError:
                self.db.stats.errors += 1
                raise
            except apsw.TooBigError as e:
                self.db.stats.errors += 1
                raise too_many_bytes(limits.max_bytes) from e
            except apsw.InterruptError as e:
                self.db.stats.errors += 1
                if c.deadline.fired:
                    raise QueryTimeout(
                        f"the statement ran longer than {limits.timeout:g}s",
                        hint="add an index, a LIMIT, or raise --query-timeout",
                    ) from e
                raise translate(e, conn=c.conn) from e
            except apsw.AuthError as e:
                self.db.stats.errors += 1
                raise StatementNotAllowed(str(c.authorizer.denied or e)) from e
            except Exception as e:
                self.db.stats.errors += 1
                raise translate(e, conn=c.conn) from e
            finally:
                c.deadline.disarm()
        self.db.stats.reads += 1
        return result

    def close(self) -> None:
        with self._lock, contextlib.suppress(apsw.Error):  # closing must not fail the client's close
            self._c.conn.close()
