"""What the catalog says about the server and its sessions: ``pg_settings``, ``pg_stat_activity``, and the
functions whose answer depends on the session asking (``pg_backend_pid()``, ``current_setting``,
``set_config``, ``current_schemas``, ``pg_is_in_recovery()``).

A catalog database is shared by the sessions of one served database, so these are answered from a
``SessionContext`` handed to each run: the asking session's own view, the node's other sessions, and its
settings (a ``set_config`` writes them, as ``SET`` does).

``pg_is_in_recovery()`` is false on every node: each node accepts writes (a node that is not the writer in a
writer mode forwards them to the writer), so none is a read-only standby in PostgreSQL's sense. Tools use it
to choose a read-only path (pg_dump skips nothing for it, JDBC pools mark a standby read-only); claiming
recovery on a follower would make them refuse writes the node can do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import apsw

from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.server.pgwire.catalog.functions import FunctionError

SERVER_VERSION = "15.0"
SERVER_VERSION_NUM = "150000"
STARTED = time.time()


@dataclass(frozen=True, slots=True)
class Setting:
    """One row of ``pg_settings``: a setting the node reports, with PostgreSQL's metadata for it."""

    name: str
    default: str
    category: str
    short_desc: str
    vartype: str = "string"  # bool, integer, real, string, enum
    context: str = "user"  # internal: fixed at build time; user: SET changes it
    unit: str | None = None
    enumvals: str | None = None  # PostgreSQL's text of the text[] of choices


_CLIENT = "Client Connection Defaults / Locale and Formatting"
_STATEMENT = "Client Connection Defaults / Statement Behavior"
_PRESET = "Preset Options"
SETTINGS: tuple[Setting, ...] = (
    Setting("application_name", "", "Reporting and Logging / What to Log", "Sets the application name."),
    Setting("client_encoding", "UTF8", _CLIENT, "Sets the client's character set encoding."),
    Setting("DateStyle", "ISO, MDY", _CLIENT, "Sets the display format for date and time values."),
    Setting("default_table_access_method", "heap", _STATEMENT, "Sets the default table access method."),
    Setting(
        "default_transaction_isolation",
        "read committed",
        _STATEMENT,
        "Sets the transaction isolation level of each new transaction.",
        "enum",
        enumvals='{serializable,"repeatable read","read committed","read uncommitted"}',
    ),
    Setting(
        "default_transaction_read_only",
        "off",
        _STATEMENT,
        "Sets the default read-only status of new transactions.",
        "bool",
    ),
    Setting("extra_float_digits", "1", _CLIENT, "Sets the number of digits displayed for floats.", "integer"),
    Setting(
        "idle_in_transaction_session_timeout",
        "60000",
        _STATEMENT,
        "Sets the maximum allowed idle time between queries, when in a transaction.",
        "integer",
        unit="ms",
    ),
    Setting("integer_datetimes", "on", _PRESET, "Datetimes are integer based.", "bool", "internal"),
    Setting("IntervalStyle", "postgres", _CLIENT, "Sets the display format for interval values.", "enum"),
    Setting("jit", "off", "Query Tuning / Other Planner Options", "Allow JIT compilation.", "bool"),
    Setting(
        "lock_timeout",
        "0",
        _STATEMENT,
        "Sets the maximum allowed duration of any wait for a lock.",
        "integer",
        unit="ms",
    ),
    Setting(
        "max_index_keys", "32", _PRESET, "Shows the maximum number of index keys.", "integer", "internal"
    ),
    Setting(
        "max_identifier_length", "63", _PRESET, "Shows the maximum identifier length.", "integer", "internal"
    ),
    Setting("search_path", '"$user", public', _STATEMENT, "Sets the schema search order for names."),
    Setting(
        "server_encoding",
        "UTF8",
        _PRESET,
        "Shows the server (database) character set encoding.",
        context="internal",
    ),
    Setting("server_version", SERVER_VERSION, _PRESET, "Shows the server version.", context="internal"),
    Setting(
        "server_version_num",
        SERVER_VERSION_NUM,
        _PRESET,
        "Shows the server version as an integer.",
        "integer",
        "internal",
    ),
    Setting(
        "standard_conforming_strings",
        "on",
        "Version and Platform Compatibility / Previous PostgreSQL Versions",
        "Causes '...' strings to treat backslashes literally.",
        "bool",
    ),
    Setting(
        "statement_timeout",
        "0",
        _STATEMENT,
        "Sets the maximum allowed duration of any statement.",
        "integer",
        unit="ms",
    ),
    Setting("TimeZone", "UTC", _CLIENT, "Sets the time zone for displaying and interpreting time stamps."),
    Setting(
        "transaction_isolation",
        "read committed",
        _STATEMENT,
        "Sets the current transaction's isolation level.",
        "enum",
    ),
    Setting(
        "transaction_read_only", "off", _STATEMENT, "Sets the current transaction's read-only status.", "bool"
    ),
)
_BY_NAME = {s.name.lower(): s for s in SETTINGS}


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionView:
    """A session as ``pg_stat_activity`` shows it."""

    pid: int
    user: str
    database: str
    application_name: str
    backend_start: float
    state: str  # active, idle, idle in transaction, idle in transaction (aborted)
    query: str


@dataclass(kw_only=True)
class SessionContext:
    """The asking session, for the functions and views whose answer is the session's own."""

    me: SessionView
    settings: MutableMapping[str, str] = field(default_factory=dict)  # the session's SET values
    sessions: Callable[[], Iterable[SessionView]] = lambda: ()  # every session of the node
    databases: Sequence[str] = ()  # the databases the node serves, in its order

    def setting(self, name: str) -> str | None:
        wanted = name.lower()
        if wanted in self.settings:
            return self.settings[wanted]
        found = _BY_NAME.get(wanted)
        return found.default if found is not None else None


def _timestamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(sep=" ")


class Activity:
    """Registers the session-dependent functions on a catalog connection; ``context`` is set per run."""

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn
        self.context: SessionContext | None = None
        functions: dict[str, tuple[Callable[..., SQLiteValue], int]] = {
            "pg_backend_pid": (lambda: self.context.me.pid if self.context else 0, 0),
            "pg_is_in_recovery": (lambda: 0, 0),
            "current_setting": (self._current_setting, -1),
            "set_config": (self._set_config, 3),
            "current_schemas": (self._current_schemas, 1),
            "pg_postmaster_start_time": (lambda: _timestamp(STARTED), 0),
        }
        for name, (fn, nargs) in functions.items():
            conn.create_scalar_function(name, fn, nargs)

    def _current_setting(self, name: SQLiteValue, missing_ok: SQLiteValue = 0) -> str | None:
        value = self.context.setting(str(name)) if self.context else _default(str(name))
        if value is None and not missing_ok:
            raise FunctionError("42704", f'unrecognized configuration parameter "{name!s}"')
        return value

    def _set_config(self, name: SQLiteValue, value: SQLiteValue, local: SQLiteValue) -> SQLiteValue:
        """``set_config(name, value, is_local)``: as ``SET`` (``SET LOCAL`` is kept for the session too)."""
        if self.context is not None:
            self.context.settings[str(name).lower()] = "" if value is None else str(value)
        return value

    def _current_schemas(self, implicit: SQLiteValue) -> str:
        path = self.context.setting("search_path") if self.context else None
        schemas = search_path_schemas(path, self.context.me.user if self.context else "")
        return "{" + ",".join((["pg_catalog"] if implicit else []) + schemas) + "}"

    def fill(self, sql_lower: str) -> None:
        """Refresh the rows of the views a query names (only those: building them is per query)."""
        if "pg_settings" in sql_lower:
            self.conn.execute("DELETE FROM pg_settings")
            self.conn.executemany(
                "INSERT INTO pg_settings VALUES "
                "(?, ?, ?, ?, ?, NULL, ?, ?, ?, NULL, NULL, ?, ?, ?, NULL, NULL, 0)",
                [
                    (
                        *(s.name, self._value(s), s.unit, s.category, s.short_desc, s.context, s.vartype),
                        "session" if self._changed(s) else "default",
                        *(s.enumvals, s.default, s.default),
                    )
                    for s in SETTINGS
                ],
            )
        databases = self.context.databases if self.context is not None else ()
        if "pg_database" in sql_lower and databases:
            self.conn.execute("DELETE FROM pg_database")
            self.conn.executemany(
                "INSERT INTO pg_database(oid, datname, datdba, encoding, datcollate, datctype, "
                "datistemplate, datallowconn, datlocprovider) VALUES (?, ?, 10, 6, 'C', 'C', 0, 1, 'c')",
                [(database_oid(databases, name), name) for name in databases],
            )
        if "pg_stat_database" in sql_lower:  # sessions per database; the counters are not kept: NULL
            self.conn.execute("DELETE FROM pg_stat_database")
            sessions = list(self.context.sessions()) if self.context else []
            self.conn.executemany(
                "INSERT INTO pg_stat_database(datid, datname, numbackends) VALUES (?, ?, ?)",
                [
                    (database_oid(databases, name), name, sum(s.database == name for s in sessions))
                    for name in databases
                ],
            )
        if "pg_stat_activity" in sql_lower:
            self.conn.execute("DELETE FROM pg_stat_activity")
            sessions = list(self.context.sessions()) if self.context else []
            self.conn.executemany(
                "INSERT INTO pg_stat_activity VALUES (?, ?, ?, 10, ?, ?, '127.0.0.1', NULL, -1, ?, NULL, "
                "NULL, NULL, NULL, NULL, ?, NULL, NULL, ?, 'client backend')",
                [
                    (
                        database_oid(databases, s.database),
                        s.database,
                        s.pid,
                        s.user,
                        s.application_name,
                        _timestamp(s.backend_start),
                        s.state,
                        s.query,
                    )
                    for s in sessions
                ],
            )

    def _value(self, setting: Setting) -> str:
        found = self.context.setting(setting.name) if self.context else None
        return setting.default if found is None else found

    def _changed(self, setting: Setting) -> bool:
        return self.context is not None and setting.name.lower() in self.context.settings


def _default(name: str) -> str | None:
    found = _BY_NAME.get(name.lower())
    return found.default if found is not None else None


def search_path_schemas(path: str | None, user: str) -> list[str]:
    """The schemas of a ``search_path`` that exist here (``public``), in order; ``"$user"`` is no schema."""
    if path is None:
        path = _BY_NAME["search_path"].default
    names = [part.strip().strip('"') for part in path.split(",") if part.strip()]
    return [name for name in names if name in ("public", "pg_catalog", "information_schema")]


def database_oid(databases: Sequence[str], name: str) -> int:
    """A served database's OID: 16384 for the node's first, then one more for each."""
    return 16384 + (databases.index(name) if name in databases else 0)
