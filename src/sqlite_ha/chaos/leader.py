"""Which NATS server leads the replication stream, asked of NATS as any client would.

The one place outside the JetStream driver that imports nats-py: the chaos suite observes the cluster from
outside, like an operator, and must not depend on what the node reports about itself.
"""

from __future__ import annotations

import asyncio
import contextlib

import nats


async def _leader(urls: list[str], stream: str, user: str, password: str, timeout: float) -> str | None:
    async def quiet(_e: Exception) -> None:
        pass

    nc = await nats.connect(
        servers=urls,
        user=user,
        password=password,
        connect_timeout=timeout,
        allow_reconnect=False,
        max_reconnect_attempts=0,
        error_cb=quiet,
    )
    try:
        info = await nc.jetstream(timeout=timeout).stream_info(stream)
        leader = info.cluster.leader if info.cluster is not None else None
        return str(leader) if leader else None
    finally:
        await nc.close()


def stream_leader(urls: list[str], stream: str, user: str, password: str, timeout: float = 2.0) -> str | None:
    """The server name of the stream's leader, or None if there is none now or NATS does not answer."""
    with contextlib.suppress(Exception):  # no servers, timeouts, no leader during an election
        return asyncio.run(asyncio.wait_for(_leader(urls, stream, user, password, timeout), timeout * 3))
    return None
