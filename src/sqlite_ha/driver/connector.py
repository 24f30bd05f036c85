"""``Connector``: go-ha's Connector in Python shape. One embedded node (no listeners) serving one database,
shared by every connection opened with the same DSN and options.

A connector is built from ``parse_options(dsn, options, os.environ)``, starts its ``Node(config,
serve=False)`` on the driver's runtime loop, and hands out DB-API connections (``connect``). It also carries
go-ha's administration calls: ``take_snapshot``, ``latest_snapshot``, ``latest_seq``, ``remove_consumer``,
``delivered_info``, ``node_name``, ``close``.

Connectors are cached per normalised configuration (``get_connector``, as go-ha's ``GetConnector(dsn)``): two
``connect()`` calls with the same DSN share one node, and a second, different configuration of the same file
is refused (two nodes on one file would each capture and replicate the other's writes as their own).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlite_ha.driver.options import DriverOptions, parse_options
from sqlite_ha.driver.runtime import runtime
from sqlite_ha.driver.session import Session, rollback_all
from sqlite_ha.errors import HAError
from sqlite_ha.replication.snapshot import SnapshotsUnavailable

if TYPE_CHECKING:
    from sqlite_ha.driver.connection import Connection
    from sqlite_ha.replication.manager import ReplicationManager
    from sqlite_ha.served import ServedDatabase

log = logging.getLogger(__name__)


class SnapshotterNotConfigured(SnapshotsUnavailable):
    """go-ha's ErrSnapshotterNotConfigured: snapshots need a replication log with a snapshot store (NATS)."""

    code = "snapshotter_not_configured"


class ReplicationNotConfigured(HAError):
    """A consumer call on a connector whose node replicates through no shared log."""

    code = "replication_not_configured"


class ConnectorClosed(HAError):
    code = "connector_closed"


class AlreadyOpen(HAError):
    """The file is served by another connector of this process, configured differently."""

    code = "already_open"


class NotStarted(HAError):
    """``autoStart=false``: the connector's node starts on ``connector.start()``."""

    code = "not_started"


class Connector:
    """One embedded node serving the DSN's database. Prefer ``get_connector`` (cached) to building one."""

    def __init__(
        self, dsn: str, options: Mapping[str, Any] | None = None, *, env: Mapping[str, str] | None = None
    ) -> None:
        self.dsn = dsn
        from sqlite_ha.node import Node  # on first use: importing the driver stays light

        self.options: DriverOptions = parse_options(dsn, options, os.environ if env is None else env)
        self.node = Node(self.options.config, serve=False, plugins=self.options.plugins)
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        self._started = False
        self._closed = False
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        if self.options.auto_start:
            self.start()

    # ------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the node (opening the database and joining the replication log); idempotent."""
        with self._lock:
            if self._closed:
                raise ConnectorClosed(f"the connector of {self.dsn!r} is closed")
            if self._started:
                return
            rt = runtime()
            rt.call(self._start())
            self._started = True
            rt.add_closer(self._close)

    async def _start(self) -> None:
        """Start the node and wait (up to ``replicationTimeout``) until it has joined the log: an app
        writes right after connecting, and a node that has not joined yet refuses writes. One that cannot
        join in time starts anyway (reads work; writes say why they are refused) and joins later."""
        node = self.node
        await node.start()
        await node.start_replication()  # what autoStart=false held back (Plugins.auto_start) starts now
        if node.replication is not None and not await node.replication.wait_started(
            node.config.replication_timeout
        ):
            log.warning(
                "sqlite-ha driver: %s has not joined the replication log yet (%s); writes are refused "
                "until it does",
                self.options.database,
                node.replication.last_error or "no answer",
            )

    def served(self) -> ServedDatabase:
        """The database as the node serves it now (call on the runtime's loop): refused while the node may
        be stale (a gap in the log), or before ``start``."""
        self._check_usable()
        return self.node.database(self.options.database)

    def connect(self, **kwargs: Any) -> Connection:
        """A new DB-API connection to the database (``sqlite_ha.connect``'s keyword arguments)."""
        from sqlite_ha.driver.connection import Connection

        return Connection(self, **kwargs)

    def _register(self, session: Session) -> None:
        self._sessions.add(session)

    def close(self) -> None:
        """Roll back open transactions, stop the node (and its embedded NATS server, if any)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _forget(self)
        if self._started:
            rt = runtime()
            rt.remove_closer(self._close)
            rt.call(self._close())

    async def _close(self) -> None:
        self._closed = True
        await rollback_all(list(self._sessions))
        await self.node.stop()

    def __enter__(self) -> Connector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------ go-ha's API
    @property
    def node_name(self) -> str:
        return self.node.name

    @property
    def database(self) -> str:
        """The database's id (its file name, or ``replicationID``): its subject in the log."""
        return self.options.database

    @property
    def latest_seq(self) -> int:
        """The log position this node has applied the database up to (0 without replication)."""
        self._check_usable()
        return runtime().call(self._applied_seq())

    async def _applied_seq(self) -> int:
        return self.served().applied_seq or 0

    def take_snapshot(self) -> int:
        """Store a snapshot of the database in the log's snapshot store now (unless the latest one already
        holds everything applied here); returns the snapshot's seq."""
        self._check_usable()
        return runtime().call(self._take_snapshot())

    async def _take_snapshot(self) -> int:
        try:
            meta, _ = await self.node.take_snapshot(self.options.database)
        except SnapshotsUnavailable as e:
            raise self._no_snapshotter() from e
        return meta.seq

    def latest_snapshot(self, dest: str | os.PathLike[str] | None = None) -> tuple[int, Path]:
        """The latest stored snapshot of the database: ``(seq, path)``, the SQLite file downloaded (and
        verified) to ``dest``; by default a new file in the temporary directory, which the caller owns.
        go-ha returns a reader; a file is the Python shape for a database that may be large, and it opens
        with ``sqlite3`` as it is."""
        self._check_usable()
        if dest is None:
            fd, name = tempfile.mkstemp(prefix=f"sqlite-ha-{self.options.database}-", suffix=".db")
            os.close(fd)
            path = Path(name)
        else:
            path = Path(dest)
        try:
            seq = runtime().call(self._latest_snapshot(path))
        except BaseException:
            if dest is None:
                path.unlink(missing_ok=True)
            raise
        return seq, path

    async def _latest_snapshot(self, path: Path) -> int:
        try:
            meta = await self.node.fetch_snapshot(self.options.database, path)
        except SnapshotsUnavailable as e:
            raise self._no_snapshotter() from e
        return meta.seq

    def remove_consumer(self, name: str) -> bool:
        """Delete the log's consumer ``name`` (a departed node's); True when it existed."""
        self._check_usable()
        return runtime().call(self._manager().delete_consumer(name))

    def delivered_info(self, name: str) -> dict[str, Any] | None:
        """What the log delivered to consumer ``name`` (``delivered_seq``, ``num_pending``, …), or None."""
        self._check_usable()
        return runtime().call(self._manager().consumer(name))

    def status(self) -> dict[str, Any]:
        """The embedded node's status (as ``GET /status`` of a server)."""
        self._check_usable()
        return runtime().call(self.node.status())

    # ------------------------------------------------------------------------------------ helpers
    def _check_usable(self) -> None:
        if self._closed:
            raise ConnectorClosed(f"the connector of {self.dsn!r} is closed")
        if not self._started:
            raise NotStarted(
                f"the connector of {self.dsn!r} was made with autoStart=false",
                hint="call connector.start() first",
            )

    def _manager(self) -> ReplicationManager:
        manager = self.node.replication
        if manager is None:
            raise ReplicationNotConfigured(
                "this connector's node replicates through no log", hint="set replicationURL"
            )
        return manager

    def _no_snapshotter(self) -> SnapshotterNotConfigured:
        return SnapshotterNotConfigured(
            f"snapshots of {self.options.database!r} need a replication log with a snapshot store",
            hint="connect with replicationURL (a NATS server) or natsPort (an embedded one), and without "
            "disableDBSnapshotter",
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "started" if self._started else "not started"
        return f"<sqlite_ha.Connector {self.options.database!r} node={self.node.name!r} {state}>"


# ------------------------------------------------------------------------------------ the cache
_connectors: dict[tuple[Any, ...], Connector] = {}
_by_file: dict[str, tuple[Any, ...]] = {}
_cache_lock = threading.Lock()


def _key(options: DriverOptions) -> tuple[Any, ...]:
    """Same configuration, same node: the resolved Config (frozen) with database paths made absolute, and
    the same plug-ins (objects by identity: those named by text are loaded once per process)."""
    databases = tuple(_absolute(d) for d in options.config.databases)
    config = dataclasses.replace(options.config, databases=databases)
    return (databases, config, options.database, options.plugins.key())


def _absolute(dsn: str) -> str:
    if dsn.startswith("file:"):
        path, sep, query = dsn[5:].partition("?")
        return f"file:{os.path.abspath(path)}{sep}{query}"
    return dsn if dsn == ":memory:" else os.path.abspath(dsn)


def get_connector(dsn: str, options: Mapping[str, Any] | None = None) -> Connector:
    """The connector of ``dsn`` and ``options``, made and started on first use (go-ha's GetConnector)."""
    parsed = parse_options(dsn, options, os.environ)
    key = _key(parsed)
    with _cache_lock:
        connector = _connectors.get(key)
        if connector is not None and not connector._closed:
            return connector
        for database in key[0]:
            other = _by_file.get(database)
            if other is not None and other != key and not _connectors[other]._closed:
                raise AlreadyOpen(
                    f"{database} is already open through the driver with other options",
                    hint="use the same DSN and options for every connection to one file in a process",
                )
        connector = Connector(dsn, options)
        connector._key = key
        _connectors[key] = connector
        for database in key[0]:
            _by_file[database] = key
        return connector


def _forget(connector: Connector) -> None:
    with _cache_lock:
        key = connector._key
        if key is not None and _connectors.get(key) is connector:
            del _connectors[key]
            for database in key[0]:
                if _by_file.get(database) == key:
                    del _by_file[database]


def close_all() -> None:
    """Close every cached connector (their nodes stop)."""
    with _cache_lock:
        connectors = list(_connectors.values())
    for connector in connectors:
        connector.close()


def shutdown() -> None:
    """go-ha's Shutdown: close every connector and stop the driver's event loop."""
    from sqlite_ha.driver.runtime import shutdown as stop_runtime

    close_all()
    stop_runtime()


__all__ = [
    "AlreadyOpen",
    "Connector",
    "ConnectorClosed",
    "NotStarted",
    "ReplicationNotConfigured",
    "SnapshotterNotConfigured",
    "close_all",
    "get_connector",
    "shutdown",
]
