"""How fresh a read is: waiting until this node has applied a position of the log (``min_seq``), or all
the log held when the read arrived (a strong read), and telling how far it is caught up."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from sqlite_ha.errors import BadRequest, HAError
from sqlite_ha.replication.replicator import ReplicationError

if TYPE_CHECKING:
    from sqlite_ha.changes.store import ChangeStore
    from sqlite_ha.db.database import Database
    from sqlite_ha.replication.replicator import Replicator


class StaleRead(HAError):
    code = "stale_read"


class LogUnreachable(HAError):
    """A strong read could not learn where the log ends: without that no node can promise a current read."""

    code = "log_unreachable"


class SeqBeyondLog(BadRequest):
    """``min_seq`` is past the end of the log: no write has that position (yet), waiting would be in vain."""

    code = "min_seq_beyond_log"


class ReadLevels:
    """The read side of a ``ReplicatedDatabase`` (a mixin: it uses the attributes declared below)."""

    db: Database
    changes: ChangeStore
    replicator: Replicator
    consumer: str
    _applied: asyncio.Condition
    _verified_through: int
    _verified_at: float

    @property
    def applied_seq(self) -> int:
        raise NotImplementedError

    def _log_may_have_dropped(self) -> bool:
        raise NotImplementedError

    async def wait_current(self, timeout: float) -> int:
        """A strong read: return once this node has applied everything the log held when it was asked, so
        the read that follows sees every write acknowledged anywhere before it began (a write is
        acknowledged only once it is in the log); the position of the database's last change set then.
        ``LogUnreachable`` when the log does not say where it ends within ``timeout``; ``StaleRead`` when
        this node does not catch up within it."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                last = await self.replicator.last_seq(self.db.id)
        except (TimeoutError, ReplicationError) as e:
            why = e.message if isinstance(e, ReplicationError) else f"no answer within {timeout:g}s"
            raise LogUnreachable(
                f"a strong read of {self.db.id} needs the log's last position, and the log does not answer: "
                f"{why}",
                hint="retry, or read with level=none (this node's data, possibly behind)",
            ) from e
        await self.wait_applied(last, max(timeout - (time.monotonic() - started), 0.001))
        return last

    async def wait_applied(self, min_seq: int, timeout: float) -> None:
        """Return once this node has applied the log up to ``min_seq``; ``StaleRead`` after ``timeout``.

        While it waits it asks the log where it ends: ``SeqBeyondLog`` at once if ``min_seq`` is past that
        (no acknowledged write has that position). Only the log can say: a write acknowledged a moment ago
        on another node is newer than anything this node has seen. If the log cannot answer, the wait goes on.
        """
        if self.changes.applied_seq >= min_seq:
            return
        try:
            async with asyncio.timeout(timeout):
                applied = asyncio.ensure_future(self._wait_for(min_seq))
                beyond = asyncio.ensure_future(self._refuse_beyond_log(min_seq))
                try:
                    await asyncio.wait((applied, beyond), return_when=asyncio.FIRST_COMPLETED)
                    if not applied.done():
                        beyond.result()  # raises when min_seq is past the log's end
                    await applied
                finally:
                    applied.cancel()
                    beyond.cancel()
                    if beyond.done() and not beyond.cancelled():
                        beyond.exception()  # retrieved: a refusal that came too late is not an error
        except TimeoutError:
            raise StaleRead(
                f"this node has applied the log up to {self.changes.applied_seq}, not yet {min_seq}",
                hint="retry, or read from the node that took the write",
                applied_seq=self.changes.applied_seq,
                min_seq=min_seq,
            ) from None

    async def _wait_for(self, min_seq: int) -> None:
        async with self._applied:
            await self._applied.wait_for(lambda: self.changes.applied_seq >= min_seq)

    async def _refuse_beyond_log(self, min_seq: int) -> None:
        """Raise ``SeqBeyondLog`` if the log ends before ``min_seq``; return if it does not or cannot say."""
        try:
            end = await asyncio.wait_for(self._log_end(), 2.0)
        except (TimeoutError, ReplicationError):
            return
        if min_seq > end:
            raise SeqBeyondLog(
                f"min_seq {min_seq} is beyond the end of the replication log (its last sequence is {end}): "
                "no write has that position",
                hint="send the seq a write to this database answered; after the log was recreated, older "
                "seq values mean nothing",
                min_seq=min_seq,
                last_seq=end,
            )

    async def _log_end(self) -> int:
        """The last position of the log, asked of the log itself. With JetStream positions are the stream's,
        shared by all databases: its last sequence (a database's own last one may be older than a seq from
        a write to another database, which waits as any other). A log without stream-wide positions counts
        each database on its own."""
        stream_end = await self.replicator.stream_last_seq()
        if stream_end is not None:
            return stream_end
        return int(await self.replicator.last_seq(self.db.id))

    async def caught_up_through(self) -> int | None:
        """A log position up to which this node has applied every change set of this database, if it can
        tell (the log's end when its consumer has nothing pending, and nothing it lacked was dropped), else
        None. What it finds is remembered (``verified_through``)."""
        asked_at = time.time()
        try:
            end = await asyncio.wait_for(self.replicator.stream_last_seq(), 2.0)
            if end is None:
                return None
            last = end
            pending = await self._pending_messages()
            if pending != 0:
                return None
            # An empty consumer proves nothing if the log dropped what it would have delivered.
            if self._log_may_have_dropped():
                first = await asyncio.wait_for(self.replicator.first_seq(self.db.id), 2.0)
                if first > max(self.applied_seq, self._verified_through) + 1:
                    return None
        except (TimeoutError, ReplicationError):
            return None
        if last >= self._verified_through:
            self._verified_through, self._verified_at = last, asked_at
        return last

    async def _pending_messages(self) -> int | None:
        """How many of this database's change sets the log still has for this node, where it can say."""
        try:
            info = await asyncio.wait_for(self.replicator.consumer(self.consumer), 2.0)
            return _num_pending(info, self.applied_seq)
        except (TimeoutError, ReplicationError):
            return None


def _num_pending(info: dict[str, Any] | None, applied_seq: int) -> int | None:
    """Change sets not delivered yet, plus those delivered but not applied yet (the unacknowledged ones,
    unless the node applied everything delivered: acks are sent a little later than the apply)."""
    if not info:
        return None
    pending, unacked = info.get("num_pending"), info.get("num_ack_pending", 0)
    if not isinstance(pending, int):
        return None
    delivered = info.get("delivered_stream_seq", 0)
    if isinstance(delivered, int) and delivered <= applied_seq:
        return pending
    return pending + (unacked if isinstance(unacked, int) else 0)
