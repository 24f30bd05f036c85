"""The JetStream snapshot store against a real nats-server: round trip, and a crash during an upload."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

from sqlite_ha.natsd import NatsServer, NatsServerOptions
from sqlite_ha.replication.jetstream.connection import NatsConnection
from sqlite_ha.replication.jetstream.snapshots import JetStreamSnapshotStore
from sqlite_ha.replication.snapshot import SnapshotMeta
from sqlite_ha.testing import free_port


def meta_of(path: Path, seq: int) -> SnapshotMeta:
    data = path.read_bytes()
    return SnapshotMeta(
        database="app.db",
        seq=seq,
        hlc=seq << 16,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        schema_version=1,
        node="n1",
        taken_at=time.time(),
    )


def test_round_trip_and_a_crash_mid_upload_keeps_the_previous_snapshot(tmp_path: Path) -> None:
    async def scenario() -> None:
        server = NatsServer(NatsServerOptions(name="snap", port=free_port(), store_dir=tmp_path / "js"))
        await server.start()
        conn = NatsConnection(server.url, name="test")
        conn.start()
        try:
            assert await conn.wait_connected(5)
            store = JetStreamSnapshotStore(conn, stream="snaptest")
            assert await store.latest("app.db") is None
            first = tmp_path / "first.db"
            first.write_bytes(os.urandom(300_000))
            meta = meta_of(first, seq=5)
            await store.put(meta, first)
            assert await store.latest("app.db") == meta
            # a much larger upload, cut off half-way as if the node died
            big = tmp_path / "big.db"
            big.write_bytes(os.urandom(40_000_000))
            js = conn.jetstream()
            stream = f"OBJ_{store.bucket}"
            before = (await js.stream_info(stream)).state.messages
            upload = asyncio.ensure_future(store.put(meta_of(big, seq=9), big))
            async with asyncio.timeout(20):  # until some chunks of the new object are stored
                while (await js.stream_info(stream)).state.messages < before + 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            assert not upload.done(), "the upload finished before it could be cut off"
            upload.cancel()
            await asyncio.gather(upload, return_exceptions=True)
            # the previous snapshot is still the one, whole and correct
            assert await store.latest("app.db") == meta
            out = tmp_path / "out.db"
            got = await store.fetch("app.db", out)
            assert got == meta
            assert hashlib.sha256(out.read_bytes()).hexdigest() == meta.sha256
        finally:
            await conn.close()
            await server.stop()

    asyncio.run(scenario())


def test_a_snapshot_replaced_while_it_downloads_is_fetched_again(tmp_path: Path) -> None:
    """Nodes store snapshots on their own: when a newer one replaces the object being read, NATS purges the
    chunks under the reader. The download starts over with the newer snapshot instead of stalling (it used
    to wait 30 s and fail a joining node)."""

    async def scenario() -> None:
        server = NatsServer(NatsServerOptions(name="snap", port=free_port(), store_dir=tmp_path / "js"))
        await server.start()
        conn = NatsConnection(server.url, name="test")
        conn.start()
        try:
            assert await conn.wait_connected(5)
            store = JetStreamSnapshotStore(conn, stream="snaptest")
            big = tmp_path / "big.db"
            big.write_bytes(os.urandom(60_000_000))
            await store.put(meta_of(big, seq=5), big)
            small = tmp_path / "small.db"
            small.write_bytes(os.urandom(300_000))
            newer = meta_of(small, seq=9)
            dest = tmp_path / "dest.db"

            async def replace_mid_download() -> None:
                async with asyncio.timeout(30):
                    while not dest.exists() or dest.stat().st_size < 2_000_000:  # noqa: ASYNC110
                        await asyncio.sleep(0.001)
                await store.put(newer, small)

            replacing = asyncio.ensure_future(replace_mid_download())
            started = time.monotonic()
            got = await store.fetch("app.db", dest)
            await replacing
            assert got == newer
            assert dest.read_bytes() == small.read_bytes()
            assert time.monotonic() - started < 25
        finally:
            await conn.close()
            await server.stop()

    asyncio.run(scenario())
