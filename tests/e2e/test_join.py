"""Joining without an operator: while an up-to-date node is alive, a new, stopped or frozen node catches up
after the log aged out, whether or not anyone took a snapshot by hand. Real node processes, a real
nats-server."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

import nats

from sqlite_ha.replication.seal import Sealer
from sqlite_ha.replication.snapshot_request import SnapshotReply, SnapshotRequest
from sqlite_ha.security.keys import ClusterKeys
from sqlite_ha.testing import TEST_CLUSTER_SECRET, NodeProcess, nats_credentials, wait_for
from tests.conftest import NodeFactory
from tests.e2e.test_recovery import content, frozen, serves
from tests.e2e.test_snapshots import stream_state

MAX_AGE = ["--replication-max-age", "2s"]
NO_AUTO = ["--snapshot-interval", "0"]  # no automatic snapshots: only a request can bring one
BUCKET_STREAM = "OBJ_ha_replication_SNAPSHOTS"


def write_rows(node: NodeProcess, ids: range, v: str) -> int:
    seq = 0
    for i in ids:
        seq = node.query(
            {"sql": "INSERT INTO t(id, v, origin) VALUES (?, ?, ?)", "params": [i, v, node.name]}
        )["seq"]
    return int(seq)


def status(node: NodeProcess) -> dict[str, Any]:
    resp = node.request("GET", "/status")
    assert resp.status == 200, resp.body[:300]
    return dict(resp.json())


def joined_in(node: NodeProcess) -> float:
    """Seconds from the node's first log line to 'ready', by the timestamps in its log."""
    lines = node.logs().splitlines()
    stamps = [m.group(1) for line in lines if (m := re.match(r"\S+T(\d\d:\d\d:[\d.]+)Z", line))]
    ready = [line for line in lines if " ready: " in line]
    if not stamps or not ready:
        return float("nan")
    return _seconds(ready[-1].split("T", 1)[1].split("Z", 1)[0]) - _seconds(stamps[0])


def _seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def obj_stream_last_seq(nats_port: int) -> int:
    async def read() -> int:
        nc = await nats.connect(f"nats://127.0.0.1:{nats_port}", **nats_credentials())
        try:
            info = await nc.jetstream().stream_info(BUCKET_STREAM)
            return int(info.state.last_seq)
        finally:
            await nc.close()

    return asyncio.run(read())


SEALER = Sealer(ClusterKeys.from_text(TEST_CLUSTER_SECRET))  # requests are signed as the nodes' are


def ask(nats_port: int, database: str, need: int, within: float) -> list[SnapshotReply]:
    """Send a snapshot request as a node would and collect every reply that comes ``within`` seconds."""

    async def run() -> list[SnapshotReply]:
        nc = await nats.connect(f"nats://127.0.0.1:{nats_port}", **nats_credentials())
        try:
            inbox = nc.new_inbox()
            sub = await nc.subscribe(inbox)
            request = SnapshotRequest(database=database, node="the-test", need=need)
            subject = f"_HA.ha_replication.snapshot.{database.replace('.', '_')}"
            sealed = SEALER.seal(subject, request.encode(), kind=b"snapshot_request")
            await nc.publish(subject, sealed, reply=inbox)
            replies, deadline = [], time.monotonic() + within
            while (left := deadline - time.monotonic()) > 0:
                try:
                    msg = await sub.next_msg(timeout=left)
                except (TimeoutError, nats.errors.TimeoutError):
                    break
                reply = SnapshotReply.decode(SEALER.open(inbox, msg.data, kind=b"snapshot_reply"))
                if not reply.pending:
                    replies.append(reply)
            return replies
        finally:
            await nc.close()

    return asyncio.run(run())


def start_cluster(node_factory: NodeFactory, extra: list[str], n: int = 2) -> list[NodeProcess]:
    n1 = node_factory(args=["app.db", *MAX_AGE, *extra], nats_port=None, name="node1")
    url = f"nats://127.0.0.1:{n1.nats_port}"
    others = [
        node_factory(args=["app.db", "--replication-url", url, *MAX_AGE, *extra], name=f"node{i}")
        for i in range(2, n + 1)
    ]
    n1.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, origin TEXT)"})
    return [n1, *others]


def test_a_new_node_joins_after_the_log_aged_out_with_default_snapshots(node_factory: NodeFactory) -> None:
    n1, n2 = start_cluster(node_factory, [])
    write_rows(n1, range(0, 100), "from node1")
    write_rows(n2, range(100, 200), "from node2")
    n1.query({"sql": "UPDATE t SET v = 'updated' WHERE id % 7 = 0"})
    wait_for(lambda: stream_state(n1.nats_port or 0)[0] == 0, 30, "the log to age out")
    # nobody took a snapshot by hand: a node took one before the log's retention dropped what none covered
    took = sum(status(n)["snapshots"]["before_retention"] for n in (n1, n2))
    assert took >= 1
    expected = content(n1)
    assert len(expected) == 200

    started = time.monotonic()
    n3 = node_factory(args=["app.db", "--replication-url", f"nats://127.0.0.1:{n1.nats_port}", *MAX_AGE])
    elapsed = time.monotonic() - started
    print(f"\njoin with default snapshots: {elapsed:.2f}s to ready, {joined_in(n3):.2f}s by the node's log")
    assert "installed the snapshot" in n3.logs()
    assert content(n3) == expected
    seq = write_rows(n3, range(1000, 1001), "after")
    assert content(n1, seq) == content(n3, seq)


def test_a_new_node_joins_by_asking_when_no_snapshot_exists(node_factory: NodeFactory) -> None:
    n1, n2 = start_cluster(node_factory, NO_AUTO)
    write_rows(n1, range(0, 100), "from node1")
    write_rows(n2, range(100, 200), "from node2")
    wait_for(lambda: stream_state(n1.nats_port or 0)[0] == 0, 30, "the log to age out")
    assert n1.request("GET", "/snapshot").status == 404  # there is none
    expected = content(n1)

    started = time.monotonic()
    n3 = node_factory(
        args=["app.db", "--replication-url", f"nats://127.0.0.1:{n1.nats_port}", *MAX_AGE, *NO_AUTO]
    )
    elapsed = time.monotonic() - started
    print(f"\njoin by asking: {elapsed:.2f}s to ready, {joined_in(n3):.2f}s by the node's log")
    logs = n3.logs()
    assert "asking the live nodes" in logs
    assert "installed the snapshot" in logs
    assert content(n3) == expected
    answered = [status(n)["snapshots"]["answered"] for n in (n1, n2)]
    assert sum(answered) >= 1
    seq = write_rows(n1, range(1000, 1001), "after")
    assert content(n3, seq) == content(n1, seq)


def test_a_node_joins_by_asking_while_writes_go_on(node_factory: NodeFactory) -> None:
    n1, n2 = start_cluster(node_factory, NO_AUTO)
    write_rows(n1, range(0, 50), "before")
    wait_for(lambda: stream_state(n1.nats_port or 0)[0] == 0, 30, "the log to age out")
    acked: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def writer(node: NodeProcess, base: int) -> None:
        i = base
        while not stop.is_set():
            body = {"sql": "INSERT INTO t(id, v, origin) VALUES (?, 'w', ?)", "params": [i, node.name]}
            resp = node.request("POST", "/query", body)
            if resp.status == 200:
                acked.append(i)
            else:
                failures.append(f"{node.name}: {resp.status} {resp.body[:200]!r}")
            i += 1

    threads = [threading.Thread(target=writer, args=(n, b)) for n, b in ((n1, 10_000), (n2, 20_000))]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(acked) > 50, 30, "writes to flow")
        # the answering nodes always have change sets pending: they prove they are caught up by applying
        # the log's end as it was when asked
        n3 = node_factory(
            args=["app.db", "--replication-url", f"nats://127.0.0.1:{n1.nats_port}", *MAX_AGE, *NO_AUTO]
        )
        joined = len(acked)
        wait_for(lambda: len(acked) > joined + 100, 30, "more writes after the join")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures
    assert "installed the snapshot" in n3.logs()
    last = write_rows(n1, range(-1, 0), "last")
    expected = content(n1, last)
    assert sorted(row[0] for row in expected) == sorted([-1, *range(50), *acked])
    assert content(n3, last) == expected
    assert content(n2, last) == expected


def test_stopped_and_frozen_nodes_recover_by_asking(node_factory: NodeFactory) -> None:
    n1, n2, n3 = start_cluster(node_factory, NO_AUTO, n=3)
    for i, node in enumerate((n1, n2, n3)):
        write_rows(node, range(i, i + 1), "first")
    wait_for(lambda: len(content(n3)) == 3, 10, "node3 to apply the first rows")
    assert n3.stop() == 0  # stopped across the age-out
    assert n2.proc is not None
    pid = n2.proc.pid
    answers: list[int] = []
    # a client writes to the frozen node: the node serves it the moment it runs again, before it can
    # notice its gap, so the write lands in the log after the hole, in its outbox until it sees it back
    client = threading.Thread(
        target=lambda: answers.append(
            n2.request(
                "POST",
                "/query",
                {"sql": "INSERT INTO t VALUES (500, 'sent while frozen', 'node2')"},
                timeout=60,
            ).status
        )
    )
    with frozen(n2):  # frozen across the age-out
        client.start()
        write_rows(n1, range(3, 303), "while away")
        n1.query({"sql": "UPDATE t SET v = 'updated' WHERE id = 1"})
        n1.query({"sql": "DELETE FROM t WHERE id = 3"})
        wait_for(lambda: stream_state(n1.nats_port or 0)[0] == 0, 30, "the log to age out")
    client.join()
    assert answers[0] in (200, 503), answers  # 503: it noticed the gap first (refused, nothing written)

    # the frozen node finds the gap, asks, installs what node1 stored for it, all while it runs
    wait_for(lambda: "recovered from the snapshot" in n2.logs(), 60, "node2 to recover live")
    expected = content(n1)
    assert len(expected) == (303 if answers[0] == 200 else 302)
    wait_for(lambda: serves(n2) and content(n2) == expected, 10, "node2 to have every row")
    assert n2.proc.pid == pid
    assert n2.proc.poll() is None
    assert "asking the live nodes" in n2.logs()
    assert n2.request("GET", "/readyz").status == 200

    n3.start()  # the stopped one asks at start
    assert "installed the snapshot" in n3.logs()
    assert content(n3) == expected
    seqs = [write_rows(node, range(1000 + i, 1001 + i), "after") for i, node in enumerate((n1, n2, n3))]
    final = content(n1, max(seqs))
    assert len(final) == len(expected) + 3
    for node in (n2, n3):
        assert content(node, max(seqs)) == final


def test_only_an_up_to_date_node_answers_a_snapshot_request(node_factory: NodeFactory) -> None:
    # the NATS server lives in a node of its own that does not serve app.db: it stays silent
    hub = node_factory(args=["hub.db", *MAX_AGE, *NO_AUTO], nats_port=None, name="hub")
    port = hub.nats_port or 0
    url = f"nats://127.0.0.1:{port}"
    n1 = node_factory(args=["app.db", "--replication-url", url, *MAX_AGE, *NO_AUTO], name="node1")
    n2 = node_factory(args=["app.db", "--replication-url", url, *MAX_AGE, *NO_AUTO], name="node2")
    n1.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, origin TEXT)"})
    write_rows(n1, range(0, 10), "before")
    with frozen(n2):
        # more change sets than one pull request carries: the rest never reaches the frozen node
        write_rows(n1, range(10, 310), "while node2 is frozen")
        assert n1.stop() == 0  # the only up-to-date node goes away with everything in its file
        wait_for(lambda: stream_state(port)[0] == 0, 30, "the log to age out")
    # node2 finds its gap; the hub is silent, node2 itself cannot answer: no snapshot, it keeps refusing
    wait_for(lambda: "refusing requests" in n2.logs(), 30, "node2 to notice the gap")
    wait_for(lambda: "no live node answered" in n2.logs(), 30, "node2 to ask in vain")
    assert n2.request("POST", "/query", {"sql": "SELECT count(*) FROM t"}).status == 503
    first = stream_state(port)[1]
    replies = ask(port, "app.db", first - 1, within=3.0)
    assert [(r.node, r.ok) for r in replies] == [("node2", False)]
    assert "gap" in (replies[0].error or "")
    assert hub.request("GET", "/snapshot").status == 404  # nobody stored a stale snapshot
    # and a new node cannot start: it is told why rather than served stale data
    n3 = node_factory(
        args=["app.db", "--replication-url", url, *MAX_AGE, *NO_AUTO], name="node3", start=False
    )
    n3.start(wait_ready=False)
    assert n3.proc is not None
    assert n3.proc.wait(60) == 1
    assert "node2 refused: this node has a gap in the log itself" in n3.logs()

    n1.start()  # up to date again: it has every change set the log ever held
    wait_for(lambda: serves(n2), 60, "node2 to recover from node1's answer")
    expected = content(n1)
    assert len(expected) == 310
    assert content(n2) == expected
    replies = ask(port, "app.db", first - 1, within=3.0)
    good = [r for r in replies if r.ok]
    assert good, replies
    assert all(r.covers >= first - 1 for r in good)


def test_periodic_snapshots_skip_unchanged_databases(node_factory: NodeFactory) -> None:
    every = ["--snapshot-interval", "1s"]
    n1 = node_factory(args=["app.db", *every], nats_port=None, name="node1")
    url = f"nats://127.0.0.1:{n1.nats_port}"
    others = [
        node_factory(args=["app.db", "--replication-url", url, *every], name=f"node{i}") for i in (2, 3)
    ]
    nodes = [n1, *others]

    def rounds_later(n: int) -> None:
        now = [status(node)["snapshots"]["rounds"] for node in nodes]
        wait_for(
            lambda: all(
                status(node)["snapshots"]["rounds"] >= r + n for node, r in zip(nodes, now, strict=True)
            ),
            60,
            f"{n} more rounds on every node",
        )

    n1.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, origin TEXT)"})
    seq = write_rows(n1, range(0, 10), "once")
    wait_for(lambda: n1.request("GET", "/snapshot").headers.get("X-Sequence") == str(seq), 30, "a snapshot")
    rounds_later(2)  # an upload under way when the snapshot appeared is over
    stored = obj_stream_last_seq(n1.nats_port or 0)
    taken = sum(status(n)["snapshots"]["taken"] for n in nodes)
    rounds_later(4)
    # nothing changed: not one message more in the object store (no new object, not even new metadata)
    assert obj_stream_last_seq(n1.nats_port or 0) == stored
    assert sum(status(n)["snapshots"]["taken"] for n in nodes) == taken
    assert all(status(n)["snapshots"]["skipped"] > 0 for n in nodes)
    # a change is snapshotted again, typically by one node only (the others find it stored)
    seq = write_rows(others[0], range(10, 11), "changed")
    wait_for(lambda: n1.request("GET", "/snapshot").headers.get("X-Sequence") == str(seq), 30, "a new one")
    rounds_later(2)
    stored_for_one = sum(status(n)["snapshots"]["taken"] for n in nodes) - taken
    print(f"\nsnapshots stored for one write on 3 nodes: {stored_for_one}")
    assert obj_stream_last_seq(n1.nats_port or 0) > stored


def limit_stream_messages(nats_port: int, max_msgs: int) -> None:
    """An operator's limit on the stream: JetStream drops the oldest change sets beyond ``max_msgs``."""

    async def run() -> None:
        nc = await nats.connect(f"nats://127.0.0.1:{nats_port}", **nats_credentials())
        try:
            js = nc.jetstream()
            info = await js.stream_info("ha_replication")
            await js.update_stream(info.config.evolve(max_msgs=max_msgs))
        finally:
            await nc.close()

    asyncio.run(run())


def test_a_snapshot_is_taken_before_a_message_limit_drops_uncovered_change_sets(
    node_factory: NodeFactory,
) -> None:
    n1 = node_factory(args=["app.db", "--snapshot-interval", "1s"], nats_port=None, name="node1")
    port = n1.nats_port or 0
    n1.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, origin TEXT)"})
    limit_stream_messages(port, 50)
    for start in range(0, 400, 4):  # faster than one snapshot a second can cover with 50 messages kept
        write_rows(n1, range(start, start + 4), "bulk")
    assert stream_state(port)[1] > 1  # the log dropped the oldest change sets
    wait_for(lambda: "the log keeps 50" in n1.logs(), 30, "a snapshot before the message limit")
    assert status(n1)["snapshots"]["before_retention"] >= 1
    seq = write_rows(n1, range(1000, 1001), "last")
    n2 = node_factory(args=["app.db", "--replication-url", f"nats://127.0.0.1:{port}", *NO_AUTO])
    assert "installed the snapshot" in n2.logs()
    assert content(n2, seq) == content(n1)


def test_a_node_stopped_with_writes_the_log_never_took_rejoins_after_the_log_aged_out(
    node_factory: NodeFactory,
) -> None:
    hub = node_factory(args=["hub.db", *MAX_AGE, *NO_AUTO], nats_port=None, name="hub")
    url = f"nats://127.0.0.1:{hub.nats_port}"
    n1 = node_factory(args=["app.db", "--replication-url", url, *MAX_AGE, *NO_AUTO], name="node1")
    async_args = ["--async-replication", "--replication-timeout", "1s"]
    n2 = node_factory(
        args=["app.db", "--replication-url", url, *MAX_AGE, *NO_AUTO, *async_args], name="node2"
    )
    n1.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, origin TEXT)"})
    wait_for(lambda: serves(n2) and content(n2) == [], 10, "node2 to have the table")
    with frozen(hub):  # the log does not answer: node2's writes are answered and stay in its outbox
        for i in range(500, 503):
            n2.query({"sql": "INSERT INTO t VALUES (?, 'async, the log away', 'node2')", "params": [i]})
        assert n2.stop() == 0
    write_rows(n1, range(0, 300), "while node2 is down")
    wait_for(lambda: stream_state(hub.nats_port or 0)[0] == 0, 30, "the log to age out")

    n2.start()  # it must neither refuse to start (its outbox) nor lose those writes (the snapshot)
    assert "installed the snapshot" in n2.logs()
    wait_for(lambda: len(content(n1)) == 303, 30, "node2's writes to reach node1")
    seq = write_rows(n1, range(1000, 1001), "after")
    expected = content(n1, seq)
    assert [row[0] for row in expected if row[2] == "node2"] == [500, 501, 502]
    assert content(n2, seq) == expected
