"""Hybrid logical clock: the version of every write, comparable across nodes.

A timestamp is one 64-bit integer, ``physical milliseconds << 16 | logical counter``: ordered like wall time
when clocks agree, and still strictly increasing when they do not, because every timestamp a node sees from
another node pushes its own clock past it. Ties between nodes are broken by node name, so ``(hlc, node)`` is
a total order: the basis of last-writer-wins.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

LOGICAL_BITS = 16
_LOGICAL_MASK = (1 << LOGICAL_BITS) - 1
MAX_AHEAD_MS = 60_000  # a remote clock this far ahead of ours is worth a warning


def physical_ms(hlc: int) -> int:
    return hlc >> LOGICAL_BITS


def from_ms(ms: int) -> int:
    return ms << LOGICAL_BITS


class HLC:
    def __init__(self, last: int = 0, wall_ms: Callable[[], int] | None = None) -> None:
        self.last = last  # persisted by the caller with every write, so the clock survives restarts
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)

    def now(self) -> int:
        """A timestamp greater than every timestamp this clock has issued or observed."""
        wall = from_ms(self._wall_ms())
        self.last = wall if wall > self.last else self.last + 1
        return self.last

    def observe(self, remote: int) -> None:
        """Advance past a timestamp received from another node."""
        if remote > self.last:
            ahead = physical_ms(remote) - self._wall_ms()
            if ahead > MAX_AHEAD_MS:
                log.warning(
                    "a change set's clock is %.1f s ahead of this node's: check the clocks", ahead / 1000
                )
            self.last = remote

    @staticmethod
    def logical(hlc: int) -> int:
        return hlc & _LOGICAL_MASK
