"""Snapshot requests between nodes over a real nats-server: who answers, who is silent, how long an asker
waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterator
from typing import Any

import pytest

from sqlite_ha.natsd import NatsServer, NatsServerOptions
from sqlite_ha.replication.jetstream.connection import NatsConnection
from sqlite_ha.replication.jetstream.snapshot_requests import ACK_WAIT, NatsSnapshotRequests
from sqlite_ha.replication.snapshot_request import Send, SnapshotReply, SnapshotRequest
from sqlite_ha.testing import free_port


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    """One event loop for the module: the nats-server child process belongs to it."""
    with asyncio.Runner() as r:
        yield r


@pytest.fixture(scope="module")
def nats_url(runner: asyncio.Runner, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = tmp_path_factory.mktemp("nats")
    server = NatsServer(NatsServerOptions(name="requests", port=free_port(), store_dir=store))
    runner.run(server.start())
    try:
        yield server.url
    finally:
        runner.run(server.stop())


def run(runner: asyncio.Runner, scenario: Coroutine[Any, Any, None]) -> None:
    runner.run(asyncio.wait_for(scenario, 60))


class Peer:
    """One node's side: its connection and its requests, answering with ``answer`` when given."""

    def __init__(self, url: str, name: str) -> None:
        self.conn = NatsConnection(url, name=name)
        self.requests = NatsSnapshotRequests(self.conn, node=name)
        self.name = name

    async def __aenter__(self) -> Peer:
        self.conn.start()
        assert await self.conn.wait_connected(10)
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.requests.close()
        await self.conn.close()


def reply(peer: str, **kwargs: object) -> SnapshotReply:
    return SnapshotReply(database="app.db", node=peer, **kwargs)  # type: ignore[arg-type]


async def serving(peer: Peer, answer: object) -> None:
    peer.requests.serve(answer)  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while peer.requests._sub is None:  # subscribed in the background
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    assert peer.conn.client is not None
    await peer.conn.client.flush()


REQUEST = SnapshotRequest(database="app.db", node="asker", need=100)


def test_the_first_good_reply_wins_over_refusals_and_silence(runner: asyncio.Runner, nats_url: str) -> None:
    async def scenario() -> None:
        async def refuses(request: SnapshotRequest, send: Send) -> None:
            await send(reply("stale", ok=False, error="this node has a gap in the log itself"))

        async def silent(request: SnapshotRequest, send: Send) -> None:
            return  # does not replicate the database

        async def answers(request: SnapshotRequest, send: Send) -> None:
            await send(reply("good", ok=False, pending=True))
            await asyncio.sleep(0.5)  # making and storing the snapshot
            await send(reply("good", ok=True, seq=90, covers=120, taken=True))

        async with Peer(nats_url, "stale") as a, Peer(nats_url, "other") as b, Peer(nats_url, "good") as c:
            await serving(a, refuses)
            await serving(b, silent)
            await serving(c, answers)
            async with Peer(nats_url, "asker") as asker:
                got = await asker.requests.ask(REQUEST, timeout=30)
        assert got == reply("good", ok=True, seq=90, covers=120, taken=True)
        assert (a.requests.refused, c.requests.answered) == (1, 1)

    run(runner, scenario())


def test_a_snapshot_that_does_not_cover_the_need_is_a_refusal(runner: asyncio.Runner, nats_url: str) -> None:
    async def scenario() -> None:
        async def too_old(request: SnapshotRequest, send: Send) -> None:
            await send(reply("old", ok=False, pending=True))
            await send(reply("old", ok=True, seq=50, covers=60))

        async with Peer(nats_url, "old") as a:
            await serving(a, too_old)
            async with Peer(nats_url, "asker") as asker:
                started = time.monotonic()
                got = await asker.requests.ask(REQUEST, timeout=30)
        assert got == reply("old", ok=True, seq=50, covers=60)  # returned as the last answer, not good
        assert time.monotonic() - started < ACK_WAIT + 2  # nobody else works on it: no long wait

    run(runner, scenario())


def test_no_node_listening_answers_at_once_and_a_node_ignores_itself(
    runner: asyncio.Runner, nats_url: str
) -> None:
    async def scenario() -> None:
        async with Peer(nats_url, "asker") as asker:
            started = time.monotonic()
            assert await asker.requests.ask(REQUEST, timeout=30) is None  # no responders
            assert time.monotonic() - started < 2

            async def never(request: SnapshotRequest, send: Send) -> None:
                raise AssertionError("a node must not answer its own request")

            await serving(asker, never)  # now something listens, but it is the asker itself
            started = time.monotonic()
            assert await asker.requests.ask(REQUEST, timeout=30) is None
            assert time.monotonic() - started < ACK_WAIT + 2

    run(runner, scenario())
