"""A table rebuild replicates: three real nodes on a real nats-server; node1 rebuilds tables over the PG wire
inside a transaction that also changes rows before and after the rebuild, while node2 and node3 keep writing
the same tables. Every node ends with the same rows and schema, nothing is parked, and no acknowledged write
is lost."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from sqlite_ha.testing import NodeProcess, free_port
from tests.conftest import NodeFactory
from tests.e2e.test_replication import Cluster

PASSWORD = "rebuild pg"
SCHEMA = (
    "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE name NOT LIKE '\\_ha%' ESCAPE '\\' "
    "AND name NOT LIKE 'sqlite%' ORDER BY name"
)


@pytest.fixture
def cluster(node_factory: NodeFactory) -> Cluster:
    port = free_port()
    first = node_factory(
        args=["app.db", "--pg-port", str(port), "--pg-pass", PASSWORD], nats_port=None, name="node1"
    )
    first.pg_port = port  # type: ignore[attr-defined]
    url = f"nats://127.0.0.1:{first.nats_port}"
    others = [node_factory(args=["app.db", "--replication-url", url], name=f"node{i}") for i in (2, 3)]
    return Cluster([first, *others])


def _pg(node: NodeProcess) -> psycopg.Connection[Any]:
    return psycopg.connect(
        host="127.0.0.1",
        port=node.pg_port,
        user="ha",
        password=PASSWORD,
        dbname="app",  # type: ignore[attr-defined]
    )


def _parked(node: NodeProcess) -> dict[str, int]:
    status = node.request("GET", "/status").json()["replication"]["databases"]["app.db"]
    return status["parked"]  # type: ignore[no-any-return]


def test_rebuilds_replicate_during_concurrent_writes(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.nodes
    cluster.write(n1, "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER, note TEXT)")
    cluster.write(n1, "CREATE INDEX items_note ON items(note)")
    cluster.write(n1, "CREATE TABLE plain(k INTEGER, v INTEGER)")  # no primary key: rows go by rowid
    seq = cluster.write(
        n1,
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 200) "
        "INSERT INTO items SELECT i, 'item ' || i, i, 'n' || i FROM s",
    )
    seq = max(seq, cluster.write(n2, "INSERT INTO plain VALUES (1, 0), (2, 0), (3, 0)"))
    seq = max(seq, cluster.write(n3, "INSERT INTO plain VALUES (4, 0), (5, 0)"))
    for node in cluster.nodes:
        cluster.rows(node, "SELECT 1", min_seq=seq)

    stop = threading.Event()
    acknowledged: dict[str, list[int]] = {"node2": [], "node3": []}
    increments = [0] * 6  # per row of plain: node2 alone writes rows 1-3, node3 rows 4-5
    errors: list[str] = []

    def writer(node: NodeProcess, base: int, rows: tuple[int, ...]) -> None:
        i = 0
        while not stop.is_set() or i < 40:  # some writes surely land after the rebuild
            i += 1
            key = base + i
            resp = node.request(
                "POST", "/query", {"sql": "INSERT INTO items(id, name, qty) VALUES (?, ?, ?)",
                                   "params": [key, f"{node.name} {i}", i]}
            )  # fmt: skip
            if resp.status == 200:
                acknowledged[node.name].append(key)
            else:
                errors.append(f"{node.name}: {resp.status} {resp.body!r}")
            k = rows[i % len(rows)]
            for sql, params in (
                ("UPDATE items SET qty = qty + 1 WHERE id = ?", [3 + (key % 198)]),  # not node1's rows 1, 2
                ("UPDATE plain SET v = v + 1 WHERE k = ?", [k]),
            ):
                resp = node.request("POST", "/query", {"sql": sql, "params": params})
                if resp.status != 200:
                    errors.append(f"{node.name}: {resp.status} {resp.body!r}")
                elif "plain" in sql:
                    increments[k] += 1

    threads = [
        threading.Thread(target=writer, args=(n, b, r))
        for n, b, r in ((n2, 10_000, (1, 2, 3)), (n3, 20_000, (4, 5)))
    ]
    for t in threads:
        t.start()
    try:
        with _pg(n1) as conn:
            conn.execute("UPDATE items SET name = 'before the rebuild' WHERE id = 1")
            conn.execute(
                "ALTER TABLE items DROP COLUMN note CASCADE, ADD CONSTRAINT items_name UNIQUE (name)"
            )
            conn.execute("UPDATE items SET name = 'after the rebuild' WHERE id = 2")
            conn.execute("INSERT INTO items(id, name, qty) VALUES (5000, 'made after it', 1)")
            conn.commit()
            conn.execute("ALTER TABLE plain ADD PRIMARY KEY (k)")
            conn.execute("ALTER TABLE items ALTER COLUMN qty SET DEFAULT 7")
            conn.commit()
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []

    rows = cluster.wait_converged("SELECT * FROM items ORDER BY id", timeout=60)
    schema = cluster.wait_converged(SCHEMA)
    plain = cluster.wait_converged("SELECT k, v FROM plain ORDER BY k")
    sql = {r[1]: r[3] for r in schema}
    assert "note" not in sql["items"]
    assert "items_name" in sql["items"]
    assert "items_note" not in sql  # went with its column, as in PostgreSQL
    assert "DEFAULT (7)" in sql["items"]
    assert "PRIMARY KEY (k)" in sql["plain"]
    by_id = {r[0]: r for r in rows}
    assert by_id[1][1] == "before the rebuild"
    assert by_id[2][1] == "after the rebuild"
    assert by_id[5000][1] == "made after it"
    for name, keys in acknowledged.items():
        assert keys, name
        missing = [k for k in keys if k not in by_id]
        assert missing == [], f"acknowledged inserts of {name} lost"
    # each row of plain has one writer: every acknowledged +1 is there, none lost, none applied twice
    assert plain == [[k, increments[k]] for k in range(1, 6)]
    for node in cluster.nodes:
        assert _parked(node) == {}, node.name
