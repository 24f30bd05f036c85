"""``sqlite-ha sync``: a live local read replica of a real node's database, read by plain ``sqlite3``."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from sqlite_ha.testing import NodeProcess, SyncProcess, nats_credentials, wait_for
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
    try:
        wait_for(lambda: count(path) == n, timeout, f"{n} rows in the replica")
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
        last = insert(node, range(20, 50), per_tx=5)
        wait_rows(target, 50, sync)
    finally:
        done.set()
        reader.join()
    assert not errors
    assert all(n % 5 == 0 for n in seen), sorted(set(seen))  # never a part of a transaction
    assert len(set(seen)) > 2  # it did read during the updates

    # the lag shows: in the log, and to an operator asking the file and the stream
    sync.wait_for_log("app.db: applied seq")
    status = sync.status()["databases"][0]
    assert (status["applied_seq"], status["last_seq"], status["lag_messages"]) == (last, last, 0)

    # the replica is no writer: it claimed no rowid slot, and left the stream as the node made it
    async def slot_holders(js: Any) -> list[str]:
        kv = await js.key_value("ha_replication_ROWID_SLOTS")
        keys = [k for k in await kv.keys() if k.startswith("slot.")]
        return [(await kv.get(k)).value.decode() for k in keys]

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
