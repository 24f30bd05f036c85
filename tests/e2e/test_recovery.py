"""A cluster outlives its log: nodes that join late, were stopped, or froze across the log's max age catch
up from a snapshot and end identical to the others. Real node processes and a real nats-server."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlite_ha.testing import NodeProcess, wait_for
from tests.conftest import NodeFactory
from tests.e2e.test_snapshots import stream_state

MAX_AGE = ["--replication-max-age", "2s"]
CONTENT = "SELECT id, v, origin FROM t ORDER BY id"


def content(node: NodeProcess, min_seq: int = 0) -> list[Any]:
    path = f"/query?min_seq={min_seq}" if min_seq else "/query"
    resp = node.request("POST", path, {"sql": CONTENT})
    assert resp.status == 200, (node.name, resp.status, resp.body[:500])
    return list(resp.json()["rows"])


def serves(node: NodeProcess) -> bool:
    return node.request("POST", "/query", {"sql": "SELECT 1"}).status == 200


@contextmanager
def frozen(node: NodeProcess) -> Iterator[None]:
    """SIGSTOP the node (it keeps its connections but does nothing), SIGCONT it afterwards."""
    assert node.proc is not None
    node.proc.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        node.proc.send_signal(signal.SIGCONT)


def test_late_stopped_and_frozen_nodes_catch_up_from_the_snapshot(node_factory: NodeFactory) -> None:
    n1 = node_factory(args=["app.db", *MAX_AGE], nats_port=None, name="node1")
    url = f"nats://127.0.0.1:{n1.nats_port}"
    n2 = node_factory(args=["app.db", "--replication-url", url, *MAX_AGE], name="node2")
    n3 = node_factory(args=["app.db", "--replication-url", url, *MAX_AGE], name="node3")
    n1.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, origin TEXT)"})
    for i, node in enumerate((n1, n2, n3)):
        node.query({"sql": "INSERT INTO t(id, v, origin) VALUES (?, 'first', ?)", "params": [i, node.name]})
    assert n3.stop() == 0  # stopped across the age-out
    with frozen(n2):  # frozen across the age-out: its pull request expires, what follows never reaches it
        seq = 0
        for i in range(3, 303):  # more change sets than one pull request carries
            seq = n1.query(
                {"sql": "INSERT INTO t(id, v, origin) VALUES (?, 'while away', 'node1')", "params": [i]}
            )["seq"]
        n1.query({"sql": "UPDATE t SET v = 'updated' WHERE id = 1"})
        seq = n1.query({"sql": "DELETE FROM t WHERE id = 3"})["seq"]
        taken = n1.request("POST", "/snapshot").json()["snapshot"]
        assert taken["seq"] == seq
        wait_for(lambda: stream_state(n1.nats_port or 0)[0] == 0, 30, "the log to age out")
    expected = content(n1)
    assert len(expected) == 302

    # the frozen node finds the gap itself, refuses requests meanwhile, and recovers while running
    wait_for(lambda: "refusing requests" in n2.logs(), 30, "node2 to notice the gap")
    wait_for(lambda: serves(n2), 60, "node2 to recover from the snapshot")
    # it serves as soon as the reopened database is attached; the log line follows right after
    wait_for(lambda: "recovered from the snapshot" in n2.logs(), 10, "node2 to log its recovery")
    assert content(n2) == expected
    assert n2.request("GET", "/readyz").status == 200

    # the stopped node and a brand-new one install the snapshot at start
    n3.start()
    assert "installed the snapshot" in n3.logs()
    n4 = node_factory(args=["app.db", "--replication-url", url, *MAX_AGE], name="node4")
    assert "installed the snapshot" in n4.logs()
    for node in (n3, n4):
        assert content(node) == expected

    # and all four follow the log from there, writes from any of them included
    seqs = [
        node.query(
            {"sql": "INSERT INTO t(id, v, origin) VALUES (?, 'after', ?)", "params": [1000 + i, node.name]}
        )["seq"]
        for i, node in enumerate((n1, n2, n3, n4))
    ]
    final = content(n1, max(seqs))
    assert len(final) == 306
    for node in (n2, n3, n4):
        assert content(node, max(seqs)) == final


def test_a_snapshot_taken_during_writes_restores_without_losing_or_repeating_rows(
    node_factory: NodeFactory,
) -> None:
    n1 = node_factory(args=["app.db"], nats_port=None, name="node1")
    url = f"nats://127.0.0.1:{n1.nats_port}"
    n2 = node_factory(args=["app.db", "--replication-url", url], name="node2")
    n1.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, origin TEXT)"})
    acked: list[int] = []
    failures: list[str] = []
    stop = threading.Event()

    def writer(node: NodeProcess, base: int) -> None:
        i = base
        while not stop.is_set():
            resp = node.request(
                "POST",
                "/query",
                {"sql": "INSERT INTO t(id, v, origin) VALUES (?, 'w', ?)", "params": [i, node.name]},
            )
            if resp.status == 200:
                acked.append(i)
            else:
                failures.append(f"{node.name}: {resp.status} {resp.body[:200]!r}")
            i += 1

    threads = [threading.Thread(target=writer, args=(n, b)) for n, b in ((n1, 0), (n2, 1_000_000))]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(acked) > 200, 30, "writes to flow")
        snaps = [n.request("POST", "/snapshot").json()["snapshot"]["seq"] for n in (n1, n2, n1)]
        assert snaps == sorted(snaps)
        # a node restored from the latest snapshot (taken mid-write) while the writes go on; and a memory node
        n3 = node_factory(args=["app.db", "--replication-url", url, "--from-latest-snapshot"], name="node3")
        n4 = node_factory(
            args=["-m", "app.db", "--replication-url", url, "--from-latest-snapshot"], name="node4"
        )
        wait_for(lambda: len(acked) > 400, 30, "more writes after the restores")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures
    for node in (n3, n4):
        assert "installed the snapshot" in node.logs()
    last = n1.query({"sql": "INSERT INTO t(id, v, origin) VALUES (-1, 'last', 'node1')"})["seq"]
    expected = content(n1, last)
    assert sorted(row[0] for row in expected) == sorted([-1, *acked])  # every acknowledged write, once
    for node in (n2, n3, n4):
        assert content(node, last) == expected


def test_without_any_snapshot_a_late_node_replays_the_whole_log(node_factory: NodeFactory) -> None:
    n1 = node_factory(args=["app.db"], nats_port=None, name="node1")
    url = f"nats://127.0.0.1:{n1.nats_port}"
    n1.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, origin TEXT)"})
    for i in range(50):
        n1.query({"sql": "INSERT INTO t(id, v, origin) VALUES (?, 'early', 'node1')", "params": [i]})
    seq = n1.query({"sql": "UPDATE t SET v = 'late' WHERE id < 10"})["seq"]
    assert n1.request("GET", "/snapshot").status == 404  # there is none
    late = node_factory(args=["app.db", "--replication-url", url], name="node2")
    asked = node_factory(args=["app.db", "--replication-url", url, "--from-latest-snapshot"], name="node3")
    assert "no snapshot to start from; the log has everything" in asked.logs()
    for node in (late, asked):
        assert content(node, seq) == content(n1)
        assert "installed the snapshot" not in node.logs()
