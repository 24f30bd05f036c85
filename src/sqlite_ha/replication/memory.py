"""In-process drivers: ``MemoryHub`` for many nodes in one process, ``LocalReplicator`` for one node alone.

The hub is a shipped driver, not a mock: it keeps a real log per database with sequences and ``msg_id`` dedup,
and delivers it to every subscriber. In ``auto`` mode each subscription gets the log in order as soon as it
grows, like JetStream. In manual mode nothing moves until the test says so (``deliver``), in any order, as
often as it likes: that is how property tests prove convergence under any delivery order and duplication.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlite_ha.changes.rowids import PLAIN, RowidSlot
from sqlite_ha.errors import Conflict
from sqlite_ha.replication.replicator import (
    Delivery,
    Handler,
    PublishTimeout,
    ReplicationError,
    Retention,
    Subscription,
    WrongLastSequence,
)


@dataclass
class _Sub:
    node: str
    subscription: Subscription
    handler: Handler
    cursor: int  # highest seq delivered in order (auto mode)
    task: asyncio.Task[None] | None = None
    delivered: int = 0
    seen: set[int] = field(default_factory=set)  # delivered out of order (manual mode)


@dataclass
class _Log:
    """One database's sequence; ``base`` change sets before ``entries`` are not kept (local driver)."""

    entries: list[Delivery] = field(default_factory=list)
    ids: dict[str, int] = field(default_factory=dict)
    grew: asyncio.Event = field(default_factory=asyncio.Event)
    base: int = 0

    @property
    def last_seq(self) -> int:
        return self.base + len(self.entries)

    def get(self, seq: int) -> Delivery:
        return self.entries[seq - self.base - 1]

    def after(self, seq: int, limit: int) -> list[Delivery]:
        start = max(seq - self.base, 0)
        return self.entries[start : start + limit]


class MemoryHub:
    """The shared log of a set of in-process nodes."""

    def __init__(self, *, auto: bool = True, batch: int = 256, max_payload: int | None = None) -> None:
        self.auto = auto
        self.batch = batch
        self.max_payload = max_payload  # the largest message the log takes, like NATS's max_payload
        self._logs: dict[str, _Log] = {}
        self._subs: list[_Sub] = []
        # How far each (node, database) got in order, as a log's durable consumer remembers it: a node that
        # comes back gets everything after that again, even what it had been handed out of order.
        self._positions: dict[tuple[str, str], int] = {}
        self._stride: int | None = None  # of rowid slots, fixed by the first claim
        self._slots: dict[str, int] = {}  # node -> residue

    def connect(self, node: str) -> MemoryReplicator:
        return MemoryReplicator(self, node)

    def log(self, database: str) -> _Log:
        if database not in self._logs:
            self._logs[database] = _Log()
        return self._logs[database]

    # ------------------------------------------------------------------------------------ driver side
    def _append(self, database: str, payload: bytes, msg_id: str, expect: int | None = None) -> int:
        log = self.log(database)
        if msg_id in log.ids:
            return log.ids[msg_id]
        if expect is not None and log.last_seq != expect:
            raise WrongLastSequence(
                f"{database}: the log's last change set is at {log.last_seq}, not {expect}", last=log.last_seq
            )
        seq = log.last_seq + 1
        log.entries.append(Delivery(seq=seq, payload=payload, msg_id=msg_id, published_at=time.time()))
        log.ids[msg_id] = seq
        log.grew.set()
        return seq

    def _add_sub(self, sub: _Sub) -> None:
        if not self.auto:  # see Replicator.subscribe: manual delivery may have left holes below after_seq
            where = (sub.node, sub.subscription.database)
            sub.cursor = min(sub.cursor, self._positions.get(where, sub.cursor))
        self._subs.append(sub)
        if self.auto:
            sub.task = asyncio.create_task(
                self._pump(sub), name=f"hub-{sub.node}-{sub.subscription.database}"
            )

    def _remove_subs(self, node: str, consumer: str | None = None) -> list[_Sub]:
        def matches(s: _Sub) -> bool:
            return s.node == node and consumer in (None, s.subscription.consumer)

        gone = [s for s in self._subs if matches(s)]
        self._subs = [s for s in self._subs if not matches(s)]
        return gone

    async def _pump(self, sub: _Sub) -> None:
        log = self.log(sub.subscription.database)
        while True:
            if sub.cursor >= log.last_seq:
                log.grew.clear()
                await log.grew.wait()
                continue
            batch = log.after(sub.cursor, self.batch)
            try:
                await sub.handler(batch)
            except asyncio.CancelledError:
                raise
            except Exception:  # the handler failed: deliver the same batch again, as JetStream would
                await asyncio.sleep(0.05)
                continue
            sub.cursor = batch[-1].seq
            sub.delivered += len(batch)
            self._positions[(sub.node, sub.subscription.database)] = sub.cursor

    def _claim(self, node: str, stride: int) -> RowidSlot:
        if self._stride is None:
            self._stride = stride
        if node not in self._slots:
            taken = set(self._slots.values())
            free = [r for r in range(1, self._stride + 1) if r not in taken]
            if not free:
                raise ReplicationError(
                    f"all {self._stride} rowid slots are held by other nodes", retryable=False
                )
            self._slots[node] = free[0]
        return RowidSlot(self._stride, self._slots[node])

    # ------------------------------------------------------------------------------------ test control
    def pending(self) -> list[tuple[str, str, int]]:
        """(node, database, seq) of every change set a subscriber has not had in order yet."""
        out = []
        for sub in self._subs:
            for d in self.log(sub.subscription.database).after(sub.cursor, 2**62):
                out.append((sub.node, sub.subscription.database, d.seq))
        return out

    async def deliver(self, node: str, database: str, seqs: Sequence[int]) -> None:
        """Hand the given change sets to ``node``'s subscriber, in the order given (duplicates allowed).

        The in-order cursor advances over every leading change set delivered at least once, so that
        ``pending`` shrinks as a test delivers; the handler's own idempotence does the rest.
        """
        log = self.log(database)
        for sub in self._subs:
            if sub.node == node and sub.subscription.database == database:
                await sub.handler([log.get(s) for s in seqs])
                sub.delivered += len(seqs)
                sub.seen.update(seqs)
                while sub.cursor + 1 in sub.seen:
                    sub.cursor += 1
                    sub.seen.discard(sub.cursor)
                self._positions[(node, database)] = sub.cursor

    async def deliver_all(self) -> None:
        """Deliver everything pending, in order, to everyone (quiescence)."""
        for sub in list(self._subs):
            log = self.log(sub.subscription.database)
            while sub.cursor < log.last_seq:
                await self.deliver(sub.node, sub.subscription.database, [sub.cursor + 1])


class MemoryReplicator:
    """One node's connection to a ``MemoryHub``."""

    name = "memory"
    durable = False
    max_age: float | None = None  # the hub drops only what a test tells it to: ask ``first_seq``

    def __init__(self, hub: MemoryHub, node: str) -> None:
        self.hub = hub
        self.node = node
        self.connected = True  # a test may cut a node off: publishes then fail
        self.publish_error: ReplicationError | None = None  # raised by publishes while set
        self.publish_delay = 0.0  # seconds each publish takes before it is acknowledged
        self.published = 0

    async def start(self) -> None:
        return None

    def available(self) -> bool:
        return self.connected

    def max_payload(self) -> int | None:
        return self.hub.max_payload

    async def publish(
        self, database: str, payload: bytes, *, msg_id: str, timeout: float, expect: int | None = None
    ) -> int:
        if not self.connected:
            raise ReplicationError(f"node {self.node} is cut off from the hub")
        limit = self.hub.max_payload
        if limit is not None and len(payload) > limit:
            raise ReplicationError(
                f"a message of {len(payload)} bytes exceeds the hub's max payload of {limit}", retryable=False
            )
        if self.publish_delay:
            if self.publish_delay >= timeout:
                await asyncio.sleep(timeout)
                raise PublishTimeout(f"no acknowledgement in {timeout:g}s")
            await asyncio.sleep(self.publish_delay)
        if self.publish_error is not None:
            raise self.publish_error
        seq = self.hub._append(database, payload, msg_id, expect)
        self.published += 1
        return seq

    async def subscribe(self, subscription: Subscription, handler: Handler) -> None:
        self.hub._add_sub(_Sub(self.node, subscription, handler, cursor=subscription.after_seq))

    async def last_seq(self, database: str) -> int:
        if not self.connected:
            raise ReplicationError(f"node {self.node} is cut off from the hub")
        return self.hub.log(database).last_seq

    async def rowid_slot(self, node: str, stride: int) -> RowidSlot:
        if not self.connected:
            raise ReplicationError(f"node {self.node} is cut off from the hub")
        return self.hub._claim(node, stride)

    async def first_seq(self, database: str) -> int:
        return self.hub.log(database).base + 1

    async def stream_last_seq(self) -> int | None:
        return None  # each database has its own sequence

    async def retention(self) -> Retention | None:
        return None  # keeps everything

    async def oldest_after(self, database: str, seq: int) -> tuple[int, float] | None:
        log = self.hub.log(database)
        found = log.after(seq, 1)
        if not found:
            return None
        return found[0].seq, found[0].published_at or 0.0

    async def count_after(self, database: str, seq: int) -> int:
        return len(self.hub.log(database).after(seq, 2**62))

    async def consumers(self) -> list[dict[str, Any]]:
        """Every live subscription on the hub, as the log's consumers (the hub keeps no durable ones)."""
        return [
            {
                "name": s.subscription.consumer,
                "node": s.node,
                "database": s.subscription.database,
                "delivered_seq": s.cursor,
                "num_pending": max(0, self.hub.log(s.subscription.database).last_seq - s.cursor),
            }
            for s in self.hub._subs
        ]

    async def consumer(self, name: str) -> dict[str, Any] | None:
        return next((c for c in await self.consumers() if c["name"] == name), None)

    async def delete_consumer(self, name: str) -> bool:
        if await self.consumer(name) is not None:
            raise Conflict(
                f"the {self.name} log keeps no consumers to delete; {name!r} is a node's live reader",
                consumer=name,
            )
        return False

    def stats(self) -> dict[str, Any]:
        subs = [s for s in self.hub._subs if s.node == self.node]
        return {
            "driver": self.name,
            "published": self.published,
            "delivered": sum(s.delivered for s in subs),
            "connected": self.connected,
        }

    async def unsubscribe(self, consumer: str) -> None:
        await _stop(self.hub._remove_subs(self.node, consumer))

    async def close(self) -> None:
        await _stop(self.hub._remove_subs(self.node))


class LocalReplicator(MemoryReplicator):
    """A single node without NATS: every publish is accepted at once and delivered back to the node.

    The log lives only in memory; sequences continue from the position the node stored in its database, so
    read-your-writes tokens stay valid across restarts.
    """

    name = "local"

    def __init__(self, node: str = "local") -> None:
        super().__init__(MemoryHub(auto=True), node)

    async def rowid_slot(self, node: str, stride: int) -> RowidSlot:
        return PLAIN  # no other node inserts: SQLite's own keys

    async def subscribe(self, subscription: Subscription, handler: Handler) -> None:
        log = self.hub.log(subscription.database)
        if log.last_seq < subscription.after_seq:
            log.base = subscription.after_seq  # continue where this database left off
        await super().subscribe(subscription, handler)


async def _stop(subs: list[_Sub]) -> None:
    for sub in subs:
        if sub.task is not None:
            sub.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sub.task
