"""sqlite-ha: a highly available, replicated SQLite cluster."""

__version__ = "0.1.0"

# --- the embedded DB-API driver (PEP 249; docs/library.md, "DB-API driver") ---
from sqlite_ha.driver.connection import Connection
from sqlite_ha.driver.connector import Connector, get_connector, shutdown
from sqlite_ha.driver.cursor import Cursor
from sqlite_ha.driver.dbapi import (
    LEGACY_TRANSACTION_CONTROL,
    apilevel,
    connect,
    paramstyle,
    sqlite_version,
    sqlite_version_info,
    threadsafety,
)
from sqlite_ha.driver.exceptions import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ProgrammingError,
    Warning,
)
from sqlite_ha.driver.types import (
    BINARY,
    DATETIME,
    NUMBER,
    ROWID,
    STRING,
    Binary,
    Date,
    DateFromTicks,
    Row,
    Time,
    TimeFromTicks,
    Timestamp,
    TimestampFromTicks,
)

__all__ = [  # noqa: RUF022 - the version first, then the driver's names
    "__version__",
    # the embedded DB-API driver
    "BINARY",
    "DATETIME",
    "LEGACY_TRANSACTION_CONTROL",
    "NUMBER",
    "ROWID",
    "STRING",
    "Binary",
    "Connection",
    "Connector",
    "Cursor",
    "DataError",
    "DatabaseError",
    "Date",
    "DateFromTicks",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "ProgrammingError",
    "Row",
    "Time",
    "TimeFromTicks",
    "Timestamp",
    "TimestampFromTicks",
    "Warning",
    "apilevel",
    "connect",
    "get_connector",
    "paramstyle",
    "shutdown",
    "sqlite_version",
    "sqlite_version_info",
    "threadsafety",
]
