"""The pluggable parts of an embedded node, with a real nats-server: the JSON-lines CDC publisher (alone and
beside NATS), interceptor objects, an apply strategy, disableSubscriber, disablePublisher, autoStart=false,
replicationID and writes refused on a non-writer."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from sqlite_ha.driver.options import parse_options
from sqlite_ha.plugins import JSONLinesPublisher
from sqlite_ha.replication import codec
from sqlite_ha.writer import NotWriter
from tests.driver.embedded import Embedded, embed, pair, until
from tests.driver.hooks import Recorder, only_t


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _stop(*nodes: Embedded) -> None:
    for n in nodes:
        await n.stop()


def test_json_lines_publisher_alone_writes_one_line_per_commit(tmp_path: Path) -> None:
    path = tmp_path / "cdc.jsonl"

    async def body() -> None:
        n = await embed(str(tmp_path / "app.db"), natsPort=0, publisher=f"jsonl:{path}")
        try:
            await n.run("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            await n.run("INSERT INTO t VALUES (1, 'one')")
            await n.run("INSERT INTO t VALUES (2, 'two')")
            await n.run("SELECT * FROM t")  # a read commits nothing
            tx = await n.db.begin()
            from sqlite_ha.db.statement import Statement

            await tx.run(
                [
                    Statement(sql="UPDATE t SET v = 'uno' WHERE id = 1"),
                    Statement(sql="DELETE FROM t WHERE id = 2"),
                ]
            )
            await n.db.commit(tx)
            assert n.opts.plugins.publisher == "none"
            status = await n.db.status()
            assert status["replication"]["published"] == 0
            assert status["replication"]["outbox"] == 0  # nothing waits for a log
        finally:
            await n.stop()

    _run(body())
    lines = path.read_bytes().splitlines()
    assert len(lines) == 4
    sets = [codec.decode(line) for line in lines]
    assert sets[0].ddl
    assert "CREATE TABLE" in sets[0].ddl[0]
    assert [(c.op, c.new) for c in sets[1].changes] == [("INSERT", (1, "one"))]
    assert [c.op for c in sets[3].changes] == ["UPDATE", "DELETE"]  # one transaction, one line
    assert [s.hlc for s in sets] == sorted(s.hlc for s in sets)  # commit order
    assert all(json.loads(line)["database"] == "app.db" for line in lines)


def test_json_lines_beside_nats_and_objects_as_publishers(tmp_path: Path) -> None:
    sink = io.StringIO()

    async def body() -> None:
        a, b = await pair(
            tmp_path,
            a={"publisher": ["nats", JSONLinesPublisher(sink)]},
            b={"publisher": f"nats,jsonl:{tmp_path / 'b.jsonl'}"},
        )
        try:
            await a.run("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            await a.run("INSERT INTO t VALUES (1, 'x')")
            await until(lambda: _has(b, "SELECT v FROM t WHERE id = 1", [("x",)]), "b to apply a's row")
            await b.run("INSERT INTO t VALUES (2, 'y')")
            await until(lambda: _has(a, "SELECT v FROM t WHERE id = 2", [("y",)]), "a to apply b's row")
        finally:
            await _stop(b, a)

    _run(body())
    a_sets = [codec.decode(line.encode()) for line in sink.getvalue().splitlines()]
    b_sets = [codec.decode(line) for line in (tmp_path / "b.jsonl").read_bytes().splitlines()]
    # each node's feed holds what it committed, not what it applied from the other
    assert [(s.node, len(s.changes), len(s.ddl)) for s in a_sets] == [("a", 0, 1), ("a", 1, 0)]
    assert [(s.node, s.changes[0].new) for s in b_sets] == [("b", (2, "y"))]


async def _has(n: Embedded, sql: str, rows: list[tuple[Any, ...]]) -> bool:
    try:
        return await n.rows(sql) == rows
    except Exception:  # the table may not be there yet
        return False


def test_interceptor_object_skips_and_observes(tmp_path: Path) -> None:
    recorder = Recorder()

    async def body() -> None:
        a, b = await pair(tmp_path, b={"interceptor": recorder})
        try:
            await a.run("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            await a.run("CREATE TABLE skipme (id INTEGER PRIMARY KEY)")
            await a.run("INSERT INTO skipme VALUES (7)")
            await a.run("INSERT INTO t VALUES (1, 'x')")
            await until(lambda: _has(b, "SELECT v FROM t", [("x",)]), "b to apply t")
            assert await b.rows("SELECT * FROM skipme") == []  # skipped by before_apply
            await b.run("INSERT INTO t VALUES (2, 'own')")  # its own change sets pass no hook
            await until(lambda: _has(a, "SELECT v FROM t WHERE id = 2", [("own",)]), "a to apply b's row")
        finally:
            await _stop(b, a)

    _run(body())
    tables = [{c.table for c in cs.changes} for cs in recorder.before]
    assert {"skipme"} in tables
    assert {"t"} in tables
    assert all(cs.node == "a" for cs in recorder.before)
    # after_apply saw every change set that was not skipped, without an error
    assert [({c.table for c in cs.changes}, e) for cs, e in recorder.after if cs.changes] == [({"t"}, None)]


def test_apply_strategy_replaces_last_writer_wins(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await pair(tmp_path, b={"apply_strategy": only_t})
        try:
            await a.run("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            await a.run("CREATE TABLE u (id INTEGER PRIMARY KEY, v TEXT)")
            await a.run("INSERT INTO u VALUES (1, 'not applied')")
            await a.run("INSERT INTO t VALUES (1, 'applied')")
            await until(lambda: _has(b, "SELECT v FROM t", [("applied",)]), "b to apply t")
            assert await b.rows("SELECT * FROM u") == []
            status = (await b.db.status())["replication"]
            assert status["parked"] == {}
        finally:
            await _stop(b, a)

    _run(body())


def test_disable_subscriber_publishes_but_applies_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await pair(tmp_path, b={"disableSubscriber": True})
        try:
            await b.run("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            await b.run("INSERT INTO t VALUES (1, 'from b')")
            await until(lambda: _has(a, "SELECT v FROM t", [("from b",)]), "a to apply b's writes")
            await a.run("INSERT INTO t VALUES (2, 'from a')")
            seq = await a.run("INSERT INTO t VALUES (3, 'from a')")
            assert seq is not None
            # b's own outbox empties although it never reads its change sets back
            await until(lambda: _outbox_empty(b), "b's outbox to empty")
            # b never made a consumer of the log (a's is there), so it can never apply a's rows
            assert await _consumers(a) == {"a_app_db"}
            assert await b.rows("SELECT id FROM t ORDER BY id") == [(1,)]
            assert (await b.db.status())["replication"]["subscribed"] is False
        finally:
            await _stop(b, a)

    _run(body())


async def _consumers(n: Embedded) -> set[str]:
    assert n.node.replication is not None
    return {c["name"] for c in await n.node.replication.consumers()}


async def _outbox_empty(n: Embedded) -> bool:
    return (await n.db.status())["replication"]["outbox"] == 0


def test_disable_publisher_applies_but_publishes_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await pair(tmp_path, b={"disablePublisher": "true"})
        try:
            await a.run("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            await until(lambda: _has(b, "SELECT count(*) FROM t", [(0,)]), "b to apply a's table")
            last = await b.db.log_last_seq()
            await b.run("INSERT INTO t VALUES (1, 'only on b')")
            status = (await b.db.status())["replication"]
            assert (status["published"], status["outbox"]) == (0, 0)
            assert await b.db.log_last_seq() == last  # nothing went to the log
            await a.run("INSERT INTO t VALUES (2, 'from a')")
            await until(lambda: _has(b, "SELECT id FROM t ORDER BY id", [(1,), (2,)]), "b to apply a's row")
            assert await a.rows("SELECT id FROM t") == [(2,)]
        finally:
            await _stop(b, a)

    _run(body())


def test_auto_start_false_holds_the_subscriber_until_start_replication(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await pair(tmp_path, b={"autoStart": False})
        try:
            assert b.opts.auto_start is False
            await a.run("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            await a.run("INSERT INTO t VALUES (1)")
            await b.run("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY)")  # b writes and publishes
            await until(lambda: _has(a, "SELECT count(*) FROM t", [(1,)]), "a to have its row")
            assert await _consumers(a) == {"a_app_db"}  # b reads nothing of the log yet
            assert await b.rows("SELECT count(*) FROM t") == [(0,)]
            assert b.node.snapshots is not None
            assert not b.node.snapshots.running
            await b.node.start_replication()
            await until(lambda: _has(b, "SELECT id FROM t", [(1,)]), "b to apply after start_replication")
            assert await _consumers(a) == {"a_app_db", "b_app_db"}
            assert b.node.snapshots.running
        finally:
            await _stop(b, a)

    _run(body())


def test_replication_id_joins_two_files_of_different_names(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await pair(tmp_path)
        await _stop(b, a)
        # the same cluster again, each node with a file of its own name and one replicationID
        port = a.opts.config.nats_port
        from sqlite_ha.testing import TEST_CLUSTER_SECRET

        orders = await embed(
            str(tmp_path / "a" / "orders.db"),
            name="a",
            natsPort=port,
            natsStoreDir=str(tmp_path / "a" / "nats"),
            clusterSecret=TEST_CLUSTER_SECRET,
            replicationID="shop",
        )
        try:
            commandes = await embed(
                f"file:{tmp_path / 'b' / 'commandes.sqlite'}?replicationID=shop",
                name="b",
                replicationURL=f"nats://127.0.0.1:{port}",
                clusterSecret=TEST_CLUSTER_SECRET,
            )
            try:
                assert orders.opts.database == commandes.opts.database == "shop"
                await orders.run("CREATE TABLE o (id INTEGER PRIMARY KEY, v TEXT)")
                await orders.run("INSERT INTO o VALUES (1, 'a')")
                await until(
                    lambda: _has(commandes, "SELECT v FROM o", [("a",)]), "commandes.sqlite to converge"
                )
                await commandes.run("INSERT INTO o VALUES (2, 'b')")
                await until(
                    lambda: _has(orders, "SELECT id FROM o ORDER BY id", [(1,), (2,)]),
                    "orders.db to converge",
                )
            finally:
                await commandes.stop()
        finally:
            await orders.stop()
        assert (tmp_path / "a" / "orders.db").exists()
        assert (tmp_path / "b" / "commandes.sqlite").exists()

    _run(body())


def test_writes_on_a_non_writer_name_the_writer(tmp_path: Path) -> None:
    async def body() -> None:
        n = await embed(str(tmp_path / "app.db"), natsPort=0, leaderProvider="static:http://10.9.9.9:8080")
        try:
            assert await n.rows("SELECT 1") == [(1,)]  # reads work
            with pytest.raises(NotWriter) as refused:
                await n.run("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            assert "http://10.9.9.9:8080" in refused.value.message
            assert refused.value.fields["writer"] == "http://10.9.9.9:8080"
            with pytest.raises(NotWriter):
                await n.db.begin()
        finally:
            await n.stop()
        # the process whose own port the static URL names is the writer
        me = await embed(
            str(tmp_path / "me.db"), natsPort=0, leaderProvider="static:http://127.0.0.1:8123", port=8123
        )
        try:
            await me.run("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        finally:
            await me.stop()

    _run(body())


def test_dynamic_leader_provider_elects_one_writer_and_the_other_names_it(tmp_path: Path) -> None:
    async def body() -> None:
        a, b = await pair(
            tmp_path,
            a={"leaderProvider": "dynamic:http://127.0.0.1:1111"},
            b={"leaderProvider": "dynamic:http://127.0.0.1:2222"},
        )
        try:

            async def elected() -> bool:
                return a.node.writer.is_writer() != b.node.writer.is_writer() and all(
                    n.node.writer.current() is not None for n in (a, b)
                )

            await until(elected, "one writer elected and known to both")
            writer, follower = (a, b) if a.node.writer.is_writer() else (b, a)
            url = writer.opts.config.leader_addr
            await writer.run("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            with pytest.raises(NotWriter) as refused:
                await follower.run("INSERT INTO t VALUES (1)")
            assert refused.value.fields["writer"] == url
            await writer.run("INSERT INTO t VALUES (2)")
            await until(lambda: _has(follower, "SELECT id FROM t", [(2,)]), "the follower to apply the write")
        finally:
            await _stop(b, a)

    _run(body())


def test_plugins_through_sqlite_ha_connect(tmp_path: Path) -> None:
    import sqlite_ha

    sink = io.BytesIO()
    conn = sqlite_ha.connect(str(tmp_path / "app.db"), natsPort=0, publisher=JSONLinesPublisher(sink))
    try:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.commit()
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(1, "a"), (2, "b")])
        conn.commit()
    finally:
        conn.close()
        sqlite_ha.shutdown()
    sets = [codec.decode(line) for line in sink.getvalue().splitlines()]
    assert [len(s.changes) for s in sets] == [0, 2]  # the table, then one transaction of two rows


def test_a_failing_cdc_publisher_does_not_fail_the_write(tmp_path: Path) -> None:
    class Broken:
        def publish(self, cs: Any, payload: bytes) -> None:
            raise OSError("disk full")

    async def body() -> None:
        n = await embed(str(tmp_path / "app.db"), natsPort=0, publisher=["nats", Broken()])
        try:
            await n.run("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            await n.run("INSERT INTO t VALUES (1)")
            assert await n.rows("SELECT id FROM t") == [(1,)]
            cdc = (await n.db.status())["replication"]["cdc"]
            assert cdc["failures"] == 2
        finally:
            await n.stop()

    _run(body())


def test_disable_snapshotter_takes_none_but_reads_the_others(tmp_path: Path) -> None:
    from sqlite_ha.errors import HAError

    async def body() -> None:
        a, b = await pair(tmp_path, b={"disableDBSnapshotter": True, "snapshotInterval": "50ms"})
        try:
            await a.run("CREATE TABLE t (id INTEGER PRIMARY KEY)")
            await a.run("INSERT INTO t VALUES (1)")
            await until(lambda: _has(b, "SELECT id FROM t", [(1,)]), "b to apply")
            assert b.node.snapshots is not None
            assert not b.node.snapshots.running
            with pytest.raises(HAError) as refused:
                await b.node.take_snapshot("app.db")
            assert "disableDBSnapshotter" in refused.value.message
            meta, _ = await a.node.take_snapshot("app.db")
            latest = await b.node.latest_snapshot("app.db")
            assert latest is not None
            assert latest.seq == meta.seq
        finally:
            await _stop(b, a)

    _run(body())


def test_one_dsn_one_node_plugins_included(tmp_path: Path) -> None:
    import sqlite_ha

    dsn = (
        f"file:{tmp_path / 'app.db'}?natsPort=0&publisher=jsonl:{tmp_path / 'feed.jsonl'}"
        "&interceptor=tests.driver.hooks:Recorder"
    )
    try:
        first, second = sqlite_ha.connect(dsn), sqlite_ha.connect(dsn)  # the same text: the same plug-ins
        assert sqlite_ha.get_connector(dsn) is first.connector is second.connector
        # other plug-ins for the same file would be another node: refused
        with pytest.raises(sqlite_ha.OperationalError, match="already open through the driver with other"):
            sqlite_ha.connect(str(tmp_path / "app.db"), natsPort=0, interceptor=Recorder())
        first.execute("CREATE TABLE t (x)")
        first.commit()
        second.close()
        first.close()
    finally:
        sqlite_ha.shutdown()
    assert len((tmp_path / "feed.jsonl").read_bytes().splitlines()) == 1


def test_a_log_driver_of_the_applications_own(tmp_path: Path) -> None:
    from sqlite_ha.node import Node
    from sqlite_ha.plugins import Plugins
    from sqlite_ha.replication.drivers import DRIVERS, Log, register
    from sqlite_ha.replication.memory import MemoryHub

    hub = MemoryHub()
    register("test-hub", lambda ctx: Log(replicator=hub.connect(ctx.config.name)))

    async def body() -> None:
        nodes = []
        for name in ("a", "b"):
            opts = parse_options(
                str(tmp_path / f"{name}.db"), {"name": name, "natsPort": 0, "replicationID": "x"}, env={}
            )
            node = Node(opts.config, serve=False, plugins=Plugins(log_driver="test-hub"))
            await node.start()
            assert node.replication is not None
            assert await node.replication.wait_started(5)
            nodes.append(Embedded(node, opts))
        a, b = nodes
        try:
            assert a.node.replication is not None
            assert a.node.replication.replicator.name == "memory"
            await a.run("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            await a.run("INSERT INTO t VALUES (1, 'through the hub')")
            await until(
                lambda: _has(b, "SELECT v FROM t", [("through the hub",)]), "b to apply through the hub"
            )
        finally:
            await _stop(b, a)
            DRIVERS.pop("test-hub")

    _run(body())
