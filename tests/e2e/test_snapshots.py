"""Snapshots in the JetStream object store: taken on demand and periodically, downloadable, consistent."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from sqlite_ha.testing import NodeProcess, wait_for
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
