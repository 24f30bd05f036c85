"""Two driver-embedded nodes in one process replicate through a real nats-server: a write through one
appears in the other, and go-ha's connector calls (latest_seq, take_snapshot, latest_snapshot,
delivered_info, remove_consumer) work against the real log."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

import sqlite_ha
from sqlite_ha.driver.connector import SnapshotterNotConfigured
from sqlite_ha.driver.runtime import runtime
from sqlite_ha.natsd import NatsServer, NatsServerOptions
from sqlite_ha.testing import TEST_CLUSTER_SECRET, free_port, wait_for


@pytest.fixture
def nats_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A nats-server of its own (run on the driver's loop), and the cluster secret the nodes share."""
    monkeypatch.setenv("HA_CLUSTER_SECRET", TEST_CLUSTER_SECRET)
    server = NatsServer(NatsServerOptions(name="driver-test", port=free_port(), store_dir=tmp_path / "js"))
    runtime().call(server.start())
    yield server.url
    sqlite_ha.driver.connector.close_all()
    runtime().call(server.stop())


def rows(conn: sqlite_ha.Connection) -> list[tuple[object, ...]]:
    try:
        return [tuple(r) for r in conn.execute("SELECT id, name FROM users ORDER BY id")]
    except sqlite_ha.OperationalError:
        return []  # the table has not arrived yet


def test_two_embedded_nodes_replicate(tmp_path: Path, nats_url: str) -> None:
    opts = {"replicationURL": nats_url, "replicationStream": "driver_test"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = sqlite_ha.connect(str(tmp_path / "a" / "app.db"), name="a", **opts)
    b = sqlite_ha.connect(str(tmp_path / "b" / "app.db"), name="b", **opts)
    assert a.connector is not b.connector
    assert (a.connector.node_name, b.connector.node_name) == ("a", "b")

    a.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    with a:
        a.execute("INSERT INTO users (id, name) VALUES (1, 'ada')")
    seq = a.seq
    assert seq is not None
    wait_for(lambda: rows(b) == [(1, "ada")], 15, "a's write to reach b")
    wait_for(lambda: b.connector.latest_seq >= seq, 15, "b to apply a's change set")

    with b:  # and back
        b.execute("INSERT INTO users (id, name) VALUES (2, 'grace')")
    wait_for(lambda: rows(a) == [(1, "ada"), (2, "grace")], 15, "b's write to reach a")

    # snapshots: taken through one node, read through the other
    snap_seq = a.connector.take_snapshot()
    assert snap_seq >= seq
    got_seq, path = b.connector.latest_snapshot()
    try:
        assert got_seq == snap_seq
        with sqlite3.connect(path) as copy:
            assert copy.execute("SELECT id, name FROM users ORDER BY id").fetchall() == [
                (1, "ada"),
                (2, "grace"),
            ]
    finally:
        path.unlink()

    # the log's consumers: b's reads a's change sets
    manager = b.connector.node.replication
    assert manager is not None
    consumer = manager.databases["app.db"].consumer
    info = a.connector.delivered_info(consumer)
    assert info is not None
    assert info["name"] == consumer
    b.connector.close()  # b departs; its consumer stays in the log until removed
    assert a.connector.delivered_info(consumer) is not None
    assert a.connector.remove_consumer(consumer) is True
    assert a.connector.delivered_info(consumer) is None
    assert a.connector.remove_consumer(consumer) is False


def test_snapshots_need_a_replication_log(dsn: str) -> None:
    conn = sqlite_ha.connect(dsn)
    with pytest.raises(SnapshotterNotConfigured, match="need a replication log"):
        conn.connector.take_snapshot()
    with pytest.raises(SnapshotterNotConfigured):
        conn.connector.latest_snapshot()
