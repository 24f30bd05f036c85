"""A running node: databases, the embedded NATS server, the NATS connection and the HTTP API.

Start order is databases → NATS server → NATS connection → HTTP, so a node never answers requests for
databases it has not opened; stop order is the reverse, so no request is cut half-way and the NATS child is
stopped last-but-one, after everything that talks to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlite_ha import __version__
from sqlite_ha.changes.rowids import Rowids
from sqlite_ha.config import Config
from sqlite_ha.db.database import DatabaseOptions
from sqlite_ha.db.dsn import DatabaseSpec, parse_databases
from sqlite_ha.db.registry import Databases
from sqlite_ha.db.runner import Limits
from sqlite_ha.errors import ConfigError, NotReady
from sqlite_ha.loader import Loader
from sqlite_ha.natsd import NatsServer
from sqlite_ha.plugins import JSONLinesPublisher, Plugins
from sqlite_ha.replication.bootstrap import (
    Bootstrap,
    BootstrapError,
    Install,
    bootstrap,
    install_in_place,
)
from sqlite_ha.replication.drivers import LogContext, open_log
from sqlite_ha.replication.jetstream.connection import NatsConnection
from sqlite_ha.replication.jetstream.driver import JetStreamReplicator
from sqlite_ha.replication.jetstream.handover import hand_over
from sqlite_ha.replication.jetstream.snapshot_requests import NatsSnapshotRequests
from sqlite_ha.replication.manager import ReplicationManager
from sqlite_ha.replication.recovery import Recovery
from sqlite_ha.replication.replicator import ReplicationError, Replicator
from sqlite_ha.replication.seal import Sealer
from sqlite_ha.replication.signed_snapshots import SignedSnapshotStore
from sqlite_ha.replication.snapshot import NoSnapshot, SnapshotMeta, SnapshotsUnavailable
from sqlite_ha.replication.snapshot_request import SnapshotReply, SnapshotRequest
from sqlite_ha.replication.snapshotter import Snapshotter
from sqlite_ha.replication.subscriber import Subscriber
from sqlite_ha.security.cluster_secret import cluster_secret, join_instructions
from sqlite_ha.security.keys import ClusterKeys
from sqlite_ha.security.nats_access import nats_access, warn_insecure
from sqlite_ha.security.users import Users
from sqlite_ha.served import ServedDatabase
from sqlite_ha.writer import Leaderless, WriterMode, make_mode

if TYPE_CHECKING:
    from sqlite_ha.server.frontends import Frontends

log = logging.getLogger(__name__)

SNAPSHOT_ASK_TIMEOUT = 60.0  # how long a node that needs a snapshot waits for a live node to store one


class Node:
    def __init__(
        self,
        config: Config,
        *,
        serve: bool = True,
        plugins: Plugins | None = None,
        subscriber: Subscriber | None = None,
        databases: list[DatabaseSpec] | None = None,
    ) -> None:
        """``serve=False``: no HTTP or PostgreSQL listener (a node embedded in an application by the
        driver, or a read replica); everything else runs as in a server node. ``plugins``: the publisher,
        subscriber, snapshotter and apply hooks an embedding application chooses (``sqlite_ha.plugins``);
        by default those of ``config`` (``Plugins.from_config``). ``subscriber``: the node only follows the
        log (a read replica, see ``Subscriber``): no publisher, no snapshotter, whatever ``plugins`` say.
        ``databases``: the files to open instead of ``config.databases`` (a replica's file names need not
        be the database ids)."""
        self.config = config
        self.serve = serve
        self.subscriber = subscriber
        self._given_specs = databases
        if subscriber is not None:
            plugins = replace(plugins or Plugins(), publisher="none", cdc=(), snapshotter=False)
        self.plugins = (plugins or Plugins()).completed(config)
        self.name = config.name
        # The users of --auth-file (a broken file stops the start with a ConfigError naming the fault).
        self.users: Users | None = Users(config.auth_file) if config.auth_file else None
        # HTTP and PostgreSQL; their TLS is loaded now: a bad certificate or key stops the node before it
        # opens anything (or makes a cluster secret), with the flag named.
        self.frontends: Frontends | None = None
        if serve:  # imported only here: an embedded node never loads the HTTP and PostgreSQL servers
            from sqlite_ha.server.frontends import Frontends

            self.frontends = Frontends(config, self.users)
        # The cluster secret's keys: NATS credentials and the MACs of change sets and snapshots.
        secret = cluster_secret(config)
        self.keys: ClusterKeys | None = secret.keys
        if secret.created and secret.path is not None:
            sys.stderr.write(join_instructions(secret.path))  # for the operator, not the log
            sys.stderr.flush()
        self.nats_access = nats_access(config, self.keys)
        self.sealer = Sealer(self.keys)  # without keys: plain messages out, anything in (see ``seal``)
        self._watch_users: asyncio.Task[None] | None = None
        # Leaderless nodes choose keys from their own slot; alone (no NATS), SQLite's own keys.
        self.rowids = Rowids(config.rowid_stride) if config.nats_url and not subscriber else Rowids.plain()
        self.databases = Databases(
            DatabaseOptions(
                synchronous=config.synchronous,
                busy_timeout=config.busy_timeout,
                limits=Limits(
                    max_rows=config.max_result_rows,
                    max_bytes=config.max_result_bytes,
                    timeout=config.query_timeout,
                ),
                rowids=self.rowids,
            ),
            create_dir=config.create_db_dir,
            memory=config.memory,
        )
        self.nats_server: NatsServer | None = None
        self.nats: NatsConnection | None = None
        self.replication: ReplicationManager | None = None
        self.snapshots: Snapshotter | None = None
        self.snapshot_requests: NatsSnapshotRequests | None = None  # asking live nodes, answering them
        self.snapshot_store: SignedSnapshotStore | None = None
        self._covered: dict[str, int] = {}  # databases started from a snapshot: how far it covers the log
        self._specs: dict[str, DatabaseSpec] = {}  # as configured (a memory database opens from a snapshot)
        self.recovery: Recovery | None = None  # databases re-bootstrapping after a gap, while running
        self._served: dict[str, ServedDatabase] = {}  # what ``database`` answers, one per database
        self.loader = Loader()  # loads of existing SQLite files, one at a time per database
        self._started_at = time.time()
        # Who takes writes (docs/writer-modes.md): every node by default; one node in a writer mode, the
        # others forward their writes to it.
        self.writer: WriterMode = Leaderless(self.name)

    async def start(self) -> None:
        cfg = self.config
        try:
            specs = self._given_specs or parse_databases(cfg.databases, memory=cfg.memory)
            self._specs = {spec.id: spec for spec in specs}
            access = self.nats_access
            if cfg.insecure_replication and cfg.nats_url:
                warn_insecure(cfg)
            if cfg.embedded_nats:
                self.nats_server = NatsServer(access.server_options(cfg))
                await self.nats_server.start()
            if cfg.nats_url:
                self.nats = NatsConnection(
                    cfg.nats_url,
                    name=cfg.name,
                    login=access.client_login(),
                    tls=access.client_tls(),
                )
                self.nats.start()
                wait = (
                    5.0
                    if self.nats_server is not None
                    else (cfg.replication_timeout if cfg.from_latest_snapshot else 2.0)
                )
                await self.nats.wait_connected(wait)
            replicator, store = self._log()
            answering = await self._wait_log(replicator)
            specs, loaded = await self._bootstrap(specs, replicator, store)
            self.databases.open_all(specs)
            for path in loaded:  # snapshots loaded into memory were temporary files
                await asyncio.to_thread(os.remove, path)
            self._start_replication(replicator, store)
            if answering and (self.nats_server is not None or self.nats is None):
                # A log of our own (or our own server's cluster, now answering) is joined in a moment: be
                # ready when start returns.
                assert self.replication is not None
                await self.replication.wait_started(15.0)
            if self.users is not None:
                self._watch_users = asyncio.create_task(self.users.watch(), name="watch-auth-file")
            self.writer = make_mode(
                cfg, keys=self.keys, http_port=cfg.port, pg_port=cfg.pg_port or None, nats=self.nats
            )
            if self.replication is not None:
                self.replication.set_writer_mode(self.writer)
            await self.writer.start()
            if self.frontends is not None:
                await self.frontends.start(self)
        except BaseException:
            await self.stop()
            raise
        where = (
            f"{'https' if cfg.cert else 'http'}://{cfg.host}:{self.frontends.http_port}"
            if self.frontends is not None
            else "read replica, no listener"
            if self.subscriber is not None
            else "embedded, no listener"
        )
        log.info(
            "node %s ready: %s (%d database%s)",
            self.name,
            where,
            len(self.databases),
            "" if len(self.databases) == 1 else "s",
        )

    def _log(self) -> tuple[Replicator, SignedSnapshotStore | None]:
        """The replication log and, where the driver has one, the snapshot store (``replication/drivers``)."""
        context = LogContext(
            config=self.config,
            nats=self.nats,
            sealer=self.sealer,
            keys=self.keys,
            subscribe_only=self.subscriber is not None,
        )
        opened = open_log(context, self.plugins.log_driver)
        self.snapshot_requests = opened.requests
        self.snapshot_store = opened.snapshots
        return opened.replicator, opened.snapshots

    async def _wait_log(self, replicator: Replicator) -> bool:
        """Wait (polling quickly) until the log answers, so that the start-up gap check can run: a NATS
        cluster that is still forming has no JetStream meta leader for a few seconds, and a question asked
        then only times out. Gives up after ``--replication-timeout`` (the node then starts and joins the
        log in the background). True when the log answers."""
        if not isinstance(replicator, JetStreamReplicator):
            return True  # a log of our own answers at once
        if self.nats is None or not self.nats.state().connected:
            return False
        started = time.monotonic()
        if await replicator.wait_answering(self.config.replication_timeout):
            log.info(
                "JetStream answers for stream %s (after %.2fs)", replicator.stream, time.monotonic() - started
            )
            return True
        log.warning(
            "JetStream did not answer for stream %s within %gs; starting anyway",
            replicator.stream,
            self.config.replication_timeout,
        )
        return False

    async def _bootstrap(
        self, specs: list[DatabaseSpec], replicator: Replicator, store: SignedSnapshotStore | None
    ) -> tuple[list[DatabaseSpec], list[str]]:
        """Start each database from a snapshot where the log alone cannot bring it up to date. Returns the
        specs to open and the temporary snapshot files that in-memory databases load."""
        cfg = self.config
        if not self.plugins.subscriber:
            return specs, []  # applies nothing of the log: nothing to catch up with
        if store is None or self.nats is None:
            if cfg.from_latest_snapshot:
                raise ConfigError(
                    "--from-latest-snapshot", "snapshots need NATS (--nats-port or --replication-url)"
                )
            return specs, []
        if not self.nats.state().connected:
            if cfg.from_latest_snapshot:
                raise BootstrapError(
                    "--from-latest-snapshot: NATS is not reachable, so no snapshot can be read"
                )
            log.warning(
                "NATS is not reachable yet: cannot check whether the log still has what this node missed"
            )
            return specs, []
        out, loaded = [], []
        deadline = time.monotonic() + cfg.replication_timeout
        for spec in specs:
            try:
                started = await self._bootstrap_one(spec, replicator, store, deadline)
            except ReplicationError as e:  # JetStream not answering yet (a cluster still forming)
                if cfg.from_latest_snapshot:
                    raise BootstrapError(f"database {spec.id}: cannot read the log: {e.message}") from e
                log.warning(
                    "database %s: cannot compare with the log yet (%s); starting from the file",
                    spec.id,
                    e.message,
                )
                out.append(spec)
                continue
            if started.installed is not None:
                self._covered[spec.id] = started.installed.covers
            out.append(started.spec)
            if started.spec.memory and started.installed is not None:
                loaded.append(started.spec.path)
        return out, loaded

    async def _bootstrap_one(
        self, spec: DatabaseSpec, replicator: Replicator, store: SignedSnapshotStore, deadline: float
    ) -> Bootstrap:
        """``bootstrap`` one database, asking again while the log may just be forming: a stream another node
        created a moment ago answers nothing until its replicas elected a leader, and its first request
        then times out (the node would skip the comparison with the log)."""
        cfg = self.config
        while True:
            try:
                return await bootstrap(
                    spec,
                    replicator,
                    store,
                    force=cfg.from_latest_snapshot,
                    ask=self._ask_snapshot,
                    publish_timeout=cfg.replication_timeout,
                    sealer=self.sealer,
                    install=self._install,
                )
            except ReplicationError as e:
                left = deadline - time.monotonic()
                if not e.retryable or left <= 0 or not isinstance(replicator, JetStreamReplicator):
                    raise
                log.info("database %s: the log does not answer yet (%s); asking again", spec.id, e.message)
                if not await replicator.wait_answering(left):
                    raise

    def _start_replication(self, replicator: Replicator, store: SignedSnapshotStore | None) -> None:
        cfg, plugins = self.config, self.plugins
        self.replication = ReplicationManager(
            replicator,
            node=cfg.name,
            timeout=cfg.replication_timeout,
            async_mode=plugins.publisher == "outbox",
            policy=cfg.replication_policy,
            ddl_sync=not cfg.disable_ddl_sync,
            interceptor=plugins.interceptor,
            apply_strategy=plugins.apply_strategy,
            publish=plugins.publishes,
            subscribe=plugins.subscriber,
            cdc=plugins.cdc,
            auto_subscribe=plugins.auto_start,
            rowids=self.rowids if self.subscriber is None else None,
            subscriber=self.subscriber,
            max_transaction_size=cfg.max_transaction_size,
            sealer=self.sealer,
        )
        self.replication.start(list(self.databases), verified=self._covered)
        if store is not None and plugins.subscriber:
            self.recovery = Recovery(
                manager=self.replication,
                store=store,
                databases=self.databases,
                specs=self._specs,
                ask=self._ask_snapshot,
                install=self._install,
            )
            self.replication.on_gap = self.recovery.on_gap
        if store is not None:
            # Built even when the plug-ins turn it off: reading the stored snapshots stays possible; a
            # snapshotter that is off is never started (no snapshots taken, no request answered).
            self.snapshots = Snapshotter(
                store, node=cfg.name, interval=cfg.snapshot_interval, replicator=replicator
            )
            if plugins.auto_start:
                self._start_snapshotter()

    def _start_snapshotter(self) -> None:
        snapshots, manager = self.snapshots, self.replication
        if snapshots is None or manager is None or snapshots.running or not self.plugins.snapshotter:
            return
        snapshots.start(lambda: list(manager.databases.values()) if manager.started else [])
        if self.snapshot_requests is not None:
            self.snapshot_requests.serve(snapshots.answer)

    async def start_replication(self) -> None:
        """What ``Plugins(auto_start=False)`` (go-ha's autoStart=false) held back at ``start``: the
        subscribers (the log's change sets are applied from now on) and the snapshotter. Idempotent."""
        if self.replication is None:
            raise NotReady("the node is not started: call start() first")
        await self.replication.start_subscribers()
        self._start_snapshotter()

    @property
    def _install(self) -> Install | None:
        """How a snapshot replaces a database file: a replica's is read by other processes meanwhile."""
        return install_in_place if self.subscriber is not None else None

    # ------------------------------------------------------------------------------------ recovery
    def database(self, ident: str | None = None) -> ServedDatabase:
        """The database to serve a request on (None: the default one); refused (503) while it may be stale
        (a gap in the log). One object per database, rebuilt only when the database was reopened
        (recovery) or replication started."""
        db = self.databases.get(ident)
        served = self._served.get(db.id)
        if served is None or served.db is not db or served.replication is not self.replication:
            guard = None if self.serve else self._writes_here
            served = self._served[db.id] = ServedDatabase(db, self.replication, guard=guard)
        served.check_fresh()
        return served

    async def _writes_here(self) -> None:
        """The guard of a node without listeners (the driver): it cannot hand a write to another writer."""
        await self.writer.refuse_unless_writer(self.config.writer_wait)

    # ------------------------------------------------------------------------------------ snapshots
    def _snapshotter(self) -> Snapshotter:
        if self.snapshots is None or self.replication is None:
            raise SnapshotsUnavailable(
                "snapshots are stored in the JetStream object store, and this node runs without NATS",
                hint="use GET /download (or Database.backup_to) for a backup of this node",
            )
        return self.snapshots

    async def take_snapshot(self, ident: str | None = None) -> tuple[SnapshotMeta, bool]:
        """Snapshot a database now, unless the stored snapshot already includes everything applied here
        (``taken`` False then). Raises ``NoSnapshot`` for a database that is not replicated or still empty."""
        snapshots = self._snapshotter()
        if not self.plugins.snapshotter:
            raise SnapshotsUnavailable(
                "this node's snapshotter is off (disableDBSnapshotter): it takes no snapshots",
                hint="take it on a node whose snapshotter runs; reading stored snapshots works here",
            )
        db = self.databases.get(ident)
        assert self.replication is not None
        rdb = self.replication.databases.get(db.id)
        if rdb is None:
            raise NoSnapshot(f"{db.id!r} is read-only: it is not replicated, so it has no snapshots")
        meta, taken = await snapshots.take(rdb)
        if meta is None:
            raise NoSnapshot(f"nothing to snapshot in {db.id!r} yet")
        return meta, taken

    async def latest_snapshot(self, ident: str | None = None) -> SnapshotMeta | None:
        """The latest stored snapshot of a database (verified), or None."""
        return await self._snapshotter().store.latest(self.databases.get(ident).id)

    async def fetch_snapshot(self, ident: str | None, dest: Path) -> SnapshotMeta:
        """Write a database's latest snapshot to ``dest`` (verified against its signed manifest)."""
        return await self._snapshotter().store.fetch(self.databases.get(ident).id, dest)

    async def _ask_snapshot(self, database: str, need: int) -> SnapshotReply | None:
        """Ask the live nodes to store a snapshot of ``database`` covering the log up to ``need``."""
        if self.snapshot_requests is None:
            return None
        request = SnapshotRequest(database=database, node=self.name, need=need)
        return await self.snapshot_requests.ask(request, SNAPSHOT_ASK_TIMEOUT)

    # ------------------------------------------------------------------------------------ load
    async def load(self, ident: str, path: str, size: int) -> dict[str, Any]:
        """Load a SQLite file into the empty database ``ident`` through the write path (see ``Loader``)."""
        return await self.loader.load(self.database(ident), path, size)

    def database_ids(self) -> list[str]:
        return [db.id for db in self.databases]

    async def create_database(self, dsn: str) -> ServedDatabase:
        db = self.databases.create(dsn)
        if self.replication is not None and not db.spec.read_only:
            await self.replication.attach(db)
        return self.database(db.id)

    async def delete_database(self, ident: str) -> None:
        self.databases.get(ident)
        if self.replication is not None and self.databases.created_over_api(ident):
            await self.replication.detach(ident)
        self.databases.delete(ident)
        self._served.pop(ident, None)

    def reload(self) -> None:
        """SIGHUP: read the auth file again (a broken one keeps the users loaded before)."""
        if self.users is not None:
            self.users.reload()
        else:
            log.info("SIGHUP: nothing to reload (no --auth-file)")

    async def stop(self) -> None:
        if self._watch_users is not None:
            self._watch_users.cancel()
            self._watch_users = None
        if self.recovery is not None:
            await self.recovery.close()
            self.recovery = None
        if self.frontends is not None:
            await self.frontends.stop()
        await self.writer.close()  # an elected writer gives its lease up: another node takes over at once
        await self._hand_over()
        if self.snapshot_requests is not None:
            await self.snapshot_requests.close()
            self.snapshot_requests = None
        if self.snapshots is not None:
            await self.snapshots.close()
            self.snapshots = None
        if self.replication is not None:
            await self.replication.close()
            self.replication = None
        if self.nats is not None:
            await self.nats.close()
            self.nats = None
        if self.nats_server is not None:
            await self.nats_server.stop()
            self.nats_server = None
        self.databases.close()
        for publisher in self.plugins.cdc:
            if isinstance(publisher, JSONLinesPublisher):
                publisher.close()  # its own file only (opened again if the node starts again)

    async def _hand_over(self) -> None:
        """Before the embedded server stops: move the stream and consumer leaderships it holds to the other
        servers of its cluster, so that writes and deliveries go on without waiting for an election."""
        server, nats = self.nats_server, self.nats
        if server is None or not server.running or nats is None or nats.client is None:
            return
        if not nats.client.is_connected or not (self.config.nats_cluster_port or self.config.nats_config):
            return  # a lone server has no one to hand over to
        started = time.monotonic()
        moved = await hand_over(nats.client, server.server_name or self.config.name)
        if moved:
            log.info(
                "handed over %s to other NATS servers in %.2fs", ", ".join(moved), time.monotonic() - started
            )

    # ------------------------------------------------------------------------------------ health
    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """Ready when every database is open, the node has joined the replication log and, if that log is
        JetStream, NATS and JetStream answer.

        A node whose embedded nats-server is down (and being restarted) but that reaches JetStream through
        another server of its cluster serves every request correctly: it stays ready, and the check
        ``embedded_nats: false`` (present only then) marks it *degraded* (see docs/operations.md)."""
        checks: dict[str, Any] = {"databases": len(self.databases) > 0}
        if self.nats is not None:
            state = self.nats.state()
            checks["nats"] = state.connected
            checks["jetstream"] = state.jetstream
        checks["replication"] = self.replication is not None and self.replication.started
        if self.replication is not None and any(r.gap for r in self.replication.databases.values()):
            checks["no_gap"] = False  # a database may be stale: see /status
        ready = all(checks.values())
        if self.nats_server is not None and not self.nats_server.running:
            checks["embedded_nats"] = False  # degraded, not unready
        return ready, checks

    async def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "node": self.name,
            "version": __version__,
            "uptime_s": round(time.time() - self._started_at, 3),
            "event_loop": type(asyncio.get_running_loop()).__module__.partition(".")[0],  # uvloop, asyncio
            "databases": [
                {
                    "id": db.id,
                    "memory": db.spec.memory,
                    "reads": db.stats.reads,
                    "writes": db.stats.writes,
                    "errors": db.stats.errors,
                    "slow": db.stats.slow,
                }
                for db in self.databases
            ],
            "nats": None,
            "connections": self.frontends.connections() if self.frontends is not None else None,
            "writer": self.writer.status(),
        }
        out["replication"] = await self.replication.status() if self.replication is not None else None
        if self.snapshots is not None:
            out["snapshots"] = {
                **self.snapshots.stats(),
                "unauthenticated": self.snapshot_store.stats() if self.snapshot_store is not None else None,
                "requests": self.snapshot_requests.stats() if self.snapshot_requests is not None else None,
            }
        if self.nats is not None:
            s = self.nats.state()
            out["nats"] = {
                "url": s.url,
                "connected": s.connected,
                "server": self.nats.server(),
                "jetstream": s.jetstream,
                "last_error": s.last_error,
                "embedded": self.nats_server is not None,
                **self.nats_access.status(),
                "embedded_server": None if self.nats_server is None else self.nats_server.state().to_dict(),
            }
        return out

    async def refresh_health(self) -> None:
        """Re-check JetStream so readiness follows the server (called periodically by ``run``)."""
        if self.nats is not None:
            await self.nats.check_jetstream()


async def run(config: Config, stop: asyncio.Event) -> None:
    """Start a node, serve until ``stop`` is set, then stop it cleanly."""
    node = Node(config)
    await node.start()
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
        loop.add_signal_handler(signal.SIGHUP, node.reload)
    try:
        while not stop.is_set():
            await node.refresh_health()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
    finally:
        log.info("stopping node %s", node.name)
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGHUP)
        await node.stop()
        log.info("node %s stopped", node.name)
