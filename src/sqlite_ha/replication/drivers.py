"""Replication drivers by name: the configuration chooses the log a node replicates through.

``open_log`` builds the ``Log`` (the ``Replicator``, and where the driver has them the snapshot store and
the snapshot requests between live nodes) of the driver ``driver_name(config)`` names: ``jetstream`` when the
node has NATS (an embedded server or ``--replication-url``), ``local`` otherwise. ``register`` adds a driver
(a test's in-memory hub, another log); nothing outside this module builds a driver by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlite_ha.config import Config
from sqlite_ha.errors import ConfigError
from sqlite_ha.replication.jetstream.connection import NatsConnection
from sqlite_ha.replication.jetstream.driver import JetStreamReplicator
from sqlite_ha.replication.jetstream.snapshot_requests import NatsSnapshotRequests
from sqlite_ha.replication.jetstream.snapshots import JetStreamSnapshotStore
from sqlite_ha.replication.memory import LocalReplicator
from sqlite_ha.replication.replicator import Replicator
from sqlite_ha.replication.seal import Sealer
from sqlite_ha.replication.signed_snapshots import SignedSnapshotStore
from sqlite_ha.security.keys import ClusterKeys


@dataclass(frozen=True, kw_only=True)
class LogContext:
    """What a driver is built from: the node's configuration and its connections."""

    config: Config
    nats: NatsConnection | None
    sealer: Sealer
    keys: ClusterKeys | None
    # A read replica's log: the stream is read, never created, changed or published to (``Subscriber``).
    subscribe_only: bool = False


@dataclass(frozen=True, kw_only=True)
class Log:
    """A node's replication log: the replicator, and its snapshot parts where the driver has them."""

    replicator: Replicator
    snapshots: SignedSnapshotStore | None = None  # manifests signed and verified with the cluster keys
    requests: NatsSnapshotRequests | None = None  # asking the live nodes for a snapshot, answering them


LogFactory = Callable[[LogContext], Log]


def _local(ctx: LogContext) -> Log:
    return Log(replicator=LocalReplicator(ctx.config.name))


def _jetstream(ctx: LogContext) -> Log:
    cfg, nats = ctx.config, ctx.nats
    if nats is None:
        raise ConfigError(
            "--replication-url", "the jetstream driver needs NATS (--nats-port or --replication-url)"
        )
    replicator = JetStreamReplicator(
        nats,
        node=cfg.name,
        stream=cfg.replication_stream,
        replicas=cfg.replicas,
        max_age=cfg.replication_max_age,
        subscribe_only=ctx.subscribe_only,
    )
    requests = NatsSnapshotRequests(nats, node=cfg.name, stream=cfg.replication_stream, sealer=ctx.sealer)
    store = JetStreamSnapshotStore(nats, stream=cfg.replication_stream, replicas=cfg.replicas)
    return Log(replicator=replicator, snapshots=SignedSnapshotStore(store, ctx.keys), requests=requests)


DRIVERS: dict[str, LogFactory] = {"local": _local, "jetstream": _jetstream}


def driver_name(config: Config) -> str:
    """The driver the configuration chooses: ``jetstream`` with NATS, ``local`` without."""
    return "jetstream" if config.nats_url else "local"


def register(name: str, factory: LogFactory) -> None:
    """Add (or replace) a driver; ``open_log(..., driver=name)`` builds it."""
    DRIVERS[name] = factory


def open_log(ctx: LogContext, driver: str | None = None) -> Log:
    """The log of ``driver`` (default: the one the configuration chooses)."""
    name = driver or driver_name(ctx.config)
    try:
        factory = DRIVERS[name]
    except KeyError:
        raise ConfigError(
            "driver", f"no replication driver {name!r} (known: {', '.join(sorted(DRIVERS))})"
        ) from None
    return factory(ctx)
