"""Starting a database from a snapshot, in process: gaps, verification, refusals."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sqlite_ha.changes.snapshot_file import make_snapshot_file
from sqlite_ha.db.database import Database
from sqlite_ha.db.dsn import parse_dsn
from sqlite_ha.db.statement import Statement
from sqlite_ha.replication.bootstrap import BootstrapError, bootstrap
from sqlite_ha.replication.memory import MemoryHub
from sqlite_ha.replication.replicated_database import ReplicatedDatabase
from sqlite_ha.replication.snapshot import MemorySnapshotStore, SnapshotMeta
from sqlite_ha.replication.snapshot_request import SnapshotReply


async def source_snapshot(tmp: Path, store: MemorySnapshotStore, hub: MemoryHub, rows: int) -> SnapshotMeta:
    """A node that writes ``rows`` rows and stores a snapshot of them."""
    (tmp / "src").mkdir()
    rdb = ReplicatedDatabase(
        Database(parse_dsn(str(tmp / "src" / "app.db"), memory=False)), hub.connect("src"), node="src"
    )
    await rdb.start()
    await rdb.execute([Statement(sql="CREATE TABLE t(x)")])
    for i in range(rows):
        _, seq = await rdb.execute([Statement(sql="INSERT INTO t VALUES (?)", bindings=(i,))])
    assert seq is not None
    await rdb.wait_applied(seq, 2)
    await rdb.changes.flush_position()
    made = make_snapshot_file(rdb.db, str(tmp / "snap.db"))
    meta = SnapshotMeta(
        database="app.db",
        seq=made.seq,
        hlc=made.hlc,
        sha256=made.sha256,
        size=made.size,
        schema_version=made.schema_version,
        node="src",
        taken_at=time.time(),
    )
    await store.put(meta, tmp / "snap.db")
    await rdb.close()
    await rdb.replicator.close()
    rdb.db.close()
    return meta


def count_rows(path: Path) -> int:
    db = Database(parse_dsn(str(path), memory=False))
    try:
        return int(asyncio.run(db.execute([Statement(sql="SELECT count(*) FROM t")])).results[0].rows[0][0])
    finally:
        db.close()


def test_a_gap_installs_the_snapshot_and_a_covered_log_does_not(tmp_path: Path) -> None:
    async def scenario() -> tuple[SnapshotMeta | None, SnapshotMeta | None]:
        hub, store = MemoryHub(), MemorySnapshotStore()
        meta = await source_snapshot(tmp_path, store, hub, rows=5)
        (tmp_path / "new").mkdir()
        spec = parse_dsn(str(tmp_path / "new" / "app.db"), memory=False)
        no_gap = await bootstrap(spec, hub.connect("new"), store)  # the log still has everything
        hub.log("app.db").base = meta.seq  # everything up to the snapshot aged out of the log
        hub.log("app.db").entries.clear()
        gap = await bootstrap(spec, hub.connect("new"), store)
        return no_gap.installed, gap.installed

    no_gap, gap = asyncio.run(scenario())
    assert no_gap is None
    assert gap is not None
    assert count_rows(tmp_path / "new" / "app.db") == 5


def test_a_corrupt_snapshot_is_refused_and_the_file_kept(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub, store = MemoryHub(), MemorySnapshotStore()
        meta = await source_snapshot(tmp_path, store, hub, rows=3)
        data = bytearray((tmp_path / "snap.db").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (tmp_path / "snap.db").write_bytes(bytes(data))
        await store.put(meta, tmp_path / "snap.db")  # the bytes no longer match the checksum
        (tmp_path / "new").mkdir()
        target = tmp_path / "new" / "app.db"
        target.write_bytes(b"")  # an existing (empty) file that must survive the refusal
        with pytest.raises(BootstrapError, match="corrupt"):
            await bootstrap(parse_dsn(str(target), memory=False), hub.connect("new"), store, force=True)
        assert target.read_bytes() == b""
        assert not [p for p in (tmp_path / "new").iterdir() if p.name != "app.db"]  # no temporary left

    asyncio.run(scenario())


def test_a_gap_without_a_covering_snapshot_refuses(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub, store = MemoryHub(), MemorySnapshotStore()
        hub.log("app.db").base = 10  # the log lost change sets 1..10
        (tmp_path / "new").mkdir()
        spec = parse_dsn(str(tmp_path / "new" / "app.db"), memory=False)
        with pytest.raises(BootstrapError, match="no snapshot"):
            await bootstrap(spec, hub.connect("new"), store)
        meta = await source_snapshot(tmp_path, store, MemoryHub(), rows=1)
        hub.log("app.db").base = meta.seq + 5  # older than the snapshot covers
        with pytest.raises(BootstrapError, match="older"):
            await bootstrap(spec, hub.connect("new"), store)

    asyncio.run(scenario())


def test_a_running_node_that_missed_what_the_log_dropped_refuses_requests(tmp_path: Path) -> None:
    from sqlite_ha.replication.replicated_database import Gap

    async def scenario() -> None:
        hub = MemoryHub(auto=False)  # nothing is delivered to the node until the test says so
        (tmp_path / "n").mkdir()
        rdb = ReplicatedDatabase(
            Database(parse_dsn(str(tmp_path / "n" / "app.db"), memory=False)), hub.connect("n"), node="n"
        )
        await rdb.start()
        await rdb.check_gap()
        assert rdb.gap is None
        hub.log("app.db").base = 7  # change sets 1..7 dropped before this node saw them
        await rdb.check_gap()
        assert rdb.gap == (0, 8)
        with pytest.raises(Gap, match="refuses to serve"):
            await rdb.execute([Statement(sql="SELECT 1")])
        status = await rdb.status()
        assert status["gap"] == {"known_through": 0, "log_starts_at": 8}
        rdb.verified_through(7)  # e.g. started from a snapshot that covers them
        await rdb.check_gap()
        assert rdb.gap is None
        await rdb.close()
        await rdb.replicator.close()
        rdb.db.close()

    asyncio.run(scenario())


def test_a_node_never_applies_past_change_sets_the_log_dropped(tmp_path: Path) -> None:
    """A consumer steps silently over change sets the log dropped; the node must notice the hole before it
    applies what follows (applying it would move its position past the gap and hide it for good)."""
    from sqlite_ha.replication.replicated_database import Gap
    from sqlite_ha.replication.replicator import ReplicationError

    async def scenario() -> None:
        hub = MemoryHub(auto=False)
        nodes = []
        for name in ("w", "n"):
            (tmp_path / name).mkdir()
            rdb = ReplicatedDatabase(
                Database(parse_dsn(str(tmp_path / name / "app.db"), memory=False)),
                hub.connect(name),
                node=name,
            )
            await rdb.start()
            nodes.append(rdb)
        w, n = nodes
        gaps: list[tuple[int, int] | None] = []
        n.on_gap = lambda rdb: gaps.append(rdb.gap)
        await w.execute([Statement(sql="CREATE TABLE t(x)")])
        for i in range(4):
            await w.execute([Statement(sql="INSERT INTO t VALUES (?)", bindings=(i,))])
        await hub.deliver("n", "app.db", [1, 2, 3])  # seq 4 and 5 are new to n
        assert n.applied_seq == 3
        await hub.deliver("n", "app.db", [5, 3])  # out of order and duplicated, but nothing is lost: fine
        log = hub.log("app.db")
        log.entries, log.base = log.entries[3:], 3  # the log drops seq 1..3; seq 4 is still there
        await hub.deliver("n", "app.db", [4])
        assert n.gap is None
        assert await n.execute([Statement(sql="SELECT count(*) FROM t")]) is not None
        _, seq6 = await w.execute([Statement(sql="INSERT INTO t VALUES (9)")])
        _, seq7 = await w.execute([Statement(sql="INSERT INTO t VALUES (10)")])
        assert (seq6, seq7) == (6, 7)
        log.entries, log.base = log.entries[3:], 6  # now seq 6 goes before n had it
        with pytest.raises(ReplicationError, match="gap"):
            await hub.deliver("n", "app.db", [7])
        assert n.applied_seq == 5  # 7 was not applied
        assert n.gap == (5, 7)
        assert gaps == [(5, 7)]
        with pytest.raises(Gap):
            await n.execute([Statement(sql="SELECT count(*) FROM t")])
        for rdb in nodes:
            await rdb.close()
            await rdb.replicator.close()
            rdb.db.close()

    asyncio.run(scenario())


def test_a_gap_no_snapshot_covers_asks_the_live_nodes(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub, elsewhere, store = MemoryHub(), MemorySnapshotStore(), MemorySnapshotStore()
        meta = await source_snapshot(tmp_path, elsewhere, hub, rows=5)  # what a live node stores when asked
        hub.log("app.db").base = meta.seq  # the log dropped everything; the store holds no snapshot
        hub.log("app.db").entries.clear()
        asked: list[tuple[str, int]] = []

        async def answered(database: str, need: int) -> SnapshotReply:
            asked.append((database, need))
            await store.put(meta, tmp_path / "snap.db")
            return SnapshotReply(database=database, node="src", ok=True, seq=meta.seq, covers=meta.covers)

        (tmp_path / "new").mkdir()
        spec = parse_dsn(str(tmp_path / "new" / "app.db"), memory=False)
        got = await bootstrap(spec, hub.connect("new"), store, ask=answered)
        assert asked == [("app.db", meta.seq)]  # covering the log up to where it starts now
        assert got.installed == meta

        async def refused(database: str, need: int) -> SnapshotReply:
            return SnapshotReply(database=database, node="n2", ok=False, error="this node has a gap itself")

        async def nobody(database: str, need: int) -> None:
            return None

        (tmp_path / "other").mkdir()
        other = parse_dsn(str(tmp_path / "other" / "app.db"), memory=False)
        with pytest.raises(BootstrapError, match="n2 refused: this node has a gap itself"):
            await bootstrap(other, hub.connect("other"), MemorySnapshotStore(), ask=refused)
        with pytest.raises(BootstrapError, match="no live node answered"):
            await bootstrap(other, hub.connect("other"), MemorySnapshotStore(), ask=nobody)
        assert not (tmp_path / "other" / "app.db").exists()

    asyncio.run(scenario())
    assert count_rows(tmp_path / "new" / "app.db") == 5
