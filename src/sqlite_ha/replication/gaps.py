"""Gaps in the log: change sets a node never applied that the log no longer holds.

A node knows up to which position it has every change set of a database (what it applied, or a snapshot's
cover, or a caught-up check); where the log now starts past that, what lies between is gone and the
database may be silently stale. It then refuses requests (``Gap``, 503) until recovery installs a snapshot
that covers the gap (``recovery.py``). Checked when a delivery jumps, and periodically.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlite_ha.errors import HAError
from sqlite_ha.replication.replicator import ReplicationError

if TYPE_CHECKING:
    from sqlite_ha.changes.store import ChangeStore
    from sqlite_ha.db.database import Database
    from sqlite_ha.replication.replicator import Replicator

log = logging.getLogger(__name__)

GAP_CHECK_EVERY = 5.0  # seconds between checks that the log still starts before what this node has


class Gap(HAError):
    """The log no longer holds change sets this node may have missed: its data may be stale."""

    code = "replication_gap"


class GapChecks:
    """The gap side of a ``ReplicatedDatabase`` (a mixin: it uses the attributes declared below)."""

    db: Database
    changes: ChangeStore
    replicator: Replicator
    gap: tuple[int, int] | None
    on_gap: Callable[[Any], None] | None
    _verified_through: int
    _verified_at: float

    if TYPE_CHECKING:  # defined by ``ReplicatedDatabase`` and ``ReadLevels``, later in its bases

        @property
        def applied_seq(self) -> int: ...

        async def caught_up_through(self) -> int | None: ...

    def refuse_if_stale(self) -> None:
        """Raise ``Gap`` while this node may lack change sets the log dropped (until it recovers)."""
        if self.gap is not None:
            known, first = self.gap
            raise Gap(
                f"this node has every change set of {self.db.id} up to {known}, but the log now starts at "
                f"{first}: what it missed in between is gone, so it refuses to serve possibly stale data "
                "until it has installed a snapshot that covers the gap",
                hint="the node recovers by itself: it installs a snapshot that covers the gap, asking the "
                "live nodes for one (an up-to-date node answers); GET /status shows the state",
                known=known,
                first=first,
            )

    def _log_may_have_dropped(self) -> bool:
        """Could change sets after what this node knows it has have aged out of the log already?

        Change sets age out ``max_age`` after the log stored them. Everything after the known position was
        stored after a moment this node remembers (when it applied the change set at that position, or
        verified it was caught up); while that moment is younger than half the max age, nothing after it can
        be gone, and neither a jump in the delivered sequences (normal: the other databases' change sets lie
        in between) nor an empty consumer needs a look at the log's start.
        """
        max_age = self.replicator.max_age
        if max_age is None:
            return True  # a log that cannot say: ask it (the in-memory ones answer at once)
        if max_age <= 0:
            return False  # kept forever
        anchor = max(self.changes.stats.last_published_at or 0.0, self._verified_at)
        return time.time() - anchor > max_age / 2

    async def _check_hole(self, next_seq: int) -> None:
        """Refuse to apply past change sets the log dropped before this node applied them."""
        first = await self.replicator.first_seq(self.db.id)
        known = max(self.applied_seq, self._verified_through)
        if first <= known + 1:
            return
        if self.gap is None:
            log.error(
                "database %s: the log jumps from %d to %d and dropped what lies between before this node "
                "applied it; refusing requests until it has installed a snapshot that covers the gap",
                self.db.id,
                known,
                next_seq,
            )
        self.gap = (known, first)
        if self.on_gap is not None:
            self.on_gap(self)
        raise ReplicationError(f"gap in the log after seq {known}: waiting for a snapshot", retryable=True)

    def _gap_check_every(self) -> float:
        """Often enough that the caught-up position keeps up with a short max age (see
        ``_log_may_have_dropped``)."""
        max_age = self.replicator.max_age
        if max_age is not None and max_age > 0:
            return max(0.05, min(GAP_CHECK_EVERY, max_age / 8))
        return GAP_CHECK_EVERY

    def verified_through(self, seq: int) -> None:
        """This node is known to have every change set of this database up to ``seq`` (a snapshot's cover)."""
        self._verified_through = max(self._verified_through, seq)

    async def check_gap(self) -> None:
        """Compare what this node knows it has with where the log starts now; a change set the log dropped
        before this node applied it would make its data silently stale."""
        await self.caught_up_through()
        known = max(self.applied_seq, self._verified_through)
        first = await asyncio.wait_for(self.replicator.first_seq(self.db.id), 2.0)
        gap = (known, first) if first > known + 1 else None
        if gap is not None and self.gap is None:
            log.error(
                "database %s: the log starts at %d but this node only knows it has everything up to %d; "
                "refusing requests until it has installed a snapshot that covers the gap",
                self.db.id,
                first,
                known,
            )
        self.gap = gap
        if gap is not None and self.on_gap is not None:
            self.on_gap(self)
