"""Transactions larger than one NATS message (8 MB on the embedded server) on a real three-node cluster: one
INSERT … SELECT over HTTP, one psql ``\\copy``, and kill -9 of the writer and of a reader between two chunks.
Every node ends with the same rows (a per-table checksum of each node's file).
``bench/large_transaction.py --mb 200`` runs the 200 MB case and prints its figures."""

from __future__ import annotations

import contextlib
import hashlib
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import apsw
import pytest

from sqlite_ha.testing import NodeProcess, free_port, wait_for
from tests.conftest import NodeFactory
from tests.e2e import test_pgwire as pgwire

MB = 1024 * 1024


def checksum(node: NodeProcess, table: str) -> tuple[int, str]:
    """Rows and SHA-256 of a table, read from the node's file while it runs."""
    conn = apsw.Connection(str(node.workdir / "app.db"), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        digest = hashlib.sha256()
        n = 0
        for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1"):
            digest.update(repr(row).encode())
            n += 1
        leftovers = conn.execute("SELECT count(*) FROM _ha_chunks").fetchall()[0][0]
        assert leftovers == 0, f"{node.name} keeps {leftovers} chunks"
        return n, digest.hexdigest()
    finally:
        conn.close()


def applied_seq(node: NodeProcess) -> int:
    status = node.request("GET", "/status", timeout=60).json()
    return int(status["replication"]["databases"]["app.db"]["applied_seq"])


def wait_everywhere(nodes: list[NodeProcess], seq: int, timeout: float = 120) -> None:
    for node in nodes:
        wait_for(
            lambda n=node: applied_seq(n) >= seq, timeout, f"{node.name} to apply seq {seq}", interval=0.2
        )


def last_seq(node: NodeProcess) -> int:
    status = node.request("GET", "/status").json()
    return int(status["replication"]["databases"]["app.db"]["last_seq"])


@pytest.fixture
def nodes(node_factory: NodeFactory) -> list[NodeProcess]:
    """node1 runs the embedded NATS and a PostgreSQL port; node2 and node3 join its NATS."""
    pg_port = free_port()
    first = node_factory(
        args=["app.db", "--pg-port", str(pg_port), "--pg-pass", pgwire.PASSWORD], nats_port=None, name="node1"
    )
    first.pg_port = pg_port  # type: ignore[attr-defined]
    url = f"nats://127.0.0.1:{first.nats_port}"
    return [
        first,
        *(node_factory(args=["app.db", "--replication-url", url], name=f"node{i}") for i in (2, 3)),
    ]


def test_a_30mb_transaction_replicates_to_every_node(nodes: list[NodeProcess]) -> None:
    n1, n2, _ = nodes
    created = int(n1.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"})["seq"])
    rows = 30 * MB // 1024
    sql = (
        "INSERT INTO t(v) SELECT hex(randomblob(512)) FROM (WITH RECURSIVE c(x) AS "
        f"(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) SELECT x FROM c)"
    )
    # written on a node without the NATS, once it has the table (it read its own writes' log up to there)
    resp = n2.request("POST", f"/query?min_seq={created}", {"sql": sql}, timeout=120)
    assert resp.status == 200, resp.body[:500]
    seq = int(resp.json()["seq"])
    assert seq == last_seq(n1)  # its last chunk
    assert seq >= 2 + 30 // 8  # the CREATE, then at least four chunks
    wait_everywhere(nodes, seq)
    sums = {node.name: checksum(node, "t") for node in nodes}
    assert len(set(sums.values())) == 1, sums
    assert sums["node1"][0] == rows
    status = n2.request("GET", "/status").json()["replication"]["databases"]["app.db"]
    assert status["published_chunked"] == 1
    assert status["chunks"]["incomplete"] == 0
    assert nodes[2].query({"sql": "SELECT count(*) FROM t"})["rows"] == [[rows]]


def test_a_10mb_psql_copy_replicates_to_every_node(nodes: list[NodeProcess], tmp_path: Path) -> None:
    n1 = nodes[0]
    create = pgwire.psql(n1, "-c", "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)")
    assert create.returncode == 0, create.stderr
    source = tmp_path / "items.csv"
    with source.open("w") as f:
        f.write("id,name,qty\n")
        for i in range(1, 100_001):
            f.write(f"{i},item {i:08d} {'x' * 90},{i % 97}\n")
    assert source.stat().st_size > 10 * MB
    loaded = psql(n1, "-c", f"\\copy items FROM '{source}' WITH CSV HEADER")
    assert loaded.returncode == 0, loaded.stderr
    assert "COPY 100000" in loaded.stdout
    wait_everywhere(nodes, last_seq(n1))
    sums = {node.name: checksum(node, "items") for node in nodes}
    assert len(set(sums.values())) == 1, sums
    assert sums["node1"][0] == 100_000


def test_nodes_killed_between_chunks_finish_the_change_set(nodes: list[NodeProcess]) -> None:
    """kill -9 of the writing node (node2) and of a receiving node (node3) while the change set is half in
    the log: node2's relay publishes it whole after its restart (the log deduplicates the chunks it has),
    node3 completes it from the chunks it had stored, and every node ends equal."""
    n1, n2, n3 = nodes
    seq = n1.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"})["seq"]
    wait_everywhere(nodes, seq)
    rows = 80 * MB // 1024
    sql = (
        "INSERT INTO t(v) SELECT hex(randomblob(512)) FROM (WITH RECURSIVE c(x) AS "
        f"(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) SELECT x FROM c)"
    )
    writer = threading.Thread(target=lambda: _ignore_errors(n2, sql), daemon=True)
    writer.start()
    wait_for(lambda: incomplete(n3) > 0, 120, "node3 to hold part of the change set", interval=0.02)
    n2.kill()
    n3.kill()
    writer.join(30)
    held = _chunk_status(n1)["incomplete_sets"]  # node1 holds the same chunks as node3 or more
    assert held, "node2 had published every chunk before it was killed"
    first, count = held[0]["first_seq"], held[0]["count"]
    assert last_seq(n1) < first + count - 1  # the log has only part of it
    n3.start()
    assert incomplete(n3) == 1  # what it had stored survived the kill
    n2.start()
    wait_for(
        lambda: n2.request("GET", "/status").json()["replication"]["databases"]["app.db"]["outbox"] == 0,
        120,
        "node2's relay to publish the change set",
    )
    wait_everywhere(nodes, last_seq(n1))
    sums = {node.name: checksum(node, "t") for node in nodes}
    assert len(set(sums.values())) == 1, sums
    assert sums["node1"][0] == rows


def psql(node: NodeProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """psql as the PG tests run it, with time for a large COPY on a busy machine."""
    env = {**os.environ, "PGPASSWORD": pgwire.PASSWORD, "PGCONNECT_TIMEOUT": "10"}
    port = str(node.pg_port)  # type: ignore[attr-defined]
    command = ["psql", "-h", "127.0.0.1", "-p", port, "-U", "ha", "-d", "app", "-X", "-v", "ON_ERROR_STOP=1"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=300, env=env)


def _ignore_errors(node: NodeProcess, sql: str) -> None:
    with contextlib.suppress(OSError):  # the node is killed while it answers
        node.request("POST", "/query", {"sql": sql}, timeout=120)


def _chunk_status(node: NodeProcess) -> dict[str, Any]:
    status = node.request("GET", "/status", timeout=60).json()
    return dict(status["replication"]["databases"]["app.db"]["chunks"])


def incomplete(node: NodeProcess) -> int:
    return int(_chunk_status(node)["incomplete"])
