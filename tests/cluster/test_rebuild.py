"""Table rebuilds replicate, with delivery order under the test's control (the in-memory hub, real SQLite):
a rebuild travels as one schema step where it happened among the transaction's row changes, every node
rebuilds its own rows, and a write another node made in the table's former shape, arriving after the
rebuild, lands in the new shape. Every node ends with the same rows and schema; nothing is parked."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sqlite_ha.db.rebuild import Rebuild
from sqlite_ha.db.statement import Statement
from sqlite_ha.errors import StatementNotAllowed
from sqlite_ha.replication.memory import MemoryHub
from sqlite_ha.replication.replicated_database import ReplicatedDatabase
from tests.cluster.nodes import close, open_node
from tests.cluster.test_capture import contents


async def _run(rdb: ReplicatedDatabase, *sql: str) -> None:
    for text in sql:
        await rdb.execute([Statement(sql=text)])


async def _transaction(rdb: ReplicatedDatabase, *sql: str) -> None:
    tx = await rdb.begin()
    for text in sql:
        await tx.run([Statement(sql=text)])
    await rdb.commit(tx)


async def _same_everywhere(hub: MemoryHub, *nodes: ReplicatedDatabase) -> dict[str, list[tuple[object, ...]]]:
    await hub.deliver_all()
    expected = contents(nodes[0])
    for rdb in nodes:
        assert rdb.changes.parked() == {}, rdb.changes.stats.last_error
        assert contents(rdb) == expected, f"node {rdb.node} differs from node {nodes[0].node}"
    return expected


def test_a_rebuild_between_row_changes_and_crossing_writes_converge(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub = MemoryHub(auto=False)
        a, b = [await open_node(tmp_path, hub, n) for n in ("a", "b")]
        try:
            await _run(a, "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, note TEXT, n INTEGER)")
            await _run(a, "CREATE INDEX t_note ON t(note)", "CREATE INDEX t_n ON t(n)")
            await _run(a, "INSERT INTO t VALUES (1, 'one', 'x', 1), (2, 'two', 'y', 2), (3, 'three', 'z', 3)")
            await hub.deliver_all()
            # b writes in the old shape and has not seen the rebuild yet
            await _run(b, "INSERT INTO t VALUES (10, 'ten', 'from b', 10)")
            await _run(b, "UPDATE t SET note = 'b note', name = 'one by b', n = 100 WHERE id = 1")
            # a: a row change, the rebuild (a column and its index go, n is computed anew, a UNIQUE constraint
            # comes), the same row and another changed again after it, all in one transaction
            edits = (
                ("drop_column", "note", False),
                ("set_type", "n", "BIGINT", "n * 10"),
                ("add_constraint", "CONSTRAINT t_name UNIQUE (name)"),
            )
            await _transaction(
                a,
                "UPDATE t SET name = 'two before', n = 20 WHERE id = 2",
                Rebuild(table="t", edits=edits).sql(),
                "UPDATE t SET name = 'two after' WHERE id = 2",
                "INSERT INTO t VALUES (30, 'thirty', 3)",
            )
            rows = await _same_everywhere(hub, a, b)
            assert sorted(rows["t"]) == [
                (
                    1,
                    "one by b",
                    1000,
                ),  # b's update, older than the rebuild on b's clock or not, computed anew
                (2, "two after", 200),
                (3, "three", 30),
                (10, "ten", 100),
                (30, "thirty", 3),
            ]
            names = {r[1] for r in rows["sqlite_schema"]}
            assert "t_note" not in names
            assert "t_n" in names
        finally:
            await close(a, b)

    asyncio.run(scenario())


def test_a_table_given_a_primary_key_keeps_its_rows_versions(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub = MemoryHub(auto=False)
        a, b = [await open_node(tmp_path, hub, n) for n in ("a", "b")]
        try:
            await _run(a, "CREATE TABLE p(k INTEGER, v INTEGER)")
            await _run(a, "INSERT INTO p VALUES (1, 0), (2, 0)")
            await hub.deliver_all()
            await _run(b, "INSERT INTO p VALUES (3, 0)")
            await hub.deliver_all()
            await _run(b, "UPDATE p SET v = 5 WHERE k = 1")  # by rowid identity, before b sees the key
            await _run(a, Rebuild(table="p", edits=(("add_constraint", "PRIMARY KEY (k)"),)).sql())
            await _run(a, "UPDATE p SET v = 7 WHERE k = 2")
            rows = await _same_everywhere(hub, a, b)
            assert sorted(rows["p"]) == [(1, 5), (2, 7), (3, 0)]
            # versions moved to the primary key: a later update from either side is ordered by them
            await _run(b, "UPDATE p SET v = 9 WHERE k = 3")
            await _run(a, "DELETE FROM p WHERE k = 1")
            rows = await _same_everywhere(hub, a, b)
            assert sorted(rows["p"]) == [(2, 7), (3, 9)]
        finally:
            await close(a, b)

    asyncio.run(scenario())


def test_rolling_back_past_a_rebuild_that_took_rows_refuses_the_transaction(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub = MemoryHub()
        a = await open_node(tmp_path, hub, "a")
        try:
            await _run(a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)")
            tx = await a.begin()
            tx.savepoint("s")
            await tx.run([Statement(sql="INSERT INTO t VALUES (1, 1)")])
            await tx.run([Statement(sql=Rebuild(table="t", edits=(("set_default", "v", "0"),)).sql())])
            tx.rollback_to("s")
            with pytest.raises(StatementNotAllowed, match="savepoint"):
                await a.commit(tx)
            assert contents(a)["t"] == []
        finally:
            await close(a)

    asyncio.run(scenario())
