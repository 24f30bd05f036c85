"""One database joined to the replication log: the write path, the relay, the applier, read-your-writes.

Write path. A write commits locally together with its change set in the outbox (one SQLite transaction), then
the change set is published with ``Nats-Msg-Id`` = its id. What a client can conclude:

- success, with ``seq``: the write is committed here and durable in the log; every node will apply it.
- ``not_replicating`` (503) before anything ran: the log was known to be unreachable; nothing was written.
- ``202 Accepted`` with ``replication.status = "pending"``: the write is committed here and kept in the
  outbox; the relay publishes it as soon as the log answers (deduplicated if the first attempt did land). It
  is not lost, but not yet on other nodes; do not retry it. (A 2xx on purpose: a 5xx would invite an
  automatic retry, and a retried non-idempotent write would happen twice.)
- any 4xx: nothing was written.

With ``--async-replication`` the client is answered after the local commit and the relay publishes.
Every node, the origin included, applies every change set from the log; last-writer-wins makes that safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlite_ha.changes.capture import Capture
from sqlite_ha.changes.changeset import ChangeSet
from sqlite_ha.changes.store import ApplyStrategy, ChangeSetInterceptor, ChangeStore, Incoming
from sqlite_ha.db.database import Database, Execution
from sqlite_ha.db.statement import Statement
from sqlite_ha.db.transaction import WriteTransaction
from sqlite_ha.errors import HAError
from sqlite_ha.plugins import CDCFanout
from sqlite_ha.replication import codec
from sqlite_ha.replication.fence import FENCED_RETRIES, Fence
from sqlite_ha.replication.freshness import ReadLevels
from sqlite_ha.replication.gaps import Gap as Gap  # where callers look for it
from sqlite_ha.replication.gaps import GapChecks
from sqlite_ha.replication.inbound import Inbound
from sqlite_ha.replication.outbound import publish_changeset
from sqlite_ha.replication.replicator import (
    Delivery,
    NotReplicating,
    ReplicationError,
    Replicator,
    Subscription,
    subject_token,
)
from sqlite_ha.replication.seal import PLAIN, Sealer
from sqlite_ha.replication.subscriber import Subscriber

if TYPE_CHECKING:
    from sqlite_ha.plugins import ChangeSetPublisher
from sqlite_ha.writer.role import Fenced, WriterMode

log = logging.getLogger(__name__)

RELAY_BATCH = 256
RETRY_PARKED_EVERY = 30.0
POSITION_FLUSH_EVERY = 1.0
MAX_PUBLISHING = 1  # change sets of the write path awaiting the log's ack before the next group commits
MAX_TRANSACTION_SIZE = 512 * 1024 * 1024  # the default of --max-transaction-size


class ReplicationPending(HAError):
    """The write committed here but its change set is not in the log yet; ``execution`` holds its results."""

    code = "replication_pending"

    def __init__(self, message: str, *, execution: Execution, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.execution = execution


class ReplicatedDatabase(GapChecks, ReadLevels):
    def __init__(
        self,
        db: Database,
        replicator: Replicator,
        *,
        node: str,
        timeout: float = 15.0,
        async_mode: bool = False,
        policy: str = "all",
        ddl_sync: bool = True,
        interceptor: ChangeSetInterceptor | None = None,
        apply_strategy: ApplyStrategy | None = None,
        max_transaction_size: int | None = MAX_TRANSACTION_SIZE,
        sealer: Sealer = PLAIN,
        publish: bool = True,
        subscribe: bool = True,
        cdc: Sequence[ChangeSetPublisher] = (),
        subscriber: Subscriber | None = None,
    ) -> None:
        """``publish=False``: committed change sets go to no log (go-ha's disablePublisher).
        ``subscribe=False``: nothing of the log is applied here (disableSubscriber); the node diverges from
        the others by design. ``cdc``: publishers told of every committed change set (JSON lines)."""
        self.db = db
        self.subscriber = subscriber  # a read replica's: it only follows the log (``Subscriber``)
        self.publishes = publish
        self.subscribes = subscribe
        self.subscribed = False
        self.cdc = CDCFanout(db.id, cdc) if cdc else None
        self.sealer = sealer  # MACs on what this database publishes, checked on what it receives
        self.inbound = Inbound(db.id, sealer)
        self.replicator = replicator
        self.node = node
        self.timeout = timeout
        self.async_mode = async_mode
        self.policy = policy
        self.changes = ChangeStore(
            db,
            node=node,
            encode=codec.encode,
            decode=codec.decode,
            ddl_sync=ddl_sync,
            interceptor=interceptor,
            apply_strategy=apply_strategy,
            max_size=max_transaction_size,
            outbox=publish,
            committed=self.cdc.publish if self.cdc is not None else None,
        )
        self.consumer = f"{node}_{subject_token(db.id)}"
        if replicator.durable and not async_mode and publish:
            # A write is answered only once the log stored it durably: the local fsync adds nothing but
            # latency. (Async writes keep it, and a write the log did not take is fsynced in ``execute``.)
            db.set_synchronous("normal")
        self._applied = asyncio.Condition()
        self._kick = asyncio.Event()
        self._publishing: dict[int, asyncio.Future[int]] = {}  # clock -> the one publish of that change set
        self._publish_done = asyncio.Event()
        self._acked: dict[int, int] = {}  # clock -> seq, published but not seen back in the log yet
        self._committed: set[int] = set()  # clocks of change sets this process committed, not seen back yet
        self._failed: set[int] = set()  # clocks of writes whose publish failed: the relay's to publish
        self._unclaimed: set[int] = set()  # outbox entries the relay's last round found nobody publishing
        self._start_clock = self.changes.hlc.last  # outbox entries up to it are from an earlier process
        self._own_prefix = f"{node}.{db.id}."  # of msg ids: ChangeSet.msg_id is <node>.<database>.<hlc>
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        # Up to where this node is known to have every change set of this database (a caught-up check), when
        # that was established (wall clock), and the gap found when the log's first sequence is past that:
        # (known, first).
        self._verified_through = 0
        self._verified_at = 0.0
        self.gap: tuple[int, int] | None = None
        self.published = 0
        self.published_chunked = 0  # of them, change sets published in chunks
        self.publish_failures = 0
        self.on_gap: Callable[[ReplicatedDatabase], None] | None = None  # called at each check finding a gap
        self.writer_mode: WriterMode | None = None  # set in a writer mode: writes are fenced
        self.fence = Fence(self)  # writer modes: every write a conditional append
        db.attach(self)

    # ------------------------------------------------------------------------------------ write hooks
    @property
    def capture(self) -> Capture:
        return self.changes.capture

    @property
    def holds_commits(self) -> bool:
        """In a writer mode the log takes a change set *before* it commits here (the fence's conditional
        append); COMMIT follows only if it took it. So a writer that lost its role keeps nothing the log
        does not have."""
        return self.writer_mode is not None

    async def gate(self) -> None:
        """Before a group commit: in a writer mode, a current view of the log (the fence); otherwise, while
        the log is busy with earlier change sets, wait, so the writes arriving meanwhile commit together.
        Async mode publishes later: nothing to wait for."""
        if self.writer_mode is not None:
            await self.fence.ready()
        elif not self.async_mode and self.publishes:
            await self._publish_slot()

    async def publish_held(self, cs: ChangeSet, payload: bytes) -> int:
        return await self.fence.publish_held(cs, payload)

    def held_done(self, cs: ChangeSet, committed: bool) -> None:
        self.fence.held_done(cs, committed)

    def set_writer_mode(self, mode: WriterMode | None) -> None:
        """In a writer mode (``mode`` not None) every write is a conditional append (see ``fence``)."""
        self.writer_mode = mode
        self.fence.reset()

    async def start(self, *, subscribe: bool = True) -> None:
        """Join the log: publish (the relay) and, unless ``subscribe`` is False (autoStart=false: later, by
        ``subscribe``) or this database applies nothing, read the log. Idempotent: joining the log retries
        ``start`` for every database when one of them failed to subscribe, and each task must run once."""
        if subscribe:
            await self.subscribe()
        if self._tasks:
            return
        if self.publishes:
            self._tasks.append(asyncio.create_task(self._relay(), name=f"relay-{self.db.id}"))
        self._tasks.append(asyncio.create_task(self._retry_parked(), name=f"parked-{self.db.id}"))
        self._tasks.append(asyncio.create_task(self._flush_position(), name=f"position-{self.db.id}"))
        if self.publishes and self.changes.outbox_size():
            self._kick.set()

    async def subscribe(self) -> None:
        """Start applying the log's change sets (after the applied position); once."""
        if not self.subscribes or self.subscribed:
            return
        sub = Subscription(
            database=self.db.id,
            consumer=self.consumer,
            after_seq=self.changes.applied_seq,
            policy=self.policy,
            durable=self.subscriber is None or self.subscriber.durable,
            role="node" if self.subscriber is None else "replica",
        )
        await self.replicator.subscribe(sub, self._on_deliveries)
        self.subscribed = True

    async def close(self) -> None:
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.subscribed:
            await self.replicator.unsubscribe(self.consumer)
        await self.changes.flush_position()

    # ------------------------------------------------------------------------------------ writes
    async def execute(self, statements: Sequence[Statement]) -> tuple[Execution, int | None]:
        """Run a request; for a write, also publish its change set. Returns the execution and the seq."""
        self.refuse_if_stale()
        if (
            self.publishes
            and not self.async_mode
            and not self.replicator.available()
            and not self.db.is_read_only(statements)
        ):
            raise NotReplicating(
                "the replication log is unreachable, so writes are refused; nothing was written",
                hint="retry later; reads still work",
            )
        if self.writer_mode is None or self.db.is_read_only(statements):
            execution = await self.db.execute(statements)
        else:
            execution = await self._execute_fenced(statements)
        return execution, await self._replicate(execution)

    async def _execute_fenced(self, statements: Sequence[Statement]) -> Execution:
        """A write in a writer mode. On the writer a refusal by the log (``Fenced``: another node's write got
        in first, e.g. a ``?local=true`` one) is retried at once, the fence established again: nothing of the
        request was written, and the writer's view is current after the retry's resync."""
        for attempt in range(FENCED_RETRIES + 1):
            try:
                return await self.db.execute(statements)
            except Fenced:
                mode = self.writer_mode
                if attempt == FENCED_RETRIES or mode is None or not mode.is_writer():
                    raise
        raise AssertionError("unreachable")

    async def begin(self) -> WriteTransaction:
        """Start an interactive write transaction (PostgreSQL wire); ``commit`` replicates it."""
        self.refuse_if_stale()
        if self.publishes and not self.async_mode and not self.replicator.available():
            raise NotReplicating(
                "the replication log is unreachable, so writes are refused; nothing was written",
                hint="retry later; reads still work",
            )
        if self.writer_mode is not None:
            await self.fence.ready()
        return await self.db.begin_transaction()

    async def commit(self, tx: WriteTransaction) -> tuple[Execution, int | None]:
        """COMMIT an interactive transaction and publish its change set, as ``execute`` does for a write."""
        if self.writer_mode is not None:
            execution = await tx.commit_held()
        else:
            execution = await tx.commit_off_loop()
        return execution, await self._replicate(execution)

    async def _replicate(self, execution: Execution) -> int | None:
        """Publish a committed write's change set; returns its seq (None when it changed nothing or the
        write is asynchronous). ``ReplicationPending`` when the log did not take it (it stays in the
        outbox)."""
        cs, payload = execution.changeset, execution.payload
        if cs is None or payload is None or not self.publishes:
            return None
        if execution.seq is not None:  # writer modes: the log took it before the commit
            return execution.seq
        self._committed.add(cs.hlc)
        if self.async_mode:
            self._kick.set()
            return None
        try:
            # shielded: a request that goes away must not cancel the publish the others wait for
            return await asyncio.shield(self._publish_once(cs.hlc, cs.msg_id, payload))
        except ReplicationError as e:
            self.publish_failures += 1
            self._failed.add(cs.hlc)
            self._kick.set()
            await asyncio.to_thread(self.db.sync_to_disk)  # "not lost" must hold through a power cut too
            raise ReplicationPending(
                f"committed on this node but not yet in the replication log ({e.message}); it stays in the "
                "outbox and is published as soon as the log answers",
                hint="do not retry a non-idempotent write: it is not lost",
                execution=execution,
            ) from e

    def _publish_once(self, hlc: int, msg_id: str, payload: bytes) -> asyncio.Future[int]:
        """Publish a change set once, however many requests it carries (group commit): they share the
        answer, and with it the outcome."""
        publishing = self._publishing.get(hlc)
        if publishing is None:
            publishing = asyncio.ensure_future(self._publish(hlc, msg_id, payload))
            self._publishing[hlc] = publishing
            publishing.add_done_callback(lambda _: self._published_or_not(hlc))
        return publishing

    def _published_or_not(self, hlc: int) -> None:
        """However the publish ended (even cancelled before it started), its slot is free again."""
        self._publishing.pop(hlc, None)
        self._publish_done.set()

    async def _publish_slot(self) -> None:
        """Hold the next group commit while MAX_PUBLISHING change sets wait for the log's ack.

        The writes that arrive meanwhile join that group: under load one change set carries many writes,
        which costs one commit, one publish and one apply on every node instead of one each per write. A
        lone writer never waits (nothing is in flight), and the wait is bounded by the publish timeout.
        """
        while len(self._publishing) >= MAX_PUBLISHING:
            self._publish_done.clear()
            await self._publish_done.wait()

    async def _publish(self, hlc: int, msg_id: str, payload: bytes) -> int:
        """(``_publish_once`` marks it in flight and, however it ends, frees its slot.)"""
        seq = await self._send(hlc, msg_id, payload)
        self.published += 1
        self._acked_now(hlc, seq)
        return seq

    def _acked_now(self, hlc: int, seq: int) -> None:
        """The log took one of this node's change sets. Its delivery back here moves the position past it
        and drops its outbox entry; a database that reads nothing of the log drops the entry now."""
        if self.subscribes:
            self._acked[hlc] = seq
            return
        self._committed.discard(hlc)
        self._failed.discard(hlc)
        self.changes.forget_published([hlc])

    async def _send(self, hlc: int, msg_id: str, payload: bytes) -> int:
        """Put one change set in the log (in chunks when it is larger than a message); its seq."""
        sent = await publish_changeset(
            self.replicator,
            database=self.db.id,
            hlc=hlc,
            msg_id=msg_id,
            payload=payload,
            timeout=self.timeout,
            sealer=self.sealer,
        )
        if sent.chunks:
            self.published_chunked += 1
        return sent.seq

    async def republish_outbox(self) -> int:
        """Publish again every change set of the outbox (the log deduplicates those it has); how many.
        ``ReplicationError`` when the log does not take one. For a database about to be replaced by a
        snapshot: what only its outbox holds must be in the log first."""
        count, after = 0, 0
        while True:
            await self.db.connection_back()  # an in-memory database's connection may be on a worker thread
            batch = self.changes.outbox(RELAY_BATCH, after_hlc=after)
            if not batch:
                return count
            for hlc, msg_id, payload in batch:
                after = hlc
                if payload is None:  # a large one: read now
                    await self.db.connection_back()
                    payload = self.changes.outbox_payload(hlc)
                    if payload is None:
                        continue  # seen in the log meanwhile
                await self._send(hlc, msg_id, payload)
                count += 1

    async def _relay(self) -> None:
        """Publish what the outbox holds: async-mode writes, and sync-mode writes whose publish failed."""
        delay = 0.05
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._kick.wait(), 1.0)
            self._kick.clear()
            try:
                sent = await self._relay_once()
            except ReplicationError as e:
                log.warning("database %s: relay cannot publish: %s (retrying)", self.db.id, e.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                self._kick.set()
                continue
            delay = 0.05
            if sent == RELAY_BATCH:
                self._kick.set()

    async def _relay_once(self) -> int:
        sent = 0
        await self.db.connection_back()  # reading the outbox must not wait on the loop for a worker thread
        seen = self.changes.seen_in_log()  # back from the log, their outbox rows not deleted yet
        unclaimed, self._unclaimed = self._unclaimed, set()
        for hlc, msg_id, payload in self.changes.outbox(RELAY_BATCH):
            if hlc in self._publishing or hlc in self._acked or hlc in seen:
                continue
            if not (self.async_mode or hlc in self._failed or hlc in unclaimed or hlc <= self._start_clock):
                # A write's request publishes it right after its commit, and may not have started yet (a
                # large commit is visible before its checkpoint is over): the relay takes over a write
                # whose publish failed, or one found unclaimed twice with the writer idle (its request went
                # away between commit and publish). Publishing it twice would be harmless (deduplicated)
                # but not free for a large change set.
                if not self.db.writing:
                    self._unclaimed.add(hlc)
                continue
            if payload is None:  # a large one: read now
                await self.db.connection_back()
                payload = self.changes.outbox_payload(hlc)
                if payload is None:
                    continue  # seen in the log meanwhile
            seq = await self._send(hlc, msg_id, payload)
            self._failed.discard(hlc)
            self._acked_now(hlc, seq)
            self.published += 1
            sent += 1
        return sent

    # ------------------------------------------------------------------------------------ applying
    async def _on_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        await self.fence.settled(deliveries)
        if deliveries[0].seq > self.applied_seq + 1 and self._log_may_have_dropped():
            await self._check_hole(deliveries[0].seq)
        # Change sets this process committed have their rows here already: only the position moves past them.
        clocks = [self._own_clock(d) for d in deliveries]
        if None not in clocks:
            seen = [c for c in clocks if c is not None]
            self.changes.skip_own([d.seq for d in deliveries], seen)
        else:
            batch = [
                self.inbound.read(d)
                if clock is None
                else Incoming(seq=d.seq, payload=b"", msg_id=d.msg_id, own_clock=clock)
                for d, clock in zip(deliveries, clocks, strict=True)
            ]
            seen = (await self.changes.apply(batch)).own
        for hlc in seen:
            self._acked.pop(hlc, None)
            self._committed.discard(hlc)
            self._failed.discard(hlc)
        published = [d.published_at for d in deliveries if d.published_at is not None]
        if published:
            self.changes.stats.last_published_at = max(published)
        async with self._applied:
            self._applied.notify_all()

    def _own_clock(self, d: Delivery) -> int | None:
        """The clock of a change set this process committed (and has not seen back yet), else None."""
        msg_id = d.msg_id
        if msg_id is None or not msg_id.startswith(self._own_prefix):
            return None
        tail = msg_id[len(self._own_prefix) :]
        if not tail.isdigit() or int(tail) not in self._committed:
            return None
        return int(tail)

    async def _flush_position(self) -> None:
        """Write a lazily moved position now and then, and check for a gap in the log."""
        flushed = checked = time.monotonic()
        gap_every = self._gap_check_every()
        while not self._closed:
            await asyncio.sleep(min(POSITION_FLUSH_EVERY, gap_every))
            now = time.monotonic()
            if now - flushed >= POSITION_FLUSH_EVERY:
                flushed = now
                await self.changes.flush_position()
            if now - checked >= gap_every and self.subscribed:
                checked = now
                with contextlib.suppress(ReplicationError, TimeoutError):
                    await self.check_gap()

    async def _retry_parked(self) -> None:
        while not self._closed:
            await asyncio.sleep(RETRY_PARKED_EVERY)
            try:
                await self.changes.retry_parked()
            except Exception:  # a failing retry must not stop the next ones; it is logged with its cause
                log.exception("database %s: retrying parked change sets failed", self.db.id)

    @property
    def applied_seq(self) -> int:
        return self.changes.applied_seq

    async def status(self) -> dict[str, Any]:
        stats = self.changes.stats
        try:
            last = await asyncio.wait_for(self.replicator.last_seq(self.db.id), 2.0)
        except (TimeoutError, ReplicationError):
            last = None
        await self.db.connection_back()  # the counts below read an in-memory database's only connection
        behind = max(0, last - self.applied_seq) if last is not None else None
        pending = await self._pending_messages()
        if pending is not None:
            behind = pending  # exact: stream positions between ours also belong to other databases
        lag_s = None
        if behind == 0:
            lag_s = 0.0
        elif stats.last_published_at is not None:
            lag_s = round(max(0.0, time.time() - stats.last_published_at), 3)
        return {
            "database": self.db.id,
            "consumer": self.consumer,
            "applied_seq": self.applied_seq,
            "last_seq": last,
            "lag_messages": behind,
            "lag_seconds": lag_s,
            "outbox": self.changes.outbox_size(),
            "published": self.published,
            "publish_failures": self.publish_failures,
            "published_chunked": self.published_chunked,
            "applied": stats.applied,
            "apply_batches": stats.batches,
            "rows_applied": stats.rows_applied,
            "rows_skipped": stats.rows_skipped,
            "parked": self.changes.parked(),
            "unauthenticated": self.inbound.status(),
            "chunks": self.changes.chunk_status(),
            "last_error": stats.last_error,
            "async": self.async_mode,
            "publishes": self.publishes,
            "subscribed": self.subscribed,
            "cdc": self.cdc.status() if self.cdc is not None else None,
            "fence": self.fence.status() if self.writer_mode is not None else None,
            "gap": None if self.gap is None else {"known_through": self.gap[0], "log_starts_at": self.gap[1]},
        }
