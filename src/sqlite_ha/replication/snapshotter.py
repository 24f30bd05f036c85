"""Taking snapshots: on demand, every ``--snapshot-interval``, before the log's retention could drop change
sets no snapshot covers, and when another node asks for one.

So that a node can always join while an up-to-date node is alive:

- **Periodic** (every ``--snapshot-interval``, default 1 minute, with jitter): a database is snapshotted only
  when it changed since the store's latest snapshot, and not when another node stored one less than half an
  interval ago; every node of a cluster runs this, and the first to store one makes the others skip.
- **Before retention** (checked every tick, at most every eighth of the max age): when the oldest change set
  of a database that no snapshot covers has lived half the stream's max age (or is in the older half of what
  its max-messages / max-bytes limits keep), a snapshot is taken at once.
- **On request** (``answer``): a node that finds a gap and no snapshot covering it asks; a node that can prove
  it has every change set up to the log's end takes one now and replies with its position.

``--snapshot-interval 0`` turns the first two off; requests are answered whatever the interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlite_ha.changes.snapshot_file import make_snapshot_file
from sqlite_ha.errors import HAError
from sqlite_ha.replication.freshness import StaleRead
from sqlite_ha.replication.replicated_database import ReplicatedDatabase
from sqlite_ha.replication.replicator import Replicator
from sqlite_ha.replication.snapshot import SnapshotMeta, SnapshotStore
from sqlite_ha.replication.snapshot_request import Send, SnapshotReply, SnapshotRequest

log = logging.getLogger(__name__)

RETENTION_FRACTION = 0.5  # snapshot once the oldest uncovered change set has used this much of its keep
MAX_TICK = 60.0  # how often the retention check runs at most, whatever the interval
ANSWER_JITTER = 0.25  # seconds: of several nodes asked at once, one usually stores and the others point at it
CATCH_UP_TRIES = 3
CATCH_UP_WAIT = 2.0  # seconds an answering node waits to apply the log's end before trying again


class Snapshotter:
    def __init__(
        self,
        store: SnapshotStore,
        *,
        node: str,
        interval: float = 0.0,
        replicator: Replicator | None = None,
    ) -> None:
        self.store = store
        self.node = node
        self.interval = interval
        self.replicator = replicator  # the log, for its retention (where it can say: JetStream)
        self._locks: dict[str, asyncio.Lock] = {}
        self._task: asyncio.Task[None] | None = None
        self.running = False  # started: answering requests, snapshotting at the interval
        self._databases: Callable[[], list[ReplicatedDatabase]] = list
        self._due: dict[str, float] = {}  # database -> monotonic time of its next periodic snapshot
        self.taken = 0
        self.skipped = 0  # periodic rounds that found a database unchanged or freshly snapshotted elsewhere
        self.before_retention = 0
        self.rounds = 0
        self.answered = 0
        self.refused = 0
        self.failures = 0
        self.last_error: str | None = None

    async def take(self, rdb: ReplicatedDatabase, *, through: int = 0) -> tuple[SnapshotMeta | None, bool]:
        """Snapshot one database unless the stored snapshot already includes everything applied here.
        ``through``: a log position this node was just proven to have every change set of the database up
        to (``ReplicatedDatabase.caught_up_through``); the new snapshot then covers the log up to there.

        Returns the latest snapshot's metadata and whether this call took it.
        """
        db = rdb.db
        lock = self._locks.setdefault(db.id, asyncio.Lock())
        async with lock:
            latest = await self.store.latest(db.id)
            if latest is not None and latest.seq >= rdb.applied_seq:
                return await self._certify(rdb, latest, through), False
            # The position moved by this node's own change sets is written lazily: write it now, so that the
            # copy records everything it holds.
            await rdb.changes.flush_position()
            fd, tmp = tempfile.mkstemp(prefix=f"sqlite-ha-snapshot-{db.id}-", suffix=".db")
            os.close(fd)
            try:
                if db.spec.memory:  # serialize runs on the thread that owns the connection
                    made = make_snapshot_file(db, tmp)
                else:
                    made = await asyncio.to_thread(make_snapshot_file, db, tmp)
                # another node may have stored one meanwhile (periodic snapshots run on every node)
                latest = await self.store.latest(db.id) or latest
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
                    # made after the proof: it holds every change set of the database up to ``through``
                    covers_through=through if through > made.seq else 0,
                )
                await self.store.put(meta, Path(tmp))
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            self.taken += 1
            log.info("snapshot of %s at seq %d stored (%d bytes)", db.id, meta.seq, meta.size)
            return meta, True

    async def _certify(self, rdb: ReplicatedDatabase, latest: SnapshotMeta, through: int = 0) -> SnapshotMeta:
        """Nothing changed since the snapshot: if this node is caught up, record that the snapshot covers the
        log up to its end, so that change sets of *other* databases aging out do not look like a gap."""
        if not through:
            through = await rdb.caught_up_through() or 0
        if through <= latest.covers or rdb.applied_seq != latest.seq:
            return latest
        certified = replace(latest, covers_through=through)
        await self.store.certify(certified)
        return certified

    # ------------------------------------------------------------------------------------ automatic
    def start(self, databases: Callable[[], list[ReplicatedDatabase]]) -> None:
        """Answer requests for ``databases`` from now on; snapshot them automatically unless the interval
        is 0."""
        self._databases = databases
        self.running = True
        if self.interval > 0:
            self._task = asyncio.create_task(self._every(), name="snapshots")

    def tick(self) -> float:
        """How often the automatic snapshots look at each database."""
        tick = min(self.interval, MAX_TICK)
        max_age = self.replicator.max_age if self.replicator is not None else None
        if max_age is not None and max_age > 0:
            tick = min(tick, max_age / 8)
        return max(0.05, tick)

    async def _every(self) -> None:
        while True:
            await asyncio.sleep(self.tick() * random.uniform(0.8, 1.2))
            self.rounds += 1
            for rdb in self._databases():
                if rdb.gap is not None:
                    continue  # it may lack change sets: it is about to start from a snapshot itself
                try:
                    await self._maybe_take(rdb)
                except HAError as e:  # the store failed, or the copy was damaged: logged, tried again later
                    self.failures += 1
                    self.last_error = e.message
                    log.warning("snapshot of %s failed: %s", rdb.db.id, e.message)
                except Exception as e:  # joining depends on this loop: it must outlive any surprise
                    self.failures += 1
                    self.last_error = str(e) or type(e).__name__
                    log.exception("snapshot of %s failed", rdb.db.id)

    async def _maybe_take(self, rdb: ReplicatedDatabase) -> None:
        ident, now = rdb.db.id, time.monotonic()
        due = self._due.setdefault(ident, now + self.interval * random.uniform(0.5, 1.0))
        why = await self._retention_pressure(rdb)
        if why is None and now < due:
            return
        if why is None:
            self._due[ident] = now + self.interval * random.uniform(0.8, 1.2)
            latest = await self.store.latest(ident)
            if latest is not None and latest.seq >= rdb.applied_seq:
                self.skipped += 1
                # unchanged: nothing is stored, but if other databases' change sets moved the log on, the
                # snapshot's metadata records that it covers them too (they may age out without a gap)
                await self.take(rdb)
                return
            if latest is not None and time.time() - latest.taken_at < self.interval / 2:
                self.skipped += 1  # another node stored one a moment ago
                return
        else:
            # every caught-up node sees the same pressure: stagger them, the first to store wins
            await asyncio.sleep(random.uniform(0, self.tick()))
        through = await rdb.caught_up_through() or 0
        meta, taken = await self.take(rdb, through=through)
        if why is not None and taken and meta is not None:
            self.before_retention += 1
            log.info("snapshot of %s taken before the log's retention drops change sets (%s)", ident, why)

    async def _retention_pressure(self, rdb: ReplicatedDatabase) -> str | None:
        """Why change sets of the database that no snapshot covers are close to leaving the log, or None."""
        replicator = rdb.replicator
        try:
            keeps = await replicator.retention()
            if keeps is None:
                return None  # the log drops nothing
            latest = await self.store.latest(rdb.db.id)
            oldest = await replicator.oldest_after(rdb.db.id, latest.covers if latest is not None else 0)
            if oldest is None:
                return None  # the snapshot covers every change set the log holds
            seq, stored_at = oldest
            if seq > rdb.applied_seq:
                return None  # not applied here yet: a snapshot from this node would not cover it
        except HAError as e:  # the log or the store does not answer now: nothing to snapshot into either
            log.debug("retention of %s unknown: %s", rdb.db.id, e.message)
            return None
        behind = keeps.last_seq - seq + 1  # stream messages from it on (itself included)
        if keeps.max_age > 0 and time.time() - stored_at > keeps.max_age * RETENTION_FRACTION:
            return f"change set {seq} is {time.time() - stored_at:.1f}s old, the log keeps {keeps.max_age:g}s"
        if keeps.max_msgs > 0 and behind > keeps.max_msgs * RETENTION_FRACTION:
            return f"change set {seq} is {behind} messages from the log's end, the log keeps {keeps.max_msgs}"
        if keeps.max_bytes > 0 and keeps.messages > 0:
            size = behind / keeps.messages * keeps.bytes
            if size > keeps.max_bytes * RETENTION_FRACTION:
                return f"about {size:.0f} bytes from change set {seq} on, the log keeps {keeps.max_bytes}"
        return None

    # ------------------------------------------------------------------------------------ requests
    async def answer(self, request: SnapshotRequest, send: Send) -> None:
        """Answer another node's request: a snapshot covering ``request.need`` if this node can prove it is
        up to date, a refusal saying why otherwise; silence for a database it does not replicate."""
        rdb = next((r for r in self._databases() if r.db.id == request.database), None)
        if rdb is None:
            return
        try:
            reply = await self._answered(request, rdb, send)
        except Exception as e:  # the asker waits for the final reply of a node that said it is working on it
            log.exception(
                "answering %s's request for a snapshot of %s failed", request.node, request.database
            )
            self.refused += 1
            reply = SnapshotReply(
                database=request.database, node=self.node, ok=False, error=f"answering failed: {e!r}"
            )
        await send(reply)

    async def _answered(self, request: SnapshotRequest, rdb: ReplicatedDatabase, send: Send) -> SnapshotReply:
        def refuse(why: str) -> SnapshotReply:
            self.refused += 1
            log.info("refused %s's request for a snapshot of %s: %s", request.node, request.database, why)
            return SnapshotReply(database=request.database, node=self.node, ok=False, error=why)

        if rdb.gap is not None:
            return refuse("this node has a gap in the log itself")
        if rdb.policy != "all":
            return refuse(f"this node skipped the log's history (--replication-policy {rdb.policy})")
        await send(SnapshotReply(database=request.database, node=self.node, ok=False, pending=True))
        await asyncio.sleep(random.uniform(0, ANSWER_JITTER))
        try:
            through = await self._prove_caught_up(rdb)
            if through is None:
                return refuse("this node cannot prove it has applied the log up to its end")
            latest = await self.store.latest(rdb.db.id)
            taken = False
            if latest is None or latest.covers < request.need:
                latest, taken = await self.take(rdb, through=through)
            if latest is None or latest.covers < request.need:
                covers = 0 if latest is None else latest.covers
                return refuse(f"its snapshot covers the log up to {covers}, not {request.need}")
        except HAError as e:
            self.failures += 1
            self.last_error = e.message
            return refuse(f"taking the snapshot failed: {e.message}")
        self.answered += 1
        log.info(
            "%s %s's request with the snapshot of %s at seq %d (covers %d)",
            "took one for" if taken else "answered",
            request.node,
            request.database,
            latest.seq,
            latest.covers,
        )
        return SnapshotReply(
            database=request.database,
            node=self.node,
            ok=True,
            seq=latest.seq,
            covers=latest.covers,
            taken=taken,
        )

    async def _prove_caught_up(self, rdb: ReplicatedDatabase) -> int | None:
        """A log position up to which this node has every change set of the database, or None.

        Either ``caught_up_through`` (nothing pending for its consumer at the log's end), or, under a steady
        stream of writes where something is always pending: the log's end ``end`` read first, then the
        database's newest change set, which this node then applies within a moment; and the log has not
        dropped anything after what it applied (a node that was frozen may not have noticed its gap yet).
        Every change set of the database up to ``end`` is at or before that newest one, and the applier never
        steps over a change set the log dropped (it stops at a hole and marks the gap), so it has them all.
        """
        through = await rdb.caught_up_through()
        if through is not None and rdb.gap is None:
            return through
        if await rdb.replicator.stream_last_seq() is None:
            return None
        for _ in range(CATCH_UP_TRIES):
            try:
                end = await asyncio.wait_for(rdb.replicator.stream_last_seq(), 2.0)
                assert end is not None
                last = await asyncio.wait_for(rdb.replicator.last_seq(rdb.db.id), 2.0)
                await rdb.wait_applied(last, CATCH_UP_WAIT)
                first = await asyncio.wait_for(rdb.replicator.first_seq(rdb.db.id), 2.0)
            except StaleRead:
                continue  # writes keep coming faster than a moment: try again from the new end
            except (HAError, TimeoutError):
                return None
            return end if rdb.gap is None and first <= rdb.applied_seq + 1 else None
        return None

    def stats(self) -> dict[str, Any]:
        return {
            "interval_s": self.interval,
            "taken": self.taken,
            "before_retention": self.before_retention,
            "skipped": self.skipped,
            "rounds": self.rounds,
            "answered": self.answered,
            "refused": self.refused,
            "failures": self.failures,
            "last_error": self.last_error,
        }

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
