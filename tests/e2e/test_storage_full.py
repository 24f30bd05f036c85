"""A node out of room (full disk, quota, file size limit) answers 507 ``disk_full``, writes nothing, and goes
on serving. The limit here is a real one: RLIMIT_FSIZE set on the running node process."""

from __future__ import annotations

import resource
import sqlite3
from pathlib import Path

from tests.conftest import NodeFactory

LIMIT = 2 * 1024 * 1024  # bytes any file of the node may grow to


def test_no_room_is_507_and_loses_nothing(node_factory: NodeFactory, tmp_path: Path) -> None:
    node = node_factory(args=["app.db", "empty.db"])
    node.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, data BLOB)"})
    node.query({"sql": "INSERT INTO t VALUES (1, randomblob(1000))"})
    assert node.proc is not None
    resource.prlimit(node.proc.pid, resource.RLIMIT_FSIZE, (LIMIT, LIMIT))

    # A write that would grow the database past the limit
    resp = node.request("POST", "/query", {"sql": "INSERT INTO t SELECT 2, randomblob(3 * 1024 * 1024)"})
    assert resp.status == 507, resp.body
    error = resp.json()["error"]
    assert error["code"] == "disk_full"
    assert "nothing was written" in error["message"]

    # An upload that does not fit where the node stores it
    source = tmp_path / "big.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE big(b BLOB)")
        conn.execute("INSERT INTO big VALUES (randomblob(3 * 1024 * 1024))")
    conn.close()
    resp = node.request("POST", "/databases/empty.db/load", raw=source.read_bytes())
    assert resp.status == 507, resp.body
    assert resp.json()["error"]["code"] == "disk_full"
    assert (
        node.query({"sql": "SELECT name FROM sqlite_schema WHERE name = 'big'"}, db="empty.db")["rows"] == []
    )
    node.query({"sql": "SELECT 1"})  # still serving
    assert node.query({"sql": "SELECT id, length(data) FROM t"})["rows"] == [[1, 1000]]
    node.query({"sql": "INSERT INTO t VALUES (3, randomblob(10))"})  # what fits is still written
    assert node.query({"sql": "SELECT count(*) FROM t"})["rows"] == [[2]]
