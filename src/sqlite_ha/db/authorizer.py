"""What statements sent by clients may do.

Clients share one writer connection per database, so anything that changes connection state or reaches
outside the database file is refused: transaction control (a request is already one transaction), ATTACH and
DETACH (also ``VACUUM INTO``, which attaches), writes to internal ``_ha_*`` tables, and pragmas that set
node-wide behaviour. Reading pragmas stays allowed.
"""

from __future__ import annotations

import apsw

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


class Authorizer:
    """An apsw authorizer; ``internal`` is set while the node runs its own statements."""

    def __init__(self) -> None:
        self.internal = False
        self.denied: str | None = None  # why the last statement was refused, for the error message
        self.schema_changes = 0  # statements prepared that may change a table: caches of tables compare it

    def __call__(self, action: int, a1: str | None, a2: str | None, db: str | None, trig: str | None) -> int:
        if action in _TABLE_CHANGES:
            self.schema_changes += 1
        if self.internal:
            return apsw.SQLITE_OK
        reason = self._deny_reason(action, a1, a2)
        if reason is None:
            return apsw.SQLITE_OK
        self.denied = reason
        return apsw.SQLITE_DENY

    @staticmethod
    def _deny_reason(action: int, a1: str | None, a2: str | None) -> str | None:
        if action == apsw.SQLITE_SAVEPOINT and (a2 or "").lower().startswith(INTERNAL_PREFIX):
            return f"savepoint names starting with {INTERNAL_PREFIX} are reserved for sqlite-ha"
        if action == apsw.SQLITE_TRANSACTION:
            return f"{a1} is not allowed: each request already runs as one transaction"
        if action in _TEMP_SCHEMA:
            return "TEMP tables, views, indexes and triggers are not allowed: clients share connections"
        if action in (apsw.SQLITE_ATTACH, apsw.SQLITE_DETACH):
            return "ATTACH, DETACH and VACUUM INTO are not allowed"
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
