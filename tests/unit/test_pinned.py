"""Writer mode pinned in one process: the heartbeat's parsing, the ranking and the alive set on real time
with short timeouts, and real heartbeats over HTTP between writers served by the real route."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import orjson
import pytest
from aiohttp import web

from sqlite_ha.security.keys import ClusterKeys
from sqlite_ha.server.http.body import body_middleware
from sqlite_ha.server.http.errors import error_middleware
from sqlite_ha.server.http.heartbeat import LIMITS, HeartbeatRoute
from sqlite_ha.testing import free_port
from sqlite_ha.writer.heartbeat import MAX_SIZE, BadHeartbeat, Heartbeat, UnknownSender
from sqlite_ha.writer.pinned import PinnedWriter
from sqlite_ha.writer.role import WriterMode

T = TypeVar("T")
KEYS = ClusterKeys.from_text("unit-test-cluster-secret-0123456789")
TIMEOUT = 0.4
INTERVAL = 0.1
NOBODY = [f"http://127.0.0.1:{free_port()}" for _ in range(3)]  # nothing listens there: refused at once


def run(coro: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(20):
            return await coro()

    return asyncio.run(bounded())


def writer(node_id: str = "b", peers: list[str] | None = None, *, timeout: float = TIMEOUT) -> PinnedWriter:
    return PinnedWriter(
        f"name-{node_id}",
        node_id=node_id,
        local_target="http://127.0.0.1:1",
        peers=NOBODY[:2] if peers is None else peers,
        interval=INTERVAL,
        timeout=timeout,
        keys=None,
        pg_port=5432,
    )


def beat(target: str, node_id: str, seq: int = 1, *, boot: str = "boot1", **kwargs: Any) -> Heartbeat:
    return Heartbeat(node_id=node_id, target=target, node=f"name-{node_id}", boot=boot, seq=seq, **kwargs)


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> float:
    """Seconds until ``condition`` held (polled every 10 ms); TimeoutError after ``timeout``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


def pinned(w: PinnedWriter) -> str | None:
    current = w.current()
    return None if current is None else current.node


# ------------------------------------------------------------------------------------ the message
def test_the_plugins_shape_parses_and_ours_round_trips() -> None:
    seed = Heartbeat.decode(b'{"node_id": "n1", "target": "http://10.0.0.1:8080/"}')
    assert (seed.node_id, seed.target, seed.boot, seed.seq, seed.starting) == (
        "n1",
        "http://10.0.0.1:8080",
        "",
        0,
        False,
    )
    ours = beat("http://h:1", "n2", 7, pg_port=5433, starting=True, writer="n1")
    assert Heartbeat.decode(ours.encode()) == ours
    doc = orjson.loads(ours.encode())
    doc["future_field"] = {"ignored": True}
    assert Heartbeat.decode(orjson.dumps(doc)) == ours


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"not json", "a JSON object"),
        (b"[1, 2]", "not list"),
        (b'{"target": "http://h:1"}', "'node_id' must be a string"),
        (b'{"node_id": "n1"}', "'target' must be a string"),
        (b'{"node_id": "n 1", "target": "http://h:1"}', "'node_id' is malformed"),
        (b'{"node_id": "n1", "target": "ftp://h:1"}', "'target' is malformed"),
        (b'{"node_id": "n1", "target": "http://h:1/path"}', "'target' is malformed"),
        (b'{"node_id": "n1", "target": "http://h:1", "seq": -1}', "'seq' must be an integer"),
        (b'{"node_id": "n1", "target": "http://h:1", "seq": true}', "'seq' must be an integer"),
        (b'{"node_id": "n1", "target": "http://h:1", "pg_port": 70000}', "'pg_port' must be an integer"),
        (b'{"node_id": "n1", "target": "http://h:1", "leaving": 1}', "'leaving' must be true or false"),
        (b'{"node_id": "n1", "target": "http://h:1", "boot": "a b"}', "'boot' is malformed"),
        (b" " * (MAX_SIZE + 1), f"at most {MAX_SIZE} bytes"),
    ],
)
def test_a_malformed_heartbeat_is_refused_precisely(body: bytes, message: str) -> None:
    with pytest.raises(BadHeartbeat, match=message):
        Heartbeat.decode(body)


# ------------------------------------------------------------------------------------ ranking
def test_the_lowest_node_id_by_string_order_writes() -> None:
    async def main() -> None:
        w = writer("node2")
        await w.start()
        try:
            w.ingest(beat(NOBODY[0], "node3"))
            assert pinned(w) == "node3"  # starting (NOBODY[1] not heard yet): it does not rank itself
            assert w.status()["start_up"]["over"] is False
            w.ingest(beat(NOBODY[1], "node10"))  # every peer heard: start-up over
            assert pinned(w) == "node10"  # "node10" < "node2" as strings, as the plugin sorts
            current = w.current()
            assert current is not None
            assert (current.url, current.is_self, current.pg_port) == (NOBODY[1], False, None)
            assert not w.holds()
            assert not w.is_writer()
            status = w.status()
            assert status["role"] == "follower"
            assert [a["node_id"] for a in status["alive"]] == ["node10", "node2", "node3"]
            assert status["start_up"]["why"] == "every peer answered"
        finally:
            await w.close()

    run(main)


def test_start_up_waits_for_every_peer_or_one_timeout() -> None:
    async def main() -> None:
        w = writer("a")
        await w.start()
        try:
            assert pinned(w) is None
            assert w.status()["role"] == "candidate"
            w.ingest(beat(NOBODY[0], "b"))
            assert pinned(w) == "b"  # the lowest ready node it knows, until it may rank itself
            assert not w.holds()
            took = await until(lambda: w.holds())
            assert pinned(w) == "a"
            assert took >= TIMEOUT * 0.8  # (part of the timeout had passed before ``until`` began)
            assert w.status()["start_up"]["why"] == "no answer from 1"
            assert w.heartbeat().starting is False
        finally:
            await w.close()

    run(main)


def test_a_starting_peer_is_not_ranked_until_it_is_ready() -> None:
    async def main() -> None:
        w = writer("b", NOBODY[:1])
        await w.start()
        try:
            w.ingest(beat(NOBODY[0], "a", 1, starting=True))
            assert pinned(w) == "b"
            assert w.holds()
            w.ingest(beat(NOBODY[0], "a", 2))
            assert pinned(w) == "a"
            assert not w.holds()
        finally:
            await w.close()

    run(main)


def test_a_silent_peer_drops_out_after_the_timeout_and_a_leaving_one_at_once() -> None:
    async def main() -> None:
        w = writer("b")
        await w.start()
        try:
            w.ingest(beat(NOBODY[0], "a"))
            w.ingest(beat(NOBODY[1], "c"))
            first = w.current()
            assert first is not None
            assert first.node == "a"
            gone = await until(lambda: pinned(w) == "b")
            assert gone < TIMEOUT + 0.1
            second = w.current()
            assert second is not None
            assert second.is_self
            assert second.pg_port == 5432
            assert first.epoch is not None
            assert second.epoch == first.epoch + 1
            assert second.since is not None
            assert first.since is not None
            assert second.since > first.since
            w.ingest(beat(NOBODY[0], "a", boot="boot2"))  # it restarted: a new process
            assert pinned(w) == "a"
            assert w.status()["peers"][0]["restarts"] == 1
            w.ingest(beat(NOBODY[0], "a", 2, boot="boot2", leaving=True))
            assert pinned(w) == "b"  # at once, not after the timeout
        finally:
            await w.close()

    run(main)


def test_a_delayed_heartbeat_cannot_revive_a_peer() -> None:
    async def main() -> None:
        w = writer("b", NOBODY[:1])
        await w.start()
        try:
            w.ingest(beat(NOBODY[0], "a", 5))
            w.ingest(beat(NOBODY[0], "a", 6, leaving=True))
            w.ingest(beat(NOBODY[0], "a", 4))  # sent before the last one, arrived after it
            assert pinned(w) == "b"
            assert w.stale == 1
        finally:
            await w.close()

    run(main)


def test_only_configured_peers_and_their_own_signers_are_taken() -> None:
    async def main() -> None:
        w = writer("b")
        await w.start()
        try:
            with pytest.raises(UnknownSender, match="not one of this node's --peers"):
                w.ingest(beat("http://127.0.0.1:9", "a"))
            with pytest.raises(UnknownSender, match="signed by 'name-c'"):
                w.ingest(beat(NOBODY[0], "a"), signer="name-c")
            assert all(p.heard is None for p in w.peers.values())
            assert w.received == 0
        finally:
            await w.close()

    run(main)


def test_its_own_url_among_the_peers_is_skipped() -> None:
    w = writer("b", [*NOBODY[:1], "http://127.0.0.1:1/"])
    assert list(w.peers) == NOBODY[:1]


# ------------------------------------------------------------------------------------ over HTTP
@dataclass
class FakeNode:
    """What the heartbeat route reads of a node: its name, keys and writer mode (a real PinnedWriter)."""

    name: str
    keys: ClusterKeys | None
    writer: WriterMode


async def serve(w: PinnedWriter, keys: ClusterKeys | None, port: int) -> web.AppRunner:
    """The heartbeat route of ``w``, as a node serves it, on ``port``."""
    app = web.Application(middlewares=[error_middleware, body_middleware(1 << 20, 5.0, small=LIMITS)])
    app.router.add_post("/_ha/heartbeat", HeartbeatRoute(FakeNode(w.node, keys, w)).handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@asynccontextmanager
async def cluster(ids: list[str], keys: list[ClusterKeys | None]) -> AsyncIterator[list[PinnedWriter]]:
    ports = [free_port() for _ in ids]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    writers, runners = [], []
    for i, node_id in enumerate(ids):
        w = PinnedWriter(
            f"name-{node_id}",
            node_id=node_id,
            local_target=urls[i],
            peers=urls,
            interval=INTERVAL,
            timeout=TIMEOUT * 2,
            keys=keys[i],
            pg_port=None,
        )
        writers.append(w)
        runners.append(await serve(w, keys[i], ports[i]))
    for w in writers:
        await w.start()
    try:
        yield writers
    finally:
        for w in writers:
            await w.close()
        for runner in runners:
            await runner.cleanup()


def test_signed_heartbeats_over_http_agree_and_a_leaving_writer_is_replaced_at_once() -> None:
    async def main() -> None:
        async with cluster(["n2", "n1", "n3"], [KEYS] * 3) as (w2, w1, w3):
            await until(lambda: all(pinned(w) == "n1" for w in (w1, w2, w3)))
            assert w1.is_writer()
            assert not w2.is_writer()
            assert not w3.is_writer()
            assert all(w.status()["start_up"]["why"] == "every peer answered" for w in (w1, w2, w3))
            took = time.monotonic()
            await w1.close()
            took = await until(lambda: pinned(w2) == pinned(w3) == "n2") + time.monotonic() - took
            assert took < TIMEOUT  # its leaving heartbeat, not the timeout (0.8 s here)
            assert w2.status()["heartbeats"]["refused"] == {}

    run(main)


def test_a_node_of_another_secret_is_refused_both_ways() -> None:
    async def main() -> None:
        other = ClusterKeys.from_text("another-cluster-secret-0123456789")
        async with cluster(["n1", "n2", "n3"], [other, KEYS, KEYS]) as (w1, w2, w3):
            await until(lambda: pinned(w2) == pinned(w3) == "n2", timeout=5)
            await until(lambda: w2.status()["heartbeats"]["refused"].get("node_unauthorized", 0) > 0)
            assert pinned(w1) == "n1"  # alone: it hears nobody (cut off, it writes: the log fences it)
            peer = w2.peers[w1.local_target]
            assert peer.heard is None
            assert peer.error is not None
            assert "401" in peer.error
            assert w1.status()["heartbeats"]["refused"]["node_unauthorized"] > 0

    run(main)


def test_without_a_cluster_secret_heartbeats_go_unsigned() -> None:
    async def main() -> None:
        async with cluster(["n2", "n1"], [None, None]) as (w2, w1):
            await until(lambda: pinned(w1) == pinned(w2) == "n1")
            assert w1.is_writer()

    run(main)


def test_a_peer_that_answers_as_another_url_is_not_taken() -> None:
    """A node listed in --peers under a URL that is not its --local-target (here: localhost for 127.0.0.1)
    answers as its own URL: its answers are not taken, and the status says why."""

    async def main() -> None:
        p0, p9 = free_port(), free_port()
        url0, url9 = f"http://127.0.0.1:{p0}", f"http://127.0.0.1:{p9}"
        alias = f"http://localhost:{p9}"
        w0 = PinnedWriter(
            "name-n0",
            node_id="n0",
            local_target=url0,
            peers=[alias],
            interval=INTERVAL,
            timeout=TIMEOUT,
            keys=KEYS,
            pg_port=None,
        )
        w9 = PinnedWriter(
            "name-n9",
            node_id="n9",
            local_target=url9,
            peers=[url0],
            interval=INTERVAL,
            timeout=TIMEOUT,
            keys=KEYS,
            pg_port=None,
        )
        runners = [await serve(w0, KEYS, p0), await serve(w9, KEYS, p9)]
        await w0.start()
        await w9.start()
        try:
            peer = w0.peers[alias]
            await until(lambda: peer.error is not None and "answers as" in peer.error)
            assert peer.error is not None
            assert url9 in peer.error
            assert peer.heard is None
            await until(lambda: pinned(w9) == "n0")  # w9 hears w0's own heartbeats: it lists url0 right
        finally:
            await w0.close()
            await w9.close()
            for runner in runners:
                await runner.cleanup()

    run(main)


def test_an_unsized_or_long_heartbeat_is_refused_before_it_is_read() -> None:
    async def main() -> None:
        port = free_port()
        w = writer("b")
        runner = await serve(w, KEYS, port)

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"node_id": "a", '
            yield b'"target": "http://127.0.0.1:9"}'

        try:
            async with aiohttp.ClientSession() as session:
                for body in (chunks(), b" " * (MAX_SIZE + 1)):
                    url = f"http://127.0.0.1:{port}/_ha/heartbeat"
                    async with session.post(url, data=body) as resp:
                        assert resp.status == 413
                        error = (await resp.json())["error"]
                        assert error["code"] == "payload_too_large"
                        assert f"at most {MAX_SIZE} bytes" in error["message"]
            assert w.received == 0
        finally:
            await runner.cleanup()

    run(main)


def test_its_own_url_under_another_name_is_found_and_skipped() -> None:
    """--peers lists this node as localhost while its --local-target says 127.0.0.1: its first heartbeat
    there comes back to itself, and from then on that URL is no peer (start-up does not wait for it)."""

    async def main() -> None:
        port = free_port()
        alias = f"http://localhost:{port}"
        w = PinnedWriter(
            "name-a",
            node_id="a",
            local_target=f"http://127.0.0.1:{port}",
            peers=[alias],
            interval=INTERVAL,
            timeout=TIMEOUT * 10,
            keys=KEYS,
            pg_port=None,
        )
        runner = await serve(w, KEYS, port)
        await w.start()
        try:
            took = await until(lambda: w.holds())
            assert took < TIMEOUT * 10
            assert list(w.peers) == []
            assert w.status()["start_up"]["why"] == "every peer answered"
            assert w.refused == {"unknown_sender": 1}
        finally:
            await w.close()
            await runner.cleanup()

    run(main)
