"""Writer modes (seeds 000 and 004): leaderless, static, elected, pinned. See docs/writer-modes.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlite_ha.writer.addresses import is_own_url
from sqlite_ha.writer.role import Leaderless, NotWriter, NoWriter, Writer, WriterMode
from sqlite_ha.writer.static import StaticWriter

if TYPE_CHECKING:
    from sqlite_ha.config import Config
    from sqlite_ha.replication.jetstream.connection import NatsConnection
    from sqlite_ha.security.keys import ClusterKeys

__all__ = ["Leaderless", "NoWriter", "NotWriter", "StaticWriter", "Writer", "WriterMode", "make_mode"]


def make_mode(
    config: Config,
    *,
    keys: ClusterKeys | None,
    http_port: int,
    pg_port: int | None,
    nats: NatsConnection | None,
) -> WriterMode:
    """The writer mode the configuration chooses, not started yet."""
    mode = config.writer_mode
    own = (config.leader_addr, config.local_target)
    if mode == "static":
        is_self = is_own_url(config.leader_static, http_port, also=own)
        return StaticWriter(config.name, config.leader_static, is_self=is_self, pg_port=pg_port)
    if mode == "elected":
        from sqlite_ha.writer.lease import LeaseWriter

        assert nats is not None  # resolve() refuses mode elected without NATS
        return LeaseWriter(
            config.name,
            config.leader_addr,
            nats=nats,
            stream=config.replication_stream,
            replicas=config.replicas,
            ttl=config.lease_timeout,
            interval=config.heartbeat_interval,
            pg_port=pg_port,
        )
    if mode == "pinned":
        from sqlite_ha.writer.pinned import PinnedWriter

        return PinnedWriter(
            config.name,
            node_id=config.node_id or config.name,
            local_target=config.local_target,
            peers=config.peers,
            interval=config.heartbeat_interval,
            timeout=config.lease_timeout,
            keys=keys,
            pg_port=pg_port,
        )
    return Leaderless(config.name)
