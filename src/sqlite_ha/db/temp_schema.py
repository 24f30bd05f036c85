"""A client session's own TEMP tables and views, on a connection of its own that never replicates.

PostgreSQL clients expect ``CREATE TEMPORARY TABLE`` to make a table only their session sees, gone when the
session ends (SQLAlchemy's reflection suite, ETL scripts staging rows, Django's tests). The node's writer
and readers are shared by every client, so their TEMP schema would belong to whichever client came next,
and the change capture does not see it: the client authorizer refuses TEMP there.

A session that creates a TEMP object gets this instead: one SQLite connection of its own on the same
database file, whose ``temp`` schema holds the session's objects and dies with the connection (closed when
the session ends). Statements that create a TEMP object or name one run here; everything else still runs on
the shared connections, so writes are captured and replicated as always. This connection reads the
database's tables (a TEMP view over a real table works, ``INSERT INTO tmp SELECT … FROM t`` too) but writes
only its ``temp`` schema: its authorizer refuses any change outside it, so a statement that would write a
replicated table while naming a TEMP one (``INSERT INTO t SELECT … FROM tmp``) is refused with a clear
error instead of changing this node alone. What runs here runs at once, outside the session's transaction
block: a ROLLBACK does not undo a TEMP table's creation or its rows.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import apsw

from sqlite_ha.db import functions
from sqlite_ha.db.dsn import DatabaseSpec
from sqlite_ha.db.runner import prepared_columns
from sqlite_ha.db.sqlerrors import translate
from sqlite_ha.db.statement import Result
from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.errors import NotSupported, StatementNotAllowed

# CREATE [GLOBAL|LOCAL] TEMP[ORARY] TABLE|VIEW, as PostgreSQL spells it (SQLite knows TEMP and TEMPORARY)
_CREATES_TEMP = re.compile(
    r"^\s*CREATE\s+(?:OR\s+REPLACE\s+)?(?:(?:GLOBAL|LOCAL)\s+)?TEMP(?:ORARY)?\s+(?:TABLE|VIEW)\b", re.I
)
_WORDS = re.compile(r"[A-Za-z_][A-Za-z_0-9$]*")
_OBJECTS = "SELECT lower(name) FROM temp.sqlite_schema WHERE type IN ('table', 'view', 'index')"

# What this connection may do outside ``temp``: read. Writing is refused (SQLITE_DENY); schema reads and the
# temp schema's own bookkeeping go through.
_WRITES = frozenset(
    {
        apsw.SQLITE_INSERT,
        apsw.SQLITE_UPDATE,
        apsw.SQLITE_DELETE,
        apsw.SQLITE_CREATE_TABLE,
        apsw.SQLITE_CREATE_INDEX,
        apsw.SQLITE_CREATE_VIEW,
        apsw.SQLITE_CREATE_TRIGGER,
        apsw.SQLITE_CREATE_VTABLE,
        apsw.SQLITE_DROP_TABLE,
        apsw.SQLITE_DROP_INDEX,
        apsw.SQLITE_DROP_VIEW,
        apsw.SQLITE_DROP_TRIGGER,
        apsw.SQLITE_DROP_VTABLE,
        apsw.SQLITE_ALTER_TABLE,
        apsw.SQLITE_ANALYZE,
        apsw.SQLITE_REINDEX,
    }
)
_NEVER = frozenset({apsw.SQLITE_ATTACH, apsw.SQLITE_DETACH, apsw.SQLITE_TRANSACTION, apsw.SQLITE_SAVEPOINT})
_SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_temp_master", "sqlite_schema", "sqlite_temp_schema"})


def creates_temp(sql: str) -> bool:
    """Whether ``sql`` (as the client sent it) creates a TEMP table or view."""
    return _CREATES_TEMP.match(sql) is not None


class TempSchema:
    """The session's own connection and the names of the TEMP objects on it."""

    def __init__(self, spec: DatabaseSpec) -> None:
        # An in-memory database has no file to open a second connection on: its TEMP objects work alone
        # (they cannot read the database's tables then).
        path = ":memory:" if spec.memory else spec.path
        flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if spec.memory else 0)
        self.conn = apsw.Connection(path, flags=flags)
        self.conn.set_busy_timeout(5000)
        self.conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 1)
        self.conn.config(apsw.SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0)
        if spec.foreign_keys:
            self.conn.config(apsw.SQLITE_DBCONFIG_ENABLE_FKEY, 1)
        self.conn.authorizer = self._authorize
        functions.register(self.conn)
        self.denied = ""
        self.mixed = False  # the last denial: a write outside TEMP (not supported) rather than not allowed
        self.names: frozenset[str] = frozenset()
        self.internal = False  # the node reads the schema (catalog): pragmas with arguments are fine then

    @contextlib.contextmanager
    def reading_schema(self) -> Iterator[apsw.Connection]:
        """The connection, for the node's own reads of its schema (pragma_table_info and the like)."""
        self.internal = True
        try:
            yield self.conn
        finally:
            self.internal = False

    def _authorize(
        self, action: int, a1: str | None, a2: str | None, db: str | None, trig: str | None
    ) -> int:
        if self.internal:
            return apsw.SQLITE_OK
        self.mixed = False
        if action in _NEVER:
            self.denied = "transaction control and ATTACH are not allowed"
            return apsw.SQLITE_DENY
        if action == apsw.SQLITE_PRAGMA and a2 is not None:
            self.denied = "PRAGMA cannot be set by clients"
            return apsw.SQLITE_DENY
        if action in _WRITES and db not in ("temp", None) and (a1 or "").lower() not in _SCHEMA_TABLES:
            self.mixed = True
            self.denied = (
                "a statement naming a TEMP table or view cannot change the database's replicated tables "
                "(TEMP objects live on the session's own connection, which never replicates)"
            )
            return apsw.SQLITE_DENY
        return apsw.SQLITE_OK

    def mentions(self, sql: str) -> bool:
        """Whether ``sql`` names one of the session's TEMP objects (a word of it is such a name)."""
        names = self.names
        return bool(names) and any(w.lower() in names for w in _WORDS.findall(sql))

    def describe(self, sql: str, params: int) -> list[tuple[str, str | None]]:
        """Result columns (name, declared type) of ``sql`` without running it."""
        try:
            return prepared_columns(self.conn, sql, params)
        except apsw.Error as e:
            raise self._error(e) from e

    def run(self, sql: str, params: tuple[SQLiteValue, ...]) -> Result:
        """Run one statement here, at once (autocommit), and note the TEMP objects it made or dropped."""
        described: list[list[tuple[str, str | None]]] = []

        def trace(cursor: apsw.Cursor, text: str, bindings: Any) -> bool:
            # prepared, not run yet: the columns are known even when no row comes
            described.append([(str(d[0]), d[1]) for d in cursor.description])
            return True

        cur = self.conn.cursor()
        cur.exec_trace = trace
        try:
            rows = cur.execute(sql, params or None).fetchall()
            description = described[-1] if described else ()
        except apsw.Error as e:
            raise self._error(e) from e
        finally:
            self.names = frozenset(str(r[0]) for r in self.conn.execute(_OBJECTS))
        if description:
            return Result(columns=[d[0] for d in description], types=[d[1] for d in description], rows=rows)
        return Result(rows_affected=self.conn.changes(), last_insert_id=self.conn.last_insert_rowid())

    def _error(self, e: apsw.Error) -> Exception:
        if isinstance(e, apsw.AuthError) and self.denied:
            denied, self.denied = self.denied, ""
            if self.mixed:
                return NotSupported(
                    denied, hint="copy the rows out with SELECT, then write them in a statement of their own"
                )
            return StatementNotAllowed(denied)
        return translate(e, conn=self.conn)

    def close(self) -> None:
        """Drop the TEMP objects with the connection (the session ended)."""
        self.conn.close()
