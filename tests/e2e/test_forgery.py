"""An attacker with access to NATS (an unauthenticated nats-server) against nodes that share a cluster secret.

The attacker publishes with a raw nats-py client into the replication stream and replaces the stored
snapshot, as was done against sqlite-ha before change sets and snapshot manifests carried a MAC.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import ObjectMeta

from sqlite_ha.changes.changeset import ChangeSet, RowChange
from sqlite_ha.natsd import NatsServer, NatsServerOptions
from sqlite_ha.replication import codec
from sqlite_ha.replication.seal import Sealer, seal
from sqlite_ha.security.keys import ClusterKeys
from sqlite_ha.testing import NodeProcess, free_port, wait_for
from tests.conftest import NodeFactory

SECRET = "e2e-cluster-secret-0123456789"
SUBJECT = "ha_replication.app_db"


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    """A nats-server without credentials, as an attacker on the host could reach it."""
    with asyncio.Runner() as runner:
        server = NatsServer(NatsServerOptions(name="forgery", port=free_port(), store_dir=tmp_path / "nats"))
        runner.run(server.start())
        try:
            yield server.url
        finally:
            runner.run(server.stop())


def start(node_factory: NodeFactory, name: str, url: str, *extra: str, secret: str = SECRET) -> NodeProcess:
    return node_factory(
        args=["app.db", "other.db", "--replication-url", url, *extra],
        name=name,
        env={"HA_CLUSTER_SECRET": secret},
    )


def status(node: NodeProcess, db: str = "app.db") -> dict[str, Any]:
    return node.request("GET", "/status").json()["replication"]["databases"][db]  # type: ignore[no-any-return]


def forged(**kwargs: Any) -> bytes:
    return codec.encode(ChangeSet(database="app.db", node="evil", hlc=2**62, **kwargs))


def overwrite() -> bytes:
    change = RowChange(
        table="t", op="UPDATE", columns=("id", "v"), pk_columns=("id",), key=(1,), new=(1, "pwned")
    )
    return forged(changes=(change,))


async def attack(url: str, messages: list[bytes]) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for i, message in enumerate(messages):
            await js.publish(SUBJECT, message, headers={"Nats-Msg-Id": f"evil-{i}"})
    finally:
        await nc.close()


async def a_sealed_message_of(url: str, subject: str) -> bytes:
    nc = await nats.connect(url)
    try:
        msg = await nc.jetstream().get_last_msg("ha_replication", subject)
        assert msg.data is not None
        return msg.data
    finally:
        await nc.close()


def test_forged_unsigned_altered_and_replayed_change_sets_are_parked(
    node_factory: NodeFactory, nats_url: str, tmp_path: Path
) -> None:
    n1, n2 = start(node_factory, "node1", nats_url), start(node_factory, "node2", nats_url)
    n1.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"})
    seq = n1.query({"sql": "INSERT INTO t VALUES (1, 'mine')"})["seq"]
    n2.query({"sql": "CREATE TABLE o(x)"}, db="other.db")
    other = asyncio.run(a_sealed_message_of(nats_url, "ha_replication.other_db"))
    assert other.startswith(b"#sig v1 ")
    wrong = ClusterKeys.from_text("not-the-cluster-secret-42")
    evil_file = tmp_path / "evil.db"
    keys = ClusterKeys.from_text(SECRET)  # an attacker who has the secret: still bounded by the authorizer
    messages = [
        overwrite(),  # (a) unsigned
        seal(wrong.signing, "app.db", overwrite()),  # (b) signed with another key
        seal(keys.signing, "app.db", overwrite()).replace(b"pwned", b"PWNED"),  # (c) altered after sealing
        other,  # (d) a genuine message of other.db replayed onto app.db's subject
        Sealer(keys).seal("app.db", forged(ddl=(f"ATTACH DATABASE '{evil_file}' AS evil",))),
        Sealer(keys).seal("app.db", forged(ddl=(f"VACUUM INTO '{evil_file}'",))),
    ]
    asyncio.run(attack(nats_url, messages))
    later = n2.query({"sql": "INSERT INTO t VALUES (2, 'later')"})["seq"]
    assert later > seq
    for node in (n1, n2):
        rows = node.request("POST", f"/query?min_seq={later}", {"sql": "SELECT id, v FROM t ORDER BY id"})
        assert rows.json()["rows"] == [[1, "mine"], [2, "later"]]
        tables = node.query(
            {"sql": "SELECT name FROM sqlite_schema WHERE name NOT LIKE '\\_ha\\_%' ESCAPE '\\'"}
        )
        assert tables["rows"] == [["t"]]
        st = status(node)
        assert st["parked"] == {"unauthenticated": 4, "refused": 2}, st
        assert st["unauthenticated"]["refused"] == 4
        assert status(node, "other.db")["parked"] == {}
        assert "refused the message at seq" in node.logs()
        assert "pwned" not in node.logs().lower()  # no payload dumped
    assert not evil_file.exists()


def test_a_tampered_snapshot_is_neither_served_nor_installed(
    node_factory: NodeFactory, nats_url: str, tmp_path: Path
) -> None:
    n1 = start(node_factory, "node1", nats_url)
    n1.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"})
    seq = n1.query({"sql": "INSERT INTO t VALUES (1, 'mine')"})["seq"]
    wait_for(lambda: n1.request("POST", "/snapshot").json()["snapshot"]["seq"] == seq, 10, "the snapshot")
    assert n1.request("GET", "/snapshot").status == 200
    evil = tmp_path / "evil.db"
    conn = sqlite3.connect(evil)
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    conn.execute("INSERT INTO t VALUES (1, 'pwned')")
    conn.commit()
    conn.close()
    data = evil.read_bytes()

    async def replace_snapshot() -> None:
        nc = await nats.connect(nats_url)
        try:
            store = await nc.jetstream().object_store("ha_replication_SNAPSHOTS")
            info = await store.get_info("app_db")
            headers = dict(info.headers or {})
            headers["Ha-Sha256"] = hashlib.sha256(data).hexdigest()  # the attacker fixes the digest too
            headers["Ha-Size"] = str(len(data))
            await store.put("app_db", data, meta=ObjectMeta(headers=headers))
        finally:
            await nc.close()

    asyncio.run(replace_snapshot())
    resp = n1.request("GET", "/snapshot")
    assert resp.status == 503, resp.body
    assert resp.json()["error"]["code"] == "snapshot_unauthenticated"
    assert b"pwned" not in resp.body
    # a new node asked to start from the latest snapshot refuses it and starts from the log
    n2 = start(node_factory, "node2", nats_url, "--from-latest-snapshot")
    assert n2.request("POST", f"/query?min_seq={seq}", {"sql": "SELECT v FROM t"}).json()["rows"] == [
        ["mine"]
    ]
    assert "installed the snapshot" not in n2.logs()
    assert "is refused: its manifest's MAC does not match" in n2.logs()
    snapshots = n2.request("GET", "/status").json()["snapshots"]["unauthenticated"]
    assert snapshots["refused"] >= 1
    # a fresh snapshot replaces the forged one, and is served again
    later = n1.query({"sql": "INSERT INTO t VALUES (2, 'later')"})["seq"]
    wait_for(lambda: n1.request("POST", "/snapshot").json()["snapshot"]["seq"] == later, 10, "a new snapshot")
    assert n1.request("GET", "/snapshot").status == 200


def test_key_rotation_a_node_with_both_secrets_accepts_the_old_one(
    node_factory: NodeFactory, nats_url: str
) -> None:
    old = "rotation-old-secret-0123456789"
    new = "rotation-new-secret-0123456789"
    a = start(node_factory, "node1", nats_url, secret=old)
    b = start(node_factory, "node2", nats_url, secret=f"{new},{old}")
    seq = a.query({"sql": "CREATE TABLE t(x)"})["seq"]
    seq = a.query({"sql": "INSERT INTO t VALUES (1)"})["seq"]
    assert b.request("POST", f"/query?min_seq={seq}", {"sql": "SELECT x FROM t"}).json()["rows"] == [[1]]
    assert status(b)["parked"] == {}
