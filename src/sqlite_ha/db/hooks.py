"""How a layer above a database takes part in its writes, without the database knowing what it is.

Replication (``sqlite_ha.replication``) is that layer: it captures each write transaction as a change set,
paces group commits while the log is busy, and in writer modes holds a commit until the log took the change
set. A database receives its hooks once (``Database.attach``) before its first write, and nothing swaps them
afterwards: what changes later (a writer mode starting, an outbox) is the hooks object's own state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sqlite_ha.changes.capture import Capture
    from sqlite_ha.changes.changeset import ChangeSet


class WriteHooks(Protocol):
    @property
    def capture(self) -> Capture:
        """Records the row changes of every write transaction on the writer connection."""

    @property
    def holds_commits(self) -> bool:
        """Whether a write commits only after ``publish_held`` returned (writer modes: the log's fence)."""

    async def gate(self) -> None:
        """Awaited before a group commit takes the queue: the writes arriving meanwhile commit together.
        Raising refuses every queued write with that error."""

    async def publish_held(self, cs: ChangeSet, payload: bytes) -> int:
        """With the transaction still open: the log takes the change set (its seq) or this raises, and the
        transaction rolls back."""

    def held_done(self, cs: ChangeSet, committed: bool) -> None:
        """A held transaction is settled: committed, or rolled back."""
