"""A change set published again later (by its node after a lost ack, or replayed by someone who can reach the
log) changes nothing: rows find their own or a newer version, and schema changes that ran already are not run
a second time. Without that, a DROP TABLE published again would drop a table created anew since."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlite_ha.db.statement import Statement
from sqlite_ha.replication.memory import MemoryHub
from sqlite_ha.replication.replicated_database import ReplicatedDatabase
from tests.cluster.nodes import close, open_node


async def rows(rdb: ReplicatedDatabase) -> list[tuple[object, ...]]:
    return [tuple(r) for r in rdb.db.reader_connection.execute("SELECT id, v FROM t ORDER BY id")]


def test_a_replayed_drop_and_replayed_rows_change_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub = MemoryHub()
        a, b = await open_node(tmp_path, hub, "a"), await open_node(tmp_path, hub, "b")
        try:
            await a.execute([Statement(sql="CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")])
            _, old_insert = await a.execute([Statement(sql="INSERT INTO t VALUES (1, 'old')")])
            _, drop = await a.execute([Statement(sql="DROP TABLE t")])
            await a.execute([Statement(sql="CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")])
            _, last = await a.execute([Statement(sql="INSERT INTO t VALUES (2, 'new')")])
            assert drop is not None
            assert old_insert is not None
            assert last is not None
            await b.wait_applied(last, 10)
            log = hub.log("app.db")
            for seq in (drop, old_insert):  # published again, as they were
                copy = log.get(seq)
                await a.replicator.publish("app.db", copy.payload, msg_id=f"replay-{seq}", timeout=5)
            end = hub.log("app.db").last_seq
            await a.wait_applied(end, 10)
            await b.wait_applied(end, 10)
            for node in (a, b):
                assert await rows(node) == [(2, "new")]
                assert node.changes.parked() == {}
        finally:
            await close(a, b)

    asyncio.run(scenario())
