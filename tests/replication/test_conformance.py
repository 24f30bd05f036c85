"""One conformance suite for every ``Replicator`` driver: local, in-memory hub and JetStream (a real
nats-server), plus what only JetStream has: durable consumers, consumer admin, outages, stream settings."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sqlite_ha.natsd import NatsServer, NatsServerOptions
from sqlite_ha.replication.jetstream.common import parse_policy
from sqlite_ha.replication.jetstream.connection import NatsConnection
from sqlite_ha.replication.jetstream.driver import JetStreamReplicator
from sqlite_ha.replication.memory import LocalReplicator, MemoryHub, MemoryReplicator
from sqlite_ha.replication.replicator import (
    Delivery,
    PublishTimeout,
    ReplicationError,
    Replicator,
    Subscription,
)
from sqlite_ha.testing import free_port

T = TypeVar("T")
DRIVERS = ["local", "memory", "jetstream"]
WAIT = 15.0


# ---------------------------------------------------------------------------------------------- harness
class Aio:
    """One event loop for the module (the shared nats-server lives in it); ``run`` bounds every test."""

    def __init__(self, runner: asyncio.Runner) -> None:
        self.runner = runner

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 90.0) -> T:
        return self.runner.run(self._bounded(coro, timeout))

    @staticmethod
    async def _bounded(coro: Coroutine[Any, Any, T], timeout: float) -> T:
        # Not asyncio.wait_for: when the body swallows the cancellation, wait_for returns as if it passed.
        task = asyncio.ensure_future(coro)
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=5)
            raise AssertionError(f"the test did not finish within {timeout:g}s")
        return task.result()


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.01)


class Recorder:
    """A handler that records batches; ``fail`` makes its next calls raise."""

    def __init__(self, fail: int = 0) -> None:
        self.batches: list[list[Delivery]] = []
        self.failed: list[list[Delivery]] = []
        self.fail = fail

    async def __call__(self, batch: Sequence[Delivery]) -> None:
        if self.fail > 0:
            self.fail -= 1
            self.failed.append(list(batch))
            raise RuntimeError("handler failure on purpose")
        self.batches.append(list(batch))

    @property
    def seqs(self) -> list[int]:
        return [d.seq for b in self.batches for d in b]

    @property
    def deliveries(self) -> list[Delivery]:
        return [d for b in self.batches for d in b]

    async def wait_for(self, seqs: list[int], what: str = "deliveries") -> None:
        await wait_until(lambda: len(self.seqs) >= len(seqs), f"{what}: {len(seqs)} change sets")
        assert self.seqs == seqs


class Harness:
    """Makes started replicators ("nodes") of one driver sharing one log; closes them all at the end."""

    def __init__(self, kind: str, url: str | None) -> None:
        self.kind = kind
        self.url = url
        self.stream = f"t{uuid.uuid4().hex[:12]}"
        self.hub = MemoryHub(auto=True)
        self.local: LocalReplicator | None = None
        self.replicators: list[Replicator] = []
        self.conns: list[NatsConnection] = []

    async def node(self, name: str, **kwargs: Any) -> Replicator:
        r: Replicator
        if self.kind == "local":  # one node alone: every "node" is the same replicator
            if self.local is None:
                self.local = LocalReplicator(name)
            r = self.local
        elif self.kind == "memory":
            r = self.hub.connect(name)
        else:
            assert self.url is not None
            conn = NatsConnection(self.url, name=name)
            conn.start()
            self.conns.append(conn)
            r = JetStreamReplicator(conn, node=name, stream=self.stream, **kwargs)
        await r.start()
        self.replicators.append(r)
        return r

    async def aclose(self) -> None:
        for r in self.replicators:
            await r.close()
        for conn in self.conns:
            await conn.close()


def test_every_driver_implements_the_protocol() -> None:
    """Every method of ``Replicator`` exists with the same parameters in every driver (mypy does not check
    the tests, and nothing else assigns every driver to a ``Replicator``)."""
    members = [n for n, v in vars(Replicator).items() if inspect.isfunction(v) and not n.startswith("_")]
    for driver in (LocalReplicator, MemoryReplicator, JetStreamReplicator):
        for member in members:
            assert hasattr(driver, member), f"{driver.__name__} lacks {member}"
            want = list(inspect.signature(getattr(Replicator, member)).parameters)
            got = list(inspect.signature(getattr(driver, member)).parameters)
            assert got == want, f"{driver.__name__}.{member}{got} != {want}"
            is_async = inspect.iscoroutinefunction(getattr(Replicator, member))
            assert inspect.iscoroutinefunction(getattr(driver, member)) == is_async, member


@pytest.fixture(scope="module")
def aio() -> Iterator[Aio]:
    with asyncio.Runner() as runner:
        yield Aio(runner)


@pytest.fixture(scope="module")
def nats_url(aio: Aio, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = NatsServer(
        NatsServerOptions(name="conformance", port=free_port(), store_dir=tmp_path_factory.mktemp("nats"))
    )
    aio.run(server.start())
    try:
        yield server.url
    finally:
        aio.run(server.stop())


@pytest.fixture(params=DRIVERS)
def harness(request: pytest.FixtureRequest, aio: Aio) -> Iterator[Harness]:
    url = request.getfixturevalue("nats_url") if request.param == "jetstream" else None
    h = Harness(request.param, url)
    yield h
    aio.run(h.aclose())


def sub(node: str, database: str = "main.db", after_seq: int = 0, policy: str = "all") -> Subscription:
    consumer = f"{node}_{database.replace('.', '_')}"
    return Subscription(database=database, consumer=consumer, after_seq=after_seq, policy=policy)


async def publish_many(r: Replicator, database: str, n: int, prefix: str = "m") -> list[int]:
    return [
        await r.publish(database, f"{prefix}{i}".encode(), msg_id=f"{prefix}-{uuid.uuid4().hex}", timeout=5)
        for i in range(n)
    ]


# ---------------------------------------------------------------------------------------------- all drivers
def test_max_payload_is_announced_and_far_larger_messages_refused(aio: Aio, harness: Harness) -> None:
    """What the replicated layer splits change sets by: a payload of ``max_payload()`` bytes is stored; one
    far larger is refused for good (not retryable), never stored in part."""

    async def body() -> None:
        if harness.kind == "memory":
            harness.hub.max_payload = 64 * 1024
        r = await harness.node("n1")
        limit = r.max_payload()
        if harness.kind == "local":
            assert limit is None  # one node alone: no log to fit
            return
        assert limit is not None
        assert limit > 0
        seq = await r.publish("a.db", b"x" * limit, msg_id=f"full-{uuid.uuid4().hex}", timeout=10)
        with pytest.raises(ReplicationError) as info:
            await r.publish("a.db", b"x" * (2 * limit), msg_id=f"over-{uuid.uuid4().hex}", timeout=10)
        assert not info.value.retryable
        assert await r.last_seq("a.db") == seq

    aio.run(body())


def test_rowid_slots_claimed_at_once_are_distinct(aio: Aio, harness: Harness) -> None:
    """Nodes starting together race for the bucket and the slots: compare-and-set keeps them apart."""

    async def body() -> None:
        if harness.kind == "local":
            return
        names = [f"r{i}" for i in range(4)]
        nodes = [await harness.node(name) for name in names]
        slots = await asyncio.gather(*(r.rowid_slot(name, 8) for r, name in zip(nodes, names, strict=True)))
        assert {s.stride for s in slots} == {8}
        assert len({s.residue for s in slots}) == 4

    aio.run(body())


def test_rowid_slots_are_distinct_shared_and_kept(aio: Aio, harness: Harness) -> None:
    """Each node gets a residue no other node holds, all share one stride (the first claim's), a node asking
    again gets its own slot back, and when every slot is held the answer is a refusal, not a shared slot."""

    async def body() -> None:
        r1, r2, r3 = await harness.node("n1"), await harness.node("n2"), await harness.node("n3")
        s1 = await r1.rowid_slot("n1", 2)
        if harness.kind == "local":  # one node alone: SQLite's own keys
            assert (s1.stride, s1.residue) == (1, 1)
            return
        s2 = await r2.rowid_slot("n2", 16)  # the cluster's stride wins over what a node proposes
        assert (s1.stride, s2.stride) == (2, 2)
        assert {s1.residue, s2.residue} == {1, 2}
        assert await r1.rowid_slot("n1", 2) == s1  # a restarted node finds its own slot by its name
        with pytest.raises(ReplicationError) as refused:
            await r3.rowid_slot("n3", 2)
        assert not refused.value.retryable
        assert "rowid slots" in refused.value.message

    aio.run(body())


def test_publish_returns_increasing_seqs_per_database(aio: Aio, harness: Harness) -> None:
    async def body() -> None:
        r = await harness.node("n1")
        seqs: dict[str, list[int]] = {"a.db": [], "b.db": []}
        for i in range(12):
            db = "a.db" if i % 3 else "b.db"
            seqs[db].append(await r.publish(db, b"x%d" % i, msg_id=f"id-{i}", timeout=5))
        for db, got in seqs.items():
            assert got[0] > 0
            assert all(b > a for a, b in itertools.pairwise(got)), got
            assert await r.last_seq(db) == got[-1]

    aio.run(body())


def test_dedup_by_msg_id_returns_the_same_seq_and_stores_nothing(aio: Aio, harness: Harness) -> None:
    async def body() -> None:
        r = await harness.node("n1")
        first = await r.publish("main.db", b"one", msg_id="same", timeout=5)
        again = await r.publish("main.db", b"one, retried", msg_id="same", timeout=5)
        assert again == first
        assert await r.last_seq("main.db") == first
        later = await r.publish("main.db", b"two", msg_id="other", timeout=5)
        assert later > first
        assert await r.publish("main.db", b"one", msg_id="same", timeout=5) == first
        assert await r.last_seq("main.db") == later

        rec = Recorder()
        await r.subscribe(sub("n1"), rec)
        await rec.wait_for([first, later])
        assert [d.payload for d in rec.deliveries] == [b"one", b"two"]

    aio.run(body())


def test_subscribe_delivers_after_after_seq_in_order_in_batches(aio: Aio, harness: Harness) -> None:
    async def body() -> None:
        r = await harness.node("n1")
        seqs = await publish_many(r, "main.db", 40)
        await publish_many(r, "other.db", 5)  # another database's change sets are not delivered
        rec = Recorder()
        await r.subscribe(sub("n1", after_seq=seqs[9]), rec)
        await rec.wait_for(seqs[10:], "backlog")
        assert [d.payload for d in rec.deliveries] == [f"m{i}".encode() for i in range(10, 40)]
        assert all(d.msg_id and d.msg_id.startswith("m-") for d in rec.deliveries)
        assert all(d.published_at and abs(d.published_at - time.time()) < 300 for d in rec.deliveries)
        assert max(len(b) for b in rec.batches) > 1, "the backlog should come in batches"

        later = await publish_many(r, "main.db", 7, prefix="late")
        await rec.wait_for(seqs[10:] + later, "later publishes")

    aio.run(body())


def test_consumers_positions_and_retention_are_declared_by_every_driver(aio: Aio, harness: Harness) -> None:
    """What the node asks of any log (consumer admin, the stream's end, retention) answers the same way in
    every driver: nothing is probed with getattr any more."""

    async def body() -> None:
        r = await harness.node("n1")
        rec = Recorder()
        await r.subscribe(sub("n1"), rec)
        seqs = await publish_many(r, "main.db", 4)
        await publish_many(r, "other.db", 2)
        await rec.wait_for(seqs)

        listed = {c["name"]: c for c in await r.consumers()}
        assert "n1_main_db" in listed
        one = listed["n1_main_db"]
        assert (one["node"], one["database"]) == ("n1", "main.db")
        delivered = one.get("delivered_stream_seq", one.get("delivered_seq"))
        assert delivered == seqs[-1]
        assert (await r.consumer("n1_main_db") or {})["num_pending"] == 0
        assert await r.consumer("nobody_main_db") is None
        assert await r.delete_consumer("nobody_main_db") is False

        end = await r.stream_last_seq()
        assert end is None or end >= max(seqs), end
        assert (await r.oldest_after("main.db", 0) or (0, 0.0))[0] == seqs[0]
        first, stored_at = await r.oldest_after("main.db", seqs[1]) or (0, 0.0)
        assert first == seqs[2]
        assert abs(stored_at - time.time()) < 300
        assert await r.oldest_after("main.db", seqs[-1]) is None
        # the database's own change sets after a position (a read replica's lag), not the other's between
        assert [await r.count_after("main.db", s) for s in (0, seqs[1], seqs[-1])] == [4, 2, 0]
        assert await r.count_after("other.db", 0) == 2
        kept = await r.retention()
        assert kept is None or kept.last_seq >= max(seqs)
        assert r.max_age is None or r.max_age >= 0

    aio.run(body())


def test_two_nodes_both_get_everything(aio: Aio, harness: Harness) -> None:
    async def body() -> None:
        n1, n2 = await harness.node("n1"), await harness.node("n2")
        r1, r2 = Recorder(), Recorder()
        await n1.subscribe(sub("n1"), r1)
        await n2.subscribe(sub("n2"), r2)
        seqs = []
        for i in range(20):
            seqs.append(await (n1 if i % 2 else n2).publish("main.db", b"%d" % i, msg_id=f"x{i}", timeout=5))
        await r1.wait_for(seqs, "node 1")
        await r2.wait_for(seqs, "node 2")
        assert [d.payload for d in r1.deliveries] == [d.payload for d in r2.deliveries]

    aio.run(body())


def test_failing_handler_gets_the_same_change_sets_again(aio: Aio, harness: Harness) -> None:
    async def body() -> None:
        r = await harness.node("n1")
        seqs = await publish_many(r, "main.db", 10)
        rec = Recorder(fail=2)
        await r.subscribe(sub("n1"), rec)
        await rec.wait_for(seqs, "redelivery")
        assert len(rec.failed) == 2
        assert [f[0].seq for f in rec.failed] == [seqs[0], seqs[0]]
        assert rec.batches[0][0].seq == seqs[0]

        more = await publish_many(r, "main.db", 5, prefix="more")
        rec.fail = 1
        evenmore = await publish_many(r, "main.db", 3, prefix="even")
        await rec.wait_for(seqs + more + evenmore, "nothing lost or skipped")

    aio.run(body())


def test_available_while_connected(aio: Aio, harness: Harness) -> None:
    async def body() -> None:
        r = await harness.node("n1")
        assert r.available() is True

    aio.run(body())


def test_last_seq_per_database(aio: Aio, harness: Harness) -> None:
    async def body() -> None:
        r = await harness.node("n1")
        assert await r.last_seq("unknown.db") == 0
        a = await publish_many(r, "a.db", 3)
        b = await publish_many(r, "b.db", 2)
        assert await r.last_seq("a.db") == a[-1]
        assert await r.last_seq("b.db") == b[-1]
        assert await r.last_seq("unknown.db") == 0

    aio.run(body())


def test_close_stops_delivery_and_is_idempotent(aio: Aio, harness: Harness) -> None:
    async def body() -> None:
        r = await harness.node("n1")
        rec = Recorder()
        await r.subscribe(sub("n1"), rec)
        first = await publish_many(r, "main.db", 3)
        await rec.wait_for(first)
        await r.close()
        await r.close()

        other = await harness.node("n2")  # the local driver has one node: then it is the closed one
        barrier = Recorder()
        await other.subscribe(sub("n2", after_seq=first[-1]), barrier)
        after = await publish_many(other, "main.db", 3, prefix="after")
        await barrier.wait_for(after, "the other subscriber")
        assert rec.seqs == first

    aio.run(body())


def test_stats_count(aio: Aio, harness: Harness) -> None:
    async def body() -> None:
        r = await harness.node("n1")
        rec = Recorder()
        await r.subscribe(sub("n1"), rec)
        seqs = await publish_many(r, "main.db", 4)
        await rec.wait_for(seqs)
        # counted once the handler has returned, which is after the recorder saw the change sets
        await wait_until(lambda: r.stats()["delivered"] >= 4, "delivered counted")
        stats = r.stats()
        assert stats["driver"] == r.name == harness.kind
        assert stats["published"] == 4
        assert stats["delivered"] == 4

    aio.run(body())


# ---------------------------------------------------------------------------------------------- JetStream
@pytest.fixture
def js(aio: Aio, nats_url: str) -> Iterator[Harness]:
    h = Harness("jetstream", nats_url)
    yield h
    aio.run(h.aclose())


def test_jetstream_seqs_are_stream_wide(aio: Aio, js: Harness) -> None:
    async def body() -> None:
        r = await js.node("n1")
        a = await r.publish("a.db", b"1", msg_id="1", timeout=5)
        b = await r.publish("b.db", b"2", msg_id="2", timeout=5)
        assert (a, b) == (1, 2)
        with pytest.raises(ReplicationError, match="already used"):  # dedup is per stream in JetStream
            await r.publish("b.db", b"1 again", msg_id="1", timeout=5)
        assert r.stats()["publish_errors"] == 1

    aio.run(body())


def test_jetstream_durable_consumer_resumes(aio: Aio, js: Harness) -> None:
    async def body() -> None:
        writer = await js.node("writer")
        seqs = await publish_many(writer, "main.db", 10)
        r1 = await js.node("n1")
        assert isinstance(r1, JetStreamReplicator)
        rec = Recorder()
        await r1.subscribe(sub("n1"), rec)
        await rec.wait_for(seqs)
        created = (await acked(r1, "n1_main_db", seqs[-1]))["created"]
        await r1.close()

        # The node is ahead of its consumer (it stored 12, the consumer saw 10): 11 and 12 are skipped.
        more = await publish_many(writer, "main.db", 5, prefix="more")
        r2 = await js.node("n1")
        assert isinstance(r2, JetStreamReplicator)
        rec2 = Recorder()
        await r2.subscribe(sub("n1", after_seq=more[1]), rec2)
        await rec2.wait_for(more[2:], "resumed delivery")
        assert (await acked(r2, "n1_main_db", more[-1]))["created"] == created, "the consumer is reused"
        await r2.close()

        # Exactly where the consumer is: it just goes on.
        extra = await publish_many(writer, "main.db", 2, prefix="extra")
        r3 = await js.node("n1")
        assert isinstance(r3, JetStreamReplicator)
        rec3 = Recorder()
        await r3.subscribe(sub("n1", after_seq=more[-1]), rec3)
        await rec3.wait_for(extra, "delivery from the consumer's position")
        assert (await acked(r3, "n1_main_db", extra[-1]))["created"] == created
        await r3.close()

        # Behind it (the node lost data, or runs in memory): the consumer is recreated at the node's position,
        # since it would never deliver again what it delivered before.
        r4 = await js.node("n1")
        rec4 = Recorder()
        await r4.subscribe(sub("n1", after_seq=seqs[4]), rec4)
        await rec4.wait_for(seqs[5:] + more + extra, "everything after the node's position")
        assert r4.stats()["subscriptions"][0]["delivered_seq"] == extra[-1]

    aio.run(body())


def test_jetstream_a_slow_reader_of_large_messages_is_not_dropped(aio: Aio, js: Harness) -> None:
    """Messages of nearly max_payload (a large change set's chunks) for a node whose handler holds the event
    loop a while (applying): one pull request must not bring more than the server keeps for a slow client
    (64 MB), or the server drops the connection mid-change-set."""

    async def body() -> None:
        writer = await js.node("writer")
        limit = writer.max_payload()
        assert limit is not None
        payload = b"c" * limit
        seqs = [
            await writer.publish("big.db", payload, msg_id=f"big-{i}-{uuid.uuid4().hex}", timeout=10)
            for i in range(12)
        ]
        reader = await js.node("reader")
        got: list[int] = []

        async def slow(batch: Sequence[Delivery]) -> None:
            time.sleep(0.3)  # noqa: ASYNC251 - on purpose: an apply that holds the loop
            got.extend(d.seq for d in batch)

        await reader.subscribe(sub("reader", "big.db"), slow)
        await wait_until(lambda: len(got) >= len(seqs), "every large message", timeout=60)
        assert got == seqs
        subscription = reader.stats()["subscriptions"][0]
        assert (subscription["resyncs"], subscription["handler_errors"]) == (0, 0)

    aio.run(body())


async def acked(r: JetStreamReplicator, consumer: str, seq: int) -> dict[str, Any]:
    """The consumer's info once its ack floor reached ``seq`` (acks are fire-and-forget)."""
    deadline = time.monotonic() + WAIT
    while True:
        info = await r.consumer(consumer)
        if info is not None and info["ack_floor_stream_seq"] >= seq:
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"consumer {consumer} never acknowledged seq {seq}: {info}")
        await asyncio.sleep(0.01)


def test_jetstream_policies(aio: Aio, js: Harness) -> None:
    async def body() -> None:
        r = await js.node("n1")
        seqs = await publish_many(r, "main.db", 6)
        with pytest.raises(ReplicationError, match="invalid replication policy"):
            await r.subscribe(sub("bad", policy="sometimes"), Recorder())
        new, last, by_seq = Recorder(), Recorder(), Recorder()
        await r.subscribe(sub("new", policy="new"), new)
        await r.subscribe(sub("last", policy="last"), last)
        await r.subscribe(sub("byseq", policy=f"by_start_sequence={seqs[3]}"), by_seq)
        later = await publish_many(r, "main.db", 2, prefix="later")
        await new.wait_for(later, "policy new")
        await last.wait_for(seqs[-1:] + later, "policy last")
        await by_seq.wait_for(seqs[3:] + later, "policy by_start_sequence")

    aio.run(body())


@pytest.mark.parametrize(
    ("policy", "ok"),
    [
        ("all", True),
        ("last", True),
        ("new", True),
        ("by_start_sequence=5", True),
        ("by_start_time=2024-01-02 03:04:05", True),
        ("by_start_sequence=0", False),
        ("by_start_sequence=x", False),
        ("by_start_time=2024-01-02", False),
        ("first", False),
        ("", False),
    ],
)
def test_policy_parsing(policy: str, ok: bool) -> None:
    if ok:
        parse_policy(policy)
    else:
        with pytest.raises(ReplicationError) as e:
            parse_policy(policy)
        assert not e.value.retryable


def test_jetstream_consumers_and_delete(aio: Aio, js: Harness) -> None:
    async def body() -> None:
        n1, n2 = await js.node("n1"), await js.node("n2")
        assert isinstance(n1, JetStreamReplicator)
        r1, r2 = Recorder(), Recorder()
        await n1.subscribe(sub("n1"), r1)
        await n2.subscribe(sub("n2"), r2)
        seqs = await publish_many(n1, "main.db", 5)
        await r1.wait_for(seqs)
        await r2.wait_for(seqs)

        await acked(n1, "n1_main_db", seqs[-1])
        await acked(n1, "n2_main_db", seqs[-1])
        listed = {c["name"]: c for c in await n1.consumers()}
        assert set(listed) == {"n1_main_db", "n2_main_db"}
        c = listed["n2_main_db"]
        assert c["filter_subject"] == f"{js.stream}.main_db"
        assert (c["node"], c["database"]) == ("n2", "main.db")
        assert c["delivered_stream_seq"] == seqs[-1]
        assert (c["num_pending"], c["num_ack_pending"]) == (0, 0)
        assert c["last_active"] is not None
        assert await n1.consumer("n2_main_db") == await n2.consumer("n2_main_db")
        assert await n1.consumer("nope") is None
        assert await n1.consumer("bad.name") is None

        assert await n1.delete_consumer("n2_main_db") is True
        assert await n1.delete_consumer("n2_main_db") is False
        # n2 still reads: its loop recreates its consumer right after what it has delivered.
        more = await publish_many(n1, "main.db", 3, prefix="more")
        await r2.wait_for(seqs + more, "delivery after the consumer was deleted")
        await r1.wait_for(seqs + more)
        assert await n1.consumer("n2_main_db") is not None

    aio.run(body())


def test_jetstream_start_is_idempotent_and_updates_the_stream(aio: Aio, js: Harness) -> None:
    async def body() -> None:
        r = await js.node("n1")
        seq = await r.publish("main.db", b"kept", msg_id="k", timeout=5)
        await r.start()
        r2 = await js.node("n2", max_age=3600.0)
        info = await js.conns[-1].jetstream().stream_info(js.stream)
        assert info.config.max_age == 3600.0
        assert info.config.num_replicas == 1
        assert info.config.duplicate_window == 120.0
        assert info.config.subjects == [f"{js.stream}.>"]
        assert await r2.last_seq("main.db") == seq

        short = await js.node("n3", max_age=30.0)  # the duplicate window cannot exceed max age
        info = await js.conns[-1].jetstream().stream_info(js.stream)
        assert (info.config.max_age, info.config.duplicate_window) == (30.0, 30.0)
        assert await short.last_seq("main.db") == seq

        conn = NatsConnection(js.url or "", name="r3")
        conn.start()
        js.conns.append(conn)
        started = time.monotonic()
        with pytest.raises(ReplicationError, match="replicas") as e:
            await JetStreamReplicator(conn, node="r3", stream=js.stream, replicas=3).start()
        assert not e.value.retryable
        assert time.monotonic() - started < 10

    aio.run(body())


def test_jetstream_start_without_nats_fails_in_time(aio: Aio) -> None:
    async def body() -> None:
        # Never connected. The connection's connect loop is not started: NatsConnection.close() can hang
        # forever when it cancels that loop while nats-py retries a refused connect (a cancellation lost in
        # asyncio.wait_for on Python 3.11, then swallowed by nats-py's retry loop): not this driver's test.
        conn = NatsConnection(f"nats://127.0.0.1:{free_port()}", name="lonely")
        started = time.monotonic()
        with pytest.raises(ReplicationError, match="not connected") as e:
            await JetStreamReplicator(conn, node="lonely", start_timeout=1.0).start()
        assert 1.0 <= time.monotonic() - started < 5
        assert e.value.retryable

    aio.run(body())


def test_jetstream_outage(aio: Aio, tmp_path: Path) -> None:
    """Publishing fails in time while the server is down; delivery resumes by itself when it is back."""

    async def body() -> None:
        server = NatsServer(NatsServerOptions(name="outage", port=free_port(), store_dir=tmp_path / "nats"))
        await server.start()
        h = Harness("jetstream", server.url)
        try:
            n1, n2 = await h.node("n1"), await h.node("n2")
            rec = Recorder()
            await n2.subscribe(sub("n2"), rec)
            before = await publish_many(n1, "main.db", 3)
            await rec.wait_for(before)

            await server.stop()
            await wait_until(lambda: not n1.available(), "the driver to notice the outage")
            started = time.monotonic()
            with pytest.raises(ReplicationError) as e:
                await n1.publish("main.db", b"lost?", msg_id="down", timeout=1.0)
            assert time.monotonic() - started < 2.5
            assert isinstance(e.value, PublishTimeout) or e.value.retryable
            stats = n1.stats()
            assert stats["publish_errors"] + stats["publish_timeouts"] == 1

            await server.start()
            await wait_until(lambda: n1.available() and n2.available(), "reconnect")
            after: list[int] = []
            for i in range(100):  # the first publishes may time out while JetStream recovers the stream
                try:
                    after.append(await n1.publish("main.db", b"after", msg_id=f"after-{i}", timeout=2))
                    break
                except ReplicationError:
                    await asyncio.sleep(0.1)
            assert after, "publishing did not resume after the server came back"
            # "down" may or may not have been stored before the server stopped: both are fine here.
            await wait_until(lambda: bool(rec.seqs) and rec.seqs[-1] == after[0], "delivery after the outage")
            assert rec.seqs[: len(before)] == before
            assert len(set(rec.seqs)) == len(rec.seqs)
        finally:
            await h.aclose()
            await server.stop()

    aio.run(body(), timeout=100)


def test_jetstream_handler_is_never_called_after_close(aio: Aio, js: Harness) -> None:
    async def body() -> None:
        r = await js.node("n1")
        started = asyncio.Event()
        release = asyncio.Event()
        calls: list[Sequence[Delivery]] = []
        finished: list[int] = []

        async def slow(batch: Sequence[Delivery]) -> None:
            calls.append(batch)
            started.set()
            await release.wait()
            finished.append(batch[-1].seq)

        await r.subscribe(sub("n1"), slow)
        await publish_many(r, "main.db", 3)
        await asyncio.wait_for(started.wait(), WAIT)
        closing = asyncio.ensure_future(r.close())
        await asyncio.sleep(0)  # let close() begin while the handler is inside a batch
        assert not closing.done()
        release.set()
        await asyncio.wait_for(closing, WAIT)
        assert len(finished) == len(calls), "close() lets a running handler call finish"

    aio.run(body())


def test_jetstream_lost_delivery_is_detected_and_recovered(aio: Aio, js: Harness) -> None:
    """A delivery the node never saw (here: taken by a second puller on its consumer, as a reconnect could
    lose it) shows as a jump in the consumer sequence; the consumer is recreated after the last change set
    delivered, even under policy ``new``, so nothing is skipped."""

    async def body() -> None:
        r = await js.node("n1", fetch_batch=1)
        entered, release = asyncio.Event(), asyncio.Event()
        rec = Recorder()

        async def handler(batch: Sequence[Delivery]) -> None:
            entered.set()
            await release.wait()
            await rec(batch)

        await r.subscribe(sub("n1", policy="new"), handler)
        first = await publish_many(r, "main.db", 1)
        await asyncio.wait_for(entered.wait(), WAIT)  # busy with the first; no pull request is open
        rest = await publish_many(r, "main.db", 2, prefix="rest")

        thief = await js.conns[0].jetstream().pull_subscribe_bind(durable="n1_main_db", stream=js.stream)
        stolen = await thief.fetch(1, timeout=5)
        assert [m.metadata.sequence.stream for m in stolen] == rest[:1]
        await thief.unsubscribe()

        release.set()
        await rec.wait_for(first + rest, "the stolen change set, in order")
        assert r.stats()["subscriptions"][0]["resyncs"] == 1
        later = await publish_many(r, "main.db", 1, prefix="later")
        await rec.wait_for(first + rest + later)

    aio.run(body())


def test_jetstream_retention_and_oldest_change_set_after_a_position(aio: Aio, js: Harness) -> None:
    """What the snapshotter reads to snapshot before the stream drops change sets no snapshot covers."""

    async def body() -> None:
        r = await js.node("n1", max_age=3600.0)
        assert isinstance(r, JetStreamReplicator)
        assert await r.oldest_after("a.db", 0) is None  # nothing yet
        before = time.time()
        a1 = await r.publish("a.db", b"1", msg_id="a1", timeout=5)
        await r.publish("b.db", b"2", msg_id="b1", timeout=5)
        a2 = await r.publish("a.db", b"3", msg_id="a2", timeout=5)
        first = await r.oldest_after("a.db", 0)
        assert first is not None
        assert first[0] == a1
        assert before - 1 <= first[1] <= time.time() + 1  # when the log stored it
        after = await r.oldest_after("a.db", a1)  # the other database's change set in between is skipped
        assert after is not None
        assert after[0] == a2
        assert await r.oldest_after("a.db", a2) is None
        keeps = await r.retention()
        assert (keeps.max_age, keeps.max_msgs, keeps.max_bytes) == (3600.0, 0, 0)
        assert (keeps.messages, keeps.first_seq, keeps.last_seq) == (3, a1, a2)
        assert keeps.bytes > 0

    aio.run(body())
