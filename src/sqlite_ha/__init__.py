"""sqlite-ha: a highly available, replicated SQLite cluster, as a library.

``sqlite_ha.connect(dsn)`` is a PEP 249 driver (this package is its DB-API module) whose committed
transactions replicate through NATS JetStream; ``sqlite_ha.aio.connect`` the same for asyncio;
``sqlite_ha.replica(...)`` a live local read replica; ``Node`` a whole node to
embed. docs/library.md documents every name below.

Names load on first use (PEP 562): ``import sqlite_ha`` stays cheap for the command line, which needs none of
them, and a script pays only for what it touches.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> (module, attribute)
_EXPORTS: dict[str, tuple[str, str]] = {
    # the embedded DB-API driver (PEP 249): docs/library.md
    "Connection": ("sqlite_ha.driver.connection", "Connection"),
    "Connector": ("sqlite_ha.driver.connector", "Connector"),
    "get_connector": ("sqlite_ha.driver.connector", "get_connector"),
    "shutdown": ("sqlite_ha.driver.connector", "shutdown"),
    "Cursor": ("sqlite_ha.driver.cursor", "Cursor"),
    "LEGACY_TRANSACTION_CONTROL": ("sqlite_ha.driver.dbapi", "LEGACY_TRANSACTION_CONTROL"),
    "apilevel": ("sqlite_ha.driver.dbapi", "apilevel"),
    "connect": ("sqlite_ha.driver.dbapi", "connect"),
    "paramstyle": ("sqlite_ha.driver.dbapi", "paramstyle"),
    "sqlite_version": ("sqlite_ha.driver.dbapi", "sqlite_version"),
    "sqlite_version_info": ("sqlite_ha.driver.dbapi", "sqlite_version_info"),
    "threadsafety": ("sqlite_ha.driver.dbapi", "threadsafety"),
    "DatabaseError": ("sqlite_ha.driver.exceptions", "DatabaseError"),
    "DataError": ("sqlite_ha.driver.exceptions", "DataError"),
    "Error": ("sqlite_ha.driver.exceptions", "Error"),
    "IntegrityError": ("sqlite_ha.driver.exceptions", "IntegrityError"),
    "InterfaceError": ("sqlite_ha.driver.exceptions", "InterfaceError"),
    "InternalError": ("sqlite_ha.driver.exceptions", "InternalError"),
    "NotSupportedError": ("sqlite_ha.driver.exceptions", "NotSupportedError"),
    "OperationalError": ("sqlite_ha.driver.exceptions", "OperationalError"),
    "ProgrammingError": ("sqlite_ha.driver.exceptions", "ProgrammingError"),
    "Warning": ("sqlite_ha.driver.exceptions", "Warning"),
    "BINARY": ("sqlite_ha.driver.types", "BINARY"),
    "DATETIME": ("sqlite_ha.driver.types", "DATETIME"),
    "NUMBER": ("sqlite_ha.driver.types", "NUMBER"),
    "ROWID": ("sqlite_ha.driver.types", "ROWID"),
    "STRING": ("sqlite_ha.driver.types", "STRING"),
    "Binary": ("sqlite_ha.driver.types", "Binary"),
    "Date": ("sqlite_ha.driver.types", "Date"),
    "DateFromTicks": ("sqlite_ha.driver.types", "DateFromTicks"),
    "Row": ("sqlite_ha.driver.types", "Row"),
    "Time": ("sqlite_ha.driver.types", "Time"),
    "TimeFromTicks": ("sqlite_ha.driver.types", "TimeFromTicks"),
    "Timestamp": ("sqlite_ha.driver.types", "Timestamp"),
    "TimestampFromTicks": ("sqlite_ha.driver.types", "TimestampFromTicks"),
    # embedding a node, its served databases and their replication: docs/library.md
    "Node": ("sqlite_ha.node", "Node"),
    "Config": ("sqlite_ha.config", "Config"),
    "resolve": ("sqlite_ha.config", "resolve"),
    "ServedDatabase": ("sqlite_ha.served", "ServedDatabase"),
    "Statement": ("sqlite_ha.db.statement", "Statement"),
    "Result": ("sqlite_ha.db.statement", "Result"),
    "Execution": ("sqlite_ha.db.database", "Execution"),
    "WriteTransaction": ("sqlite_ha.db.transaction", "WriteTransaction"),
    "HAError": ("sqlite_ha.errors", "HAError"),
    "ChangeSet": ("sqlite_ha.changes.changeset", "ChangeSet"),
    "RowChange": ("sqlite_ha.changes.changeset", "RowChange"),
    "ChangeSetInterceptor": ("sqlite_ha.changes.store", "ChangeSetInterceptor"),
    "ApplyStrategy": ("sqlite_ha.changes.store", "ApplyStrategy"),
    "Plugins": ("sqlite_ha.plugins", "Plugins"),
    "JSONLinesPublisher": ("sqlite_ha.plugins", "JSONLinesPublisher"),
    "ChangeSetPublisher": ("sqlite_ha.plugins", "ChangeSetPublisher"),
    "Replicator": ("sqlite_ha.replication.replicator", "Replicator"),
    "Delivery": ("sqlite_ha.replication.replicator", "Delivery"),
    "Subscription": ("sqlite_ha.replication.replicator", "Subscription"),
    "MemoryHub": ("sqlite_ha.replication.memory", "MemoryHub"),
    "register_log_driver": ("sqlite_ha.replication.drivers", "register"),
    # live local read replicas: docs/sync.md
    "replica": ("sqlite_ha.sync.replica", "replica"),
    "Replica": ("sqlite_ha.sync.replica", "Replica"),
    "AsyncReplica": ("sqlite_ha.sync.replica", "AsyncReplica"),
    "Lag": ("sqlite_ha.sync.replica", "Lag"),
}

__all__ = [
    "BINARY",
    "DATETIME",
    "LEGACY_TRANSACTION_CONTROL",
    "NUMBER",
    "ROWID",
    "STRING",
    "ApplyStrategy",
    "AsyncReplica",
    "Binary",
    "ChangeSet",
    "ChangeSetInterceptor",
    "ChangeSetPublisher",
    "Config",
    "Connection",
    "Connector",
    "Cursor",
    "DataError",
    "DatabaseError",
    "Date",
    "DateFromTicks",
    "Delivery",
    "Error",
    "Execution",
    "HAError",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "JSONLinesPublisher",
    "Lag",
    "MemoryHub",
    "Node",
    "NotSupportedError",
    "OperationalError",
    "Plugins",
    "ProgrammingError",
    "Replica",
    "Replicator",
    "Result",
    "Row",
    "RowChange",
    "ServedDatabase",
    "Statement",
    "Subscription",
    "Time",
    "TimeFromTicks",
    "Timestamp",
    "TimestampFromTicks",
    "Warning",
    "WriteTransaction",
    "__version__",
    "aio",
    "apilevel",
    "connect",
    "get_connector",
    "paramstyle",
    "register_log_driver",
    "replica",
    "resolve",
    "shutdown",
    "sqlite_version",
    "sqlite_version_info",
    "threadsafety",
]


def __getattr__(name: str) -> Any:
    if name == "aio":
        return importlib.import_module("sqlite_ha.aio")
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'sqlite_ha' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # once loaded, a plain module attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from sqlite_ha import aio as aio
    from sqlite_ha.changes.changeset import ChangeSet as ChangeSet
    from sqlite_ha.changes.changeset import RowChange as RowChange
    from sqlite_ha.changes.store import ApplyStrategy as ApplyStrategy
    from sqlite_ha.changes.store import ChangeSetInterceptor as ChangeSetInterceptor
    from sqlite_ha.config import Config as Config
    from sqlite_ha.config import resolve as resolve
    from sqlite_ha.db.database import Execution as Execution
    from sqlite_ha.db.statement import Result as Result
    from sqlite_ha.db.statement import Statement as Statement
    from sqlite_ha.db.transaction import WriteTransaction as WriteTransaction
    from sqlite_ha.driver.connection import Connection as Connection
    from sqlite_ha.driver.connector import Connector as Connector
    from sqlite_ha.driver.connector import get_connector as get_connector
    from sqlite_ha.driver.connector import shutdown as shutdown
    from sqlite_ha.driver.cursor import Cursor as Cursor
    from sqlite_ha.driver.dbapi import LEGACY_TRANSACTION_CONTROL as LEGACY_TRANSACTION_CONTROL
    from sqlite_ha.driver.dbapi import apilevel as apilevel
    from sqlite_ha.driver.dbapi import connect as connect
    from sqlite_ha.driver.dbapi import paramstyle as paramstyle
    from sqlite_ha.driver.dbapi import sqlite_version as sqlite_version
    from sqlite_ha.driver.dbapi import sqlite_version_info as sqlite_version_info
    from sqlite_ha.driver.dbapi import threadsafety as threadsafety
    from sqlite_ha.driver.exceptions import DatabaseError as DatabaseError
    from sqlite_ha.driver.exceptions import DataError as DataError
    from sqlite_ha.driver.exceptions import Error as Error
    from sqlite_ha.driver.exceptions import IntegrityError as IntegrityError
    from sqlite_ha.driver.exceptions import InterfaceError as InterfaceError
    from sqlite_ha.driver.exceptions import InternalError as InternalError
    from sqlite_ha.driver.exceptions import NotSupportedError as NotSupportedError
    from sqlite_ha.driver.exceptions import OperationalError as OperationalError
    from sqlite_ha.driver.exceptions import ProgrammingError as ProgrammingError
    from sqlite_ha.driver.exceptions import Warning as Warning
    from sqlite_ha.driver.types import BINARY as BINARY
    from sqlite_ha.driver.types import DATETIME as DATETIME
    from sqlite_ha.driver.types import NUMBER as NUMBER
    from sqlite_ha.driver.types import ROWID as ROWID
    from sqlite_ha.driver.types import STRING as STRING
    from sqlite_ha.driver.types import Binary as Binary
    from sqlite_ha.driver.types import Date as Date
    from sqlite_ha.driver.types import DateFromTicks as DateFromTicks
    from sqlite_ha.driver.types import Row as Row
    from sqlite_ha.driver.types import Time as Time
    from sqlite_ha.driver.types import TimeFromTicks as TimeFromTicks
    from sqlite_ha.driver.types import Timestamp as Timestamp
    from sqlite_ha.driver.types import TimestampFromTicks as TimestampFromTicks
    from sqlite_ha.errors import HAError as HAError
    from sqlite_ha.node import Node as Node
    from sqlite_ha.plugins import ChangeSetPublisher as ChangeSetPublisher
    from sqlite_ha.plugins import JSONLinesPublisher as JSONLinesPublisher
    from sqlite_ha.plugins import Plugins as Plugins
    from sqlite_ha.replication.drivers import register as register_log_driver
    from sqlite_ha.replication.memory import MemoryHub as MemoryHub
    from sqlite_ha.replication.replicator import Delivery as Delivery
    from sqlite_ha.replication.replicator import Replicator as Replicator
    from sqlite_ha.replication.replicator import Subscription as Subscription
    from sqlite_ha.served import ServedDatabase as ServedDatabase
    from sqlite_ha.sync.replica import AsyncReplica as AsyncReplica
    from sqlite_ha.sync.replica import Lag as Lag
    from sqlite_ha.sync.replica import Replica as Replica
    from sqlite_ha.sync.replica import replica as replica
