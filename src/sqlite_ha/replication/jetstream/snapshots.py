"""Snapshots in the JetStream object store: bucket ``<stream>_SNAPSHOTS``, one object per database.

NATS writes an object's chunks first and its metadata last, so the previous version of an object stays
readable until a new one is complete. Downloads stream into a file (``writeinto``): the default ``get``
concatenates bytes and is several times slower on large objects (REFERENCE §4).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from nats.js.api import ObjectMeta, StorageType
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from sqlite_ha.replication.jetstream.common import describe
from sqlite_ha.replication.jetstream.connection import NatsConnection
from sqlite_ha.replication.snapshot import NoSnapshot, SnapshotError, SnapshotMeta


def object_name(database: str) -> str:
    return database.replace(".", "_")


class JetStreamSnapshotStore:
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
        meta = await self.latest(database)
        if meta is None:
            raise NoSnapshot(f"no snapshot of {database!r} in {self.bucket}")
        store = await self._bucket(create=False)
        assert store is not None
        try:
            with dest.open("wb") as f:
                await store.get(object_name(database), writeinto=f)
        except Exception as e:  # a broken download must not look like a snapshot
            raise SnapshotError(f"downloading the snapshot of {database}: {describe(e)}") from e
        return meta
