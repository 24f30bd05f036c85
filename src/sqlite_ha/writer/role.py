"""Who takes writes: the writer of a cluster in a writer mode, and what every mode answers about it.

In a writer mode one node commits every write and the others hand theirs over (HTTP forwarding or 307, the
PostgreSQL wire's forwarded sessions). Which node that is comes from the mode (a fixed URL, a lease in NATS,
heartbeats). Safety does not rest on the mode's answer being right: every write a writer publishes is a
conditional append to the log (see ``replication/fence.py``), so a node that wrongly believes it writes can
only fail, never diverge. The mode decides who *should* write; the log decides who *did*.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from sqlite_ha.errors import HAError


class NoWriter(HAError):
    """No writer is known now (an election is going on): nothing was written; retrying later is safe."""

    code = "no_writer"


class NotWriter(HAError):
    """A request forwarded here, but this node does not take writes (it lost the role meanwhile)."""

    code = "not_writer"


class Fenced(HAError):
    """The log refused a write because another node wrote to the database since this node's view of it (it
    lost the writer role, or raced a write made elsewhere). Nothing was written: retry."""

    code = "fenced"


class OutcomeUnknown(HAError):
    """A write got no answer in time (from the log, or from the writer it was forwarded to): it may or may
    not have been written. If the log has it, every node applies it. Check before retrying a write that is
    not idempotent."""

    code = "write_outcome_unknown"


@dataclass(frozen=True, slots=True, kw_only=True)
class Writer:
    """The node that takes writes, as this node knows it."""

    node: str | None  # its node name (node id in mode pinned); None while not known (static, follower)
    url: str  # its HTTP base URL, where writes are forwarded or redirected
    is_self: bool
    epoch: int | None = None  # the lease's epoch (elected), increasing with each new writer
    since: float | None = None  # wall-clock seconds since when it writes, as far as this node knows
    pg_port: int | None = None  # its PostgreSQL wire port, where it says (0 or None: unknown or off)

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "url": self.url,
            "self": self.is_self,
            "epoch": self.epoch,
            "since": self.since,
            "pg_port": self.pg_port,
        }


class WriterMode:
    """A writer mode. This base is the default, leaderless: every node takes its own writes, unfenced."""

    name = "leaderless"
    fenced = False  # writes are conditional appends to the log (every mode but leaderless)
    redirect = (
        False  # HTTP writes on a non-writer: 307 by default (pinned, as seed 000) instead of forwarding
    )

    def __init__(self, node: str) -> None:
        self.node = node
        self._change_waiter: asyncio.Future[None] | None = None  # resolved at the next change of writer
        self._writer: Writer | None = None
        self.changes = 0

    # ------------------------------------------------------------------------------------ asking
    def current(self) -> Writer | None:
        """The writer now, if one is known."""
        return self._writer

    def is_writer(self) -> bool:
        """Whether this node takes writes now (its claim still good)."""
        writer = self.current()
        return writer is not None and writer.is_self and self.holds()

    def holds(self) -> bool:
        """Whether this node's claim to write is still good (its lease has time left); checked again right
        before each write is published. Modes without leases: always."""
        return True

    async def wait_writer(self, timeout: float) -> Writer:
        """The writer, waiting up to ``timeout`` while none is known; ``NoWriter`` after that."""
        deadline = time.monotonic() + timeout
        while True:
            writer = self.current()
            if writer is not None and (not writer.is_self or self.holds()):
                return writer
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoWriter(
                    f"no writer is known (writer mode {self.name}): an election is going on or the writer "
                    f"is unreachable; nothing was written (waited {timeout:g}s)",
                    hint="retry in a moment: writes resume once a writer is elected",
                    mode=self.name,
                )
            await self.wait_change(min(left, 0.25))

    async def refuse_unless_writer(self, timeout: float) -> None:
        """Before a write on a node that cannot hand it over (the embedded driver: no HTTP listener to
        forward from, no client to redirect): ``NotWriter`` naming the writer unless this node is it (go-ha's
        application redirects its own clients there). Waits up to ``timeout`` while no writer is known
        (``NoWriter`` after that). Leaderless: every node writes."""
        if not self.fenced:
            return
        writer = await self.wait_writer(timeout)
        if writer.is_self:
            return
        raise NotWriter(
            f"node {self.node} does not take writes in writer mode {self.name}: the writer is "
            f"{writer.node or 'the node'} at {writer.url}; nothing was written",
            hint=f"send the write to the writer ({writer.url}); reads work here",
            writer=writer.url,
            writer_node=writer.node,
            mode=self.name,
        )

    async def wait_change(self, timeout: float) -> None:
        """Return at the next change of writer, or after ``timeout``."""
        if self._change_waiter is None or self._change_waiter.done():
            self._change_waiter = asyncio.get_running_loop().create_future()
        await asyncio.wait({self._change_waiter}, timeout=timeout)

    def _set(self, writer: Writer | None) -> None:
        """Record a new writer (or none) and wake whoever waits for one."""
        if writer != self._writer:
            old = self._writer
            if writer is not None and (old is None or (writer.node, writer.epoch) != (old.node, old.epoch)):
                self.changes += 1  # a new term: a write fenced in an older one is refused (see fence)
            self._writer = writer
            if self._change_waiter is not None and not self._change_waiter.done():
                self._change_waiter.set_result(None)
            self._change_waiter = None

    # ------------------------------------------------------------------------------------ life
    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def status(self) -> dict[str, Any]:
        """For ``GET /status`` and ``GET /leader``."""
        writer = self.current()
        return {
            "mode": self.name,
            "node": self.node,
            "role": "writer" if self.is_writer() else ("follower" if writer is not None else "candidate"),
            "writer": writer.to_dict() if writer is not None else None,
            "changes": self.changes,
        }


class Leaderless(WriterMode):
    """Every node takes its own writes (the default): last-writer-wins per row makes them converge."""

    def __init__(self, node: str) -> None:
        super().__init__(node)
        self._writer = Writer(node=node, url="", is_self=True)

    def status(self) -> dict[str, Any]:
        return {"mode": self.name, "node": self.node, "role": "writer", "writer": None, "changes": 0}
