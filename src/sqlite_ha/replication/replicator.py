"""The replication boundary: what the node needs of a log that carries change sets between nodes.

In the spirit of seed 003: a driver publishes (proposes) a change set and later delivers every accepted
change set, its own included, to the subscribers of every node. Three drivers implement it: JetStream (the
real one), ``LocalReplicator`` (a single node without NATS) and ``MemoryHub`` (many in-process nodes whose
delivery order, duplication and delays a test controls). One conformance suite runs against all of them.

A log holds one ordered sequence per *database* (in JetStream: one subject per database in one stream). The
sequence numbers a driver hands out are positive, strictly increasing in publish order, and the same on every
node; they are the read-your-writes tokens clients get back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlite_ha.changes.rowids import RowidSlot
from sqlite_ha.errors import HAError


class ReplicationError(HAError):
    """The log refused or could not take a change set; ``retryable`` says whether trying again may work."""

    code = "replication_error"

    def __init__(self, message: str, *, retryable: bool = True, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable


class NotReplicating(HAError):
    """A write refused before anything ran: the log is known to be unreachable now."""

    code = "not_replicating"


class PublishTimeout(ReplicationError):
    """No acknowledgement in time: the change set may or may not be in the log."""

    code = "replication_timeout"


class WrongLastSequence(ReplicationError):
    """A conditional publish refused: the database's last change set in the log is not the one the
    publisher expected (another node wrote since). Nothing of this publish is in the log."""

    code = "wrong_last_sequence"

    def __init__(self, message: str, *, last: int | None) -> None:
        super().__init__(message, retryable=False)
        self.last = last


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """One change set as the log delivers it."""

    seq: int  # position in the database's sequence
    payload: bytes
    msg_id: str | None = None
    published_at: float | None = None  # wall-clock seconds when the log stored it, for lag in seconds


# A subscriber's handler gets deliveries in batches. The driver acknowledges a batch only after the handler
# returned; if it raises, the driver delivers the batch again later. Handlers must therefore be idempotent,
# which the applier is (every node applies every change set, its own included, with last-writer-wins).
Handler = Callable[[Sequence[Delivery]], Awaitable[None]]


@dataclass(frozen=True, kw_only=True)
class Subscription:
    database: str
    consumer: str  # the durable consumer's name (in JetStream), shown by GET /replications
    after_seq: int  # deliver change sets with seq > after_seq
    policy: str = "all"  # --replication-policy, used only when the consumer is created
    # A durable consumer outlives the process in the log (a node's, or ``sqlite-ha sync --durable``); an
    # ephemeral one (a read replica's default) is removed when the subscriber goes away. Either way the
    # subscriber resumes from ``after_seq``, the position it stored itself.
    durable: bool = True
    # Who reads: "node" or "replica" (a read replica, see ``Subscriber``). Recorded with the consumer, so
    # that a replica given a node's name cannot take over that node's consumer (and the reverse).
    role: str = "node"


class Replicator(Protocol):
    """A log of change sets shared by the nodes of a cluster."""

    name: str  # the driver: "jetstream", "local", "memory"
    node: str  # the node this log is used by: the origin of what it publishes
    # Whether an acknowledged publish survives this process and a power cut (JetStream stores and fsyncs it;
    # the in-process drivers keep it in memory). When it does, a node need not fsync its own commits: the
    # log holds the write, and a node that lost its last commits applies them again from the log.
    durable: bool

    @property
    def max_age(self) -> float | None:
        """How long the log keeps a change set, in seconds: 0 forever, None when it cannot say (callers then
        ask ``first_seq`` whether something was dropped)."""

    async def start(self) -> None:
        """Create or update what the driver needs (the stream, with its replicas and max age)."""

    def available(self) -> bool:
        """Whether a publish can be attempted now (connected); False means it would surely fail."""

    def max_payload(self) -> int | None:
        """The largest payload a publish should carry now (None: no limit, or not known while disconnected);
        the caller splits larger ones. One beyond the log's limit is refused with a ``ReplicationError``
        that is not retryable."""

    async def publish(
        self, database: str, payload: bytes, *, msg_id: str, timeout: float, expect: int | None = None
    ) -> int:
        """Store one change set and return its sequence once the log acknowledged it.

        Publishing the same ``msg_id`` again returns the first sequence and stores nothing new (dedup).
        With ``expect`` the publish is conditional (a compare-and-append, the fence of writer modes): it is
        stored only if the database's last change set in the log is at ``expect`` (0: none), else
        ``WrongLastSequence``; an attempt of the same ``msg_id`` that already landed right after ``expect``
        returns its sequence. Raises ``PublishTimeout`` when no acknowledgement came in ``timeout`` seconds
        (it may or may not be in the log), ``ReplicationError`` when the log refused it.
        """

    async def subscribe(self, subscription: Subscription, handler: Handler) -> None:
        """Deliver the database's change sets after ``subscription.after_seq`` to ``handler``, in order, in
        batches, until ``close``; returns once delivery has started. (The in-memory hub in manual mode is the
        exception: a test hands out change sets in any order, and a node that comes back gets again what it
        was handed out of order, even at or below ``after_seq``.)"""

    async def unsubscribe(self, consumer: str) -> None:
        """Stop delivering to the subscription named ``consumer`` (its durable state stays in the log)."""

    async def last_seq(self, database: str) -> int:
        """The sequence of the newest change set of this database in the log (0 when there is none)."""

    async def first_seq(self, database: str) -> int:
        """The lowest sequence the log still holds that may belong to this database (1 for a log that has
        lost nothing; 0 when it cannot tell). A node whose applied position is below ``first_seq - 1``
        missed change sets the log no longer has: it must start over from a snapshot."""

    async def stream_last_seq(self) -> int | None:
        """The last position of the whole log, when positions are shared by all databases (JetStream's
        stream sequence); None for a log that counts each database on its own."""

    async def retention(self) -> Retention | None:
        """What the log keeps and holds now (None: it drops nothing), so snapshots are taken before change
        sets age out."""

    async def oldest_after(self, database: str, seq: int) -> tuple[int, float] | None:
        """The first change set of ``database`` after ``seq`` that the log holds: its position and when it
        was stored (wall-clock seconds); None when there is none."""

    async def count_after(self, database: str, seq: int) -> int:
        """How many change sets of ``database`` after ``seq`` the log holds (a read replica's lag)."""

    async def consumers(self) -> list[dict[str, Any]]:
        """The log's consumers (every node's where the log keeps them), for ``GET /replications``: each with
        ``name``, ``node``, ``database``, ``num_pending`` and the position delivered (``delivered_stream_seq``
        in JetStream, ``delivered_seq`` in the in-process logs)."""

    async def consumer(self, name: str) -> dict[str, Any] | None:
        """One consumer as ``consumers`` lists it, or None."""

    async def delete_consumer(self, name: str) -> bool:
        """Delete a consumer the log keeps (False: there is none by that name). ``Conflict`` for one that
        cannot be deleted: a live in-process subscription."""

    async def rowid_slot(self, node: str, stride: int) -> RowidSlot:
        """Claim ``node``'s share of the keys SQLite would choose (see ``changes/rowids``): a residue modulo
        the cluster's stride that no other node holds. The stride is the one the cluster already uses if it
        has one (``stride`` only proposes it); a node asking again, after a restart, gets its own slot back.
        A log without other nodes answers stride 1 (SQLite's own keys). ``ReplicationError`` (not
        retryable) when every slot is held by another node."""

    def stats(self) -> dict[str, Any]:
        """Counters for /status: published, delivered, errors, and driver-specific state."""

    async def close(self) -> None:
        """Stop delivering and release resources; idempotent."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Retention:
    """What a log keeps and holds now, for deciding when a snapshot must be taken before change sets age
    out (0 = no such limit)."""

    max_age: float  # seconds
    max_msgs: int
    max_bytes: int
    messages: int
    bytes: int
    first_seq: int
    last_seq: int


def subject_token(database: str) -> str:
    """The database's token in subject and consumer names, as the ``ha`` command builds it."""
    return database.replace(".", "_")


async def noop_handler(_: Sequence[Delivery]) -> None:
    return None
