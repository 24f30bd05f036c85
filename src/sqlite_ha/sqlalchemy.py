"""The SQLAlchemy dialect ``sqlite+ha``: SQLAlchemy's own SQLite dialect over the embedded driver.

``create_engine("sqlite+ha:///app.db?replicationURL=nats://…&name=n1")`` opens ``app.db`` through
``sqlite_ha.connect``: the URL's path is the database file and its query parameters are the driver's options
under their go-ha names, so SQLAlchemy and what is built on it (the ORM, Alembic, pandas) get replication by
changing the URL. Everything SQL-shaped (compiler, types, reflection, DDL) is SQLAlchemy's pysqlite dialect,
unchanged: the driver behaves as CPython's ``sqlite3`` does, so only the seams between the two differ —

- the DB-API module (``import_dbapi``) and how a URL becomes ``connect()`` arguments;
- the pool: a ``QueuePool`` of the driver's connections, which are cheap (every connection of one DSN shares
  the process's one embedded node), so the pool only bounds concurrency; closing them (``engine.dispose()``)
  does not stop a node that another engine or connection of the same DSN still uses;
- transactions: like ``sqlite3``'s legacy mode, the driver begins a transaction implicitly before a write, so
  a read-only unit of work never holds the cluster's write path. SQLAlchemy's ``begin_nested()`` before any
  write would then open a SAVEPOINT outside a transaction (whose RELEASE commits on its own: the "pysqlite
  SAVEPOINT" problem); this dialect emits ``BEGIN`` first, so a savepoint always sits inside the enclosing
  transaction and its rollback undoes what the released savepoint did.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import exc, pool
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

if TYPE_CHECKING:
    from sqlalchemy.engine.base import Connection
    from sqlalchemy.engine.interfaces import ConnectArgsType, DBAPIConnection, DBAPIModule, IsolationLevel
    from sqlalchemy.engine.url import URL

__all__ = ["SQLiteHADialect", "dialect"]

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
        from sqlite_ha import driver

        return cast("DBAPIModule", driver)

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
        """pysqlite's connection set-up (``regexp`` and ``floor`` functions) where the driver can register
        functions, then the isolation level the engine was given."""
        functions = super().on_connect()

        def connect(dbapi_connection: DBAPIConnection) -> None:
            if hasattr(dbapi_connection, "create_function"):
                functions(dbapi_connection)

        return connect

    def get_isolation_level(self, dbapi_connection: DBAPIConnection) -> IsolationLevel:
        """AUTOCOMMIT when the driver commits each statement (``isolation_level is None``), which the PRAGMA
        pysqlite asks cannot tell; else SQLite's own level."""
        if self.detect_autocommit_setting(dbapi_connection):
            return "AUTOCOMMIT"
        level = super().get_isolation_level(dbapi_connection)  # type: ignore[no-untyped-call]
        return cast("IsolationLevel", level)

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


def _boolean(key: str, value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise exc.ArgumentError(f"sqlite+ha URL option {key}={value!r}: not a boolean (true or false)")


dialect = SQLiteHADialect
