"""The SQLAlchemy dialect ``sqlite+ha``: SQLAlchemy's own SQLite dialect over the embedded driver.

``create_engine("sqlite+ha:///app.db?replicationURL=nats://…&name=n1")`` opens ``app.db`` through
``sqlite_ha.connect``: the URL's path is the database file and its query parameters are the driver's options
under their go-ha names, so SQLAlchemy and what is built on it (the ORM, Alembic, pandas) get replication by
changing the URL. Everything SQL-shaped (compiler, types, reflection, DDL) is SQLAlchemy's pysqlite dialect,
unchanged: the driver behaves as CPython's ``sqlite3`` does, so only the seams between the two differ —

- the DB-API module (``import_dbapi``) and how a URL becomes ``connect()`` arguments;
- the pool: a ``QueuePool`` of the driver's connections. They are cheap (every connection of one DSN shares
  the process's one embedded node), but a new one still reads its DSN into a configuration: a pooled checkout
  costs about 0.2 ms where ``NullPool``'s connect-per-checkout costs 0.5 ms. Closing them
  (``engine.dispose()``) does not stop the node, which other engines and connections of the DSN share;
- transactions: like ``sqlite3``'s legacy mode, the driver begins a transaction implicitly before a write, so
  a read-only unit of work never holds the cluster's write path. SQLAlchemy's ``begin_nested()`` before any
  write would then open a SAVEPOINT outside a transaction (whose RELEASE commits on its own: the "pysqlite
  SAVEPOINT" problem); this dialect emits ``BEGIN`` first, so a savepoint always sits inside the enclosing
  transaction and its rollback undoes what the released savepoint did. Isolation levels are SERIALIZABLE and
  AUTOCOMMIT, set through the driver's ``isolation_level`` (no PRAGMA: the node refuses clients' PRAGMA
  writes);
- reflection leaves out the node's own ``_ha_*`` tables, so that Alembic's autogenerate never drops them.
"""

from __future__ import annotations

import collections
import os
from typing import TYPE_CHECKING, Any, cast

try:
    from sqlalchemy import exc, pool
    from sqlalchemy.dialects.sqlite.base import SQLiteExecutionContext
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
    from sqlalchemy.engine.interfaces import AdaptedConnection
    from sqlalchemy.util.concurrency import await_only, in_greenlet
except ImportError as e:  # pragma: no cover - only without the extra
    raise ImportError("the sqlite+ha dialect needs SQLAlchemy 2: pip install 'sqlite-ha[sqlalchemy]'") from e

from sqlite_ha.db.authorizer import INTERNAL_PREFIX

if TYPE_CHECKING:
    from sqlalchemy.engine.base import Connection
    from sqlalchemy.engine.interfaces import (
        ConnectArgsType,
        DBAPIConnection,
        DBAPICursor,
        DBAPIModule,
        IsolationLevel,
    )
    from sqlalchemy.engine.url import URL

__all__ = ["SQLiteHAAsyncDialect", "SQLiteHADialect", "dialect"]

# Arguments of ``sqlite_ha.connect`` that are the DB-API's own (``sqlite3.connect``'s), not driver options: a
# URL carries every value as text, so these are converted as pysqlite converts them.
_DBAPI_ARGS: dict[str, type] = {
    "timeout": float,
    "transaction_idle_timeout": float,
    "isolation_level": str,
    "autocommit": bool,
    "check_same_thread": bool,
}


class SQLiteHADialect(SQLiteDialect_pysqlite):
    """``sqlite+ha://``: the pysqlite dialect with ``sqlite_ha``'s driver in place of ``sqlite3``."""

    driver = "ha"
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> DBAPIModule:
        import sqlite_ha  # the package is the driver's PEP 249 module: connect, paramstyle, exceptions

        return cast("DBAPIModule", sqlite_ha)

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        """A ``QueuePool``, as for any SQLite file: a pooled connection is reused by any thread (the driver's
        connections are thread-safe), and the pool's size is the engine's concurrency. A ``NullPool`` would do
        too (connections are cheap), at the price of building each connection per checkout."""
        return pool.QueuePool

    def create_connect_args(self, url: URL) -> ConnectArgsType:
        """``sqlite+ha:///path?option=value&…`` → ``sqlite_ha.connect("/abs/path", option="value", …)``.

        Options go to the driver as text, under the names the user wrote: the driver knows them (go-ha's DSN
        parameters) and refuses an unknown one by name, so nothing here is silently dropped."""
        if url.username or url.password or url.host or url.port:
            raise exc.ArgumentError(
                f"Invalid sqlite+ha URL {url.render_as_string(hide_password=True)!r}: it names no host or "
                "user; the file is the path after the third slash: sqlite+ha:///relative/app.db or "
                "sqlite+ha:////absolute/app.db"
            )
        if not url.database or url.database == ":memory:":
            raise exc.ArgumentError(
                f"Invalid sqlite+ha URL {str(url)!r}: it needs a database file (sqlite+ha:///app.db): an "
                "in-memory database has nothing to replicate"
            )
        options: dict[str, Any] = {}
        for key, value in url.query.items():
            if not isinstance(value, str):
                raise exc.ArgumentError(f"sqlite+ha URL option {key!r} is given {len(value)} times")
            convert = _DBAPI_ARGS.get(key)
            if convert is bool:
                options[key] = _boolean(key, value)
            elif convert is float:
                try:
                    options[key] = float(value)
                except ValueError:
                    raise exc.ArgumentError(f"sqlite+ha URL option {key}={value!r}: not a number") from None
            else:
                options[key] = value
        return [os.path.abspath(url.database)], options

    def on_connect(self) -> Any:
        """pysqlite registers ``regexp`` (and ``floor``) on each connection; the driver's statements run on
        the node's connections, which a DB-API connection cannot add functions to, so this happens only
        where the driver offers ``create_function``. SQLite has ``floor`` built in; ``regexp_match()`` needs
        a driver with functions."""
        functions = super().on_connect()

        def connect(dbapi_connection: DBAPIConnection) -> None:
            if hasattr(dbapi_connection, "create_function"):
                functions(dbapi_connection)

        return connect

    # ------------------------------------------------------------------------------------ isolation
    # Two levels: SERIALIZABLE (transactions as ``sqlite3``'s) and AUTOCOMMIT (``isolation_level = None``).
    # pysqlite's third, READ UNCOMMITTED, is ``PRAGMA read_uncommitted``: it means something only to
    # connections sharing one cache, which the node's are not, and the node refuses clients' PRAGMA writes.

    def get_isolation_level_values(self, dbapi_connection: DBAPIConnection) -> list[IsolationLevel]:
        return ["SERIALIZABLE", "AUTOCOMMIT"]

    def set_isolation_level(self, dbapi_connection: DBAPIConnection, level: IsolationLevel) -> None:
        dbapi_connection.isolation_level = None if level == "AUTOCOMMIT" else ""

    def get_isolation_level(self, dbapi_connection: DBAPIConnection) -> IsolationLevel:
        return "AUTOCOMMIT" if self.detect_autocommit_setting(dbapi_connection) else "SERIALIZABLE"

    # ------------------------------------------------------------------------------------ reflection
    # The node's own tables (``_ha_*``: replication state, key allocation, the outbox) are not the
    # application's: reflection leaves them out, as SQLAlchemy leaves out ``sqlite_*``, so that
    # ``metadata.reflect()`` does not see them and Alembic's autogenerate does not drop them. Asking with
    # ``sqlite_include_internal=True`` lists them all.

    # Signatures as SQLite's dialect has them: untyped there, and its temp ones differ from the interface.
    def get_table_names(
        self, connection: Any, schema: Any = None, sqlite_include_internal: Any = False, **kw: Any
    ) -> Any:
        names = super().get_table_names(connection, schema, sqlite_include_internal, **kw)  # type: ignore[no-untyped-call]
        return _application(names, sqlite_include_internal)

    def get_view_names(
        self, connection: Any, schema: Any = None, sqlite_include_internal: Any = False, **kw: Any
    ) -> Any:
        names = super().get_view_names(connection, schema, sqlite_include_internal, **kw)  # type: ignore[no-untyped-call]
        return _application(names, sqlite_include_internal)

    def get_temp_table_names(self, connection: Any, sqlite_include_internal: Any = False, **kw: Any) -> Any:  # type: ignore[override]
        names = super().get_temp_table_names(connection, sqlite_include_internal, **kw)  # type: ignore[no-untyped-call]
        return _application(names, sqlite_include_internal)

    def get_temp_view_names(self, connection: Any, sqlite_include_internal: Any = False, **kw: Any) -> Any:  # type: ignore[override]
        names = super().get_temp_view_names(connection, sqlite_include_internal, **kw)  # type: ignore[no-untyped-call]
        return _application(names, sqlite_include_internal)

    # ------------------------------------------------------------------------------------ savepoints

    def do_savepoint(self, connection: Connection, name: str) -> None:
        """``BEGIN`` before the first SAVEPOINT of a transaction that has not written yet.

        The driver (as ``sqlite3``) begins implicitly only before a write; a SAVEPOINT outside a transaction
        would start one of its own whose RELEASE commits, out of reach of the enclosing ``rollback()``. Not
        in AUTOCOMMIT, where there is no enclosing transaction and SQLite's own SAVEPOINT semantics apply.
        """
        dbapi_connection = connection.connection.dbapi_connection
        if (
            dbapi_connection is not None
            and not self.detect_autocommit_setting(dbapi_connection)
            and not dbapi_connection.in_transaction
        ):
            connection.exec_driver_sql("BEGIN")
        super().do_savepoint(connection, name)  # type: ignore[no-untyped-call]  # SQLAlchemy's, untyped


def _application(names: list[str], sqlite_include_internal: bool) -> list[str]:
    if sqlite_include_internal:
        return names
    return [name for name in names if not name.lower().startswith(INTERNAL_PREFIX)]


def _boolean(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise exc.ArgumentError(f"sqlite+ha URL option {key}={value!r}: not a boolean (true or false)")


# ---------------------------------------------------------------------------------------------- asyncio
# ``sqlite+ha_async``: the same dialect for ``create_async_engine``, over ``sqlite_ha.aio``. SQLAlchemy's
# asyncio layer runs the dialect's sync code in a greenlet and expects a DB-API-shaped connection whose calls
# await the driver (``await_only``); these two small classes are that shape. Every call runs on the driver's
# own loop while the application's loop awaits it, so no query blocks the application's loop.


class _AsyncCursor:
    """A DB-API cursor over ``sqlite_ha.aio.AsyncCursor``, for SQLAlchemy's greenlet.

    ``execute`` takes the whole result at once (the driver holds it in memory anyway), so the ``fetch*``
    calls need no await: SQLAlchemy's asyncio results read rows after leaving the greenlet."""

    def __init__(self, connection: _AsyncConnection, server_side: bool = False) -> None:
        self.server_side = server_side  # rows in memory either way: ``stream()`` reads them from there
        self._connection = connection
        self._cursor: Any = connection._call(connection.driver_connection.cursor())
        self._rows: collections.deque[Any] = collections.deque()
        self.arraysize = 1

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    @property
    def lastrowid(self) -> int | None:
        return cast("int | None", self._cursor.lastrowid)

    def execute(self, operation: str, parameters: Any = None) -> None:
        parameters = () if parameters is None else parameters
        self._take(self._cursor.execute(operation, parameters))

    def executemany(self, operation: str, seq_of_parameters: Any) -> None:
        self._take(self._cursor.executemany(operation, seq_of_parameters))

    def _take(self, running: Any) -> None:
        async def run_and_fetch() -> list[Any]:
            cursor = await running
            return list(await cursor.fetchall()) if cursor.description else []

        self._rows = collections.deque(self._connection._call(run_and_fetch()))

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        return [self._rows.popleft() for _ in range(min(count, len(self._rows)))]

    def fetchall(self) -> list[Any]:
        rows, self._rows = list(self._rows), collections.deque()
        return rows

    def close(self) -> None:
        self._rows.clear()

    def setinputsizes(self, *sizes: Any) -> None:
        pass

    async def _async_soft_close(self) -> None:
        """Called by SQLAlchemy's asyncio results (2.0.44+) before a result goes back to sync code, for
        drivers whose cursors must be closed with an await; the rows are already here: nothing to do."""


class _AsyncConnection(AdaptedConnection):
    """A DB-API connection over ``sqlite_ha.aio.AsyncConnection``, for SQLAlchemy's greenlet."""

    __slots__ = ("dbapi",)

    def __init__(self, dbapi: Any, connection: Any) -> None:
        self.dbapi = dbapi
        self._connection = connection

    @staticmethod
    def _call(awaitable: Any) -> Any:
        return await_only(awaitable)

    def cursor(self, server_side: bool = False) -> _AsyncCursor:
        return _AsyncCursor(self, server_side)

    @property
    def isolation_level(self) -> str | None:
        return cast("str | None", self._connection.isolation_level)

    @isolation_level.setter
    def isolation_level(self, level: str | None) -> None:
        self._call(self._connection.set_isolation_level(level))

    @property
    def in_transaction(self) -> bool:
        return bool(self._connection.in_transaction)

    def commit(self) -> None:
        self._call(self._connection.commit())

    def rollback(self) -> None:
        self._call(self._connection.rollback())

    def close(self) -> None:
        """Close the driver's connection (rolling back what it left open). Outside SQLAlchemy's greenlet (a
        connection the pool drops while it is garbage-collected) nothing can be awaited: the driver's own
        finalizer rolls back the abandoned connection's transaction."""
        if in_greenlet():
            self._call(self._connection.close())


class _AsyncDBAPI:
    """``sqlite_ha`` as SQLAlchemy's asyncio layer wants a DB-API module: its globals and exceptions, and a
    ``connect`` that awaits ``sqlite_ha.aio.connect``."""

    def __init__(self) -> None:
        import sqlite_ha
        import sqlite_ha.aio

        self.driver = sqlite_ha
        self.aio = sqlite_ha.aio
        for name in (
            *("Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError"),
            *("IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError", "Binary"),
            *("apilevel", "threadsafety", "paramstyle", "sqlite_version", "sqlite_version_info"),
        ):
            setattr(self, name, getattr(sqlite_ha, name))

    def connect(self, *args: Any, **kwargs: Any) -> _AsyncConnection:
        return _AsyncConnection(self, await_only(self.aio.connect(*args, **kwargs)))


class _AsyncExecutionContext(SQLiteExecutionContext):
    def create_server_side_cursor(self) -> DBAPICursor:
        return self._dbapi_connection.cursor(server_side=True)


class SQLiteHAAsyncDialect(SQLiteHADialect):
    """``sqlite+ha_async://``: ``sqlite+ha`` for ``create_async_engine``, over ``sqlite_ha.aio``."""

    driver = "ha_async"
    is_async = True
    supports_statement_cache = True
    supports_server_side_cursors = True  # for ``AsyncConnection.stream()``; the rows are in memory anyway
    execution_ctx_cls = _AsyncExecutionContext

    @classmethod
    def import_dbapi(cls) -> DBAPIModule:
        return cast("DBAPIModule", _AsyncDBAPI())

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        return pool.AsyncAdaptedQueuePool

    def get_driver_connection(self, connection: DBAPIConnection) -> Any:
        return connection._connection


dialect = SQLiteHADialect
