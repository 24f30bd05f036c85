"""Loading an existing SQLite file into a running cluster: every node ends with its content, exactly."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from sqlite_ha.testing import NodeProcess
from tests.conftest import NodeFactory

SCHEMA = """
CREATE TABLE parent(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, children INTEGER DEFAULT 0);
CREATE TABLE child(id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id), data BLOB, score REAL);
CREATE TABLE kv(k TEXT PRIMARY KEY, v ANY) WITHOUT ROWID;
CREATE TABLE log(line TEXT, at INTEGER);
CREATE TABLE gen(a INTEGER, b INTEGER GENERATED ALWAYS AS (a * 2) STORED, c TEXT PRIMARY KEY);
CREATE INDEX child_parent ON child(parent_id);
CREATE VIEW summary AS SELECT p.name, count(c.id) AS n FROM parent p LEFT JOIN child c ON c.parent_id = p.id
  GROUP BY p.id;
CREATE TRIGGER count_children AFTER INSERT ON child BEGIN
  UPDATE parent SET children = children + 1 WHERE id = NEW.parent_id;
END;
"""
TABLES = ("parent", "child", "kv", "log", "gen")


def make_source(path: Path, children: int = 3000) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.executemany("INSERT INTO parent(id, name) VALUES (?, ?)", [(i, f"p{i}") for i in range(1, 51)])
    conn.executemany(
        "INSERT INTO child(parent_id, data, score) VALUES (?, ?, ?)",
        [(1 + i % 50, bytes([i % 256]) * (i % 700), i / 7 if i % 5 else None) for i in range(children)],
    )
    conn.executemany(
        "INSERT INTO kv VALUES (?, ?)",
        [("big", 2**63 - 1), ("neg", -(2**63)), ("float", 1e-300), ("text", "é ✓"), ("null", None)],
    )
    conn.executemany("INSERT INTO log VALUES (?, ?)", [("same line", 1)] * 3 + [(None, None)])
    conn.executemany("INSERT INTO gen(a, c) VALUES (?, ?)", [(i, f"c{i}") for i in range(10)])
    conn.execute("CREATE TABLE _ha_state(k TEXT PRIMARY KEY, v)")  # a snapshot's internals: not loaded
    conn.execute("INSERT INTO _ha_state VALUES ('applied_seq', 99)")
    conn.commit()
    conn.close()


def table_rows(node: NodeProcess, table: str, min_seq: int = 0) -> list[Any]:
    path = f"/query?min_seq={min_seq}" if min_seq else "/query"
    order = "rowid" if table not in ("kv", "gen") else ("k" if table == "kv" else "c")
    resp = node.request("POST", path, {"sql": f"SELECT * FROM {table} ORDER BY {order}"})
    assert resp.status == 200, resp.body
    return list(resp.json()["rows"])


def test_load_a_file_into_a_running_cluster(node_factory: NodeFactory, tmp_path: Path) -> None:
    source = tmp_path / "source.db"
    make_source(source)
    n1 = node_factory(args=["app.db"], nats_port=None, name="node1")
    n2 = node_factory(args=["app.db", "--replication-url", f"nats://127.0.0.1:{n1.nats_port}"], name="node2")
    # the reference: the same file served directly by a node of its own (no load involved)
    ref = node_factory(args=[f"file:{source}?mode=ro"], name="reference")

    resp = n1.request("POST", "/databases/app.db/load", raw=source.read_bytes())
    assert resp.status == 200, resp.body
    summary = resp.json()
    assert summary["tables"] == 5
    assert summary["rows"] == 50 + 3000 + 5 + 4 + 10
    assert summary["changesets"] > 3  # the rows went in chunks, each its own change set
    assert resp.headers["X-Sequence"] == str(summary["seq"])
    for table in TABLES:
        expected = table_rows(ref, table)
        assert table_rows(n1, table) == expected, table
        assert table_rows(n2, table, summary["seq"]) == expected, table
    # the trigger came after the rows: it did not fire while loading, and fires for new writes everywhere
    assert table_rows(n2, "parent")[0][2] == 60
    seq = n2.query({"sql": "INSERT INTO child(parent_id) VALUES (1)"})["seq"]
    rows = n1.request("POST", f"/query?min_seq={seq}", {"sql": "SELECT children FROM parent WHERE id = 1"})
    assert rows.json()["rows"] == [[61]]
    for node in (n1, n2):
        names = node.query(
            {"sql": "SELECT type, name FROM sqlite_schema WHERE name NOT LIKE '\\_ha\\_%' ESCAPE '\\'"}
        )
        assert {tuple(r) for r in names["rows"]} >= {
            ("index", "child_parent"),
            ("view", "summary"),
            ("trigger", "count_children"),
        }
        assert node.query({"sql": "SELECT count(*) FROM summary"})["rows"] == [[50]]

    # a second load into the same (no longer empty) database is refused, and changes nothing
    again = n1.request("POST", "/load", raw=source.read_bytes())
    assert again.status == 409
    assert "already has tables" in again.json()["error"]["message"]
    assert len(table_rows(n1, "child")) == 3001


def test_load_refuses_what_it_cannot_load_faithfully(node_factory: NodeFactory, tmp_path: Path) -> None:
    node = node_factory(args=["app.db", "--max-load-size", "64KB"])
    garbage = node.request("POST", "/load", raw=b"this is not a database" * 10)
    assert garbage.status == 400
    assert "not a SQLite database" in garbage.json()["error"]["message"]
    truncated = tmp_path / "t.db"
    make_source(truncated, children=10)
    cut = truncated.read_bytes()[:5000]
    resp = node.request("POST", "/load", raw=cut)
    assert resp.status == 400, resp.body
    vtab = tmp_path / "v.db"
    conn = sqlite3.connect(vtab)
    conn.execute("CREATE VIRTUAL TABLE docs USING fts5(body)")
    conn.commit()
    conn.close()
    resp = node.request("POST", "/load", raw=vtab.read_bytes())
    assert resp.status == 400
    assert "virtual tables (docs)" in resp.json()["error"]["message"]
    big = tmp_path / "big.db"
    make_source(big, children=3000)
    resp = node.request("POST", "/load", raw=big.read_bytes())
    assert resp.status == 413
    assert resp.json()["error"]["code"] == "payload_too_large"
    # nothing of any of it landed; the node still serves
    assert node.query(
        {"sql": "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE '\\_ha\\_%' ESCAPE '\\'"}
    )["rows"] == [[0]]
