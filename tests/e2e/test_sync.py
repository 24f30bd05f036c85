"""``sqlite-ha sync``: a live local read replica of a real node's database, read by plain ``sqlite3``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.errors import KeyNotFoundError

from sqlite_ha.errors import ConfigError, HAError
from sqlite_ha.replication.bootstrap import record_position
from sqlite_ha.sync import Lag, replica
from sqlite_ha.testing import (
    TEST_CLUSTER_SECRET,
    NodeProcess,
    SyncProcess,
    free_port,
    nats_credentials,
    wait_for,
)
from tests.conftest import NodeFactory


def js_call(nats_port: int, fn: Any) -> Any:
    """Run ``await fn(js)`` with a raw JetStream client of the test cluster."""

    async def go() -> Any:
        nc = await nats.connect(f"nats://127.0.0.1:{nats_port}", **nats_credentials())
        try:
            return await fn(nc.jetstream())
        finally:
            await nc.close()

    return asyncio.run(go())


def count(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
    except sqlite3.OperationalError:
        return -1  # no table yet
    finally:
        conn.close()


def wait_rows(path: Path, n: int, sync: SyncProcess, timeout: float = 20.0) -> None:
    def there() -> bool:
        if sync.proc is not None and sync.proc.poll() is not None:
            raise AssertionError(f"sync exited with {sync.proc.returncode}:\n{sync.logs()}")
        return count(path) == n

    try:
        wait_for(there, timeout, f"{n} rows in the replica")
    except TimeoutError as e:
        raise TimeoutError(f"{e} (has {count(path)})\n{sync.logs()}") from None


@pytest.fixture
def syncs(tmp_path: Path) -> Iterator[list[SyncProcess]]:
    made: list[SyncProcess] = []
    yield made
    for s in made:
        s.kill()


def insert(node: NodeProcess, rows: range, per_tx: int = 1) -> int:
    """Insert rows ``(id, v)``, ``per_tx`` per transaction; the seq of the last."""
    seq = 0
    ids = list(rows)
    for i in range(0, len(ids), per_tx):
        batch = ids[i : i + per_tx]
        seq = node.query(
            [{"sql": "INSERT INTO t(id, v) VALUES (?, ?)", "params": [k, f"v{k}"]} for k in batch]
        )["seq"]
    return seq


def test_bootstrap_from_a_snapshot_tail_kill_and_resume(
    node_factory: NodeFactory, tmp_path: Path, syncs: list[SyncProcess]
) -> None:
    node = node_factory(args=["app.db", "--replication-max-age", "1h"], nats_port=None)
    port = node.nats_port or 0
    node.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"})
    seq = insert(node, range(20), per_tx=5)
    assert node.request("POST", "/snapshot").json()["snapshot"]["seq"] == seq
    js_call(port, lambda js: js.purge_stream("ha_replication"))  # the log no longer holds the beginning

    target = tmp_path / "replica" / "app.db"
    sync = SyncProcess(
        workdir=tmp_path / "replica",
        target=str(target),
        nats_url=f"nats://127.0.0.1:{port}",
        args=["--durable", "r1", "--status-interval", "200ms"],
    )
    syncs.append(sync)
    sync.start()
    wait_rows(target, 20, sync)
    assert "installed the snapshot" in sync.logs()

    # tail, read by a plain sqlite3 connection in a loop that must only ever see whole transactions
    seen: list[int] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        conn = sqlite3.connect(target)
        try:
            while not done.is_set():
                n = conn.execute("SELECT count(*) FROM t").fetchone()[0]
                seen.append(n)
        except BaseException as e:
            errors.append(e)
        finally:
            conn.close()

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(20, 50, 5):  # one transaction of 5 rows at a time, each seen by the reader
            last = insert(node, range(n, n + 5), per_tx=5)
            wait_rows(target, n + 5, sync)
            wait_for(
                lambda n=n: (bool(seen) and seen[-1] == n + 5) or bool(errors), 10, "the reader to see it"
            )
    finally:
        done.set()
        reader.join()
    assert not errors
    assert all(n % 5 == 0 for n in seen), sorted(set(seen))  # never a part of a transaction
    assert set(seen) >= {20, 25, 30, 35, 40, 45, 50}  # it did read during the updates

    # the lag shows: in the log, and to an operator asking the file and the stream
    sync.wait_for_log("app.db: applied seq")
    status = sync.status()["databases"][0]
    assert (status["applied_seq"], status["last_seq"], status["lag_messages"]) == (last, last, 0)

    # the replica is no writer: it claimed no rowid slot, and left the stream as the node made it
    async def slot_holders(js: Any) -> list[str]:
        # each slot read by its key: nats-py's kv.keys() watches the bucket and, on a loaded machine, can
        # report "no keys" before the watcher delivered any
        kv = await js.key_value("ha_replication_ROWID_SLOTS")
        stride = int((await kv.get("stride")).value.decode())
        holders = []
        for residue in range(1, stride + 1):
            with contextlib.suppress(KeyNotFoundError):
                holders.append((await kv.get(f"slot.{residue}")).value.decode())
        return holders

    assert js_call(port, slot_holders) == ["node1"]
    info = js_call(port, lambda js: js.stream_info("ha_replication"))
    assert info.config.max_age == 3600
    wait_for(
        lambda: (
            js_call(port, lambda js: js.consumer_info("ha_replication", "r1_app_db")).ack_floor.stream_seq
            == last
        ),
        10,
        "the replica to acknowledge everything it applied",
    )

    # killed, with writes meanwhile: it resumes from the position in the file, through its durable consumer
    sync.kill()
    later = insert(node, range(50, 55))
    behind = sync.status()["databases"][0]
    assert (behind["applied_seq"], behind["lag_messages"]) == (last, 5)
    assert behind["lag_seconds"] > 0
    sync.start()
    wait_rows(target, 55, sync)
    consumer = js_call(port, lambda js: js.consumer_info("ha_replication", "r1_app_db"))
    assert consumer.delivered.consumer_seq == 6 + 5  # each change set delivered once: no replay
    assert consumer.num_redelivered == 0
    assert sync.logs().count("installed the snapshot") == 1
    assert sync.status()["databases"][0]["applied_seq"] == later
    assert sync.stop() == 0
    assert js_call(port, lambda js: js.consumer_info("ha_replication", "r1_app_db"))  # durable: kept


def sync_consumers(port: int) -> dict[str, Any]:
    async def listing(js: Any) -> dict[str, Any]:
        return {c.name: c for c in await js.consumers_info("ha_replication") if c.name.startswith("sync-")}

    return js_call(port, listing)  # type: ignore[no-any-return]


def test_ephemeral_consumers_resume_and_a_snapshot_reaches_open_readers(
    node_factory: NodeFactory, tmp_path: Path, syncs: list[SyncProcess]
) -> None:
    node = node_factory(args=["app.db"], nats_port=None)
    port = node.nats_port or 0
    node.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"})
    insert(node, range(10))
    target = tmp_path / "replica" / "app.db"
    sync = SyncProcess(workdir=tmp_path / "replica", target=str(target), nats_url=f"nats://127.0.0.1:{port}")
    syncs.append(sync)
    sync.start()
    wait_rows(target, 10, sync)
    assert len(sync_consumers(port)) == 1
    second = sync.run()  # a second replica process on the same file is refused
    assert second.returncode == 1
    assert (
        f"is already kept a replica by another process (pid {sync.proc and sync.proc.pid})" in second.stderr
    )
    reader = sqlite3.connect(target)  # open across everything below
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (10,)
    assert sync.stop() == 0
    assert sync_consumers(port) == {}  # an ephemeral consumer goes with its replica

    # the log drops what the replica lacks: at its restart it installs the snapshot, under the open reader
    seq = insert(node, range(10, 20))
    assert node.request("POST", "/snapshot").json()["snapshot"]["seq"] == seq
    js_call(port, lambda js: js.purge_stream("ha_replication"))
    sync.start()
    sync.wait_for_log("installed the snapshot")
    wait_for(lambda: reader.execute("SELECT count(*) FROM t").fetchone() == (20,), 20, "the reader to see it")

    # killed: its consumer stays until the server drops it; the next one starts right after the file's seq
    wait_for(lambda: sync.status()["databases"][0]["applied_seq"] == seq, 10, "the position to be stored")
    sync.kill()
    before = set(sync_consumers(port))
    last = insert(node, range(20, 25))
    sync.start()
    wait_for(
        lambda: reader.execute("SELECT count(*) FROM t").fetchone() == (25,), 20, "the reader to see more"
    )
    (new,) = [c for name, c in sync_consumers(port).items() if name not in before]
    assert new.config.opt_start_seq == seq + 1
    assert new.delivered.stream_seq == last
    reader.close()
    assert sync.stop() == 0
    check = sqlite3.connect(target)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert check.execute("SELECT count(*), max(id) FROM t").fetchone() == (25, 24)
    check.close()


def test_bad_flags_are_refused_precisely_and_touch_nothing(tmp_path: Path) -> None:
    def refused(target: Path, *flags: str, env: dict[str, str] | None = None) -> str:
        sync = SyncProcess(workdir=tmp_path, target=str(target), nats_url="nats://127.0.0.1:1", env=env or {})
        done = sync.run(*flags)
        assert done.returncode == 2, (done.returncode, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr  # one line
        return done.stderr

    fresh = tmp_path / "app.db"
    assert "--deliver-policy: 'sometimes' is not a delivery policy" in refused(
        fresh, "--deliver-policy", "sometimes"
    )
    assert "new would give a replica with only what is published from now on" in refused(
        fresh, "--deliver-policy", "new"
    )
    assert "is a new replica: starting at seq 5 it would lack every change set before" in refused(
        fresh, "--deliver-policy", "by_start_sequence=5"
    )
    assert "--durable: 'a.b' is not a consumer name" in refused(fresh, "--durable", "a.b")
    assert "is not a directory: several databases" in refused(fresh, "-d", "a.db", "-d", "b.db")
    assert "needs the cluster secret" in refused(fresh, env={"HA_CLUSTER_SECRET": ""})
    assert not fresh.exists()  # nothing was made

    done = subprocess.run(
        [sys.executable, "-m", "sqlite_ha", "sync", str(fresh)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "--replication-url: is required" in done.stderr

    mine = tmp_path / "mine.db"  # tables of its own, never a replica
    conn = sqlite3.connect(mine)
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()
    before = mine.read_bytes()
    assert "holds tables but was never a replica" in refused(mine)
    assert mine.read_bytes() == before

    replica = tmp_path / "replica.db"  # a replica at seq 7
    sqlite3.connect(replica).close()
    record_position(str(replica), 7)
    assert "has applied the log up to seq 7: starting at 20 would skip seq 8 to 19" in refused(
        replica, "--deliver-policy", "by_start_sequence=20"
    )
    assert "by_start_time=2020-01-01 00:00:00 would give a replica with only what was published after" in (
        refused(replica, "--deliver-policy", "by_start_time=2020-01-01 00:00:00")
    )


def test_the_python_api(node_factory: NodeFactory, tmp_path: Path) -> None:
    node = node_factory(args=["app.db", "other.db"], nats_port=None)
    node.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"})
    node.query({"sql": "CREATE TABLE o(x)"}, db="other.db")
    last = insert(node, range(3))
    url = f"nats://127.0.0.1:{node.nats_port}"
    with replica(
        str(tmp_path),
        replication_url=url,
        databases=["app.db", "other.db"],
        env={"HA_CLUSTER_SECRET": TEST_CLUSTER_SECRET},
        status_interval=0,
    ) as r:
        assert r.paths == {"app.db": str(tmp_path / "app.db"), "other.db": str(tmp_path / "other.db")}
        seq = node.query({"sql": "INSERT INTO o VALUES ('x')"}, db="other.db")["seq"]
        r.wait_current(10)
        assert r.lag == Lag(0, 0.0)
        status = r.status()
        assert [d["applied_seq"] for d in status["databases"]] == [last, seq]
        conn = r.connect("app.db")
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (3,)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("INSERT INTO t(v) VALUES ('local')")
        conn.close()
        with pytest.raises(HAError, match="name one"):
            r.connect()
    with pytest.raises(ConfigError, match="--replication-url: is required"):
        replica(str(tmp_path / "x.db"), env={})

    # a copy the user vouches for, complete up to seq N-1, follows the log from N (ha-sync's use of it)
    copy = tmp_path / "copy.db"
    conn = sqlite3.connect(copy)
    conn.executescript(
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);INSERT INTO t VALUES (0, 'v0'), (1, 'v1'), (2, 'v2');"
    )
    conn.close()
    with replica(
        str(copy),
        replication_url=url,
        databases=["app.db"],
        deliver_policy=f"by_start_sequence={last + 1}",
        env={"HA_CLUSTER_SECRET": TEST_CLUSTER_SECRET},
        status_interval=0,
    ) as r:
        node.query({"sql": "UPDATE t SET v = 'new' WHERE id = 0"})
        insert(node, range(3, 4))
        r.wait_current(10)
        conn = r.connect()
        assert conn.execute("SELECT id, v FROM t ORDER BY id").fetchall() == [
            (0, "new"),
            (1, "v1"),
            (2, "v2"),
            (3, "v3"),
        ]
        conn.close()
        assert r.status()["databases"][0]["applied"] == 2  # those two only: nothing before N was replayed


def test_a_gap_while_running_is_closed_from_a_snapshot_under_open_readers(
    node_factory: NodeFactory, tmp_path: Path, syncs: list[SyncProcess]
) -> None:
    node = node_factory(args=["app.db", "--replication-max-age", "2s"], nats_port=None)
    port = node.nats_port or 0
    node.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"})
    insert(node, range(5))
    target = tmp_path / "replica" / "app.db"
    sync = SyncProcess(workdir=tmp_path / "replica", target=str(target), nats_url=f"nats://127.0.0.1:{port}")
    syncs.append(sync)
    sync.start()
    wait_rows(target, 5, sync)
    reader = sqlite3.connect(target)
    assert sync.proc is not None
    sync.proc.send_signal(signal.SIGSTOP)  # frozen across the age-out: what it lacks leaves the stream
    try:
        seq = insert(node, range(5, 300))
        assert node.request("POST", "/snapshot").json()["snapshot"]["seq"] == seq
        wait_for(
            lambda: js_call(port, lambda js: js.stream_info("ha_replication")).state.messages == 0,
            30,
            "the stream to age out",
        )
    finally:
        sync.proc.send_signal(signal.SIGCONT)
    sync.wait_for_log("recovered from the snapshot")
    wait_for(
        lambda: reader.execute("SELECT count(*) FROM t").fetchone() == (300,), 10, "the reader to see it"
    )
    assert "installing the snapshot at seq" in sync.logs()
    insert(node, range(300, 305))
    wait_for(lambda: reader.execute("SELECT count(*) FROM t").fetchone() == (305,), 10, "it to follow on")
    reader.close()


def test_a_replica_never_takes_over_a_nodes_consumer(
    node_factory: NodeFactory, tmp_path: Path, syncs: list[SyncProcess]
) -> None:
    node = node_factory(args=["app.db"], nats_port=None)
    sync = SyncProcess(
        workdir=tmp_path / "replica",
        target=str(tmp_path / "replica" / "app.db"),
        nats_url=f"nats://127.0.0.1:{node.nats_port}",
        args=["--durable", "node1"],
    )
    done = sync.run()
    assert done.returncode == 1
    assert "consumer node1_app_db of stream ha_replication belongs to a node" in done.stderr
    assert "--durable name no node has" in done.stderr


def test_nats_login_as_a_node_gives_it(
    node_factory: NodeFactory, tmp_path: Path, syncs: list[SyncProcess]
) -> None:
    node = node_factory(args=["app.db", "--nats-user", "reader"], nats_port=None, env={"HA_NATS_PASS": "pw"})
    node.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"})
    insert(node, range(2))
    target = tmp_path / "replica" / "app.db"
    url = f"nats://127.0.0.1:{node.nats_port}"
    sync = SyncProcess(
        workdir=tmp_path / "replica",
        target=str(target),
        nats_url=url,
        args=["--nats-user", "reader"],
        env={"HA_NATS_PASS": "pw"},
    )
    syncs.append(sync)
    sync.start()
    wait_rows(target, 2, sync)
    assert "given on the command line" not in sync.logs()  # the password came from the environment
    wrong = SyncProcess(
        workdir=tmp_path / "wrong",
        target=str(tmp_path / "wrong" / "app.db"),
        nats_url=url,
        args=["--nats-user", "reader", "--status"],
        env={"HA_NATS_PASS": "nope"},
    )
    done = wrong.run()
    assert done.returncode == 1
    assert "Authorization Violation" in done.stderr


# All a read replica may do on NATS (docs/sync.md, "What a replica needs of NATS"): no publish to the
# stream's subjects, no stream or key-value changes.
REPLICA_PERMISSIONS = [
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.ha_replication",
    "$JS.API.STREAM.MSG.GET.ha_replication",
    "$JS.API.CONSUMER.*.ha_replication.>",
    "$JS.API.CONSUMER.MSG.NEXT.ha_replication.>",
    "$JS.ACK.ha_replication.>",
    "$JS.API.STREAM.INFO.OBJ_ha_replication_SNAPSHOTS",
    "$JS.API.STREAM.MSG.GET.OBJ_ha_replication_SNAPSHOTS",
    "$JS.API.CONSUMER.*.OBJ_ha_replication_SNAPSHOTS.>",
    "$JS.API.CONSUMER.MSG.NEXT.OBJ_ha_replication_SNAPSHOTS.>",
    "_HA.ha_replication.snapshot.>",
]


def test_a_replica_needs_no_more_of_nats_than_a_consumer(
    node_factory: NodeFactory, tmp_path: Path, syncs: list[SyncProcess]
) -> None:
    port = free_port()
    conf = tmp_path / "nats.conf"
    replica_user = {
        "user": "replica",
        "password": "rp",
        "permissions": {"publish": {"allow": REPLICA_PERMISSIONS}, "subscribe": {"allow": ["_INBOX.>"]}},
    }
    conf.write_text(
        f'server_name: "restricted"\nlisten: "127.0.0.1:{port}"\n'
        f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
        f"authorization {{ users: {json.dumps([{'user': 'node', 'password': 'np'}, replica_user])} }}\n"
    )
    node = node_factory(
        args=["app.db", "--nats-config", str(conf), "--nats-user", "node"],
        nats_port=port,
        env={"HA_NATS_PASS": "np"},
    )
    node.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"})
    seq = insert(node, range(5))
    assert node.request("POST", "/snapshot").json()["snapshot"]["seq"] == seq
    target = tmp_path / "replica" / "app.db"
    sync = SyncProcess(
        workdir=tmp_path / "replica",
        target=str(target),
        nats_url=f"nats://127.0.0.1:{port}",
        args=["--nats-user", "replica", "--from-latest-snapshot", "--log-level", "debug"],
        env={"HA_NATS_PASS": "rp"},
    )
    syncs.append(sync)
    sync.start()
    wait_rows(target, 5, sync)
    assert "installed the snapshot" in sync.logs()
    last = insert(node, range(5, 8))
    wait_rows(target, 8, sync)
    assert sync.status()["databases"][0]["applied_seq"] == last
    assert sync.stop() == 0
    assert "permissions violation" not in sync.logs().lower()
