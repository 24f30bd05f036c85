"""The fence of writer modes, in process on the in-memory hub: every write is a conditional append to the
log, committed locally only once the log took it. Two nodes that both believe they write (the worst a writer
mode can get wrong) still serialize every transaction and never diverge."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from sqlite_ha.db.statement import Statement
from sqlite_ha.replication.memory import MemoryHub
from sqlite_ha.replication.replicated_database import ReplicatedDatabase
from sqlite_ha.writer.role import Fenced, NotWriter, OutcomeUnknown, Writer
from sqlite_ha.writer.static import StaticWriter
from tests.cluster.nodes import close, open_node


def stmt(sql: str, *params: Any) -> list[Statement]:
    return [Statement(sql=sql, bindings=params or None)]


async def rows(rdb: ReplicatedDatabase, sql: str) -> list[tuple[Any, ...]]:
    return (await rdb.db.execute(stmt(sql))).results[0].rows


async def fenced_node(tmp: Path, hub: MemoryHub, name: str, *, writes: bool) -> ReplicatedDatabase:
    rdb = await open_node(tmp, hub, name, timeout=2.0)
    rdb.set_writer_mode(StaticWriter(name, f"http://{name}", is_self=writes, pg_port=None))
    return rdb


async def settled(*nodes: ReplicatedDatabase) -> None:
    """Every node has applied the whole log."""
    for rdb in nodes:
        await rdb.wait_applied(await rdb.replicator.last_seq(rdb.db.id), 5.0)


def test_two_nodes_that_both_believe_they_write_lose_no_update(tmp_path: Path) -> None:
    """Concurrent read-modify-write increments from two self-declared writers: last-writer-wins would lose
    some; the fence makes the log refuse each one based on a stale view, and the writer runs it again."""

    async def scenario(tmp: Path) -> None:
        hub = MemoryHub()
        a = await fenced_node(tmp, hub, "a", writes=True)
        b = await fenced_node(tmp, hub, "b", writes=True)
        await a.execute(stmt("CREATE TABLE c(id INTEGER PRIMARY KEY, n INTEGER)"))
        await a.execute(stmt("INSERT INTO c VALUES (1, 0)"))
        await settled(a, b)

        async def bump(rdb: ReplicatedDatabase, times: int) -> None:
            done = 0
            while done < times:
                try:
                    await rdb.execute(stmt("UPDATE c SET n = n + 1 WHERE id = 1"))
                except Fenced:
                    continue  # nothing was written: a client runs it again
                done += 1

        for rdb in (a, b):
            rdb.replicator.publish_delay = 0.003  # type: ignore[attr-defined]  # appends take time: they overlap
        await asyncio.gather(bump(a, 25), bump(b, 25))
        await settled(a, b)
        assert await rows(a, "SELECT n FROM c") == [(50,)]
        assert await rows(b, "SELECT n FROM c") == [(50,)]
        assert a.fence.fenced + b.fence.fenced > 0  # they did race: the log refused stale appends
        await close(a, b)

    asyncio.run(scenario(tmp_path))


def test_a_refused_write_leaves_nothing_behind(tmp_path: Path) -> None:
    """A node that does not write by role (a ``?local=true`` write) and whose view is stale: the log refuses
    its append, it keeps nothing of it, and its next write (a fresh view) lands."""

    async def scenario(tmp: Path) -> None:
        hub = MemoryHub()
        a = await fenced_node(tmp, hub, "a", writes=True)
        b = await fenced_node(tmp, hub, "b", writes=False)
        await a.execute(stmt("CREATE TABLE t(k TEXT PRIMARY KEY, v)"))
        await b.execute(stmt("INSERT INTO t VALUES ('b1', 'first')"))  # b's view is current: it lands
        await a.execute(stmt("INSERT INTO t VALUES ('a1', 'x')"))  # the log moves on past b's view
        with pytest.raises(Fenced) as refused:
            await b.execute(stmt("INSERT INTO t VALUES ('b2', 'stale')"))
        assert refused.value.code == "fenced"
        await settled(a, b)
        for rdb in (a, b):
            assert await rows(rdb, "SELECT k FROM t ORDER BY k") == [("a1",), ("b1",)]
            await rdb.changes.flush_position()  # (own change sets seen back leave the outbox lazily)
            assert rdb.changes.outbox_size() == 0
        await b.execute(stmt("INSERT INTO t VALUES ('b2', 'again')"))
        await settled(a, b)
        for rdb in (a, b):
            assert await rows(rdb, "SELECT k FROM t ORDER BY k") == [("a1",), ("b1",), ("b2",)]
        await close(a, b)

    asyncio.run(scenario(tmp_path))


def test_a_new_writer_fences_the_old_one_before_writing_anything(tmp_path: Path) -> None:
    """The new writer's term mark: the old writer's next append is refused even though the new one has not
    written a row yet, and it keeps nothing of it."""

    async def scenario(tmp: Path) -> None:
        hub = MemoryHub()
        old = await fenced_node(tmp, hub, "old", writes=True)
        new = await fenced_node(tmp, hub, "new", writes=False)
        await old.execute(stmt("CREATE TABLE t(k TEXT PRIMARY KEY)"))
        await settled(old, new)
        assert new.writer_mode is not None
        new.writer_mode._set(Writer(node="new", url="http://new", is_self=True, epoch=2))  # elected
        await new.fence.ready()  # what its first write does: catch up, then mark the term
        assert new.fence.terms == 1
        before = await old.replicator.last_seq("app.db")
        # The old writer still believes it writes (paused, partitioned): a write it makes is refused first.
        # Then, being the writer in its own eyes, it catches up and runs it again: after the mark.
        _, seq = await old.execute(stmt("INSERT INTO t VALUES ('late')"))
        assert old.fence.fenced == 1
        assert seq is not None
        assert seq > before
        await settled(old, new)
        for rdb in (old, new):
            assert await rows(rdb, "SELECT k FROM t") == [("late",)]
        await close(old, new)

    asyncio.run(scenario(tmp_path))


def test_a_writer_whose_claim_ran_out_writes_nothing(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub()
        a = await fenced_node(tmp, hub, "a", writes=True)
        await a.execute(stmt("CREATE TABLE t(x)"))
        mode = a.writer_mode
        assert mode is not None
        mode.holds = lambda: False  # type: ignore[method-assign]  # its lease ran out (a paused process)
        with pytest.raises(NotWriter):
            await a.execute(stmt("INSERT INTO t VALUES (1)"))
        assert await rows(a, "SELECT count(*) FROM t") == [(0,)]
        assert await a.replicator.last_seq("app.db") == 2  # the term mark and the CREATE: nothing else
        await close(a)

    asyncio.run(scenario(tmp_path))


def test_no_answer_from_the_log_commits_nothing_here(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub()
        a = await fenced_node(tmp, hub, "a", writes=True)
        await a.execute(stmt("CREATE TABLE t(x)"))
        a.replicator.publish_delay = 5.0  # type: ignore[attr-defined]  # longer than the 2 s timeout
        with pytest.raises(OutcomeUnknown) as unknown:
            await a.execute(stmt("INSERT INTO t VALUES (1)"))
        assert unknown.value.code == "write_outcome_unknown"
        assert await rows(a, "SELECT count(*) FROM t") == [(0,)]
        assert a.changes.outbox_size() == 0
        a.replicator.publish_delay = 0.0  # type: ignore[attr-defined]
        await a.execute(stmt("INSERT INTO t VALUES (2)"))  # the fence is established again, and it lands
        assert await rows(a, "SELECT x FROM t") == [(2,)]
        await close(a)

    asyncio.run(scenario(tmp_path))


def test_an_interactive_transaction_commits_only_once_the_log_took_it(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub()
        a = await fenced_node(tmp, hub, "a", writes=True)
        b = await fenced_node(tmp, hub, "b", writes=False)
        await a.execute(stmt("CREATE TABLE t(x)"))
        await settled(a, b)
        tx = await a.begin()
        await tx.run(stmt("INSERT INTO t VALUES (1)"))
        await b.execute(stmt("INSERT INTO t VALUES (2)"))  # gets in first (b's view is current)
        with pytest.raises(Fenced):
            await a.commit(tx)
        await settled(a, b)
        for rdb in (a, b):
            assert await rows(rdb, "SELECT x FROM t") == [(2,)]
        tx = await a.begin()
        await tx.run(stmt("INSERT INTO t VALUES (3)"))
        _, seq = await a.commit(tx)
        assert seq is not None
        await b.wait_applied(seq, 2)
        assert await rows(b, "SELECT x FROM t ORDER BY x") == [(2,), (3,)]
        await close(a, b)

    asyncio.run(scenario(tmp_path))
