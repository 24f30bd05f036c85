"""Snapshots in the JetStream object store: bucket ``<stream>_SNAPSHOTS``, one object per database.

NATS writes an object's chunks first and its metadata last, so the previous version of an object stays
readable until a new one is complete. Downloads pull the chunks straight into a file (see ``_download``):
nats-py's ``get`` is many times slower on large objects.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
from pathlib import Path
from typing import BinaryIO

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, ObjectInfo, ObjectMeta, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from sqlite_ha.replication.jetstream.common import describe
from sqlite_ha.replication.jetstream.connection import NatsConnection
from sqlite_ha.replication.snapshot import NoSnapshot, SnapshotError, SnapshotMeta

FETCH_BATCH = 64  # chunks (128 KiB each) per pull request
FETCH_TIMEOUT = 10.0  # per pull request: chunks are in the stream already; a stall means they are gone
FETCH_ATTEMPTS = 5

log = logging.getLogger(__name__)


def object_name(database: str) -> str:
    return database.replace(".", "_")


class JetStreamSnapshotStore:
    verifies_checksum = True  # fetch checks the content against the metadata's SHA-256 as it downloads

    def __init__(self, conn: NatsConnection, *, stream: str = "ha_replication", replicas: int = 1) -> None:
        self._conn = conn
        self.bucket = f"{stream}_SNAPSHOTS"
        self._replicas = replicas
        self._store: ObjectStore | None = None
        self._lock = asyncio.Lock()

    async def _bucket(self, create: bool) -> ObjectStore | None:
        async with self._lock:
            if self._store is None:
                js = self._conn.jetstream()
                try:
                    self._store = await js.object_store(self.bucket)
                except (BucketNotFoundError, NotFoundError):
                    if not create:
                        return None
                    self._store = await js.create_object_store(
                        self.bucket,
                        description="sqlite-ha snapshots, one object per database",
                        storage=StorageType.FILE,
                        replicas=self._replicas,
                    )
            return self._store

    async def put(self, meta: SnapshotMeta, path: Path) -> None:
        try:
            store = await self._bucket(create=True)
            assert store is not None
            with path.open("rb") as f:
                await store.put(
                    object_name(meta.database),
                    f,
                    meta=ObjectMeta(
                        description=f"snapshot of {meta.database} at seq {meta.seq}", headers=meta.headers()
                    ),
                )
        except SnapshotError:
            raise
        except Exception as e:  # every failure of the store is a failure to store this snapshot
            raise SnapshotError(f"storing the snapshot of {meta.database} failed: {describe(e)}") from e

    async def latest(self, database: str) -> SnapshotMeta | None:
        try:
            store = await self._bucket(create=False)
            if store is None:
                return None
            info = await store.get_info(object_name(database))
        except (ObjectNotFoundError, NotFoundError):
            return None
        except Exception as e:  # an unreachable store is not "no snapshot"
            raise SnapshotError(f"reading the snapshot of {database}: {describe(e)}") from e
        if info.deleted:
            return None
        return SnapshotMeta.from_headers(dict(info.headers or {}))

    async def certify(self, meta: SnapshotMeta) -> None:
        try:
            store = await self._bucket(create=False)
            if store is None:
                return
            await store.update_meta(
                object_name(meta.database),
                ObjectMeta(
                    name=object_name(meta.database),
                    description=f"snapshot of {meta.database} at seq {meta.seq}",
                    headers=meta.headers(),
                ),
            )
        except Exception as e:  # the old metadata stays valid, only less useful
            raise SnapshotError(f"updating the snapshot metadata of {meta.database}: {describe(e)}") from e

    async def fetch(self, database: str, dest: Path) -> SnapshotMeta:
        """Download the latest snapshot into ``dest``. Another node may store a newer one meanwhile (nodes
        snapshot on their own and answer requests): NATS then purges the chunks being read, so a download
        that stalls or comes back wrong while the object changed starts over with the newer one."""
        store = await self._bucket(create=False)
        if store is None:
            raise NoSnapshot(f"no snapshot of {database!r} in {self.bucket}")
        for attempt in range(1, FETCH_ATTEMPTS + 1):
            try:
                info = await store.get_info(object_name(database))
            except (ObjectNotFoundError, NotFoundError) as e:
                raise NoSnapshot(f"no snapshot of {database!r} in {self.bucket}") from e
            except Exception as e:
                raise SnapshotError(f"reading the snapshot of {database}: {describe(e)}") from e
            if info.deleted:
                raise NoSnapshot(f"no snapshot of {database!r} in {self.bucket}")
            meta = SnapshotMeta.from_headers(dict(info.headers or {}))  # of this very version
            try:
                with dest.open("wb") as f:
                    await self._download(info, f, meta.sha256)
                return meta
            except Exception as e:  # a broken download must not look like a snapshot
                if attempt < FETCH_ATTEMPTS and await self._replaced(store, info):
                    log.info(
                        "the snapshot of %s was replaced by a newer one while it downloaded; starting over",
                        database,
                    )
                    continue
                if isinstance(e, SnapshotError):
                    raise
                raise SnapshotError(f"downloading the snapshot of {database}: {describe(e)}") from e
        raise SnapshotError(f"the snapshot of {database} kept being replaced while it downloaded")

    async def _replaced(self, store: ObjectStore, info: ObjectInfo) -> bool:
        with contextlib.suppress(Exception):
            now = await store.get_info(info.name)
            return bool(now.nuid != info.nuid)
        return False

    async def _download(self, info: ObjectInfo, f: BinaryIO, sha256: str) -> None:
        """Pull the object's chunks in large batches and write them in order, checking the digest.

        nats-py's ``ObjectStore.get`` reads through a push consumer whose flow-control replies wait for a
        timer: the server stalls about a quarter second every few megabytes (measured: 7 of the 8 seconds
        of a 490 MB download). A pull consumer has no flow control; the client asks for what it can take.
        """
        if not info.nuid:
            raise SnapshotError(f"the snapshot object {info.name} has no chunks (bad metadata)")
        if not info.size:
            return
        js = self._conn.jetstream()
        subject = f"$O.{self.bucket}.C.{info.nuid}"
        sub = await js.pull_subscribe(
            subject,
            stream=f"OBJ_{self.bucket}",
            config=ConsumerConfig(
                ack_policy=AckPolicy.NONE,
                deliver_policy=DeliverPolicy.ALL,
                inactive_threshold=30.0,
            ),
        )
        digest = hashlib.sha256()
        got = size = 0
        chunks = info.chunks or 0
        try:
            while got < chunks:
                msgs = await sub.fetch(min(FETCH_BATCH, chunks - got), timeout=FETCH_TIMEOUT)
                for msg in msgs:
                    f.write(msg.data)
                    digest.update(msg.data)
                    size += len(msg.data)
                got += len(msgs)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        expected = (info.digest or "").split("=", 1)[-1]
        if size != info.size or base64.urlsafe_b64encode(digest.digest()).decode() != _pad(expected):
            raise SnapshotError(
                f"the snapshot object {info.name} came back with {size} bytes that do not match its digest"
            )
        if digest.hexdigest() != sha256:
            raise SnapshotError(f"snapshot of {info.name} is corrupt: checksum mismatch with its metadata")


def _pad(b64: str) -> str:
    return b64 + "=" * (-len(b64) % 4)
