"""Inserts that leave the key to the database, on several in-process nodes that do not see each other's
inserts before they make their own: no acknowledged row is overwritten, and every node ends the same."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from sqlite_ha.db.database import Database, DatabaseOptions
from sqlite_ha.db.dsn import parse_dsn
from sqlite_ha.db.rowids import Rowids
from sqlite_ha.db.statement import Statement
from sqlite_ha.replication.manager import ReplicationManager
from sqlite_ha.replication.memory import MemoryHub

NODES = ("a", "b", "c")


async def start(tmp: Path, hub: MemoryHub, name: str) -> tuple[ReplicationManager, Database]:
    (tmp / name).mkdir()
    rowids = Rowids(16)
    db = Database(parse_dsn(str(tmp / name / "app.db"), memory=False), DatabaseOptions(rowids=rowids))
    manager = ReplicationManager(
        hub.connect(name),
        node=name,
        timeout=5.0,
        async_mode=False,
        policy="all",
        ddl_sync=True,
        interceptor=None,
        rowids=rowids,
    )
    manager.start([db])
    assert await manager.wait_started(5.0)
    return manager, db


async def run(manager: ReplicationManager, db: Database, sql: str, *params: Any) -> Any:
    execution, _ = await manager.execute(db, [Statement(sql=sql, bindings=params or None)])
    return execution.results[0]


def test_concurrent_inserts_on_three_nodes_keep_every_row(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub = MemoryHub(auto=False)  # nothing travels until delivered: every node inserts blind
        nodes = [await start(tmp_path, hub, name) for name in NODES]
        schema = [
            "CREATE TABLE ai(id INTEGER PRIMARY KEY AUTOINCREMENT, who TEXT, i INTEGER)",
            "CREATE TABLE pk(id INTEGER PRIMARY KEY, who TEXT, i INTEGER)",
        ]
        for sql in schema:
            await run(*nodes[0], sql)
        await hub.deliver_all()
        told: dict[tuple[str, int], tuple[str, int]] = {}  # (table, id) -> (who, i) as acknowledged

        async def client(manager: ReplicationManager, db: Database, name: str) -> None:
            for i in range(20):
                table = "ai" if i % 2 else "pk"
                if i % 5 == 0:
                    result = await run(
                        manager,
                        db,
                        f"INSERT INTO {table}(who, i) VALUES (?, ?), (?, ?) RETURNING id, i",
                        name,
                        i,
                        name,
                        -i,
                    )
                    for key, n in result.rows:
                        told[(table, key)] = (name, n)
                else:
                    result = await run(manager, db, f"INSERT INTO {table}(who, i) VALUES (?, ?)", name, i)
                    told[(table, result.last_insert_id)] = (name, i)

        await asyncio.gather(*(client(m, db, name) for (m, db), name in zip(nodes, NODES, strict=True)))
        assert len(told) == 3 * (16 + 4 * 2)  # no key was told to two clients
        await hub.deliver_all()
        for _, db in nodes:
            for table in ("ai", "pk"):
                stored = await run(manager_of(nodes, db), db, f"SELECT id, who, i FROM {table} ORDER BY id")
                want = sorted((k, *v) for (t, k), v in told.items() if t == table)
                assert [tuple(r) for r in stored.rows] == want
        residues = {m.rowids.slot.residue for m, _ in nodes if m.rowids and m.rowids.slot}
        assert len(residues) == 3
        for manager, db in nodes:
            await manager.close()
            db.close()

    asyncio.run(scenario())


def manager_of(nodes: list[tuple[ReplicationManager, Database]], db: Database) -> ReplicationManager:
    return next(m for m, d in nodes if d is db)
