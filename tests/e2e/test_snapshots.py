"""Snapshots in the JetStream object store: taken on demand and periodically, downloadable, consistent."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from sqlite_ha.testing import NodeProcess, nats_credentials, wait_for
from tests.conftest import NodeFactory


def snapshot_file(node: NodeProcess, path: str, dest: Path) -> sqlite3.Connection:
    resp = node.request("GET", path)
    assert resp.status == 200, resp.body
    assert resp.headers["Content-Type"] == "application/vnd.sqlite3"
    assert hashlib.sha256(resp.body).hexdigest() == resp.headers["X-Snapshot-Sha256"]
    dest.write_bytes(resp.body)
    conn = sqlite3.connect(dest)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    return conn


def test_take_and_download_snapshots(node_factory: NodeFactory, tmp_path: Path) -> None:
    node = node_factory(args=["app.db"], nats_port=None)
    assert node.request("GET", "/snapshot").status == 404  # none yet
    node.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"})
    seq = node.query([{"sql": "INSERT INTO t(v) VALUES (?)", "params": [f"row {i}"]} for i in range(50)])[
        "seq"
    ]
    wait_for(
        lambda: (
            node.request("GET", "/status").json()["replication"]["databases"]["app.db"]["applied_seq"] >= seq
        ),
        10,
        "the node to apply its own write",
    )
    resp = node.request("POST", "/snapshot")
    assert resp.status == 200, resp.body
    first = resp.json()
    assert first["taken"] is True
    assert first["snapshot"]["seq"] == seq
    assert resp.headers["X-Sequence"] == str(seq)
    conn = snapshot_file(node, "/snapshot", tmp_path / "s1.db")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (50,)
    assert conn.execute("SELECT count(*) FROM _ha_outbox").fetchone() == (0,)  # node-local state stripped
    assert conn.execute("SELECT value FROM _ha_state WHERE key = 'applied_seq'").fetchone() == (seq,)
    conn.close()
    # nothing changed: no new snapshot
    again = node.request("POST", "/databases/app.db/snapshot").json()
    assert again == {"snapshot": first["snapshot"], "taken": False}
    seq2 = node.query({"sql": "INSERT INTO t(v) VALUES ('later')"})["seq"]
    wait_for(
        lambda: node.request("POST", "/snapshot").json()["snapshot"]["seq"] == seq2,
        10,
        "a snapshot that includes the new write",
    )
    conn = snapshot_file(node, "/databases/app.db/snapshot", tmp_path / "s2.db")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (51,)
    conn.close()
    assert node.request("GET", "/databases/nope.db/snapshot").status == 404


def test_periodic_snapshots_and_memory_databases(node_factory: NodeFactory, tmp_path: Path) -> None:
    node = node_factory(args=["-m", "mem.db", "--snapshot-interval", "200ms"], nats_port=None)
    node.query({"sql": "CREATE TABLE t(x)"})
    seq = node.query({"sql": "INSERT INTO t VALUES ('in memory')"})["seq"]
    wait_for(
        lambda: node.request("GET", "/snapshot").headers.get("X-Sequence") == str(seq),
        20,
        "the periodic snapshot to include the write",
    )
    conn = snapshot_file(node, "/snapshot", tmp_path / "m.db")
    assert conn.execute("SELECT x FROM t").fetchall() == [("in memory",)]
    conn.close()


def test_no_snapshots_without_nats(node: NodeProcess) -> None:
    resp = node.request("POST", "/snapshot")
    assert resp.status == 409
    assert resp.json()["error"]["code"] == "snapshots_unavailable"


def stream_state(nats_port: int) -> tuple[int, int]:
    """(messages, first sequence) of the replication stream, read with a plain NATS client."""
    import asyncio

    import nats

    async def read() -> tuple[int, int]:
        nc = await nats.connect(f"nats://127.0.0.1:{nats_port}", **nats_credentials())
        try:
            info = await nc.jetstream().stream_info("ha_replication")
            return int(info.state.messages), int(info.state.first_seq)
        finally:
            await nc.close()

    return asyncio.run(read())


def test_a_node_joining_after_the_log_aged_out_starts_from_the_snapshot(node_factory: NodeFactory) -> None:
    first = node_factory(
        args=["app.db", "other.db", "--replication-max-age", "2s"], nats_port=None, name="node1"
    )
    assert first.nats_port
    first.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"})
    seq = first.query([{"sql": "INSERT INTO t(v) VALUES (?)", "params": [f"r{i}"]} for i in range(20)])["seq"]
    wait_for(lambda: first.request("POST", "/snapshot").json()["snapshot"]["seq"] == seq, 10, "the snapshot")
    other = first.query({"sql": "CREATE TABLE o(x)"}, db="other.db")["seq"]  # never snapshotted
    # app.db did not change since its snapshot: a caught-up node records that it covers the log further
    wait_for(
        lambda: first.request("POST", "/snapshot").json()["snapshot"]["covers_through"] >= other,
        10,
        "the snapshot to cover the other database's change set too",
    )
    wait_for(lambda: stream_state(first.nats_port or 0)[0] == 0, 30, "the stream to age out")
    url = f"nats://127.0.0.1:{first.nats_port}"
    joiner = node_factory(
        args=["app.db", "--replication-url", url, "--replication-max-age", "2s"], name="node2"
    )
    rows = joiner.query({"sql": "SELECT v FROM t ORDER BY id"})["rows"]
    assert rows == [[f"r{i}"] for i in range(20)]
    assert "installed the snapshot" in joiner.logs()
    # and the log follows from there
    later = first.query({"sql": "INSERT INTO t(v) VALUES ('after')"})["seq"]
    assert joiner.request("POST", f"/query?min_seq={later}", {"sql": "SELECT count(*) FROM t"}).json()[
        "rows"
    ] == [[21]]
    # a database nobody snapshotted by hand: node1 took one before the log dropped its change set (or, had
    # it not, would answer node3's request for one)
    asking = node_factory(
        args=["other.db", "--replication-url", url, "--replication-max-age", "2s"], name="node3"
    )
    assert "installed the snapshot" in asking.logs()
    tables = asking.query({"sql": "SELECT name FROM sqlite_schema WHERE name = 'o'"}, db="other.db")
    assert tables["rows"] == [["o"]]
