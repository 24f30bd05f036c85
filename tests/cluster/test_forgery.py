"""Forged and hostile change sets on the in-memory hub: what fails the MAC is parked, what passes it still
cannot reach the host's files or sqlite-ha's internal tables."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from sqlite_ha.changes.changeset import ChangeSet, RowChange
from sqlite_ha.db.statement import Statement
from sqlite_ha.errors import HAError
from sqlite_ha.replication import codec
from sqlite_ha.replication.memory import MemoryHub
from sqlite_ha.replication.replicated_database import ReplicatedDatabase
from sqlite_ha.replication.seal import Sealer, seal
from sqlite_ha.security.keys import ClusterKeys
from tests.cluster import nodes
from tests.cluster.nodes import close

S1 = "first-secret-0123456789"
S2 = "second-secret-0123456789"


async def open_node(tmp: Path, hub: MemoryHub, name: str, secret: str) -> ReplicatedDatabase:
    return await nodes.open_node(tmp, hub, name, sealer=Sealer(ClusterKeys.from_text(secret)))


async def rows(rdb: ReplicatedDatabase, sql: str) -> list[tuple[Any, ...]]:
    return (await rdb.db.execute([Statement(sql=sql)])).results[0].rows


def forged(ddl: tuple[str, ...] = (), changes: tuple[RowChange, ...] = (), hlc: int = 10**18) -> bytes:
    return codec.encode(ChangeSet(database="app.db", node="evil", hlc=hlc, ddl=ddl, changes=changes))


def test_what_fails_the_mac_is_parked_and_changes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub = MemoryHub()
        a, b = await open_node(tmp_path, hub, "a", S1), await open_node(tmp_path, hub, "b", S1)
        _, seq = await a.execute([Statement(sql="CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")])
        _, seq = await a.execute([Statement(sql="INSERT INTO t VALUES (1, 'mine')")])
        await b.wait_applied(seq or 0, 2)
        overwrite = forged(
            changes=(
                RowChange(
                    table="t", op="UPDATE", columns=("id", "v"), pk_columns=("id",), key=(1,), new=(1, "x")
                ),
            )
        )
        evil = hub.connect("evil")
        good_key = ClusterKeys.from_text(S1).signing
        attempts = [
            overwrite,  # unsigned
            seal(ClusterKeys.from_text(S2).signing, "app.db", overwrite),  # another cluster's key
            seal(good_key, "app.db", overwrite).replace(b"mine", b"x") + b" ",  # altered after sealing
            seal(good_key, "other.db", overwrite),  # sealed for another database, replayed onto this one
            seal(good_key, "app.db", forged(ddl=("CREATE TABLE t2(x)",)))[:-3],  # truncated
            b"{" + b" " * 200_000 + b"}",  # large and unsigned: parked, but not kept whole on every node
        ]
        for i, message in enumerate(attempts):
            await evil.publish("app.db", message, msg_id=f"evil-{i}", timeout=1)
        _, later = await b.execute([Statement(sql="INSERT INTO t VALUES (2, 'later')")])
        for n in (a, b):
            await n.wait_applied(later or 0, 2)
            assert await rows(n, "SELECT id, v FROM t ORDER BY id") == [(1, "mine"), (2, "later")]
            assert await rows(n, "SELECT name FROM sqlite_schema WHERE name = 't2'") == []
            assert n.changes.parked() == {"unauthenticated": len(attempts)}
            status = await n.status()
            assert status["unauthenticated"]["refused"] == len(attempts)
            parked = await rows(n, "SELECT error FROM _ha_parked ORDER BY seq")
            assert "no MAC" in parked[0][0]
            assert "not one of this node's" in parked[1][0]
            assert all("does not match" in r[0] for r in parked[2:4])
            assert await rows(n, "SELECT max(length(payload)) FROM _ha_parked") == [(4096,)]
        for n in (a, b):
            await close(n)

    asyncio.run(scenario())


def test_during_a_rotation_a_node_with_both_secrets_accepts_the_old_key(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub = MemoryHub()
        a, b = await open_node(tmp_path, hub, "a", S1), await open_node(tmp_path, hub, "b", f"{S2},{S1}")
        _, seq = await a.execute([Statement(sql="CREATE TABLE t(x)")])
        _, seq = await a.execute([Statement(sql="INSERT INTO t VALUES (1)")])
        await b.wait_applied(seq or 0, 2)
        assert await rows(b, "SELECT x FROM t") == [(1,)]
        _, seq = await b.execute([Statement(sql="INSERT INTO t VALUES (2)")])  # signed with S2: a refuses it
        await a.wait_applied(seq or 0, 2)
        assert await rows(a, "SELECT x FROM t ORDER BY x") == [(1,)]
        assert a.changes.parked() == {"unauthenticated": 1}
        for n in (a, b):
            await close(n)

    asyncio.run(scenario())


HOSTILE_DDL = [
    ("ATTACH DATABASE '{dir}/attached.db' AS x", "ATTACH"),
    ("CREATE TABLE t_ok(x); ATTACH '{dir}/attached.db' AS x; CREATE TABLE x.t(y)", "ATTACH"),
    ("VACUUM INTO '{dir}/attached.db'", "VACUUM"),
    ("VACUUM", "VACUUM"),
    ("DETACH DATABASE main", "DETACH"),
    ("PRAGMA writable_schema = ON", "PRAGMA writable_schema"),
    ("PRAGMA journal_mode = DELETE", "PRAGMA journal_mode"),
    ("PRAGMA table_info(t)", "PRAGMA table_info"),
    ("CREATE TABLE _ha_evil(x)", "reserved"),
    ("DROP TABLE _ha_rows", "internal"),
    ("CREATE INDEX i ON _ha_rows(tbl)", "internal"),
    ("CREATE TABLE e AS SELECT load_extension('{dir}/libevil')", "load_extension"),
    ("CREATE TEMP TABLE tt(x)", "TEMP"),
    ("COMMIT", "transaction"),
    ("SAVEPOINT s", "transaction"),
]


@pytest.mark.parametrize(("sql", "why"), HOSTILE_DDL)
def test_a_signed_change_set_cannot_reach_the_host_or_internal_tables(
    tmp_path: Path, sql: str, why: str
) -> None:
    async def scenario() -> None:
        hub = MemoryHub()
        a = await open_node(tmp_path, hub, "a", S1)
        _, _seq = await a.execute([Statement(sql="CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")])
        before = await rows(a, "SELECT name, sql FROM sqlite_schema ORDER BY name")
        evil = hub.connect("evil")
        text = sql.format(dir=tmp_path)
        message = Sealer(ClusterKeys.from_text(S1)).seal("app.db", forged(ddl=(text,)))
        await evil.publish("app.db", message, msg_id="evil", timeout=1)
        _, later = await a.execute([Statement(sql="INSERT INTO t VALUES (1, 'later')")])
        await a.wait_applied(later or 0, 2)
        assert not (tmp_path / "attached.db").exists()
        assert await rows(a, "SELECT name, sql FROM sqlite_schema ORDER BY name") == before
        assert await rows(a, "PRAGMA database_list") == [(0, "main", str(tmp_path / "a" / "app.db"))]
        assert await rows(a, "SELECT v FROM t") == [("later",)]
        assert a.changes.parked() == {"refused": 1}
        assert a.changes.hlc.last < 10**18  # the refused change set's clock moved nothing
        (error,) = (await rows(a, "SELECT error FROM _ha_parked"))[0]
        assert error.startswith("refused: ")
        assert why in error
        await close(a)

    asyncio.run(scenario())


@pytest.mark.parametrize("table", ["_ha_rows", "_HA_outbox", "sqlite_sequence", "sqlite_schema"])
def test_replicated_row_changes_cannot_write_internal_tables(tmp_path: Path, table: str) -> None:
    async def scenario() -> None:
        hub = MemoryHub()
        a = await open_node(tmp_path, hub, "a", S1)
        _, _seq = await a.execute([Statement(sql="CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, v)")])
        before = await rows(a, "SELECT * FROM _ha_rows ORDER BY 1, 2")
        change = RowChange(
            table=table,
            op="INSERT",
            columns=("tbl", "key"),
            pk_columns=("tbl", "key"),
            key=("t", b"k"),
            new=("t", b"k"),
        )
        message = Sealer(ClusterKeys.from_text(S1)).seal("app.db", forged(changes=(change,)))
        await hub.connect("evil").publish("app.db", message, msg_id="evil", timeout=1)
        _, later = await a.execute([Statement(sql="INSERT INTO t(v) VALUES ('later')")])
        await a.wait_applied(later or 0, 2)
        assert a.changes.parked() == {"refused": 1}
        assert a.changes.hlc.last < 10**18
        after = await rows(a, "SELECT * FROM _ha_rows WHERE tbl != 't' ORDER BY 1, 2")
        assert after == [r for r in before if r[0] != "t"]
        await close(a)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "sql",
    [
        "ATTACH DATABASE 'x.db' AS x",
        "VACUUM INTO 'x.db'",
        "PRAGMA writable_schema = ON",
        "CREATE TABLE _ha_mine(x)",
        "SELECT load_extension('x')",
    ],
)
def test_the_origin_refuses_the_same_statements_to_clients(tmp_path: Path, sql: str) -> None:
    async def scenario() -> None:
        a = await open_node(tmp_path, MemoryHub(), "a", S1)
        with pytest.raises(HAError) as refused:
            await a.execute([Statement(sql=sql)])
        assert refused.value.code in ("statement_not_allowed", "sql_error"), refused.value.to_dict()
        assert a.changes.outbox_size() == 0
        await close(a)

    asyncio.run(scenario())


def test_the_seal_is_visible_to_no_one_but_the_log(tmp_path: Path) -> None:
    """The outbox keeps the plain change set: a rotation re-seals it with the new key when it is sent."""

    async def scenario() -> None:
        hub = MemoryHub()
        a = await open_node(tmp_path, hub, "a", S1)
        await a.execute([Statement(sql="CREATE TABLE t(x)")])
        message = hub.log("app.db").get(1).payload
        assert message.startswith(b"#sig v1 ")
        doc = orjson.loads(message.split(b"\n", 1)[1])
        assert doc["changes"][0]["command"].startswith("CREATE TABLE")
        await close(a)

    asyncio.run(scenario())
