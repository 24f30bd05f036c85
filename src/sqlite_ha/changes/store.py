"""A database's replication state: capture of local writes, applying change sets, parking what cannot apply.

Everything here runs on the database's single writer connection, under its write lock, inline on the event
loop, so local writes and applied change sets never interleave inside a transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import apsw

from sqlite_ha.changes import meta
from sqlite_ha.changes.capture import Capture, Encoder
from sqlite_ha.changes.changeset import ChangeSet
from sqlite_ha.changes.chunks import PARTIAL_EXPIRY, Chunk, ChunkStore, PartialSet
from sqlite_ha.changes.hlc import HLC
from sqlite_ha.changes.lww import Applier, ApplyResult, Refused, SchemaMissing
from sqlite_ha.db.database import Database
from sqlite_ha.db.schema import SchemaCache
from sqlite_ha.errors import HAError

log = logging.getLogger(__name__)

Decoder = Callable[[bytes], ChangeSet]


class ChangeSetInterceptor(Protocol):
    """User hooks around applying a change set from another node (the seeds' ChangeSetInterceptor).

    ``before_apply`` returns True to skip the change set (it still counts as applied). ``after_apply`` sees
    the error applying raised, or None. Both run inside the apply transaction on the writer connection; an
    exception from either parks the change set with that error.
    """

    def before_apply(self, cs: ChangeSet, conn: apsw.Connection) -> bool: ...

    def after_apply(self, cs: ChangeSet, conn: apsw.Connection, error: BaseException | None) -> None: ...


class ApplyStrategy(Protocol):
    """How a change set from another node is applied, in place of last-writer-wins (go-ha's
    ``SetApplyStrategy``). ``lww()`` applies it the default way and returns what it did: a strategy may call
    it (after looking at or changing the rows it touches), or apply the change set itself and return None.
    It runs where the default would, inside the apply transaction on the writer connection, between the
    interceptor's ``before_apply`` and ``after_apply``; an exception parks the change set with that error.
    A strategy that is not deterministic makes the nodes diverge: that is its author's contract."""

    def __call__(
        self, cs: ChangeSet, conn: apsw.Connection, lww: Callable[[], ApplyResult]
    ) -> ApplyResult | None: ...


UNAUTHENTICATED = "unauthenticated"  # the parked state of a message whose MAC did not verify: never retried
REFUSED = "refused"  # parked: it asks for what no replicated change may do (``apply.Refused``); never retried
MAX_ATTEMPTS = 5  # a change set that failed this often for a reason other than missing schema is dead
HEAVY_BATCH = 1024 * 1024  # bytes of change sets in a batch from which it is applied on a worker thread
OUTBOX_INLINE = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Incoming:
    """A change set as delivered: decoded, or the reason it could not be."""

    seq: int
    payload: bytes
    msg_id: str | None = None
    changeset: ChangeSet | None = None
    error: str | None = None
    error_state: str = "dead"  # how one with ``error`` is parked: "dead", or UNAUTHENTICATED
    own_clock: int | None = None  # committed by this very process: its rows are here, nothing to apply
    chunk: Chunk | None = None  # a piece of a change set too large for one message (see ``chunks``)
    published_at: float | None = None  # when the log stored it (wall clock), to expire stale chunks


@dataclass(slots=True)
class ApplyStats:
    applied: int = 0  # change sets applied
    rows_applied: int = 0
    rows_skipped: int = 0  # older than the local version (including a node's own change sets)
    parked: int = 0  # change sets parked so far
    unparked: int = 0  # parked change sets applied later
    chunks: int = 0  # chunks received
    chunked: int = 0  # change sets that arrived in chunks, complete
    chunks_expired: int = 0  # incomplete sets dropped because no chunk of theirs came for too long
    batches: int = 0
    last_error: str | None = None
    last_applied_at: float | None = None  # wall clock of the last apply
    last_published_at: float | None = None  # the log's time of the last change set applied


@dataclass(slots=True)
class BatchOutcome:
    applied_seq: int
    parked: list[tuple[int, str]] = field(default_factory=list)  # (seq, reason)
    own: list[int] = field(default_factory=list)  # clocks of this node's change sets seen in the log


class ChangeStore:
    """Replication state of one database."""

    def __init__(
        self,
        db: Database,
        *,
        node: str,
        encode: Encoder,
        decode: Decoder,
        ddl_sync: bool = True,
        interceptor: ChangeSetInterceptor | None = None,
        apply_strategy: ApplyStrategy | None = None,
        max_size: int | None = None,
        outbox: bool = True,
        committed: Callable[[ChangeSet, bytes], None] | None = None,
    ) -> None:
        """``outbox=False``: change sets are not kept for a log (a node that publishes to none).
        ``committed`` is told of each change set committed here, in commit order (CDC publishers)."""
        self.db = db
        self.interceptor = interceptor
        self.apply_strategy = apply_strategy
        self.node = node
        self.decode = decode
        self.stats = ApplyStats()
        with db.internal() as conn:
            meta.create(conn)
            self.hlc = HLC(int(meta.get(conn, meta.CLOCK, 0) or 0))
            self.applied_seq = int(meta.get(conn, meta.APPLIED_SEQ, 0) or 0)
            partial = bool(conn.execute("SELECT 1 FROM _ha_chunks LIMIT 1").fetchall())
        # This node's own change sets seen back in the log, not yet recorded in the database (``skip_own``).
        self._own_seen: list[int] = []
        self._deleting: list[int] = []  # their outbox entries, deleted by a transaction not yet over
        self._position_dirty = False
        self.chunks = ChunkStore()
        self.partial_expiry = PARTIAL_EXPIRY
        self._partial = partial  # some chunks wait for the rest of their change set
        self.schema = SchemaCache()
        self.applier = Applier(schema=self.schema, hlc=self.hlc)
        capture = Capture(
            database=db.id,
            node=node,
            hlc=self.hlc,
            schema=self.schema,
            encode=encode,
            ddl_sync=ddl_sync,
            max_size=max_size,
            outbox=outbox,
            committed=committed,
        )
        capture.before_commit = self._record_position
        capture.after_end = self._position_written
        self.capture = capture  # the database gets it with the replicated layer's hooks

    # ------------------------------------------------------------------------------------ outbox
    def outbox(self, limit: int = 256, after_hlc: int = 0) -> list[tuple[int, str, bytes | None]]:
        """Change sets committed here and not seen in the log yet, oldest first: (hlc, msg_id, payload). A
        payload over ``OUTBOX_INLINE`` bytes is None: read it with ``outbox_payload`` when its turn comes,
        so that a few large transactions are not all in memory at once."""
        rows = self.db.reader_connection.execute(
            "SELECT hlc, msg_id, CASE WHEN length(payload) <= ? THEN payload END FROM _ha_outbox "
            "WHERE hlc > ? ORDER BY hlc LIMIT ?",
            (OUTBOX_INLINE, after_hlc, limit),
        ).fetchall()
        return [(int(r[0]), str(r[1]), None if r[2] is None else bytes(r[2])) for r in rows]  # type: ignore[arg-type]

    def outbox_payload(self, hlc: int) -> bytes | None:
        """The change set committed here at ``hlc``, if it is still in the outbox."""
        rows = self.db.reader_connection.execute(
            "SELECT payload FROM _ha_outbox WHERE hlc = ?", (hlc,)
        ).fetchall()
        return bytes(rows[0][0]) if rows else None  # type: ignore[arg-type]

    def outbox_size(self) -> int:
        return int(self.db.reader_connection.execute("SELECT count(*) FROM _ha_outbox").fetchall()[0][0] or 0)

    # ------------------------------------------------------------------------------------ applying
    async def apply(self, batch: Sequence[Incoming]) -> BatchOutcome:
        """Apply a batch in one transaction, with the applied position stored in the same transaction.

        A change set that fails is rolled back to its savepoint and parked; the rest of the batch goes on.
        """
        async with self.db.exclusive() as conn:
            if self.db.spec.memory or not _heavy(batch):
                return self._apply_locked(conn, batch)
            # A large change set (or the chunks that complete one) takes seconds to apply: on a worker
            # thread, the event loop keeps serving reads meanwhile. The writer stays taken until the thread
            # is done with it, even if the caller is cancelled. (An in-memory database reads on the same
            # connection, and must not see the batch half applied: it applies inline.)
            work = asyncio.get_running_loop().run_in_executor(None, self._apply_locked, conn, batch)
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                await asyncio.wait({work})
                raise

    def _apply_locked(self, conn: apsw.Connection, batch: Sequence[Incoming]) -> BatchOutcome:
        outcome = BatchOutcome(applied_seq=self.applied_seq)
        # Rows arrive in commit order, not dependency order; triggers fired at the origin already. Switching
        # either off expires every prepared statement of the connection (SQLite re-prepares them all on next
        # use, which cost more than the whole apply), so it is done only where there is something to switch:
        # a database with triggers, or a batch that may create one (any schema change).
        foreign_keys = bool(self.db.spec.foreign_keys)
        triggers = _has_triggers(conn) or any(
            (i.changeset is not None and i.changeset.ddl) or i.chunk is not None for i in batch
        )
        if foreign_keys:
            conn.config(apsw.SQLITE_DBCONFIG_ENABLE_FKEY, 0)
        if triggers:
            conn.config(apsw.SQLITE_DBCONFIG_ENABLE_TRIGGER, 0)
        # What is applied here is durable in the log, and the position commits with it: a transaction lost to
        # a power cut is applied again from the log. So applying skips the fsync that client writes pay.
        full = self._synchronous_full()
        if full:
            conn.execute("PRAGMA synchronous=NORMAL")
        ddl_applied = False
        before = self.applied_seq
        try:
            with conn:
                for item in batch:
                    whole = self._take_chunk(conn, item, outcome) if item.chunk is not None else item
                    if whole is not None:
                        ddl_applied |= self._apply_one(conn, whole, outcome)
                    outcome.applied_seq = max(outcome.applied_seq, item.seq)
                if self._partial:
                    self._expire_chunks(conn, batch)
                if ddl_applied:
                    self._retry_parked(conn, only_waiting=True)
                self._own_seen.extend(outcome.own)
                self.applied_seq = outcome.applied_seq
                self._record_position(conn)
        except BaseException:
            self.applied_seq = before  # the transaction rolled back: so did the position
            self._position_written(False)
            raise
        finally:
            if triggers:
                conn.config(apsw.SQLITE_DBCONFIG_ENABLE_TRIGGER, 1)
            if foreign_keys:
                conn.config(apsw.SQLITE_DBCONFIG_ENABLE_FKEY, 1)
            if full:
                conn.execute("PRAGMA synchronous=FULL")
        self._position_written(True)
        self.applied_seq = outcome.applied_seq
        self.stats.batches += 1
        self.stats.last_applied_at = time.time()
        for seq, reason in outcome.parked:
            log.warning("database %s: change set %d parked: %s", self.db.id, seq, reason)
        return outcome

    def _take_chunk(self, conn: apsw.Connection, item: Incoming, outcome: BatchOutcome) -> Incoming | None:
        """Store a chunk; once its change set is complete, the change set to apply (None until then, and
        for a change set this database holds already)."""
        chunk = item.chunk
        assert chunk is not None
        self.stats.chunks += 1
        if self.chunks.done(conn, chunk.msg_id):
            return None  # a late duplicate of a change set applied already
        # Committed here and not seen back in the log yet: its rows are in this file, its bytes need not be.
        reflected = chunk.node == self.node and bool(
            conn.execute(
                "SELECT 1 FROM _ha_outbox WHERE hlc = ? AND msg_id = ?", (chunk.hlc, chunk.msg_id)
            ).fetchall()
        )
        whole = self.chunks.add(
            conn, chunk, seq=item.seq, published_at=item.published_at, reflected=reflected
        )
        if whole is None:
            self._partial = True
            return None
        self.chunks.finish(conn, chunk.msg_id, seq=item.seq, at=item.published_at or time.time())
        self.stats.chunked += 1
        if whole.reflected:
            if chunk.node == self.node:
                outcome.own.append(chunk.hlc)
            return None
        if whole.error is not None:
            return Incoming(seq=item.seq, payload=whole.payload, msg_id=chunk.msg_id, error=whole.error)
        try:
            cs = self.decode(whole.payload)
        except HAError as e:
            return Incoming(seq=item.seq, payload=whole.payload, msg_id=chunk.msg_id, error=e.message)
        return Incoming(seq=item.seq, payload=whole.payload, msg_id=chunk.msg_id, changeset=cs)

    def _expire_chunks(self, conn: apsw.Connection, batch: Sequence[Incoming]) -> None:
        """Drop incomplete sets no chunk came for in ``partial_expiry`` seconds of log time."""
        now = max((i.published_at for i in batch if i.published_at is not None), default=None)
        if now is None:
            return
        for msg_id in self.chunks.expire(conn, now, self.partial_expiry):
            self.stats.chunks_expired += 1
            log.warning(
                "database %s: dropped the chunks of change set %s: its other chunks did not come within "
                "%gs (a copy published again arrives whole)",
                self.db.id,
                msg_id,
                self.partial_expiry,
            )
        self._partial = bool(conn.execute("SELECT 1 FROM _ha_chunks LIMIT 1").fetchall())

    def partials(self) -> tuple[int, list[PartialSet]]:
        """Change sets of which some chunks arrived, not all yet: how many, and the oldest few."""
        if not self._partial:
            return 0, []
        return self.chunks.partials(self.db.reader_connection)

    def chunk_status(self) -> dict[str, Any]:
        """For /status: chunks received, change sets completed and expired, and those waiting for chunks."""
        waiting, oldest = self.partials()
        return {
            "received": self.stats.chunks,
            "complete": self.stats.chunked,
            "expired": self.stats.chunks_expired,
            "incomplete": waiting,
            "incomplete_sets": [
                {
                    "msg_id": p.msg_id,
                    "chunks": p.received,
                    "count": p.count,
                    "bytes": p.bytes,
                    "first_seq": p.first_seq,
                    "last_seq": p.last_seq,
                    "age_seconds": None
                    if p.last_published_at is None
                    else round(max(0.0, time.time() - p.last_published_at), 3),
                }
                for p in oldest
            ],
        }

    def _synchronous_full(self) -> bool:
        return self.db.synchronous == "full"

    def skip_own(self, seqs: Sequence[int], clocks: Sequence[int]) -> None:
        """This node's own change sets, committed by this process, came back from the log: nothing to apply
        (their rows carry their versions since the commit), only the position to move. It is written with
        the next transaction; a crash before that replays them, which is harmless."""
        self.applied_seq = max(self.applied_seq, *seqs)
        self._own_seen.extend(clocks)
        self._position_dirty = True

    def forget_published(self, clocks: Sequence[int]) -> None:
        """Own change sets the log acknowledged, on a node that does not read the log back (no subscriber):
        their outbox entries go with the next transaction, as if they had been seen in the log."""
        self._own_seen.extend(clocks)
        self._position_dirty = True

    def _record_position(self, conn: apsw.Connection) -> None:
        """Inside a transaction: store the applied position and the clock, and drop outbox entries seen in
        the log."""
        if self._own_seen:
            conn.executemany("DELETE FROM _ha_outbox WHERE hlc = ?", [(h,) for h in self._own_seen])
            self._deleting.extend(self._own_seen)
            self._own_seen.clear()
        meta.put_position(conn, self.applied_seq, self.hlc.last)
        self._position_dirty = False

    def seen_in_log(self) -> set[int]:
        """Clocks of own change sets seen back in the log whose outbox rows are not deleted yet: the relay
        must not publish them again."""
        return {*self._own_seen, *self._deleting}

    def _position_written(self, committed: bool) -> None:
        """After a transaction that recorded the position: if it rolled back, so did the outbox deletions,
        which the next transaction must do again."""
        if not committed:
            self._own_seen.extend(self._deleting)
            self._position_dirty = True
        self._deleting.clear()

    async def flush_position(self) -> None:
        """Write a position moved by ``skip_own`` when no other transaction came to carry it."""
        if not self._position_dirty:
            return
        async with self.db.exclusive() as conn:
            try:
                with conn:
                    self._record_position(conn)
            except BaseException:
                self._position_written(False)
                raise
            self._position_written(True)

    def _apply_one(self, conn: apsw.Connection, item: Incoming, outcome: BatchOutcome) -> bool:
        """Apply one change set inside the batch transaction; True if it changed the schema."""
        if item.own_clock is not None:
            outcome.own.append(item.own_clock)
            return False
        cs = item.changeset
        if cs is None:
            self._park(conn, item, item.error_state, item.error or "unreadable change set", node=None)
            if item.error_state != UNAUTHENTICATED:  # those are logged where they are refused, rate-limited
                outcome.parked.append((item.seq, item.error or "unreadable"))
            return False
        if cs.node == self.node:
            outcome.own.append(cs.hlc)
        conn.execute("SAVEPOINT apply_one")
        try:
            result = self._apply_intercepted(conn, cs)
        except Exception as e:  # any failure, the user's hooks' included, parks this change set only
            conn.execute("ROLLBACK TO apply_one")
            conn.execute("RELEASE apply_one")
            state = (
                "waiting"
                if isinstance(e, SchemaMissing)
                else REFUSED
                if isinstance(e, Refused)
                else "retrying"
            )
            reason = e.message if isinstance(e, HAError) else f"{type(e).__name__}: {e}"
            self._park(conn, item, state, reason, node=cs.node)
            outcome.parked.append((item.seq, reason))
            return False
        conn.execute("RELEASE apply_one")
        self.stats.applied += 1
        self.stats.rows_applied += result.applied
        self.stats.rows_skipped += result.skipped
        return result.ddl > 0

    def _apply_intercepted(self, conn: apsw.Connection, cs: ChangeSet) -> ApplyResult:
        hooks = self.interceptor if cs.node != self.node else None
        if hooks is not None and hooks.before_apply(cs, conn):
            return ApplyResult()
        try:
            result = self._apply_with_strategy(conn, cs)
        except Exception as e:
            if hooks is not None:
                hooks.after_apply(cs, conn, e)
            raise
        if hooks is not None:
            hooks.after_apply(cs, conn, None)
        return result

    def _apply_with_strategy(self, conn: apsw.Connection, cs: ChangeSet) -> ApplyResult:
        strategy = self.apply_strategy
        if strategy is None:
            return self.applier.apply(conn, cs)
        result = strategy(cs, conn, lambda: self.applier.apply(conn, cs))
        return result if isinstance(result, ApplyResult) else ApplyResult()

    def _park(self, conn: apsw.Connection, item: Incoming, state: str, reason: str, node: str | None) -> None:
        self.stats.parked += 1
        self.stats.last_error = reason
        conn.execute(
            "INSERT INTO _ha_parked(seq, msg_id, node, state, error, attempts, payload, parked_at) "
            "VALUES (?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT(seq) DO UPDATE SET state = excluded.state, "
            "error = excluded.error, attempts = attempts + 1",
            (item.seq, item.msg_id, node, state, reason, item.payload, time.time()),
        )

    def _retry_parked(self, conn: apsw.Connection, *, only_waiting: bool) -> int:
        """Try parked change sets again, oldest first; returns how many applied."""
        states = ("waiting",) if only_waiting else ("waiting", "retrying")
        marks = ", ".join("?" * len(states))
        rows = conn.execute(
            f"SELECT seq, msg_id, payload, attempts FROM _ha_parked WHERE state IN ({marks}) ORDER BY seq",
            states,
        ).fetchall()
        done = 0
        for seq, msg_id, payload, attempts in rows:
            # Parked as received after its MAC was verified, without the seal: the database's own bytes.
            try:
                cs = self.decode(bytes(payload))  # type: ignore[arg-type]
            except HAError:
                continue
            conn.execute("SAVEPOINT retry_one")
            try:
                # as when it first came: the user's hooks may skip it, and see the outcome
                self._apply_intercepted(conn, cs)
            except Exception as e:  # any failure, the user's hooks' included, keeps it parked
                conn.execute("ROLLBACK TO retry_one")
                conn.execute("RELEASE retry_one")
                waiting = isinstance(e, SchemaMissing)
                dead = not waiting and int(attempts) + 1 >= MAX_ATTEMPTS  # type: ignore[arg-type]
                conn.execute(
                    "UPDATE _ha_parked SET attempts = attempts + 1, error = ?, state = ? WHERE seq = ?",
                    (
                        e.message if isinstance(e, HAError) else f"{type(e).__name__}: {e}",
                        REFUSED
                        if isinstance(e, Refused)
                        else "dead"
                        if dead
                        else ("waiting" if waiting else "retrying"),
                        seq,
                    ),
                )
                continue
            conn.execute("RELEASE retry_one")
            conn.execute("DELETE FROM _ha_parked WHERE seq = ?", (seq,))
            done += 1
            self.stats.unparked += 1
            log.info("database %s: parked change set %s applied (%s)", self.db.id, seq, msg_id)
        return done

    async def retry_parked(self) -> int:
        """Periodic retry of every parked change set that is not dead."""
        async with self.db.exclusive() as conn:
            conn.config(apsw.SQLITE_DBCONFIG_ENABLE_TRIGGER, 0)
            try:
                with conn:
                    done = self._retry_parked(conn, only_waiting=False)
            finally:
                conn.config(apsw.SQLITE_DBCONFIG_ENABLE_TRIGGER, 1)
        return done

    def parked(self) -> dict[str, int]:
        rows = self.db.reader_connection.execute(
            "SELECT state, count(*) FROM _ha_parked GROUP BY state"
        ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}  # type: ignore[arg-type]


def _heavy(batch: Sequence[Incoming]) -> bool:
    size = 0
    for item in batch:
        if item.chunk is not None and item.chunk.index == item.chunk.count - 1:
            return True  # may complete a change set of ``chunk.size`` bytes
        size += len(item.payload) + (len(item.chunk.data) if item.chunk is not None else 0)
    return size >= HEAVY_BATCH


def _has_triggers(conn: apsw.Connection) -> bool:
    return bool(conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'trigger' LIMIT 1").fetchall())
