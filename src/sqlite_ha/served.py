"""One database as a node serves it: the object every front end, the driver and the CLI work with.

Whether a database is replicated (and how: leaderless, fenced by a writer, pending in an outbox) is decided
once, here; callers run statements, open transactions and wait for positions without asking. Plain SQLite
work (describing a statement, the reader connection, backups) goes to ``served.db``, the ``Database``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlite_ha.db.database import Database, DatabaseStats, Execution
from sqlite_ha.db.dsn import DatabaseSpec
from sqlite_ha.db.statement import Statement
from sqlite_ha.db.transaction import WriteTransaction
from sqlite_ha.errors import NotReady

if TYPE_CHECKING:
    from sqlite_ha.replication.manager import ReplicationManager
    from sqlite_ha.replication.replicated_database import ReplicatedDatabase


class ServedDatabase:
    """``db`` is the plain database; ``replication`` the node's (None: a node without a log). A read-only
    database (``?mode=ro``) is served but never replicated."""

    __slots__ = ("db", "guard", "replication")

    def __init__(
        self,
        db: Database,
        replication: ReplicationManager | None,
        *,
        guard: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``guard`` runs before every write and may refuse it (a node without listeners in a writer mode:
        ``Node._writes_here``)."""
        self.db = db
        self.replication = replication
        self.guard = guard

    @property
    def id(self) -> str:
        return self.db.id

    @property
    def spec(self) -> DatabaseSpec:
        return self.db.spec

    @property
    def stats(self) -> DatabaseStats:
        return self.db.stats

    @property
    def _replicated(self) -> ReplicatedDatabase | None:
        return None if self.replication is None else self.replication.databases.get(self.db.id)

    @property
    def replicated(self) -> bool:
        """Whether what is written here goes to the log (for status and for answers that say so)."""
        return self._replicated is not None

    # ------------------------------------------------------------------------------------ writes
    async def execute(self, statements: Sequence[Statement]) -> tuple[Execution, int | None]:
        """Run a request (one transaction), replicating what it writes; returns the execution and the log
        position of its change set (None: nothing written, or no log)."""
        if self.guard is not None and not self.db.is_read_only(statements):
            await self.guard()
        rdb = self._replicated
        if rdb is None:
            return await self.db.execute(statements), None
        assert self.replication is not None
        if not self.replication.started and not rdb.async_mode and not self.db.is_read_only(statements):
            raise NotReady(
                "this node has not joined the replication log yet; nothing was written",
                hint=self.replication.last_error,
            )
        return await rdb.execute(statements)

    async def begin(self) -> WriteTransaction:
        """An interactive write transaction (PostgreSQL sessions, the driver); ``commit`` replicates it."""
        if self.guard is not None:
            await self.guard()
        rdb = self._replicated
        if rdb is None:
            return await self.db.begin_transaction()
        assert self.replication is not None
        if not self.replication.started and not rdb.async_mode:
            raise NotReady(
                "this node has not joined the replication log yet; nothing was written",
                hint=self.replication.last_error,
            )
        return await rdb.begin()

    async def commit(self, tx: WriteTransaction) -> tuple[Execution, int | None]:
        rdb = self._replicated
        if rdb is None:
            return tx.commit(), None
        return await rdb.commit(tx)

    # ------------------------------------------------------------------------------------ freshness
    def check_fresh(self) -> None:
        """Raise (503) while the database may be stale: a gap in the log this node has not recovered."""
        rdb = self._replicated
        if rdb is not None:
            rdb.refuse_if_stale()

    async def wait_applied(self, seq: int, timeout: float) -> None:
        """Until this node has applied the log up to ``seq`` (read-your-writes across nodes)."""
        rdb = self._replicated
        if rdb is not None:
            await rdb.wait_applied(seq, timeout)

    async def wait_current(self, timeout: float) -> None:
        """Before a strong read: this node has applied everything the log held when it was asked."""
        rdb = self._replicated
        if rdb is not None:
            await rdb.wait_current(timeout)

    @property
    def applied_seq(self) -> int | None:
        """The log position this database has applied (None: not replicated)."""
        rdb = self._replicated
        return None if rdb is None else rdb.applied_seq

    async def log_last_seq(self) -> int | None:
        """The last position the log holds for this database (asks the log; None: not replicated)."""
        rdb = self._replicated
        return None if rdb is None else int(await rdb.replicator.last_seq(self.db.id))

    async def status(self) -> dict[str, Any]:
        rdb = self._replicated
        out: dict[str, Any] = {
            "id": self.db.id,
            "memory": self.db.spec.memory,
            "read_only": self.db.spec.read_only,
            "reads": self.db.stats.reads,
            "writes": self.db.stats.writes,
            "errors": self.db.stats.errors,
            "slow": self.db.stats.slow,
        }
        out["replication"] = None if rdb is None else await rdb.status()
        return out

    def is_read_only(self, statements: Sequence[Statement]) -> bool:
        """Whether every statement only reads (a non-writer node answers those itself)."""
        return self.db.is_read_only(statements)
