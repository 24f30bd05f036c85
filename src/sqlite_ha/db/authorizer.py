"""What statements sent by clients may do.

Clients share one writer connection per database, so anything that changes connection state or reaches
outside the database file is refused: transaction control (a request is already one transaction), ATTACH and
DETACH (also ``VACUUM INTO``, which attaches), anything that creates or writes the TEMP schema (it would
belong to whichever client came next, and the change capture does not see it), writes to internal ``_ha_*``
tables, and pragmas that set node-wide behaviour. Reading pragmas stays allowed.

Applying from the log runs the schema statements a change set carries under a stricter rule (``replicated``,
set by the applier around them): the node's own statements are otherwise unchecked, but SQL that came from
the log is what an attacker who could sign a message would write, so it may do no more than what a client's
schema change captured at the origin can be: no ATTACH, DETACH or VACUUM INTO (the host's files), no
``load_extension``, no transaction control, nothing in TEMP, no PRAGMA but ``user_version`` and
``application_id`` (which travel with the schema changes), and nothing on internal ``_ha_*`` tables.

The table check of every ``DELETE`` statement is answered ``SQLITE_IGNORE`` rather than OK: SQLite's
documented way to turn off its truncate optimisation for that statement, so that a ``DELETE`` without
``WHERE`` deletes row by row, which the session extension records. SQLite decides this when it prepares a
statement, not when it runs it, and prepared statements are cached: a ``DELETE FROM t`` first prepared while
no session was attached (to classify it as a write, on an in-memory database whose one connection reads and
writes) used to empty the table unseen by every later session, and never reach the other nodes. (DROP
statements ask about DELETEs too, and take SQLITE_IGNORE as "skip the DROP": those are answered OK.)

A request may also run with a *grant*: the permissions (read, write, ddl) its user has on the database.
The authorizer then denies each action the grant lacks, classified by what SQLite will do, not by the SQL
text: an ``INSERT`` whose trigger deletes elsewhere needs write; ``CREATE TABLE`` needs ddl; a ``SELECT``
needs read. Because SQLite asks the authorizer only when it prepares, and apsw caches prepared statements
by their text, a statement prepared under a wider grant must not be reused under a narrower one: ``restrict``
expires the connection's cached statements (re-assigning the authorizer does that in SQLite) whenever the
grant it is given lacks a permission that earlier statements may have been prepared with. A connection used
by one user keeps its cache.
"""

from __future__ import annotations

import enum

import apsw


class Permission(enum.IntFlag):
    """What a user may do on a database. ``SQL`` is every statement; ``ADMIN`` covers the node's routes
    (snapshots, load, creating and deleting databases, status), never more SQL."""

    NONE = 0
    READ = 1
    WRITE = 2
    DDL = 4
    ADMIN = 8
    SQL = READ | WRITE | DDL
    ALL = SQL | ADMIN

    @property
    def names(self) -> list[str]:
        return [
            p.name.lower()
            for p in (Permission.READ, Permission.WRITE, Permission.DDL, Permission.ADMIN)
            if p.name is not None and p in self
        ]


# Pragmas whose argument names an object or bounds a check, rather than setting something.
_PRAGMAS_WITH_SAFE_ARGUMENT = frozenset(
    {
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "foreign_key_check",
        "integrity_check",
        "quick_check",
        "optimize",
        "function_list",
        "pragma_list",
        "module_list",
        "collation_list",
        "database_list",
        "compile_options",
        "user_version",
        "application_id",
    }
)
_WRITE_ACTIONS = frozenset(
    {
        apsw.SQLITE_INSERT,
        apsw.SQLITE_UPDATE,
        apsw.SQLITE_DELETE,
        apsw.SQLITE_DROP_TABLE,
        apsw.SQLITE_ALTER_TABLE,
        apsw.SQLITE_CREATE_INDEX,
        apsw.SQLITE_DROP_INDEX,
        apsw.SQLITE_CREATE_TRIGGER,
        apsw.SQLITE_DROP_TRIGGER,
    }
)
# For these actions SQLite passes the table as the second argument (the first is an index, trigger or db).
_TABLE_IN_SECOND_ARG = frozenset(
    {
        apsw.SQLITE_CREATE_INDEX,
        apsw.SQLITE_DROP_INDEX,
        apsw.SQLITE_CREATE_TRIGGER,
        apsw.SQLITE_DROP_TRIGGER,
        apsw.SQLITE_ALTER_TABLE,
    }
)
_TEMP_SCHEMA = frozenset(
    {
        apsw.SQLITE_CREATE_TEMP_TABLE,
        apsw.SQLITE_CREATE_TEMP_INDEX,
        apsw.SQLITE_CREATE_TEMP_TRIGGER,
        apsw.SQLITE_CREATE_TEMP_VIEW,
    }
)
# Creating in the TEMP schema: ``CREATE TABLE temp.x`` and ``CREATE VIRTUAL TABLE temp.x`` are authorized as
# plain creations in "temp"; ``CREATE TRIGGER temp.x … ON main.t`` as a creation in "main" that then inserts
# into the temp schema table. (Updates of the temp schema table stay allowed: ALTER TABLE and DROP make them.)
_TEMP_CREATE = frozenset(
    {
        apsw.SQLITE_INSERT,
        apsw.SQLITE_CREATE_TABLE,
        apsw.SQLITE_CREATE_VIEW,
        apsw.SQLITE_CREATE_VTABLE,
        apsw.SQLITE_CREATE_INDEX,
        apsw.SQLITE_CREATE_TRIGGER,
    }
)
_DROPS = frozenset(
    {
        apsw.SQLITE_DROP_TABLE,
        apsw.SQLITE_DROP_TEMP_TABLE,
        apsw.SQLITE_DROP_VIEW,
        apsw.SQLITE_DROP_TEMP_VIEW,
        apsw.SQLITE_DROP_VTABLE,
    }
)
_SCHEMA_TABLES = frozenset({"sqlite_master", "sqlite_temp_master", "sqlite_schema", "sqlite_temp_schema"})
# Statements that may change what a table is (prepared, not necessarily run: counting more is harmless).
_TABLE_CHANGES = frozenset(
    {
        apsw.SQLITE_CREATE_TABLE,
        apsw.SQLITE_DROP_TABLE,
        apsw.SQLITE_ALTER_TABLE,
        apsw.SQLITE_CREATE_VTABLE,
        apsw.SQLITE_DROP_VTABLE,
    }
)
INTERNAL_PREFIX = "_ha_"
# The only pragmas a replicated change set may run: the two that set a value in the file's header.
_REPLICATED_PRAGMAS = frozenset({"user_version", "application_id"})
_REFUSED_FUNCTIONS = frozenset({"load_extension"})

_DDL_ACTIONS = frozenset(
    {
        apsw.SQLITE_CREATE_INDEX,
        apsw.SQLITE_CREATE_TABLE,
        apsw.SQLITE_CREATE_TRIGGER,
        apsw.SQLITE_CREATE_VIEW,
        apsw.SQLITE_CREATE_VTABLE,
        apsw.SQLITE_DROP_INDEX,
        apsw.SQLITE_DROP_TABLE,
        apsw.SQLITE_DROP_TRIGGER,
        apsw.SQLITE_DROP_VIEW,
        apsw.SQLITE_DROP_VTABLE,
        apsw.SQLITE_ALTER_TABLE,
    }
)
_ROW_WRITES = frozenset({apsw.SQLITE_INSERT, apsw.SQLITE_UPDATE, apsw.SQLITE_DELETE})
_INDEX_MAINTENANCE = frozenset({apsw.SQLITE_ANALYZE, apsw.SQLITE_REINDEX})
_READS = frozenset({apsw.SQLITE_READ, apsw.SQLITE_SELECT})
_PRAGMAS_THAT_WRITE = frozenset({"user_version", "application_id"})


class Authorizer:
    """An apsw authorizer; ``internal`` is set while the node runs its own statements."""

    def __init__(self) -> None:
        self.internal = False
        self.replicated = False  # with ``internal``: running SQL that came from the log (see the module doc)
        self.denied: str | None = None  # why the last statement was refused, for the error message
        self._dropping: str | None = None  # the table a DROP just asked about (its DELETE check follows)
        self.schema_changes = 0  # statements prepared that may change a table: caches of tables compare it
        self.grant: int | None = None  # the permissions of the request being prepared; None: unrestricted
        self.missing: Permission | None = None  # the permission the last denied statement lacked
        self._indexing: str | None = None  # the table a CREATE INDEX being prepared reads
        # The widest grant any statement in the connection's statement cache was prepared under.
        self._cached_grant = int(Permission.SQL)

    def restrict(self, conn: apsw.Connection, grant: int) -> None:
        """Prepare what follows on ``conn`` under ``grant`` (``unrestrict`` ends it). Plain ints inside:
        an IntFlag operation costs a microsecond, and this runs for every statement of a restricted user."""
        grant = int(grant)
        if self._cached_grant & ~grant:
            conn.authorizer = self  # expires every cached statement: each is prepared again, asking us
            self._cached_grant = grant
        self.grant = grant
        self.missing = None
        self._indexing = None

    def unrestrict(self) -> None:
        self.grant = None

    def _ddl_reads(self, table: str | None) -> bool:
        """Reads a schema change makes: of the schema table, and of the table ``CREATE INDEX`` indexes."""
        name = (table or "").lower()
        return name in _SCHEMA_TABLES or (table is not None and table == self._indexing)

    def __call__(self, action: int, a1: str | None, a2: str | None, db: str | None, trig: str | None) -> int:
        if action in _TABLE_CHANGES:
            self.schema_changes += 1
        allowed = self._allowed(action, a1)
        dropping = self._dropping
        self._dropping = a1 if action in _DROPS else None
        if self.internal:
            if not self.replicated:
                return allowed
            reason = _replicated_deny_reason(action, a1, a2, db)
            if reason is None:
                return allowed
            self.denied = reason
            return apsw.SQLITE_DENY
        if action == apsw.SQLITE_CREATE_INDEX:
            self._indexing = a2
        elif action == apsw.SQLITE_SELECT or (
            action in _ROW_WRITES and (a1 or "").lower() not in _SCHEMA_TABLES
        ):
            self._indexing = None
        reason = self._deny_reason(action, a1, a2, db)
        if reason is None:
            if self.grant is None:
                self._cached_grant = int(Permission.SQL)
                return allowed
            needed = int(_needed(action, a1, a2, dropping))
            if not needed & ~self.grant:
                return allowed
            if action == apsw.SQLITE_READ and self.grant & Permission.DDL and self._ddl_reads(a1):
                return allowed
            self.missing = Permission(needed)
            reason = f"permission denied: {self.missing.names[0]}"
        self.denied = reason
        return apsw.SQLITE_DENY

    def _allowed(self, action: int, table: str | None) -> int:
        """SQLITE_IGNORE for the DELETE of a DELETE statement (no truncate optimisation), SQLITE_OK otherwise.

        DROP statements ask about a DELETE too, from the schema table and from the table dropped, and SQLite
        takes SQLITE_IGNORE there as "skip the DROP": those must stay OK."""
        if action != apsw.SQLITE_DELETE:
            return apsw.SQLITE_OK
        if (table or "").lower() in _SCHEMA_TABLES or (table is not None and table == self._dropping):
            return apsw.SQLITE_OK
        return apsw.SQLITE_IGNORE

    @staticmethod
    def _deny_reason(action: int, a1: str | None, a2: str | None, db: str | None) -> str | None:
        if action == apsw.SQLITE_SAVEPOINT and (a2 or "").lower().startswith(INTERNAL_PREFIX):
            return f"savepoint names starting with {INTERNAL_PREFIX} are reserved for sqlite-ha"
        if action == apsw.SQLITE_TRANSACTION:
            return f"{a1} is not allowed: each request already runs as one transaction"
        if action in _TEMP_SCHEMA or (db == "temp" and _writes_temp(action, a1)):
            return "TEMP tables, views, indexes and triggers are not allowed: clients share connections"
        if action in (apsw.SQLITE_ATTACH, apsw.SQLITE_DETACH):
            return "ATTACH, DETACH and VACUUM INTO are not allowed"
        if action == apsw.SQLITE_FUNCTION and (a2 or "").lower() in _REFUSED_FUNCTIONS:
            return f"{a2}() is not allowed"
        if action == apsw.SQLITE_PRAGMA and a2 is not None:
            name = (a1 or "").lower()
            if name not in _PRAGMAS_WITH_SAFE_ARGUMENT:
                return f"PRAGMA {name} cannot be set by clients; node settings are configured by flags"
        if action in _WRITE_ACTIONS:
            table = a2 if action in _TABLE_IN_SECOND_ARG else a1
            if table and table.lower().startswith(INTERNAL_PREFIX):
                return f"table {table} is internal to sqlite-ha"
        if action == apsw.SQLITE_CREATE_TABLE and a1 and a1.lower().startswith(INTERNAL_PREFIX):
            return f"names starting with {INTERNAL_PREFIX} are reserved for sqlite-ha"
        return None


def _needed(action: int, a1: str | None, a2: str | None, dropping: str | None) -> int:
    """The permission an action needs: row changes write, schema changes ddl, reading read."""
    if action in _READS:
        return Permission.READ
    if action in _ROW_WRITES:
        table = (a1 or "").lower()
        if table in _SCHEMA_TABLES or (a1 is not None and a1 == dropping):
            return Permission.DDL  # the schema table's rows, or the rows a DROP removes with its table
        return Permission.WRITE
    if action in _DDL_ACTIONS or action in _INDEX_MAINTENANCE:
        return Permission.DDL
    if action == apsw.SQLITE_PRAGMA:
        if a2 is not None and (a1 or "").lower() in _PRAGMAS_THAT_WRITE:
            return Permission.WRITE
        return Permission.READ
    return Permission.NONE  # functions, transactions, savepoints: they change nothing by themselves


def _replicated_deny_reason(action: int, a1: str | None, a2: str | None, db: str | None) -> str | None:
    """Why SQL from the log may not do this, or None: the client rule, and no pragma but the header's two."""
    if action == apsw.SQLITE_PRAGMA and (a1 or "").lower() not in _REPLICATED_PRAGMAS:
        return f"PRAGMA {(a1 or '').lower()} is not allowed in a replicated change set"
    if action == apsw.SQLITE_SAVEPOINT:
        return "transaction control is not allowed in a replicated change set"
    return Authorizer._deny_reason(action, a1, a2, db)


def _writes_temp(action: int, table: str | None) -> bool:
    """Whether an action on the TEMP schema creates something there or writes a table of it."""
    if action in _TEMP_CREATE:
        return True
    return action in (apsw.SQLITE_UPDATE, apsw.SQLITE_DELETE) and (table or "").lower() not in _SCHEMA_TABLES
