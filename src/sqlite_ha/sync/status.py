"""``sqlite-ha sync --status``: how far a replica's files are behind the log, asked of the files and the
stream, whether the replica runs or not (an operator's check, a monitoring probe)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlite_ha.replication.bootstrap import file_state
from sqlite_ha.replication.drivers import LogContext, open_log
from sqlite_ha.replication.jetstream.connection import NatsConnection
from sqlite_ha.replication.replicator import ReplicationError
from sqlite_ha.replication.seal import Sealer
from sqlite_ha.security.cluster_secret import cluster_secret
from sqlite_ha.security.nats_access import nats_access
from sqlite_ha.sync.options import ReplicaOptions


async def file_status(options: ReplicaOptions, timeout: float = 5.0) -> dict[str, Any]:
    """Each file's position against the stream: the change sets of its database after that position, and
    how long ago the oldest of them was published."""
    cfg = options.config
    keys = cluster_secret(cfg).keys
    access = nats_access(cfg, keys)
    conn = NatsConnection(cfg.nats_url, name=cfg.name, login=access.client_login(), tls=access.client_tls())
    conn.start()
    try:
        await _connected(conn, timeout)
        opened = open_log(
            LogContext(config=cfg, nats=conn, sealer=Sealer(keys), keys=keys, subscribe_only=True)
        )
        log = opened.replicator
        out = []
        for spec in options.databases:
            file = await asyncio.to_thread(file_state, spec.path)
            last = await log.last_seq(spec.id)
            behind = await log.count_after(spec.id, file.position)
            oldest = await log.oldest_after(spec.id, file.position) if behind else None
            first = await log.first_seq(spec.id)
            out.append(
                {
                    "database": spec.id,
                    "path": spec.path,
                    "applied_seq": file.position,
                    "last_seq": last,
                    "lag_messages": behind,
                    "lag_seconds": 0.0 if oldest is None else round(max(0.0, time.time() - oldest[1]), 3),
                    # the stream no longer holds all the file lacks: the replica installs a snapshot
                    "gap": first > file.position + 1,
                }
            )
        return {"stream": cfg.replication_stream, "databases": out}
    finally:
        await conn.close()


async def _connected(conn: NatsConnection, timeout: float) -> None:
    """Wait for the connection; fail at once when the server refused the login (no retry mends that)."""
    deadline = time.monotonic() + timeout
    while not await conn.wait_connected(0.1):
        state = conn.state()
        refused = "authorization" in (state.last_error or "").lower()
        if refused or time.monotonic() > deadline:
            raise ReplicationError(
                f"cannot reach NATS at {state.url}" + (f": {state.last_error}" if state.last_error else "")
            )
