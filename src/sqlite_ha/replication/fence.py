"""The fence of writer modes: every write a conditional append to the log, committed here only after.

In a writer mode every change set is appended to the log on condition that the database's last change set
there is the one this node's data ends with (``expect``). The log itself thus refuses a write based on an
out-of-date view, whoever makes it: a deposed writer paused or cut off while another took over, or a node that
only believes it writes. And a write commits here only once the log took it (``WriteHooks.publish_held``), so
a refused writer keeps nothing the log does not have. A node that becomes the writer first appends an empty
change set (its *term mark*) right after the log's last one: from then on the log refuses whatever the
previous writer still sends, even before the new writer's first write.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlite_ha.changes.changeset import ChangeSet
from sqlite_ha.replication import codec
from sqlite_ha.replication.freshness import LogUnreachable
from sqlite_ha.replication.outbound import publish_changeset
from sqlite_ha.replication.replicator import (
    Delivery,
    NotReplicating,
    PublishTimeout,
    ReplicationError,
    WrongLastSequence,
)
from sqlite_ha.writer.role import Fenced, NotWriter, OutcomeUnknown

if TYPE_CHECKING:
    from sqlite_ha.replication.replicated_database import ReplicatedDatabase

FENCED_RETRIES = 3  # a writer's write the log refused is run again this often (nothing of it was written)


class Fence:
    """One replicated database's fence (see the module's docstring)."""

    def __init__(self, rdb: ReplicatedDatabase) -> None:
        self.rdb = rdb
        # This node's data is the log's up to ``_expect`` (the database's last change set there), established
        # in the writer mode's term ``_expect_term``; None: to establish again before the next write.
        self._expect: int | None = None
        self._expect_term = -1
        self._marked_term = -1  # the term this node last marked in the log as its writer
        self._resyncing = asyncio.Lock()
        self._held: dict[str, asyncio.Event] = {}  # msg id -> set once its held commit is settled
        self.fenced = 0  # appends the log refused: another node wrote since
        self.terms = 0  # marks this node put in the log as it became the writer

    def reset(self) -> None:
        self._expect = None

    async def settled(self, deliveries: Sequence[Delivery]) -> None:
        """One of ours back from the log before its held commit settled: wait to know whether to apply it."""
        if self._held:
            for d in deliveries:
                event = self._held.get(d.msg_id or "")
                if event is not None:
                    await event.wait()

    def status(self) -> dict[str, int | None]:
        return {"expect": self._expect, "fenced": self.fenced, "terms": self.terms}

    async def ready(self) -> None:
        """Before a write takes the writer: establish the fence if the writer changed since it was."""
        mode = self.rdb.writer_mode
        if mode is None or (self._expect is not None and self._expect_term == mode.changes):
            return
        async with self._resyncing:
            for _ in range(FENCED_RETRIES + 1):
                if self._expect is not None and self._expect_term == mode.changes:
                    return
                term = mode.changes
                expect = await self._catch_up()
                if mode.is_writer() and self._marked_term != term:
                    try:
                        expect = await self._mark_term(expect)
                    except Fenced:
                        continue  # someone wrote meanwhile: catch up again
                    self._marked_term = term
                self._expect, self._expect_term = expect, term
            raise Fenced(
                f"{self.rdb.db.id}: other nodes keep writing while this node catches up; nothing was written",
                hint="retry; in a writer mode, send writes to the writer (forwarding does it)",
            )

    async def _catch_up(self) -> int:
        """Apply everything the log holds for this database now; its last change set's position."""
        try:
            return await self.rdb.wait_current(self.rdb.timeout)
        except LogUnreachable as e:
            raise NotReplicating(
                f"a write must start from the log's latest state of {self.rdb.db.id}: {e.message}; nothing "
                "was written",
                hint="retry later; reads still work",
            ) from e

    async def _mark_term(self, last: int) -> int:
        """This node just became the writer: append an empty change set right after ``last``. From then on
        the log refuses whatever the previous writer still sends (it expects an older last change set), even
        before this node's first write. Its seq is the new fence."""
        hlc = self.rdb.changes.hlc.now()
        cs = ChangeSet(database=self.rdb.db.id, node=self.rdb.node, hlc=hlc, timestamp_ns=time.time_ns())
        try:
            sent = await publish_changeset(
                self.rdb.replicator,
                database=self.rdb.db.id,
                hlc=hlc,
                msg_id=f"{cs.msg_id}.term",  # never a change set's id: the log must not take one as its dup
                payload=codec.encode(cs),
                timeout=self.rdb.timeout,
                sealer=self.rdb.sealer,
                expect=last,
            )
        except WrongLastSequence as e:
            self.fenced += 1
            raise Fenced(f"{self.rdb.db.id}: another node wrote while this one took over") from e
        except ReplicationError as e:
            raise NotReplicating(
                f"this node became the writer but cannot mark it in the log: {e.message}; nothing was "
                "written",
                hint="retry later",
            ) from e
        self.terms += 1
        return sent.seq

    async def publish_held(self, cs: ChangeSet, payload: bytes) -> int:
        """``WriteHooks.publish_held``: the conditional append of a write whose transaction is still open."""
        mode = self.rdb.writer_mode
        if mode is None or self._expect is None or self._expect_term != mode.changes:
            raise Fenced(
                f"the writer of {self.rdb.db.id} changed while this write ran; nothing was written",
                hint="retry: the write goes to the new writer",
            )
        writer = mode.current()
        if writer is not None and writer.is_self and not mode.holds():
            raise NotWriter(
                "this node's claim to write ran out before its write reached the log; nothing was written",
                hint="retry: the write goes to the new writer",
            )
        self._held[cs.msg_id] = asyncio.Event()
        expected = self._expect
        try:
            sent = await publish_changeset(
                self.rdb.replicator,
                database=self.rdb.db.id,
                hlc=cs.hlc,
                msg_id=cs.msg_id,
                payload=payload,
                timeout=self.rdb.timeout,
                sealer=self.rdb.sealer,
                expect=self._expect,
            )
        except WrongLastSequence as e:
            self._expect = None
            self.fenced += 1
            raise Fenced(
                f"the log refused this write to {self.rdb.db.id}: another node wrote since this node's view "
                f"(the log's last change set is at {e.last if e.last is not None else 'a later position'}, "
                f"this node's at {expected}); nothing was written",
                hint="retry: the write goes to the writer with its current view",
            ) from e
        except PublishTimeout as e:
            self._expect = None
            self.rdb.publish_failures += 1
            raise OutcomeUnknown(
                f"the log did not answer within {self.rdb.timeout:g}s: this write may or may not be in it. "
                "It was not committed on this node; if the log has it, every node applies it",
                hint="check before retrying a write that is not idempotent (a read with level=strong)",
            ) from e
        except ReplicationError as e:
            self._expect = None
            self.rdb.publish_failures += 1
            raise NotReplicating(
                f"the log did not take this write: {e.message}; nothing was written", hint="retry later"
            ) from e
        self._expect = sent.seq
        self.rdb.published += 1
        if sent.chunks:
            self.rdb.published_chunked += 1
        self.rdb._acked[cs.hlc] = sent.seq  # not the relay's: in the log already
        return sent.seq

    def held_done(self, cs: ChangeSet, committed: bool) -> None:
        """``WriteHooks.held_done``: the held commit is settled. Committed, the change set's own delivery only
        moves the position; rolled back (the log refused it, or did not answer: it may still be there), its
        delivery, if any, applies it like another node's."""
        if committed:
            self.rdb._committed.add(cs.hlc)
        else:
            self.rdb._acked.pop(cs.hlc, None)
        settled = self._held.pop(cs.msg_id, None)
        if settled is not None:
            settled.set()
