"""Capture end to end: real nodes on in-memory databases (``serve -m``), real NATS, HTTP and PG clients."""

from __future__ import annotations

from typing import Any

import psycopg

from sqlite_ha.testing import NodeProcess, free_port, wait_for
from tests.conftest import NodeFactory

PASSWORD = "secret"


def rows(node: NodeProcess, sql: str, min_seq: int | None = None) -> list[list[Any]]:
    path = f"/query?min_seq={min_seq}" if min_seq else "/query"
    resp = node.request("POST", path, {"sql": sql})
    assert resp.status == 200, resp.body
    return resp.json()["rows"]  # type: ignore[no-any-return]


def write(node: NodeProcess, sql: str) -> int:
    answer = node.query({"sql": sql})
    assert "seq" in answer, f"{sql!r} answered no seq: {answer}"
    return int(answer["seq"])


def test_in_memory_delete_without_where_and_truncate_replicate(node_factory: NodeFactory) -> None:
    """With ``-m`` a ``DELETE`` without ``WHERE`` (and PostgreSQL's ``TRUNCATE``) used to commit on the node
    that took it, answer without a ``seq`` and never reach the others."""
    pg_port = free_port()
    n1 = node_factory(
        args=["-m", "app.db", "--pg-port", str(pg_port), "--pg-pass", PASSWORD], nats_port=None, name="node1"
    )
    url = f"nats://127.0.0.1:{n1.nats_port}"
    n2 = node_factory(args=["-m", "app.db", "--replication-url", url], name="node2")
    write(n1, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    seq = write(n1, "INSERT INTO t(v) VALUES ('a'), ('b'), ('c')")
    assert rows(n2, "SELECT count(*) FROM t", min_seq=seq) == [[3]]

    seq = write(n1, "DELETE FROM t")
    assert rows(n2, "SELECT count(*) FROM t", min_seq=seq) == [[0]]

    seq = write(n2, "INSERT INTO t(v) VALUES ('d'), ('e')")
    assert rows(n1, "SELECT count(*) FROM t", min_seq=seq) == [[2]]
    with psycopg.connect(
        host="127.0.0.1", port=pg_port, user="ha", password=PASSWORD, dbname="app", autocommit=True
    ) as conn:
        conn.execute("TRUNCATE t")
        assert conn.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
    wait_for(lambda: rows(n2, "SELECT count(*) FROM t") == [[0]], 30, "the TRUNCATE to reach node2")
    seq = write(n2, "INSERT INTO t(v) VALUES ('after')")  # and the nodes still agree afterwards
    for node in (n1, n2):
        assert rows(node, "SELECT v FROM t", min_seq=seq) == [["after"]]
