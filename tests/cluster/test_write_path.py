"""The write path's outcomes, in process on the in-memory hub: what a client may conclude from each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

from sqlite_ha.changes.changeset import ChangeSet
from sqlite_ha.db.database import Database
from sqlite_ha.db.dsn import parse_dsn
from sqlite_ha.db.statement import Statement
from sqlite_ha.errors import HAError
from sqlite_ha.replication.memory import MemoryHub, MemoryReplicator
from sqlite_ha.replication.replicated_database import NotReplicating, ReplicatedDatabase, ReplicationPending
from sqlite_ha.replication.replicator import ReplicationError
from tests.cluster.nodes import close, open_node


def stmt(sql: str, *params: Any) -> list[Statement]:
    return [Statement(sql=sql, bindings=params or None)]


async def rows(rdb: ReplicatedDatabase, sql: str) -> list[tuple[Any, ...]]:
    return (await rdb.db.execute(stmt(sql))).results[0].rows


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110 - polls database state, which has no event
            await asyncio.sleep(0.01)


def run(coro: Callable[[Path], Awaitable[None]], tmp_path: Path) -> None:
    asyncio.run(coro(tmp_path))


def test_success_returns_the_seq_and_reaches_others(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub()
        a, b = await open_node(tmp, hub, "a"), await open_node(tmp, hub, "b")
        _, seq1 = await a.execute(stmt("CREATE TABLE t(x)"))
        _, seq2 = await a.execute(stmt("INSERT INTO t VALUES (1)"))
        assert seq1 is not None
        assert seq2 is not None
        assert seq2 > seq1
        await b.wait_applied(seq2, 2)
        assert await rows(b, "SELECT x FROM t") == [(1,)]
        _, none = await a.execute(stmt("SELECT * FROM t"))
        assert none is None  # reads have no seq
        await eventually(lambda: _true(a.changes.outbox_size() == 0))  # seen back in the log: outbox empty
        for n in (a, b):
            await close(n)

    run(scenario, tmp_path)


async def _true(value: bool) -> bool:
    return value


def test_starting_again_runs_each_background_task_once(tmp_path: Path) -> None:
    """Joining the log starts every database again when one of them failed to subscribe: a database
    started twice must not relay its outbox (or flush its position) twice."""

    async def scenario(tmp: Path) -> None:
        hub = MemoryHub()
        rdb = await open_node(tmp, hub, "n1")
        await rdb.start()
        await rdb.start()
        names = [t.get_name() for t in asyncio.all_tasks() if not t.done()]
        assert names.count("relay-app.db") == 1
        assert names.count("position-app.db") == 1
        _, seq = await rdb.execute(stmt("CREATE TABLE t(a)"))
        assert seq == 1
        await close(rdb)

    run(scenario, tmp_path)


def test_unreachable_log_refuses_writes_before_writing(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        a = await open_node(tmp, MemoryHub(), "a")
        await a.execute(stmt("CREATE TABLE t(x)"))
        assert isinstance(a.replicator, MemoryReplicator)
        a.replicator.connected = False
        with pytest.raises(NotReplicating):
            await a.execute(stmt("INSERT INTO t VALUES (1)"))
        assert await rows(a, "SELECT count(*) FROM t") == [(0,)]  # nothing was written
        assert await rows(a, "SELECT 1") == [(1,)]  # reads still work
        await close(a)

    run(scenario, tmp_path)


@pytest.mark.parametrize("failure", ["timeout", "error"])
def test_failed_publish_is_pending_then_delivered(tmp_path: Path, failure: str) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub()
        a = await open_node(tmp, hub, "a", timeout=0.05)
        b = await open_node(tmp, hub, "b")
        await a.execute(stmt("CREATE TABLE t(x)"))
        assert isinstance(a.replicator, MemoryReplicator)
        if failure == "timeout":
            a.replicator.publish_delay = 1.0
        else:
            a.replicator.publish_error = ReplicationError("stream unavailable")
        with pytest.raises(ReplicationPending) as info:
            await a.execute(stmt("INSERT INTO t VALUES (42)"))
        # the write is committed here, with its results, and waits in the outbox
        pending = info.value.execution
        assert pending.results[0].rows_affected == 1
        assert pending.changeset is not None
        assert await rows(a, "SELECT x FROM t") == [(42,)]
        assert pending.changeset.hlc in [hlc for hlc, _, _ in a.changes.outbox()]
        # the log comes back: the relay publishes it and the other node gets it
        a.replicator.publish_delay = 0.0
        a.replicator.publish_error = None
        await eventually(lambda: rows_equal(b, "SELECT x FROM t", [(42,)]))
        await eventually(lambda: _true(a.changes.outbox_size() == 0))
        for n in (a, b):
            await close(n)

    run(scenario, tmp_path)


async def rows_equal(rdb: ReplicatedDatabase, sql: str, expected: list[tuple[Any, ...]]) -> bool:
    try:
        return await rows(rdb, sql) == expected
    except HAError:  # e.g. the table has not arrived yet
        return False


def test_async_mode_outbox_survives_a_restart(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub()
        a = await open_node(tmp, hub, "a", async_mode=True)
        b = await open_node(tmp, hub, "b")
        assert isinstance(a.replicator, MemoryReplicator)
        a.replicator.connected = False  # the log is away: async writes still commit
        _, seq = await a.execute(stmt("CREATE TABLE t(x)"))
        assert seq is None
        await a.execute(stmt("INSERT INTO t VALUES (1)"))
        assert a.changes.outbox_size() == 2
        await close(a)  # the node stops with its outbox full
        a = await open_node(tmp, hub, "a", async_mode=True)  # and comes back with the log reachable
        await eventually(lambda: rows_equal(b, "SELECT x FROM t", [(1,)]))
        await eventually(lambda: _true(a.changes.outbox_size() == 0))
        assert hub.log("app.db").last_seq == 2  # published once each, no duplicate
        for n in (a, b):
            await close(n)

    run(scenario, tmp_path)


class Recorder:
    """An interceptor that skips change sets touching table ``skipped`` and records every outcome."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None]] = []

    def before_apply(self, cs: ChangeSet, conn: apsw.Connection) -> bool:
        return any(ch.table == "skipped" for ch in cs.changes)

    def after_apply(self, cs: ChangeSet, conn: apsw.Connection, error: BaseException | None) -> None:
        self.seen.append((cs.node, None if error is None else type(error).__name__))


def test_interceptor_can_skip_and_sees_outcomes(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub()
        hooks = Recorder()
        a = await open_node(tmp, hub, "a")
        b = await open_node(tmp, hub, "b", interceptor=hooks)
        await a.execute(stmt("CREATE TABLE kept(x)"))
        await a.execute(stmt("CREATE TABLE skipped(x)"))
        await a.execute(stmt("INSERT INTO kept VALUES (1)"))
        _, seq = await a.execute(stmt("INSERT INTO skipped VALUES (2)"))
        assert seq is not None
        await b.wait_applied(seq, 2)
        assert await rows(b, "SELECT x FROM kept") == [(1,)]
        assert await rows(b, "SELECT x FROM skipped") == []  # skipped by the hook
        assert hooks.seen == [("a", None)] * 3  # after_apply for the three it did not skip
        for n in (a, b):
            await close(n)

    run(scenario, tmp_path)


def test_a_parked_change_set_goes_through_the_interceptor_when_retried(tmp_path: Path) -> None:
    """An insert that arrives before its table waits parked; when the table comes, it applies through the
    user's hooks as it would have at first (an audit hook sees it succeed)."""

    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(auto=False)
        hooks = Recorder()
        a = await open_node(tmp, hub, "a")
        b = await open_node(tmp, hub, "b", interceptor=hooks)
        _, create = await a.execute(stmt("CREATE TABLE kept(x)"))
        _, insert = await a.execute(stmt("INSERT INTO kept VALUES (1)"))
        assert create is not None
        assert insert is not None
        await hub.deliver("b", "app.db", [insert])
        assert hooks.seen == [("a", "SchemaMissing")]  # parked, waiting for its table
        await hub.deliver("b", "app.db", [create])
        assert await rows(b, "SELECT x FROM kept") == [(1,)]
        assert hooks.seen == [("a", "SchemaMissing"), ("a", None), ("a", None)]
        for n in (a, b):
            await close(n)

    run(scenario, tmp_path)


def test_own_change_set_applies_after_a_later_schema_change(tmp_path: Path) -> None:
    """A node's change set that comes back after the table changed again is superseded, not parked."""

    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(auto=False)
        a = await open_node(tmp, hub, "a")
        await a.execute(stmt("CREATE TABLE t(id INTEGER PRIMARY KEY, v)"))
        await a.execute(stmt("INSERT INTO t VALUES (1, 'x')"))
        await a.execute(stmt("ALTER TABLE t RENAME COLUMN v TO w"))
        await close(a)
        a = await open_node(tmp, hub, "a")  # a new process: its own change sets are applied like any other
        await hub.deliver_all()
        assert a.changes.parked() == {}
        assert await rows(a, "SELECT id, w FROM t") == [(1, "x")]
        await close(a)

    run(scenario, tmp_path)


def test_own_change_sets_in_a_mixed_batch_are_not_applied_again(tmp_path: Path) -> None:
    """A batch from the log holding this process's own change sets and others': only the others' apply (the
    own rows are here since their commit), and the position moves past all of them."""

    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(auto=False)
        a, b = await open_node(tmp, hub, "a"), await open_node(tmp, hub, "b")
        db = a.db.id
        _, ddl = await a.execute(stmt("CREATE TABLE t(id INTEGER PRIMARY KEY, v)"))
        assert ddl is not None
        await hub.deliver("b", db, [ddl])
        _, own = await a.execute(stmt("INSERT INTO t VALUES (1, 'a')"))
        _, other = await b.execute(stmt("INSERT INTO t VALUES (2, 'b')"))
        assert own is not None
        assert other is not None
        await hub.deliver("a", db, [ddl, own, other])
        assert a.changes.stats.applied == 1  # b's insert only
        assert a.changes.stats.rows_skipped == 0  # a's own rows were not looked at again
        assert a.applied_seq == max(ddl, own, other)
        assert await rows(a, "SELECT id, v FROM t ORDER BY id") == [(1, "a"), (2, "b")]
        assert a.changes.outbox_size() == 0  # seen back in the log, removed with the batch
        for n in (a, b):
            await close(n)

    run(scenario, tmp_path)


def test_triggers_never_fire_when_applying(tmp_path: Path) -> None:
    """Rows made by a trigger at the origin arrive as rows; the replica must not make them again. Applying
    switches triggers off only where there are some, so the cases where the trigger arrives with the rows
    matter: in the same batch as them, and in the same change set."""

    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(auto=False)
        a, b = await open_node(tmp, hub, "a"), await open_node(tmp, hub, "b")
        db = a.db.id
        audit = "CREATE TRIGGER {0}_audit AFTER INSERT ON {0} BEGIN INSERT INTO audit VALUES (new.id); END"
        _, tables = await a.execute(stmt("CREATE TABLE audit(id); CREATE TABLE t(id); CREATE TABLE u(id)"))
        _, trigger = await a.execute(stmt(audit.format("t")))
        _, insert = await a.execute(stmt("INSERT INTO t VALUES (1)"))
        # one change set: the trigger and a row that fires it
        _, together = await a.execute([*stmt(audit.format("u")), *stmt("INSERT INTO u VALUES (2)")])
        seqs = [tables, trigger, insert, together]
        assert all(s is not None for s in seqs)
        await hub.deliver("b", db, seqs)  # one batch: no trigger on b when it starts
        _, later = await a.execute(stmt("INSERT INTO t VALUES (3)"))
        assert later is not None
        await hub.deliver("b", db, [later])  # the trigger is on b now
        assert await rows(b, "SELECT id FROM audit ORDER BY id") == [(1,), (2,), (3,)]
        assert await rows(a, "SELECT id FROM audit ORDER BY id") == [(1,), (2,), (3,)]
        await b.execute(stmt("INSERT INTO t VALUES (4)"))  # triggers are on again for clients
        assert await rows(b, "SELECT id FROM audit WHERE id = 4") == [(4,)]
        for n in (a, b):
            await close(n)

    run(scenario, tmp_path)


def test_foreign_keys_are_not_checked_when_applying(tmp_path: Path) -> None:
    """With ``_fk=1`` clients' writes are checked, but a change set from the log is applied as its origin
    committed it: a parent deleted on one node while another node added a child must not park the change set
    on either node (they would diverge); both end with the child and without the parent."""

    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(auto=False)
        nodes = []
        for name in ("a", "b"):
            (tmp / name).mkdir()
            db = Database(parse_dsn(f"file:{tmp / name / 'app.db'}?_fk=1", memory=False))
            rdb = ReplicatedDatabase(db, hub.connect(name), node=name)
            await rdb.start()
            nodes.append(rdb)
        a, b = nodes
        db_id = a.db.id
        tables = "CREATE TABLE p(id INTEGER PRIMARY KEY); CREATE TABLE c(id PRIMARY KEY, p REFERENCES p)"
        _, schema = await a.execute(stmt(tables))
        _, parent = await a.execute(stmt("INSERT INTO p VALUES (1)"))
        await hub.deliver("b", db_id, [schema, parent])
        with pytest.raises(HAError):  # a client's write is checked
            await b.execute(stmt("INSERT INTO c VALUES (9, 2)"))
        _, child = await b.execute(stmt("INSERT INTO c VALUES (1, 1)"))
        _, gone = await a.execute(stmt("DELETE FROM p WHERE id = 1"))
        await hub.deliver("a", db_id, [schema, parent, child, gone])
        await hub.deliver("b", db_id, [child, gone])
        for n in (a, b):
            assert n.changes.parked() == {}
            assert await rows(n, "SELECT id FROM p") == []
            assert await rows(n, "SELECT id, p FROM c") == [(1, 1)]
        with pytest.raises(HAError):  # and checks are on again for clients
            await a.execute(stmt("INSERT INTO c VALUES (10, 3)"))
        for n in (a, b):
            await close(n)

    run(scenario, tmp_path)


def test_a_dropped_constraint_replays_harmlessly(tmp_path: Path) -> None:
    """A restarted node applies again its own change sets committed after its last recorded position; one
    that dropped a constraint (SQLite's ALTER TABLE … DROP CONSTRAINT) finds it gone: that is success, not a
    parked change set."""

    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(auto=False)
        a = await open_node(tmp, hub, "a")
        db = a.db.id
        _, created = await a.execute(stmt("CREATE TABLE t(id INTEGER PRIMARY KEY, v INTEGER)"))
        _, added = await a.execute(stmt("ALTER TABLE t ADD CONSTRAINT positive CHECK (v > 0)"))
        assert created is not None
        assert added is not None
        await hub.deliver("a", db, [created, added])  # seen back: the position moves past them
        await a.execute(stmt("ALTER TABLE t DROP CONSTRAINT positive"))
        await close(a)  # records the position: the DROP is after it
        a = await open_node(tmp, hub, "a")
        await hub.deliver_all()  # the DROP again, on a table without the constraint
        assert a.changes.parked() == {}
        await a.execute(stmt("INSERT INTO t VALUES (1, -5)"))  # the constraint stays dropped
        await close(a)

    run(scenario, tmp_path)


def test_concurrent_writes_commit_together_and_fail_alone(tmp_path: Path) -> None:
    """Writes that arrive while the writer is busy share one transaction and one change set (group commit),
    and a request that fails rolls back alone."""

    async def scenario(tmp: Path) -> None:
        hub = MemoryHub()
        a, b = await open_node(tmp, hub, "a"), await open_node(tmp, hub, "b")
        await a.execute(stmt("CREATE TABLE t(x UNIQUE)"))
        await a.execute(stmt("CREATE TABLE ddl_probe(x)"))
        requests = [stmt("INSERT INTO t VALUES (?)", i % 10) for i in range(20)]
        # a failing request's schema change must not travel either
        requests.append([Statement(sql="CREATE TABLE never(x)"), Statement(sql="INSERT INTO t VALUES (0)")])
        outcomes = await asyncio.gather(*(a.execute(r) for r in requests), return_exceptions=True)
        ok = [o for o in outcomes if not isinstance(o, BaseException)]
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        assert len(ok) == 10
        assert len(failed) == 11
        assert all(isinstance(f, HAError) and "UNIQUE" in f.message for f in failed)
        seqs = {seq for _, seq in ok}
        assert len(seqs) < len(ok)  # fewer change sets than writes: they were committed together
        assert None not in seqs
        await b.wait_applied(max(s for s in seqs if s is not None), 2)
        assert await rows(b, "SELECT x FROM t ORDER BY x") == [(i,) for i in range(10)]
        assert await rows(b, "SELECT count(*) FROM sqlite_schema WHERE name = 'never'") == [(0,)]
        assert await rows(a, "SELECT count(*) FROM sqlite_schema WHERE name = 'never'") == [(0,)]
        for n in (a, b):
            await close(n)

    run(scenario, tmp_path)


def test_writes_arriving_during_a_publish_commit_as_one_group(tmp_path: Path) -> None:
    """While a change set waits for the log's ack, later writes queue and then commit and publish together:
    under load one change set carries many writes. A lone write waits for nothing."""

    async def scenario(tmp: Path) -> None:
        hub = MemoryHub()
        a, b = await open_node(tmp, hub, "a"), await open_node(tmp, hub, "b")
        await a.execute(stmt("CREATE TABLE t(x)"))
        assert isinstance(a.replicator, MemoryReplicator)
        a.replicator.publish_delay = 0.2
        before = a.replicator.published
        first = asyncio.ensure_future(a.execute(stmt("INSERT INTO t VALUES (0)")))
        await eventually(lambda: _true(bool(a._publishing)))  # the first change set is being published
        later = [asyncio.ensure_future(a.execute(stmt("INSERT INTO t VALUES (?)", i))) for i in range(1, 9)]
        for _ in range(50):  # many turns of the loop: without the gate they would have committed by now
            await asyncio.sleep(0)
        assert await rows(a, "SELECT count(*) FROM t") == [(1,)]  # the later ones wait for the publish
        outcomes = await asyncio.gather(first, *later)
        seqs = [seq for _, seq in outcomes]
        assert len(set(seqs[1:])) == 1  # one change set for the eight that waited
        assert seqs[1] > seqs[0]
        assert a.replicator.published - before == 2
        await b.wait_applied(seqs[-1], 2)
        assert await rows(b, "SELECT x FROM t ORDER BY x") == [(i,) for i in range(9)]
        a.replicator.publish_delay = 0.0
        async with asyncio.timeout(1):  # alone, nothing in flight: no waiting
            await a.execute(stmt("INSERT INTO t VALUES (9)"))
        for n in (a, b):
            await close(n)

    run(scenario, tmp_path)


def test_a_group_that_fails_as_a_whole_is_retried_request_by_request(tmp_path: Path) -> None:
    """An interrupted INSERT makes SQLite roll back the whole transaction; the other requests of its group
    must not pay for it: they run again, each on its own."""
    from sqlite_ha.db.database import DatabaseOptions
    from sqlite_ha.db.runner import Limits, QueryTimeout

    async def scenario(tmp: Path) -> None:
        db = Database(
            parse_dsn(str(tmp / "app.db"), memory=False), DatabaseOptions(limits=Limits(timeout=0.5))
        )
        await db.execute(stmt("CREATE TABLE t(x)"))
        endless = (
            "INSERT INTO t WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT n FROM c"
        )
        outcomes = await asyncio.gather(
            db.execute(stmt("INSERT INTO t VALUES ('fast')")),
            db.execute(stmt(endless)),
            return_exceptions=True,
        )
        assert not isinstance(outcomes[0], BaseException), outcomes[0]
        assert isinstance(outcomes[1], QueryTimeout)
        assert (await db.execute(stmt("SELECT x FROM t"))).results[0].rows == [("fast",)]
        db.close()

    run(scenario, tmp_path)
