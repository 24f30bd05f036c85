"""Convergence as a property: any writes, any delivery order, duplicates and restarts end in one database.

Nodes are in-process: a real SQLite file each and the in-memory hub as the log, in manual mode, so the test
decides which change set reaches which node when, how often, and in what order.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlite_ha.db.database import Database
from sqlite_ha.db.dsn import parse_dsn
from sqlite_ha.db.statement import Statement
from sqlite_ha.errors import HAError
from sqlite_ha.replication.memory import MemoryHub
from sqlite_ha.replication.replicated_database import ReplicatedDatabase

KEYS = st.integers(min_value=1, max_value=4)
UNIQUE_VALUES = ["p", "P", "q", None]  # "p" and "P" clash: the column is COLLATE NOCASE
VALUES = st.one_of(st.none(), st.integers(-3, 3), st.text("ab", max_size=2), st.binary(max_size=2))

USER_TABLES = (
    "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
    "AND substr(name, 1, 4) != '_ha_' ORDER BY name"
)
SCHEMA = [
    "CREATE TABLE t(id INTEGER PRIMARY KEY, v, w, u TEXT UNIQUE COLLATE NOCASE)",
    "CREATE TABLE k(a TEXT, b INTEGER, v UNIQUE, PRIMARY KEY (a, b)) WITHOUT ROWID",
    "CREATE TABLE n(x, y)",
    "CREATE TABLE p(id TEXT PRIMARY KEY, v, w)",  # no other UNIQUE: applied by REPLACE
]


@dataclass
class Cluster:
    root: Path
    hub: MemoryHub
    size: int
    nodes: dict[str, ReplicatedDatabase] = field(default_factory=dict)

    def name(self, i: int) -> str:
        return f"n{i % self.size}"

    async def open(self, name: str) -> None:
        (self.root / name).mkdir(exist_ok=True)
        db = Database(parse_dsn(str(self.root / name / "app.db"), memory=False))
        node = ReplicatedDatabase(db, self.hub.connect(name), node=name)
        await node.start()
        self.nodes[name] = node

    async def restart(self, name: str) -> None:
        node = self.nodes.pop(name)
        await node.close()
        await node.replicator.close()
        node.db.close()
        await self.open(name)

    async def write(self, name: str, sql: str, params: tuple[Any, ...] = ()) -> None:
        # A client may get a 400 (e.g. a column this node has not heard of yet): that is part of the game.
        with contextlib.suppress(HAError):
            await self.nodes[name].execute([Statement(sql=sql, bindings=params)])

    async def checksum(self, name: str) -> str:
        db = self.nodes[name].db
        digest = hashlib.sha256()
        tables = await db.execute([Statement(sql=USER_TABLES)])
        for name_, _ in tables.results[0].rows:
            cols = await db.execute(
                [Statement(sql="SELECT name FROM pragma_table_info(?) ORDER BY name", bindings=(name_,))]
            )
            col_list = ", ".join(f'"{c[0]}"' for c in cols.results[0].rows)
            rows = await db.execute([Statement(sql=f'SELECT {col_list} FROM "{name_}" ORDER BY {col_list}')])
            digest.update(repr((name_, col_list, rows.results[0].rows)).encode())
        return digest.hexdigest()


Step = tuple[Any, ...]
WRITE = st.tuples(
    st.just("write"),
    st.integers(0, 4),
    st.sampled_from(
        [
            "upsert",
            "update",
            "delete",
            "upsert_k",
            "delete_k",
            "insert_n",
            "update_n",
            "delete_n",
            "reinsert",
            "set_u",
            "insert_u",
            "set_u",
            "upsert_p",
            "update_p",
            "delete_p",
        ]
    ),
    KEYS,
    VALUES,
)
DELIVER = st.tuples(st.just("deliver"), st.integers(0, 4), st.integers(0, 10_000), st.booleans())
STEPS = st.lists(
    st.one_of(
        WRITE,
        WRITE,
        DELIVER,
        DELIVER,
        DELIVER,
        st.tuples(st.just("restart"), st.integers(0, 4)),
        st.tuples(st.just("add_column"), st.integers(0, 4), st.integers(1, 2)),
    ),
    max_size=40,
)


async def run_steps(cluster: Cluster, steps: list[Step]) -> None:
    for step in steps:
        kind = step[0]
        if kind == "write":
            await do_write(cluster, cluster.name(step[1]), step[2], step[3], step[4])
        elif kind == "deliver":
            pending = [p for p in cluster.hub.pending() if p[0] == cluster.name(step[1])]
            if pending:
                node, db, seq = pending[step[2] % len(pending)]
                seqs = [seq, seq] if step[3] else [seq]  # sometimes twice in a row
                await cluster.hub.deliver(node, db, seqs)
        elif kind == "restart":
            await cluster.restart(cluster.name(step[1]))
        elif kind == "add_column":
            await cluster.write(cluster.name(step[1]), f"ALTER TABLE t ADD COLUMN c{step[2]}")


async def do_write(cluster: Cluster, node: str, op: str, key: int, value: Any) -> None:
    w: Callable[..., Awaitable[None]] = cluster.write
    if op == "upsert":
        await w(
            node,
            "INSERT INTO t(id, v) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET v = excluded.v",
            (key, value),
        )
    elif op == "update":
        await w(node, "UPDATE t SET w = ? WHERE id = ?", (value, key))
    elif op == "delete":
        await w(node, "DELETE FROM t WHERE id = ?", (key,))
    elif op == "reinsert":
        await w(node, "DELETE FROM t WHERE id = ?", (key,))
        await w(node, "INSERT OR REPLACE INTO t(id, v, w) VALUES (?, ?, ?)", (key, value, value))
    elif op == "upsert_p":
        await w(node, "INSERT OR REPLACE INTO p(id, v) VALUES (?, ?)", (str(key), value))
    elif op == "update_p":
        await w(node, "UPDATE p SET w = ? WHERE id = ?", (value, str(key)))
    elif op == "delete_p":
        await w(node, "DELETE FROM p WHERE id = ?", (str(key),))
    elif op == "set_u":
        await w(node, "UPDATE t SET u = ? WHERE id = ?", (UNIQUE_VALUES[key % len(UNIQUE_VALUES)], key))
    elif op == "insert_u":
        u = UNIQUE_VALUES[(key + len(str(value))) % len(UNIQUE_VALUES)]
        await w(node, "INSERT OR IGNORE INTO t(id, v, u) VALUES (?, ?, ?)", (key + 4, value, u))
    elif op == "upsert_k":
        await w(
            node, "INSERT OR REPLACE INTO k(a, b, v) VALUES (?, ?, ?)", ("a" if key % 2 else "b", key, value)
        )
    elif op == "delete_k":
        await w(node, "DELETE FROM k WHERE b = ?", (key,))
    elif op == "insert_n":
        await w(node, "INSERT INTO n(x, y) VALUES (?, ?)", (key, value))
    elif op == "update_n":
        await w(node, "UPDATE n SET y = ? WHERE x = ?", (value, key))
    elif op == "delete_n":
        await w(node, "DELETE FROM n WHERE x = ?", (key,))


async def scenario(size: int, steps: list[Step], max_payload: int | None = None) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), MemoryHub(auto=False, max_payload=max_payload), size)
        for i in range(size):
            await cluster.open(f"n{i}")
        for sql in SCHEMA:
            await cluster.write("n0", sql)
        await run_steps(cluster, steps)
        await cluster.hub.deliver_all()
        for node in cluster.nodes.values():
            await node.changes.retry_parked()
            assert node.changes.parked() == {}, node.changes.stats.last_error
        sums = [await cluster.checksum(name) for name in sorted(cluster.nodes)]
        for node in list(cluster.nodes.values()):
            await node.close()
            await node.replicator.close()
            node.db.close()
        return sums


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(2, 5), steps=STEPS)
def test_any_delivery_order_converges(size: int, steps: list[Step]) -> None:
    sums = asyncio.run(scenario(size, steps))
    assert len(set(sums)) == 1, sums


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(2, 4), steps=STEPS)
def test_any_delivery_order_of_chunks_converges(size: int, steps: list[Step]) -> None:
    """The same with a log whose messages are so small that every change set travels in several chunks:
    chunks delivered in any order, twice, across restarts, mixed with other change sets' chunks."""
    sums = asyncio.run(scenario(size, steps, max_payload=300))
    assert len(set(sums)) == 1, sums
