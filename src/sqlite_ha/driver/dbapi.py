"""The PEP 249 module interface of the driver: ``connect`` and the module globals.

``sqlite_ha.connect(dsn, **options)`` opens a connection that behaves like ``sqlite3.connect``'s; the DSN
and the driver options (go-ha's DSN parameters, see ``driver/options.py``) choose the embedded node, which
every connection with the same DSN and options shares. ``sqlite3.connect``'s own keyword arguments are
accepted: ``timeout``, ``isolation_level``, ``autocommit``, ``check_same_thread`` (ignored: see
``threadsafety``), ``factory``, ``cached_statements`` and ``uri`` (ignored), ``detect_types`` (only 0); and
``transaction_idle_timeout`` (seconds an open transaction may sit idle holding the writer; 0: never).

- ``paramstyle = "qmark"``: ``?`` placeholders with a sequence; ``:name`` (also ``$name``, ``@name``) with
  a mapping is accepted too, as ``sqlite3`` does.
- ``threadsafety = 2``: threads may share the module and connections, not cursors.
- ``sqlite_version`` and ``sqlite_version_info``: the SQLite library the node runs, as ``sqlite3`` has them
  (SQLAlchemy's SQLite dialects read them to know what SQL they may use).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlite_ha.db.connection import SQLITE_VERSION
from sqlite_ha.driver.connection import Connection
from sqlite_ha.driver.connector import get_connector
from sqlite_ha.driver.exceptions import to_dbapi
from sqlite_ha.driver.session import IDLE_TIMEOUT, LEGACY
from sqlite_ha.errors import HAError

apilevel = "2.0"
threadsafety = 2
paramstyle = "qmark"
LEGACY_TRANSACTION_CONTROL = LEGACY
sqlite_version = SQLITE_VERSION
sqlite_version_info = tuple(int(part) for part in SQLITE_VERSION.split(".")[:3])


def connect(
    dsn: str,
    *,
    timeout: float = 5.0,
    isolation_level: str | None = "",
    autocommit: int | bool = LEGACY,
    transaction_idle_timeout: float = IDLE_TIMEOUT,
    detect_types: int = 0,
    check_same_thread: bool = True,
    factory: type[Connection] = Connection,
    cached_statements: int = 128,
    uri: bool = False,
    options: Mapping[str, Any] | None = None,
    **driver_options: Any,
) -> Connection:
    """A DB-API connection to the database of ``dsn`` (a path, or ``file:path?name=…&replicationURL=…``).

    ``driver_options`` (and ``options``, for names that are not Python identifiers) are go-ha's DSN
    parameters; they override the DSN's."""
    merged = {**(options or {}), **driver_options}
    try:
        connector = get_connector(str(dsn), merged or None)
    except HAError as e:
        raise to_dbapi(e) from e
    return factory(
        connector,
        timeout=timeout,
        isolation_level=isolation_level,
        autocommit=autocommit,
        transaction_idle_timeout=transaction_idle_timeout,
        detect_types=detect_types,
        check_same_thread=check_same_thread,
        cached_statements=cached_statements,
        uri=uri,
    )
