"""Keys the database chooses, on three real nodes sharing one JetStream: many clients insert at once on
every node (single inserts, multi-row VALUES, INSERT … SELECT, batches of several statements, RETURNING),
into an AUTOINCREMENT table and a plain INTEGER PRIMARY KEY table. Every id a client was told names its own
row, with its own content, on every node; no acknowledged row is missing; all nodes end equal."""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
import pytest

from sqlite_ha.testing import NodeProcess, free_port, wait_for
from tests.conftest import NodeFactory
from tests.e2e.test_pgwire import PASSWORD, dsn

CLIENTS_PER_NODE = 3
ROUNDS = 12
TABLES = ("ai", "pk")


@pytest.fixture
def nodes(node_factory: NodeFactory) -> list[NodeProcess]:
    first = node_factory(args=["app.db"], nats_port=None, name="node1")
    url = f"nats://127.0.0.1:{first.nats_port}"
    return [
        first,
        *(node_factory(args=["app.db", "--replication-url", url], name=f"node{i}") for i in (2, 3)),
    ]


class Client:
    """One client on one node; ``told`` maps (table, id) to the tag of the row the node said it got."""

    def __init__(self, node: NodeProcess, name: str) -> None:
        self.node = node
        self.name = name
        self.told: dict[tuple[str, int], str] = {}
        self.failures: list[str] = []

    def post(self, body: Any) -> Any:
        resp = self.node.request("POST", "/query", body)
        if resp.status != 200:
            self.failures.append(f"{self.node.name}: {resp.status} {resp.body[:300]!r}")
            return None
        return resp.json()

    def tell(self, table: str, key: Any, tag: Any) -> None:
        assert isinstance(key, int)
        assert key > 0
        assert (table, key) not in self.told, f"{self.name} was told {table} id {key} twice"
        self.told[(table, key)] = str(tag)

    def run(self) -> None:
        for i in range(ROUNDS):
            table = TABLES[i % 2]
            tag = f"{self.name}-{i}"
            kind = i % 4
            if kind == 0:  # one row, the id from last_insert_id
                out = self.post({"sql": f"INSERT INTO {table}(tag) VALUES (?)", "params": [tag]})
                if out:
                    self.tell(table, out["rows"][0][1], tag)
            elif kind == 1:  # several rows in one statement, the ids from RETURNING
                out = self.post(
                    {
                        "sql": f"INSERT INTO {table}(id, tag) VALUES (NULL, ?), (NULL, ?), (NULL, ?) "
                        "RETURNING id, tag",
                        "params": [f"{tag}a", f"{tag}b", f"{tag}c"],
                    }
                )
                for key, got in out["rows"] if out else []:
                    self.tell(table, key, got)
            elif kind == 2:  # INSERT … SELECT
                tags = [f"{tag}x{j}" for j in range(4)]
                out = self.post(
                    {
                        "sql": f"INSERT INTO {table}(tag) SELECT value FROM json_each(?) RETURNING id, tag",
                        "params": [json.dumps(tags)],
                    }
                )
                for key, got in out["rows"] if out else []:
                    self.tell(table, key, got)
            else:  # a batch of statements, one transaction, each with its last_insert_id
                out = self.post(
                    [
                        {"sql": "INSERT INTO ai(tag) VALUES (?)", "params": [f"{tag}p"]},
                        {"sql": "INSERT INTO pk DEFAULT VALUES"},
                        {
                            "sql": "UPDATE pk SET tag = ? WHERE id = last_insert_rowid()",
                            "params": [f"{tag}q"],
                        },
                    ]
                )
                if out:
                    results = out["results"]
                    self.tell("ai", results[0]["rows"][0][1], f"{tag}p")
                    self.tell("pk", results[1]["rows"][0][1], f"{tag}q")


def rows(node: NodeProcess, sql: str, min_seq: int = 0) -> list[list[Any]]:
    resp = node.request("POST", f"/query?min_seq={min_seq}" if min_seq else "/query", {"sql": sql})
    assert resp.status == 200, resp.body
    return resp.json()["rows"]  # type: ignore[no-any-return]


def test_concurrent_inserts_with_database_chosen_keys_lose_nothing(nodes: list[NodeProcess]) -> None:
    n1 = nodes[0]
    seq = 0
    for sql in (
        "CREATE TABLE ai(id INTEGER PRIMARY KEY AUTOINCREMENT, tag TEXT)",
        "CREATE TABLE pk(id INTEGER PRIMARY KEY, tag TEXT)",
    ):
        resp = n1.request("POST", "/query", {"sql": sql})
        assert resp.status == 200, resp.body
        seq = resp.json()["seq"]
    for node in nodes:
        rows(node, "SELECT 1", min_seq=seq)
    residues = set()
    for node in nodes:  # each node claimed its own slot of the same stride
        status = node.request("GET", "/status").json()["replication"]["rowids"]
        assert status["stride"] == 16
        residues.add(status["residue"])
    assert len(residues) == 3

    clients = [Client(node, f"{node.name}c{j}") for node in nodes for j in range(CLIENTS_PER_NODE)]
    threads = [threading.Thread(target=c.run) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [f for c in clients for f in c.failures] == []
    told: dict[tuple[str, int], str] = {}
    for c in clients:
        for key, tag in c.told.items():
            assert key not in told, f"{key} was told to two clients: {told[key]!r} and {tag!r}"
            told[key] = tag
    per_client = ROUNDS // 4 * (1 + 3 + 4 + 2)
    assert len(told) == len(clients) * per_client

    want = {table: sorted([k, tag] for (t, k), tag in told.items() if t == table) for table in TABLES}

    def converged() -> bool:
        return all(
            rows(node, f"SELECT id, tag FROM {t} ORDER BY id") == want[t] for node in nodes for t in TABLES
        )

    wait_for(converged, 60, "every node to hold exactly the acknowledged rows")


def test_postgresql_clients_get_keys_from_the_slot_too(node_factory: NodeFactory) -> None:
    """COPY, an interactive transaction and RETURNING over the PostgreSQL wire: the same rule."""
    port = free_port()
    node = node_factory(args=["app.db", "--pg-port", str(port), "--pg-pass", PASSWORD], nats_port=None)
    node.pg_port = port  # type: ignore[attr-defined]
    residue = node.request("GET", "/status").json()["replication"]["rowids"]["residue"]
    with psycopg.connect(dsn(node), autocommit=True) as conn:
        conn.execute("CREATE TABLE s(id SERIAL PRIMARY KEY, tag TEXT)")
        with conn.cursor() as cur, cur.copy("COPY s (tag) FROM STDIN") as copy:
            for tag in ("c1", "c2", "c3"):
                copy.write_row((tag,))
    with psycopg.connect(dsn(node)) as conn:  # a transaction: BEGIN … COMMIT
        got = conn.execute("INSERT INTO s(tag) VALUES (%s) RETURNING id", ("in tx",)).fetchone()
        conn.commit()
    assert got is not None
    keys = rows(node, "SELECT id, tag FROM s ORDER BY id")
    assert [tag for _, tag in keys] == ["c1", "c2", "c3", "in tx"]
    assert all(key % 16 == residue % 16 for key, _ in keys)
    assert keys[-1][0] == got[0]
