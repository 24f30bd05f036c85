"""The node's replication: one log (``Replicator``) and every database joined to it.

Joining happens in the background: a node whose log is not reachable yet (an external NATS still booting, a
cluster without quorum) starts anyway, serves reads, and joins as soon as the log answers; readiness says
when that happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlite_ha.changes.rowids import Rowids
from sqlite_ha.changes.store import ApplyStrategy, ChangeSetInterceptor
from sqlite_ha.db.database import Database, Execution
from sqlite_ha.db.statement import Statement
from sqlite_ha.errors import HAError, NotReady
from sqlite_ha.replication.replicated_database import ReplicatedDatabase
from sqlite_ha.replication.replicator import ReplicationError, Replicator
from sqlite_ha.replication.seal import PLAIN, Sealer
from sqlite_ha.replication.subscriber import Subscriber
from sqlite_ha.writer.role import WriterMode

if TYPE_CHECKING:
    from sqlite_ha.plugins import ChangeSetPublisher

log = logging.getLogger(__name__)

CLAIM_AT_JOIN = 10.0  # seconds a joining node tries for its rowid slot before claiming in the background


class ReplicationManager:
    def __init__(
        self,
        replicator: Replicator,
        *,
        node: str,
        timeout: float,
        async_mode: bool,
        policy: str,
        ddl_sync: bool,
        interceptor: ChangeSetInterceptor | None,
        rowids: Rowids | None = None,
        claim_wait: float = CLAIM_AT_JOIN,
        max_transaction_size: int | None = None,
        sealer: Sealer = PLAIN,
        apply_strategy: ApplyStrategy | None = None,
        publish: bool = True,
        subscribe: bool = True,
        cdc: Sequence[ChangeSetPublisher] = (),
        auto_subscribe: bool = True,
        subscriber: Subscriber | None = None,
    ) -> None:
        """``publish``, ``subscribe``, ``cdc``, ``apply_strategy``: see ``ReplicatedDatabase``.
        ``auto_subscribe=False`` (autoStart=false): the databases publish from the start but read the log
        only after ``start_subscribers``."""
        self.replicator = replicator
        self.sealer = sealer
        self.node = node
        # The node's rule for keys SQLite would choose: its slot is claimed in the log when joining.
        self.rowids = rowids
        self.claim_wait = claim_wait
        self._options: dict[str, Any] = {
            "timeout": timeout,
            "async_mode": async_mode,
            "policy": policy,
            "ddl_sync": ddl_sync,
            "sealer": sealer,
            "apply_strategy": apply_strategy,
            "publish": publish,
            "subscribe": subscribe,
            "cdc": tuple(cdc),
            "subscriber": subscriber,
        }
        self.auto_subscribe = auto_subscribe
        if max_transaction_size is not None:
            self._options["max_transaction_size"] = max_transaction_size
        self.interceptor = interceptor
        self.databases: dict[str, ReplicatedDatabase] = {}
        self._pending: list[Database] = []
        self._started = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._claiming: asyncio.Task[None] | None = None  # retrying the rowid slot's claim
        self.last_error: str | None = None
        self.refused: ReplicationError | None = None  # the last attempt to join failed for good (it retries)
        self.on_gap: Callable[[ReplicatedDatabase], None] | None = None  # see ReplicatedDatabase.on_gap
        self.writer_mode: WriterMode | None = None  # a writer mode's: every write a conditional append

    def set_writer_mode(self, mode: WriterMode) -> None:
        """In a writer mode every database's writes are fenced (see ``replicated_database``)."""
        self.writer_mode = mode if mode.fenced else None
        for rdb in self.databases.values():
            rdb.set_writer_mode(self.writer_mode)

    @property
    def started(self) -> bool:
        return self._started.is_set()

    def start(self, databases: list[Database], verified: dict[str, int] | None = None) -> None:
        """Prepare every database now (so local writes are captured from the first one) and join the log in
        the background. ``verified`` holds, for databases started from a snapshot, how far the snapshot is
        known to cover the log."""
        for db in databases:
            if db.spec.read_only:
                continue  # nothing to capture, and nothing may be applied: served as it is
            rdb = self._prepare(db)
            rdb.verified_through((verified or {}).get(db.id, 0))
        self._task = asyncio.create_task(self._join(), name="replication-join")

    def _prepare(self, db: Database) -> ReplicatedDatabase:
        rdb = ReplicatedDatabase(
            db, self.replicator, node=self.node, interceptor=self.interceptor, **self._options
        )
        rdb.on_gap = self._gap
        rdb.set_writer_mode(self.writer_mode)
        self.databases[db.id] = rdb
        return rdb

    def _gap(self, rdb: ReplicatedDatabase) -> None:
        if self.on_gap is not None and self.databases.get(rdb.db.id) is rdb:
            self.on_gap(rdb)

    async def _join(self) -> None:
        delay = 0.2
        while True:
            try:
                await self.replicator.start()
                if self._claiming is None and not await self._claim_rowid_slot_soon(self.claim_wait):
                    self._claiming = asyncio.create_task(self._keep_claiming(), name="rowid-slot")
                for rdb in list(self.databases.values()):
                    await rdb.start(subscribe=self.auto_subscribe)
                if self.auto_subscribe:  # ``start_subscribers`` may have been called meanwhile
                    for rdb in list(self.databases.values()):
                        await rdb.subscribe()
            except ReplicationError as e:
                self.last_error = e.message
                self.refused = None if e.retryable else e
                log.warning("cannot join the replication log yet: %s (retrying)", e.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self.last_error = self.refused = None
            self._started.set()
            log.info("replicating %d database(s) through %s", len(self.databases), self.replicator.name)
            return

    async def _claim_rowid_slot(self) -> bool:
        """Claim this node's rowid slot if it needs one; False when the log could not answer now."""
        rowids = self.rowids
        if rowids is None or rowids.slot is not None or rowids.refusal is not None:
            return True
        try:
            rowids.assign(await self.replicator.rowid_slot(self.node, rowids.stride))
        except ReplicationError as e:
            if e.retryable:
                log.warning("cannot claim a rowid slot yet: %s (retrying)", e.message)
                return False
            # Writes that give their keys still work; inserts that need one chosen are refused.
            rowids.refuse(e.message)
            log.error("%s", e.message)
        except Exception:  # a fault of ours or of the client library must not keep the node from joining
            log.exception("claiming a rowid slot failed (retrying)")
            return False
        return True

    async def _claim_rowid_slot_soon(self, within: float) -> bool:
        """Claim the slot before the node says it is ready, trying again for a while: the key-value bucket of
        a cluster that is just forming answers nothing until its replicas elected a leader (well under a
        second), and a node ready without its slot refuses inserts that need a key chosen (503)."""
        deadline = time.monotonic() + within
        delay = 0.1
        while not await self._claim_rowid_slot():
            if time.monotonic() + delay > deadline:
                return False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        return True

    async def _keep_claiming(self) -> None:
        """The node joins without its slot (inserts that need a key chosen are refused meanwhile): a log
        whose key-value store does not answer must not keep the node from serving everything else."""
        delay = 0.5
        while not await self._claim_rowid_slot():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def wait_started(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._started.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def attach(self, db: Database, verified: int = 0) -> None:
        """A database created (or reopened from a snapshot) while the node runs; it takes the place of an
        earlier one of the same id. ``verified`` as in ``start``."""
        rdb = self._prepare(db)
        rdb.verified_through(verified)
        if self.started:
            await rdb.start(subscribe=self.auto_subscribe)

    async def start_subscribers(self) -> None:
        """autoStart=false: the databases start reading the log now (those that join later do at once)."""
        self.auto_subscribe = True
        if self.started:
            for rdb in list(self.databases.values()):
                await rdb.subscribe()

    async def detach(self, ident: str) -> None:
        rdb = self.databases.pop(ident, None)
        if rdb is not None:
            await rdb.close()

    def get(self, ident: str) -> ReplicatedDatabase:
        return self.databases[ident]

    async def execute(self, db: Database, statements: list[Statement]) -> tuple[Execution, int | None]:
        rdb = self.databases.get(db.id)
        if rdb is None:  # a read-only database
            return await db.execute(statements), None
        if not self.started and not db.is_read_only(statements) and not rdb.async_mode:
            raise NotReady(
                "this node has not joined the replication log yet; nothing was written", hint=self.last_error
            )
        return await rdb.execute(statements)

    async def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "driver": self.replicator.name,
            "joined": self.started,
            "last_error": self.last_error,
            "log": self.replicator.stats(),
            "rowids": self.rowids.status() if self.rowids is not None else None,
            "databases": {},
        }
        for ident, rdb in self.databases.items():
            try:
                out["databases"][ident] = await rdb.status()
            except HAError as e:
                out["databases"][ident] = {"error": e.message}
        return out

    # ------------------------------------------------------------------------------------ consumers
    async def consumers(self) -> list[dict[str, Any]]:
        """The log's consumers (every node's, in JetStream; the live subscriptions of an in-process log)."""
        return await self.replicator.consumers()

    async def consumer(self, name: str) -> dict[str, Any] | None:
        return await self.replicator.consumer(name)

    async def delete_consumer(self, name: str) -> bool:
        return await self.replicator.delete_consumer(name)

    async def close(self) -> None:
        if self._claiming is not None:
            self._claiming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._claiming
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for rdb in self.databases.values():
            await rdb.close()
        await self.replicator.close()
