"""Inserts that leave the key to the database, on several in-process nodes that do not see each other's
inserts before they make their own: no acknowledged row is overwritten, and every node ends the same."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlite_ha.changes.rowids import NoRowidSlot, Rowids
from sqlite_ha.db.database import Database, DatabaseOptions
from sqlite_ha.db.dsn import parse_dsn
from sqlite_ha.db.statement import Statement
from sqlite_ha.replication.manager import ReplicationManager
from sqlite_ha.replication.memory import MemoryHub, MemoryReplicator

NODES = ("a", "b", "c")


async def start(tmp: Path, hub: MemoryHub, name: str) -> tuple[ReplicationManager, Database]:
    (tmp / name).mkdir()
    return await restart(tmp, hub, name)


async def restart(
    tmp: Path, hub: MemoryHub, name: str, *, connected: bool = True, async_mode: bool = False
) -> tuple[ReplicationManager, Database]:
    rowids = Rowids(16)
    db = Database(parse_dsn(str(tmp / name / "app.db"), memory=False), DatabaseOptions(rowids=rowids))
    replicator = hub.connect(name)
    replicator.connected = connected
    manager = ReplicationManager(
        replicator,
        node=name,
        timeout=5.0,
        async_mode=async_mode,
        policy="all",
        ddl_sync=True,
        interceptor=None,
        rowids=rowids,
        claim_wait=0.0 if not connected else 10.0,  # a log away for good: join without waiting for a slot
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


INSERT = st.tuples(st.just("insert"), st.integers(0, 2), st.sampled_from(["ai", "pk"]), st.integers(1, 3))
DELIVER = st.tuples(st.just("deliver"), st.integers(0, 2), st.integers(0, 10_000))
STEPS = st.lists(
    st.one_of(INSERT, INSERT, DELIVER, DELIVER, st.tuples(st.just("restart"), st.integers(0, 2))),
    max_size=30,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS)
def test_any_interleaving_of_inserts_and_deliveries_keeps_every_acknowledged_row(steps: list[Any]) -> None:
    """Nodes insert having seen any part of each other's inserts (deliveries in any order, restarts that
    forget the in-process high-water mark): every id a client was told holds its row on every node."""

    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(auto=False)
        nodes = [await start(tmp, hub, name) for name in NODES]
        for sql in (
            "CREATE TABLE ai(id INTEGER PRIMARY KEY AUTOINCREMENT, tag TEXT)",
            "CREATE TABLE pk(id INTEGER PRIMARY KEY, tag TEXT)",
        ):
            await run(*nodes[0], sql)
        await hub.deliver_all()
        told: dict[tuple[str, int], str] = {}
        count = 0
        for step in steps:
            i = step[1]
            manager, db = nodes[i]
            if step[0] == "insert":
                _, _, table, n = step
                tags = [f"{NODES[i]}-{count + j}" for j in range(n)]
                count += n
                values = ", ".join("(?)" for _ in tags)
                result = await run(
                    manager, db, f"INSERT INTO {table}(tag) VALUES {values} RETURNING id, tag", *tags
                )
                for key, tag in result.rows:
                    assert (table, key) not in told, f"{table} id {key} told twice"
                    told[(table, key)] = tag
            elif step[0] == "deliver":
                pending = [p for p in hub.pending() if p[0] == NODES[i]]
                if pending:
                    _, database, seq = pending[step[2] % len(pending)]
                    await hub.deliver(NODES[i], database, [seq])
            else:  # restart: the node forgets the keys it handed out, and finds its slot again
                await manager.close()
                db.close()
                slot = manager.rowids.slot if manager.rowids else None
                nodes[i] = await restart(tmp, hub, NODES[i])
                assert nodes[i][0].rowids is not None
                assert nodes[i][0].rowids.slot == slot
        await hub.deliver_all()
        for manager, db in nodes:
            for table in ("ai", "pk"):
                stored = await run(manager, db, f"SELECT id, tag FROM {table} ORDER BY id")
                assert [tuple(r) for r in stored.rows] == sorted(
                    (k, tag) for (t, k), tag in told.items() if t == table
                )
        for manager, db in nodes:
            await manager.close()
            db.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(scenario(Path(tmp)))


def test_a_node_joins_without_its_slot_and_claims_it_later(tmp_path: Path) -> None:
    """While the log cannot hand out a slot, inserts that need a key chosen are refused (nothing written)
    and the rest works; once the log answers, the node claims its slot by itself."""

    async def scenario() -> None:
        hub = MemoryHub()
        (tmp_path / "a").mkdir()
        manager, db = await restart(tmp_path, hub, "a", connected=False, async_mode=True)
        assert manager.rowids is not None
        assert manager.rowids.slot is None
        await run(manager, db, "CREATE TABLE t(id INTEGER PRIMARY KEY, x)")
        with pytest.raises(NoRowidSlot, match="rowid slot"):
            await run(manager, db, "INSERT INTO t(x) VALUES ('needs a key')")
        assert (await run(manager, db, "INSERT INTO t(id, x) VALUES (5, 'given')")).last_insert_id == 5
        replicator = manager.replicator
        assert isinstance(replicator, MemoryReplicator)
        replicator.connected = True
        async with asyncio.timeout(10):
            while manager.rowids.slot is None:  # noqa: ASYNC110 - the claim retries on its own schedule
                await asyncio.sleep(0.02)
        assert (await run(manager, db, "INSERT INTO t(x) VALUES ('now')")).last_insert_id == 17
        assert manager.rowids.slot.residue == 1
        await manager.close()
        db.close()

    asyncio.run(scenario())


def test_a_restarted_node_does_not_give_a_deleted_key_again(tmp_path: Path) -> None:
    """A plain INTEGER PRIMARY KEY: SQLite would give the key of a deleted largest row again. A node
    remembers the last key it gave, across restarts, so a concurrent update of the deleted row elsewhere can
    never land on a new row."""

    async def scenario() -> None:
        hub = MemoryHub()
        manager, db = await start(tmp_path, hub, "a")
        await run(manager, db, "CREATE TABLE p(id INTEGER PRIMARY KEY, x)")
        first = (await run(manager, db, "INSERT INTO p(x) VALUES ('first')")).last_insert_id
        given = (await run(manager, db, "INSERT INTO p(x) VALUES ('deleted')")).last_insert_id
        await run(manager, db, "DELETE FROM p WHERE id = ?", given)
        await manager.close()
        db.close()
        manager, db = await restart(tmp_path, hub, "a")
        again = (await run(manager, db, "INSERT INTO p(x) VALUES ('after the restart')")).last_insert_id
        assert (first, given) == (1, 17)
        assert again == 33
        await manager.close()
        db.close()

    asyncio.run(scenario())
