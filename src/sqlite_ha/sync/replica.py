"""A live local read replica: local SQLite files that follow a cluster's databases through its log.

Built on ``Node`` in the ``Subscriber`` role: the node's bootstrap (a snapshot when the log no longer holds
what the file lacks), its applier (one transaction per batch, the position stored in the same transaction,
last-writer-wins), its gap checks and its recovery, with nothing of a node that writes. The files are
ordinary SQLite databases in WAL mode: any SQLite client reads them while they update, and sees each
replicated transaction whole or not at all.

``AsyncReplica`` runs on the caller's event loop; ``Replica`` (what ``sqlite_ha.replica`` returns) runs on
the library's background loop, for code that is not asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlite_ha.driver.runtime import runtime
from sqlite_ha.errors import HAError
from sqlite_ha.node import Node
from sqlite_ha.replication.bootstrap import file_state, record_position
from sqlite_ha.replication.replicator import ReplicationError
from sqlite_ha.replication.subscriber import Subscriber
from sqlite_ha.sync.options import STATUS_INTERVAL, ReplicaOptions, check_start, replica_options

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Lag:
    """How far the replica is behind the log: change sets not applied yet, and how long ago the oldest of
    them was published (0 when caught up; None where the log could not be asked)."""

    messages: int | None
    seconds: float | None


class ReplicaBusy(HAError):
    """Another process keeps this file a replica already: two would apply every change set twice and move
    the stored position back and forth."""

    code = "replica_busy"


class FileLock:
    """An exclusive lock on ``<file>.sync-lock`` for as long as a replica runs on the file (released by the
    kernel if the process dies). The lock file holds the pid of its holder, for the error the next one
    gets."""

    def __init__(self, path: str) -> None:
        self.path = path + ".sync-lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ReplicaBusy(
                f"{self.path.removesuffix('.sync-lock')} is already kept a replica by another process "
                f"(pid {holder})",
                hint="stop that one first; several readers need no second replica",
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
            os.close(fd)


class AsyncReplica:
    """The replica on the caller's event loop: ``await start()``, ``await status()``, ``await stop()``."""

    def __init__(self, options: ReplicaOptions) -> None:
        self.options = options
        self.node: Node | None = None
        self._lag_task: asyncio.Task[None] | None = None
        self._locks: list[FileLock] = []
        self.lag = Lag(None, None)  # as of the last ``status()``

    @property
    def paths(self) -> dict[str, str]:
        """The local file of each database, by database id."""
        return {spec.id: spec.path for spec in self.options.databases}

    async def start(self) -> None:
        """Check each file against the delivery policy, bootstrap what needs a snapshot, and follow the log.
        Raises ``ConfigError`` for a policy that would give an incomplete replica, ``BootstrapError`` when
        the log no longer holds what a file lacks and no snapshot covers it."""
        opts = self.options
        # (built first: a missing cluster secret or a bad CA file is refused before any file is touched)
        node = Node(
            opts.config,
            serve=False,
            subscriber=Subscriber(durable=opts.durable),
            databases=list(opts.databases),
        )
        try:
            for spec in opts.databases:
                lock = FileLock(spec.path)
                lock.acquire()
                self._locks.append(lock)
            await self._start(node)
        except BaseException:
            await self.stop()
            raise
        if opts.status_interval > 0:
            self._lag_task = asyncio.create_task(self._log_lag(opts.status_interval), name="sync-lag")

    async def _start(self, node: Node) -> None:
        opts = self.options
        bases: dict[str, int | None] = {}
        for spec in opts.databases:
            state = await asyncio.to_thread(file_state, spec.path)
            bases[spec.path] = check_start(opts.deliver_policy, state, spec.path)
        for path, base in bases.items():
            if base is not None:
                await asyncio.to_thread(record_position, path, base)
                log.info("%s: taken as complete up to seq %d", path, base)
        await node.start()
        self.node = node
        await self._joined(opts.config.replication_timeout)

    async def _joined(self, timeout: float) -> None:
        """Wait until the replica follows the log, for up to ``timeout`` (then it goes on trying in the
        background, as a node does when the log is not there yet); raise at once what no retry can mend (a
        consumer of that name belongs to a node)."""
        manager = self._node().replication
        assert manager is not None
        deadline = time.monotonic() + timeout
        while not manager.started:
            if manager.refused is not None:
                raise manager.refused
            if time.monotonic() > deadline:
                log.warning("sync: not following the log yet: %s (still trying)", self._trouble())
                return
            await manager.wait_started(0.05)

    def _trouble(self) -> str:
        """Why the replica does not follow the log, as far as it knows (a refused NATS login shows here)."""
        node = self._node()
        nats = node.nats.state() if node.nats is not None else None
        if nats is not None and not nats.connected:
            return f"not connected to NATS at {nats.url}" + (
                f": {nats.last_error}" if nats.last_error else ""
            )
        manager = node.replication
        return (manager.last_error if manager is not None else None) or "joining"

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._lag_task
            self._lag_task = None
        if self.node is not None:
            node, self.node = self.node, None
            await node.stop()
        for lock in self._locks:
            lock.release()
        self._locks.clear()

    async def wait_current(self, timeout: float) -> None:
        """Return once every database has applied everything the log held when asked (``StaleRead`` or
        ``LogUnreachable`` after ``timeout``; ``Gap`` at once while a database recovers from a gap)."""
        node = self._node()
        for spec in self.options.databases:
            await node.database(spec.id).wait_current(timeout)

    async def status(self) -> dict[str, Any]:
        """Where each database is, against the log: position, lag in change sets and seconds, consumer,
        parked change sets, a gap being recovered."""
        node = self._node()
        manager = node.replication
        assert manager is not None
        out: list[dict[str, Any]] = []
        worst_n: int | None = 0
        worst_s: float | None = 0.0
        for spec in self.options.databases:
            rdb = manager.databases.get(spec.id)
            if rdb is None:
                out.append({"database": spec.id, "path": spec.path, "error": "not replicating"})
                worst_n = worst_s = None
                continue
            try:
                s = await rdb.status()
            except HAError as e:
                out.append({"database": spec.id, "path": spec.path, "error": e.message})
                worst_n = worst_s = None
                continue
            behind: int | None = s["lag_messages"]
            seconds = await self._seconds_behind(spec.id, rdb.applied_seq, behind)
            out.append(
                {
                    "database": spec.id,
                    "path": spec.path,
                    "consumer": rdb.consumer,
                    "durable": self.options.durable,
                    "applied_seq": s["applied_seq"],
                    "last_seq": s["last_seq"],
                    "lag_messages": behind,
                    "lag_seconds": seconds,
                    "applied": s["applied"],
                    "parked": s["parked"],
                    "gap": s["gap"],
                    "last_error": s["last_error"],
                }
            )
            worst_n = None if worst_n is None or behind is None else max(worst_n, behind)
            worst_s = None if worst_s is None or seconds is None else max(worst_s, seconds)
        self.lag = Lag(worst_n, worst_s)
        nats = node.nats.state() if node.nats is not None else None
        return {
            "name": node.name,
            "stream": node.config.replication_stream,
            "joined": manager.started,
            "connected": nats.connected if nats is not None else False,
            "last_error": manager.last_error or (nats.last_error if nats is not None else None),
            "lag_messages": worst_n,
            "lag_seconds": worst_s,
            "databases": out,
        }

    async def _seconds_behind(self, database: str, applied: int, behind: int | None) -> float | None:
        """How long ago the oldest change set not applied yet was published (0 when none waits)."""
        if behind == 0:
            return 0.0
        manager = self._node().replication
        assert manager is not None
        try:
            found = await asyncio.wait_for(manager.replicator.oldest_after(database, applied), 2.0)
        except (TimeoutError, ReplicationError):
            return None
        if found is None:
            return 0.0
        return round(max(0.0, time.time() - found[1]), 3)

    async def _log_lag(self, every: float) -> None:
        """One line per database every ``every`` seconds: where it is and how far behind."""
        while True:
            await asyncio.sleep(every)
            try:
                status = await self.status()
            except Exception:  # a status that fails now must not end the lag lines for good
                log.exception("sync: reading the replica's status failed")
                continue
            if not status["connected"] or not status["joined"]:
                log.warning("sync: not following the log: %s", self._trouble())
                continue
            for d in status["databases"]:
                log.info("sync: %s", lag_line(d))

    def connect(self, database: str | None = None) -> sqlite3.Connection:
        """A read-only ``sqlite3`` connection to a database's file (the only one, if ``database`` is None).
        SQLite refuses writes on it."""
        return connect_read_only(self._path(database))

    def _path(self, database: str | None) -> str:
        paths = self.paths
        if database is None:
            if len(paths) != 1:
                raise HAError(f"this replica has {len(paths)} databases: name one ({', '.join(paths)})")
            return next(iter(paths.values()))
        if database not in paths:
            raise HAError(f"this replica has no database {database!r} (it has {', '.join(paths)})")
        return paths[database]

    def _node(self) -> Node:
        if self.node is None:
            raise HAError("the replica is not running")
        return self.node


def lag_line(d: Mapping[str, Any]) -> str:
    """One database's status as a log line."""
    if d.get("error"):
        return f"{d['database']}: {d['error']}"
    n, s = d.get("lag_messages"), d.get("lag_seconds")
    behind = (
        "caught up"
        if n == 0
        else f"{'?' if n is None else n} change set(s) behind"
        + ("" if s is None else f", the oldest published {s:.1f}s ago")
    )
    gap = " (recovering from a gap in the log)" if d.get("gap") else ""
    return f"{d['database']}: applied seq {d.get('applied_seq')}; {behind}{gap}"


def connect_read_only(path: str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


class Replica:
    """A replica running on the library's background event loop (the one the DB-API driver uses, see
    ``driver.runtime``), for code that is not asyncio: what ``sqlite_ha.replica`` returns. Thread-safe.
    Close it, or use it as a context manager; ``sqlite_ha.shutdown()`` (also run at interpreter exit)
    stops any still running."""

    def __init__(self, options: ReplicaOptions) -> None:
        self._runtime = runtime()
        self._core = AsyncReplica(options)
        self._runtime.call(self._core.start())
        self._runtime.add_closer(self._core.stop)
        self._closed = False

    @property
    def paths(self) -> dict[str, str]:
        return self._core.paths

    def status(self) -> dict[str, Any]:
        return self._runtime.call(self._core.status())

    @property
    def lag(self) -> Lag:
        """The lag now (asks the log: up to a few seconds when it does not answer)."""
        self.status()
        return self._core.lag

    def wait_current(self, timeout: float = 10.0) -> None:
        self._runtime.call(self._core.wait_current(timeout))

    def connect(self, database: str | None = None) -> sqlite3.Connection:
        return self._core.connect(database)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._runtime.remove_closer(self._core.stop)
        if self._runtime.running:
            self._runtime.call(self._core.stop())

    def __enter__(self) -> Replica:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def replica(
    target: str,
    *,
    replication_url: str | None = None,
    databases: Sequence[str] = (),
    durable: str | None = None,
    deliver_policy: str = "all",
    status_interval: float = STATUS_INTERVAL,
    env: Mapping[str, str] | None = None,
    **settings: Any,
) -> Replica:
    """Start a live read replica of a cluster's database(s) in ``target`` and return it running.

    ``target`` is the local file (the database is ``databases[0]``, else the file's name) or a directory for
    several ``databases``. ``settings`` are node settings a replica takes (``replication_stream``,
    ``cluster_secret_file``, ``nats_user``, ``nats_pass``, ``nats_creds``, ``nats_ca``, ...; see
    docs/sync.md); ``HA_*`` variables of those settings are read too. ``durable`` names consumers that
    outlive the process; ``deliver_policy`` is ha-sync's, refused where it would give an incomplete replica.
    """
    options = replica_options(
        target,
        databases=databases,
        durable=durable,
        deliver_policy=deliver_policy,
        status_interval=status_interval,
        settings={**settings, "replication-url": replication_url},
        env=env,
    )
    return Replica(options)
