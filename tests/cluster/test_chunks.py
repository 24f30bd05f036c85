"""Change sets larger than one message of the log, in process on the in-memory hub with a small max payload:
chunks in order, interleaved with other nodes' messages, duplicated, a crash between chunks on either side,
a snapshot taken between chunks, a set that never completes, a corrupt one, and the transaction size limit."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import pytest

from sqlite_ha.changes.snapshot_file import make_snapshot_file
from sqlite_ha.db.dsn import parse_dsn
from sqlite_ha.db.statement import Statement
from sqlite_ha.errors import PayloadTooLarge
from sqlite_ha.replication import chunk
from sqlite_ha.replication.bootstrap import bootstrap, publish_file_outbox
from sqlite_ha.replication.memory import MemoryHub, MemoryReplicator
from sqlite_ha.replication.replicated_database import ReplicatedDatabase, ReplicationPending
from sqlite_ha.replication.replicator import Delivery
from sqlite_ha.replication.snapshot import MemorySnapshotStore, SnapshotMeta
from tests.cluster.test_write_path import close, eventually, open_node, rows, run, stmt

LIMIT = 16 * 1024  # the hub's max payload: a change set of a few hundred rows takes many messages
DB = "app.db"
TABLE = "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"


def big(rows_: int = 300, width: int = 400, table: str = "t") -> list[Statement]:
    """One INSERT of ``rows_`` rows of ``2 * width`` hex characters: a change set of about
    ``rows_ * 2 * width`` bytes."""
    return stmt(
        f"INSERT INTO {table}(v) SELECT hex(randomblob({width})) FROM (WITH RECURSIVE c(x) AS "
        f"(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows_}) SELECT x FROM c)"
    )


def checksum(rdb: ReplicatedDatabase, table: str = "t") -> str:
    digest = hashlib.sha256()
    for row in rdb.db.reader_connection.execute(f"SELECT * FROM {table} ORDER BY 1"):
        digest.update(repr(row).encode())
    return digest.hexdigest()


def leftovers(rdb: ReplicatedDatabase) -> int:
    return int(rdb.db.reader_connection.execute("SELECT count(*) FROM _ha_chunks").fetchall()[0][0] or 0)  # type: ignore[arg-type]


def entries(hub: MemoryHub) -> list[Delivery]:
    return list(hub.log(DB).entries)


def chunk_seqs(hub: MemoryHub) -> list[int]:
    return [d.seq for d in entries(hub) if chunk.is_chunk(d.payload)]


async def true(value: bool) -> bool:
    return value


async def deliver(hub: MemoryHub, node: str, seqs: list[int]) -> None:
    for seq in seqs:
        await hub.deliver(node, DB, [seq])


def test_a_transaction_larger_than_a_message_replicates_in_chunks(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(max_payload=LIMIT)
        a, b, c = [await open_node(tmp, hub, n) for n in "abc"]
        await a.execute(stmt(TABLE))
        _, seq = await a.execute(big())
        assert seq is not None
        pieces = chunk_seqs(hub)
        assert len(pieces) > 10
        assert all(len(d.payload) <= LIMIT for d in entries(hub))
        assert seq == pieces[-1] == hub.log(DB).last_seq  # the write's seq is its last chunk's
        for n in (b, c):
            await n.wait_applied(seq, 5)
            assert checksum(n) == checksum(a)
            assert await rows(n, "SELECT count(*) FROM t") == [(300,)]
            status = (await n.status())["chunks"]
            assert (status["complete"], status["incomplete"], status["received"]) == (1, 0, len(pieces))
        await eventually(lambda: true(a.changes.outbox_size() == 0))  # seen back whole: outbox empty
        assert [leftovers(n) for n in (a, b, c)] == [0, 0, 0]
        assert (a.changes.stats.rows_applied, b.changes.stats.rows_applied) == (0, 300)  # not twice on a
        assert (a.published, a.published_chunked) == (2, 1)  # the relay did not publish it a second time
        for n in (a, b, c):
            await close(n)

    run(scenario, tmp_path)


def test_chunks_interleaved_with_other_nodes_messages(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(max_payload=LIMIT)
        a, b, c = [await open_node(tmp, hub, n) for n in "abc"]
        _, seq = await a.execute(stmt("CREATE TABLE ta(id INTEGER PRIMARY KEY, v TEXT)"))
        _, seq = await a.execute(stmt("CREATE TABLE tb(id INTEGER PRIMARY KEY, v TEXT)"))
        assert seq is not None
        await b.wait_applied(seq, 5)
        for n in (a, b):
            assert isinstance(n.replicator, MemoryReplicator)
            n.replicator.publish_delay = 0.002  # so that the others' messages come in between

        async def small_writes() -> None:
            for i in range(30):
                await b.execute(stmt("INSERT INTO tb(v) VALUES (?)", f"small {i}"))

        await asyncio.gather(
            a.execute(big(table="ta")), b.execute(big(table="tb", rows_=200)), small_writes()
        )
        log = entries(hub)
        sets: dict[str, list[int]] = {}
        for d in log:
            if chunk.is_chunk(d.payload):
                sets.setdefault(chunk.parse(d.payload).msg_id, []).append(d.seq)
        assert len(sets) == 2
        for seqs in sets.values():  # another message lies between the first and last chunk of each set
            assert seqs[-1] - seqs[0] + 1 > len(seqs)
        last = hub.log(DB).last_seq
        for n in (a, b, c):
            await n.wait_applied(last, 5)
        for table in ("ta", "tb"):
            assert checksum(a, table) == checksum(b, table) == checksum(c, table)
        assert await rows(c, "SELECT count(*) FROM tb") == [(230,)]
        assert [leftovers(n) for n in (a, b, c)] == [0, 0, 0]
        for n in (a, b, c):
            await close(n)

    run(scenario, tmp_path)


def test_duplicate_chunks_are_harmless_and_late_copies_are_dropped(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(auto=False, max_payload=LIMIT)
        a, c = await open_node(tmp, hub, "a"), await open_node(tmp, hub, "c")
        await a.execute(stmt(TABLE))
        _, seq = await a.execute(big())
        pieces = [d for d in entries(hub) if chunk.is_chunk(d.payload)]
        # The same chunks published again after the log's deduplication window: stored twice. A partial
        # copy (its publisher stopped after three chunks) and a whole one.
        hub.log(DB).ids.clear()
        for d in pieces[:3]:
            await a.replicator.publish(DB, d.payload, msg_id=str(d.msg_id), timeout=1)
        hub.log(DB).ids.clear()
        for d in pieces:
            await a.replicator.publish(DB, d.payload, msg_id=str(d.msg_id), timeout=1)
        assert len(chunk_seqs(hub)) == 2 * len(pieces) + 3
        # c gets everything, each message twice, and the first chunk out of order once more at the end.
        for d in entries(hub):
            await hub.deliver("c", DB, [d.seq, d.seq])
            if d.seq == pieces[len(pieces) // 2].seq:
                status = (await c.status())["chunks"]
                assert status["incomplete"] == 1
                assert status["incomplete_sets"][0]["chunks"] == len(pieces) // 2 + 1
        await hub.deliver("c", DB, [pieces[0].seq])
        assert c.applied_seq == hub.log(DB).last_seq
        assert checksum(c) == checksum(a)
        assert leftovers(c) == 0
        assert c.changes.stats.chunked == 1  # applied once; the copies found it done
        assert (await c.status())["chunks"]["incomplete"] == 0
        assert seq is not None
        for n in (a, c):
            await close(n)

    run(scenario, tmp_path)


def test_a_subscriber_that_stops_between_chunks_resumes(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(auto=False, max_payload=LIMIT)
        a, c = await open_node(tmp, hub, "a"), await open_node(tmp, hub, "c")
        await a.execute(stmt(TABLE))
        await a.execute(big())
        pieces = chunk_seqs(hub)
        half = len(pieces) // 2
        await deliver(hub, "c", list(range(1, pieces[half] + 1)))
        assert c.applied_seq == pieces[half]
        await close(c)  # the process stops: what it had is in its file
        c = await open_node(tmp, hub, "c")
        assert c.applied_seq == pieces[half]
        status = (await c.status())["chunks"]
        assert (status["incomplete"], status["incomplete_sets"][0]["chunks"]) == (1, half + 1)
        assert await rows(c, "SELECT count(*) FROM t") == [(0,)]  # all or nothing: nothing yet
        await hub.deliver_all()
        assert checksum(c) == checksum(a)
        assert await rows(c, "SELECT count(*) FROM t") == [(300,)]
        assert leftovers(c) == 0
        for n in (a, c):
            await close(n)

    run(scenario, tmp_path)


def test_a_publish_that_fails_between_chunks_is_finished_by_the_relay(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(max_payload=LIMIT)
        a, b = await open_node(tmp, hub, "a", timeout=1.0), await open_node(tmp, hub, "b")
        await a.execute(stmt(TABLE))
        assert isinstance(a.replicator, MemoryReplicator)
        a.replicator.publish_delay = 0.01
        write = asyncio.ensure_future(a.execute(big()))
        await eventually(lambda: true(len(chunk_seqs(hub)) >= 3))
        a.replicator.connected = False  # the log goes away in the middle of the change set
        with pytest.raises(ReplicationPending):
            await write
        published = len(chunk_seqs(hub))
        await eventually(lambda: true((b.changes.partials()[0]) == 1))
        assert await rows(b, "SELECT count(*) FROM t") == [(0,)]
        a.replicator.publish_delay = 0.0
        a.replicator.connected = True  # the relay publishes it whole; the first chunks are deduplicated
        await eventually(lambda: rows_are(b, 300), timeout=10)
        assert checksum(b) == checksum(a)
        count = chunk.parse(entries(hub)[-1].payload).count
        assert published < count == len(chunk_seqs(hub))
        await eventually(lambda: true(a.changes.outbox_size() == 0))
        assert leftovers(b) == 0
        for n in (a, b):
            await close(n)

    run(scenario, tmp_path)


def test_a_publisher_that_stops_between_chunks_finishes_after_restart(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(max_payload=LIMIT)
        a, b = await open_node(tmp, hub, "a", async_mode=True), await open_node(tmp, hub, "b")
        await a.execute(stmt(TABLE))
        await eventually(lambda: true(a.changes.outbox_size() == 0))
        assert isinstance(a.replicator, MemoryReplicator)
        a.replicator.publish_delay = 0.01
        await a.execute(big())  # async: answered after the local commit, the relay publishes
        await eventually(lambda: true(len(chunk_seqs(hub)) >= 3))
        await close(a)  # stops between two chunks
        published = len(chunk_seqs(hub))
        a = await open_node(tmp, hub, "a", async_mode=True)
        await eventually(lambda: rows_are(b, 300), timeout=10)
        assert checksum(b) == checksum(a)
        count = chunk.parse(entries(hub)[-1].payload).count
        assert published < count == len(chunk_seqs(hub))  # the first ones were not stored twice
        await eventually(lambda: true(a.changes.outbox_size() == 0))
        assert [leftovers(n) for n in (a, b)] == [0, 0]
        for n in (a, b):
            await close(n)

    run(scenario, tmp_path)


async def rows_are(rdb: ReplicatedDatabase, n: int) -> bool:
    return await rows(rdb, "SELECT count(*) FROM t") == [(n,)]


def test_a_snapshot_taken_between_chunks_completes_them(tmp_path: Path) -> None:
    """New nodes bootstrapped from a snapshot of the origin and of another node, each taken between two
    chunks, after the log dropped everything before the snapshot: both end with the change set."""

    async def scenario(tmp: Path) -> None:
        hub, store = MemoryHub(auto=False, max_payload=LIMIT), MemorySnapshotStore()
        a, b = await open_node(tmp, hub, "a"), await open_node(tmp, hub, "b")
        await a.execute(stmt(TABLE))
        await a.execute(big())
        pieces = chunk_seqs(hub)
        middle = list(range(1, pieces[len(pieces) // 2] + 1))
        await deliver(hub, "a", middle)
        await deliver(hub, "b", middle)
        # The origin holds its own chunks without their bytes: the change set is in its file already.
        assert (await a.status())["chunks"]["incomplete_sets"][0]["bytes"] == 0
        assert (await b.status())["chunks"]["incomplete_sets"][0]["bytes"] > 0
        snapshots = [(await snapshot(tmp, source), name) for source, name in ((a, "d"), (b, "e"))]
        log = hub.log(DB)  # the log drops what the snapshots cover: the first chunks are gone
        del log.entries[: middle[-1]]
        log.base = middle[-1]
        for meta, name in snapshots:
            await store.put(meta, tmp / f"{name}.snapshot")
            (tmp / name).mkdir()
            started = await bootstrap(parse_dsn(str(tmp / name / DB), memory=False), hub.connect(name), store)
            assert started.installed is not None
            assert started.installed.seq == middle[-1]
        d, e = await open_node(tmp, hub, "d"), await open_node(tmp, hub, "e")
        await hub.deliver_all()
        for n in (b, d, e):
            assert checksum(n) == checksum(a)
            assert leftovers(n) == 0
        assert d.changes.stats.applied == 0  # the copy of the origin had the rows: nothing to apply
        assert e.changes.stats.applied == 1
        for n in (a, b, d, e):
            await close(n)

    run(scenario, tmp_path)


async def snapshot(tmp: Path, source: ReplicatedDatabase) -> SnapshotMeta:
    path = tmp / f"{'d' if source.node == 'a' else 'e'}.snapshot"
    made = make_snapshot_file(source.db, str(path))
    return SnapshotMeta(
        database=DB,
        seq=made.seq,
        hlc=made.hlc,
        sha256=made.sha256,
        size=made.size,
        schema_version=made.schema_version,
        node=source.node,
        taken_at=time.time(),
    )


def test_a_set_that_never_completes_expires(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(auto=False, max_payload=LIMIT)
        a, c = await open_node(tmp, hub, "a"), await open_node(tmp, hub, "c")
        await a.execute(stmt(TABLE))
        payload = b"x" * (3 * LIMIT)  # a publisher that vanished after two chunks of it
        part = chunk.part_size(LIMIT, "gone.app.db.1", "gone", DB)
        sha = hashlib.sha256(payload).hexdigest()
        pieces = chunk.split(
            payload, msg_id="gone.app.db.1", node="gone", database=DB, hlc=1, sha256=sha, part=part
        )
        for piece_id, message in list(pieces)[:2]:
            await a.replicator.publish(DB, message, msg_id=piece_id, timeout=1)
        await a.execute(stmt("INSERT INTO t(v) VALUES ('later')"))
        await hub.deliver_all()
        assert (await c.status())["chunks"]["incomplete"] == 1  # an hour of log time has not passed
        c.changes.partial_expiry = 0.0
        _, seq = await a.execute(stmt("INSERT INTO t(v) VALUES ('later still')"))
        await hub.deliver_all()
        status = (await c.status())["chunks"]
        assert (status["incomplete"], status["expired"]) == (0, 1)
        assert leftovers(c) == 0
        assert c.applied_seq == seq
        assert await rows(c, "SELECT count(*) FROM t") == [(2,)]
        for n in (a, c):
            await close(n)

    run(scenario, tmp_path)


def test_a_corrupt_chunked_change_set_is_parked(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(max_payload=LIMIT)
        a, c = await open_node(tmp, hub, "a"), await open_node(tmp, hub, "c")
        await a.execute(stmt(TABLE))
        payload = b"y" * (2 * LIMIT)
        part = chunk.part_size(LIMIT, "n.app.db.5", "n", DB)
        wrong = hashlib.sha256(b"something else").hexdigest()
        seq = 0
        for piece_id, message in chunk.split(
            payload, msg_id="n.app.db.5", node="n", database=DB, hlc=5, sha256=wrong, part=part
        ):
            seq = await a.replicator.publish(DB, message, msg_id=piece_id, timeout=1)
        await c.wait_applied(seq, 5)
        assert c.changes.parked() == {"dead": 1}
        assert "SHA-256" in str((await c.status())["last_error"])
        assert leftovers(c) == 0
        for n in (a, c):
            await close(n)

    run(scenario, tmp_path)


def test_a_transaction_over_the_size_limit_is_refused_before_commit(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(max_payload=LIMIT)
        a = await open_node(tmp, hub, "a", max_transaction_size=100 * 1024)
        await a.execute(stmt(TABLE))
        await eventually(lambda: true(a.changes.outbox_size() == 0))
        before = hub.log(DB).last_seq
        with pytest.raises(PayloadTooLarge) as info:
            await a.execute(big())  # about 240 KB
        assert "--max-transaction-size" in info.value.message
        assert await rows(a, "SELECT count(*) FROM t") == [(0,)]
        assert a.changes.outbox_size() == 0
        assert hub.log(DB).last_seq == before
        _, seq = await a.execute(big(rows_=100))  # about 80 KB: under the limit, over a message
        assert seq is not None
        assert len(chunk_seqs(hub)) > 1
        await close(a)

    run(scenario, tmp_path)


def test_a_write_whose_request_went_away_after_commit_is_published_once(tmp_path: Path) -> None:
    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(max_payload=LIMIT)
        a, b = await open_node(tmp, hub, "a"), await open_node(tmp, hub, "b")
        await a.execute(stmt(TABLE))
        request = asyncio.ensure_future(a.execute(big()))
        await asyncio.sleep(0)  # queued for the next group commit
        request.cancel()  # the client goes away: the write commits, but its request publishes nothing
        await eventually(lambda: rows_are(a, 300))
        assert a.changes.outbox_size() == 1
        await eventually(lambda: rows_are(b, 300), timeout=10)  # the relay took it over
        assert checksum(b) == checksum(a)
        assert a.published_chunked == 1
        assert len(chunk_seqs(hub)) == chunk.parse(entries(hub)[-1].payload).count
        await eventually(lambda: true(a.changes.outbox_size() == 0))
        for n in (a, b):
            await close(n)

    run(scenario, tmp_path)


def test_a_large_interactive_transaction_commits_off_the_event_loop(tmp_path: Path) -> None:
    """A bulk load in BEGIN … COMMIT (a PostgreSQL client's COPY): building its change set takes seconds,
    which the event loop must not wait for."""

    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(max_payload=256 * 1024)
        a, b = await open_node(tmp, hub, "a"), await open_node(tmp, hub, "b")
        await a.execute(stmt(TABLE))
        tx = await a.begin()
        await tx.run(big(rows_=40_000, width=40))
        gaps: list[float] = []
        committing = True

        async def ticker() -> None:
            last = time.monotonic()
            while committing:
                await asyncio.sleep(0.005)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        ticking = asyncio.ensure_future(ticker())
        await asyncio.sleep(0.02)  # ticking
        started = time.monotonic()
        _, seq = await a.commit(tx)
        took = time.monotonic() - started
        committing = False
        await ticking
        assert took > 0.3, "too small to tell"
        assert max(gaps) < took / 2, (max(gaps), took)
        assert seq is not None
        await b.wait_applied(seq, 30)
        assert checksum(b) == checksum(a)
        assert await rows(b, "SELECT count(*) FROM t") == [(40_000,)]
        for n in (a, b):
            await close(n)

    run(scenario, tmp_path)


def test_an_outbox_published_again_before_a_snapshot_goes_in_chunks(tmp_path: Path) -> None:
    """A database about to be replaced by a snapshot publishes its outbox first, live (``republish_outbox``)
    or from its file at start (``publish_file_outbox``): a change set over a message goes in chunks there
    too, and reaches the other nodes."""

    async def scenario(tmp: Path) -> None:
        hub = MemoryHub(max_payload=LIMIT)
        a, b = await open_node(tmp, hub, "a", async_mode=True), await open_node(tmp, hub, "b")
        await a.execute(stmt(TABLE))
        await eventually(lambda: true(a.changes.outbox_size() == 0))
        assert isinstance(a.replicator, MemoryReplicator)
        a.replicator.connected = False  # the log is away: the large write stays in the outbox
        await a.execute(big(rows_=100))
        await a.execute(big(rows_=100))
        assert a.changes.outbox_size() == 2
        a.replicator.connected = True
        assert await a.republish_outbox() == 2
        assert len(chunk_seqs(hub)) > 2
        assert all(len(d.payload) <= LIMIT for d in entries(hub))
        await eventually(lambda: rows_are(b, 200), timeout=10)
        await close(a)

        # The same from the file of a stopped node, as a start that finds a gap does.
        (tmp / "c").mkdir()
        c = await open_node(tmp, hub, "c", async_mode=True)
        await eventually(lambda: rows_are(c, 200), timeout=10)
        assert isinstance(c.replicator, MemoryReplicator)
        c.replicator.connected = False
        await c.execute(big(rows_=100))
        spec = c.db.spec
        await close(c)
        before = len(chunk_seqs(hub))
        assert await publish_file_outbox(spec, hub.connect("c"), timeout=5) == 1
        assert len(chunk_seqs(hub)) > before + 1
        assert all(len(d.payload) <= LIMIT for d in entries(hub))
        await eventually(lambda: rows_are(b, 300), timeout=10)
        await close(b)

    run(scenario, tmp_path)
