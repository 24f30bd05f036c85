"""Taking snapshots: on demand and every ``--snapshot-interval``, skipped when nothing changed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from sqlite_ha.db.snapshot_file import make_snapshot_file
from sqlite_ha.errors import HAError
from sqlite_ha.replication.replicated_database import ReplicatedDatabase
from sqlite_ha.replication.snapshot import SnapshotMeta, SnapshotStore

log = logging.getLogger(__name__)


class Snapshotter:
    def __init__(self, store: SnapshotStore, *, node: str, interval: float = 0.0) -> None:
        self.store = store
        self.node = node
        self.interval = interval
        self._locks: dict[str, asyncio.Lock] = {}
        self._task: asyncio.Task[None] | None = None
        self.taken = 0
        self.failures = 0
        self.last_error: str | None = None

    async def take(self, rdb: ReplicatedDatabase) -> tuple[SnapshotMeta | None, bool]:
        """Snapshot one database unless the stored snapshot already includes everything applied here.

        Returns the latest snapshot's metadata and whether this call took it.
        """
        db = rdb.db
        lock = self._locks.setdefault(db.id, asyncio.Lock())
        async with lock:
            latest = await self.store.latest(db.id)
            if latest is not None and latest.seq >= rdb.applied_seq:
                return await self._certify(rdb, latest), False
            # The position moved by this node's own change sets is written lazily: write it now, so that the
            # copy records everything it holds.
            await rdb.replica.flush_position()
            fd, tmp = tempfile.mkstemp(prefix=f"sqlite-ha-snapshot-{db.id}-", suffix=".db")
            os.close(fd)
            try:
                if db.spec.memory:  # serialize runs on the thread that owns the connection
                    made = make_snapshot_file(db, tmp)
                else:
                    made = await asyncio.to_thread(make_snapshot_file, db, tmp)
                if latest is not None and made.seq <= latest.seq:
                    return latest, False
                meta = SnapshotMeta(
                    database=db.id,
                    seq=made.seq,
                    hlc=made.hlc,
                    sha256=made.sha256,
                    size=made.size,
                    schema_version=made.schema_version,
                    node=self.node,
                    taken_at=time.time(),
                )
                await self.store.put(meta, Path(tmp))
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            self.taken += 1
            log.info("snapshot of %s at seq %d stored (%d bytes)", db.id, meta.seq, meta.size)
            return meta, True

    async def _certify(self, rdb: ReplicatedDatabase, latest: SnapshotMeta) -> SnapshotMeta:
        """Nothing changed since the snapshot: if this node is caught up, record that the snapshot covers the
        log up to its end, so that change sets of *other* databases aging out do not look like a gap."""
        through = await rdb.caught_up_through()
        if through is None or through <= latest.covers or rdb.applied_seq != latest.seq:
            return latest
        certified = replace(latest, covers_through=through)
        await self.store.certify(certified)
        return certified

    def start(self, databases: Callable[[], list[ReplicatedDatabase]]) -> None:
        if self.interval > 0:
            self._task = asyncio.create_task(self._every(databases), name="snapshots")

    async def _every(self, databases: Callable[[], list[ReplicatedDatabase]]) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for rdb in databases():
                if rdb.gap is not None:
                    continue  # it may lack change sets: it is about to start from a snapshot itself
                try:
                    await self.take(rdb)
                except HAError as e:  # the store failed, or the copy was damaged: logged, tried again later
                    self.failures += 1
                    self.last_error = e.message
                    log.warning("snapshot of %s failed: %s", rdb.db.id, e.message)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
