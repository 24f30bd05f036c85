"""Recovering a running database that missed change sets the log dropped, without restarting the node.

A node frozen, cut off or too slow across the log's max age finds a gap (``ReplicatedDatabase.check_gap`` or
the applier's hole check) and refuses the database's requests. ``Recovery`` then replaces the database with
a snapshot that covers the gap: the stored one, or else a fresh one asked of the live nodes (see
``snapshot_request``); it stops the database's consumer, installs the snapshot as a start would (verified,
atomically), reopens the database and follows the log from the snapshot's position. When no snapshot comes
(no up-to-date node alive), it keeps refusing and asks again at later gap checks, with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

from sqlite_ha.db.dsn import DatabaseSpec
from sqlite_ha.db.registry import Databases
from sqlite_ha.replication.bootstrap import (
    AskSnapshot,
    BootstrapError,
    Install,
    ask_live_nodes,
    bootstrap,
)
from sqlite_ha.replication.manager import ReplicationManager
from sqlite_ha.replication.replicated_database import ReplicatedDatabase
from sqlite_ha.replication.replicator import ReplicationError
from sqlite_ha.replication.snapshot import SnapshotError, SnapshotStore

log = logging.getLogger(__name__)

FIRST_ASK_BACKOFF = 0.5  # seconds before asking again when no snapshot came; doubles up to MAX_ASK_BACKOFF
MAX_ASK_BACKOFF = 30.0


class Recovery:
    def __init__(
        self,
        *,
        manager: ReplicationManager,
        store: SnapshotStore,
        databases: Databases,
        specs: dict[str, DatabaseSpec],
        ask: AskSnapshot,
        install: Install | None = None,
    ) -> None:
        self.manager = manager
        self.store = store
        self.databases = databases
        self.specs = specs  # as configured: a memory database reopens from its spec, not the snapshot's file
        self.ask = ask
        self.install = install  # how a snapshot takes the file's place (see ``bootstrap.Install``)
        self._tasks: dict[str, asyncio.Task[None]] = {}  # databases recovering now
        self._no_cover: dict[str, int] = {}  # databases waiting for a snapshot to cover their gap: the gap
        self._ask_after: dict[str, tuple[float, float]] = {}  # database -> (next ask, backoff) until one came
        self._outbox_blocked: set[str] = set()  # databases whose outbox the log did not take (logged once)
        self.recovered = 0

    def on_gap(self, rdb: ReplicatedDatabase) -> None:
        """Called at every check that finds a gap: start recovering unless that is under way."""
        ident = rdb.db.id
        task = self._tasks.get(ident)
        if task is not None and not task.done():
            return
        self._tasks[ident] = asyncio.create_task(self._recover(rdb), name=f"recover-{ident}")

    async def _recover(self, stale: ReplicatedDatabase) -> None:
        manager, store = self.manager, self.store
        ident = stale.db.id
        try:
            first = await manager.replicator.first_seq(ident)
            latest = await store.latest(ident)
            asked = ""
            if latest is None or latest.covers + 1 < first:
                next_ask, backoff = self._ask_after.get(ident, (0.0, FIRST_ASK_BACKOFF))
                if time.monotonic() < next_ask:
                    return
                latest, asked = await ask_live_nodes(ident, first, latest, self.ask, store)
                self._ask_after[ident] = (time.monotonic() + backoff, min(backoff * 2, MAX_ASK_BACKOFF))
            if latest is None or latest.covers + 1 < first:
                if self._no_cover.get(ident) != first:
                    self._no_cover[ident] = first
                    log.error(
                        "database %s: no snapshot covers the gap (the log starts at %d; latest snapshot "
                        "%s)%s; asking again at the next gap check",
                        ident,
                        first,
                        "none" if latest is None else f"covers up to {latest.covers}",
                        asked,
                    )
                return
            self._no_cover.pop(ident, None)
            self._ask_after.pop(ident, None)
            # once it is sure to install: each attempt would store again those the log no longer has
            in_log = await self._publish_outbox(stale)
            if in_log is None:
                return
            log.warning("database %s: installing the snapshot at seq %d to close the gap", ident, latest.seq)
            await stale.close()  # its consumer stops; requests keep being refused: it still has the gap
            stale.db.close()
            spec = self.specs.get(ident, stale.db.spec)
            try:
                started = await bootstrap(
                    spec,
                    manager.replicator,
                    store,
                    outbox_in_log=in_log,
                    sealer=manager.sealer,
                    install=self.install,
                )
            except BaseException:
                # The file is as it was (an install is a rename); a memory database starts empty and is
                # refused the same way. Either way the next gap check finds the gap and tries again.
                await manager.attach(self.databases.reopen(spec))
                raise
            db = self.databases.reopen(started.spec)
            if started.spec.memory and started.installed is not None:
                await asyncio.to_thread(os.remove, started.spec.path)
            await manager.attach(db, verified=started.installed.covers if started.installed else 0)
            self.recovered += 1
            log.warning("database %s: recovered from the snapshot at seq %d", ident, latest.seq)
        except asyncio.CancelledError:
            raise
        except (BootstrapError, ReplicationError, SnapshotError) as e:
            log.error("database %s: recovery from a snapshot failed: %s (retrying)", ident, e.message)
        except Exception:
            log.exception("database %s: recovery from a snapshot failed (retrying)", ident)

    async def _publish_outbox(self, stale: ReplicatedDatabase) -> int | None:
        """Make sure every change set in the outbox of a database about to be replaced by a snapshot is in
        the log: publish each again (the log deduplicates one it has; one it dropped is stored anew and
        applied again harmlessly, last-writer-wins). Returns how many there were, None if the log did not
        take them all (the database keeps refusing requests, and the next gap check tries again).

        They stay in the outbox when the node wrote them just before it noticed its gap (a client's write
        served the moment a frozen node ran again): it never sees them back, as it applies nothing past the
        hole, so without this the database could never be replaced."""
        ident = stale.db.id
        try:
            count = await stale.republish_outbox()
        except ReplicationError as e:
            if ident not in self._outbox_blocked:
                self._outbox_blocked.add(ident)
                log.error(
                    "database %s: it holds change sets of its own the log may not have, and publishing them "
                    "failed (%s); installing a snapshot would lose them, so it keeps refusing requests and "
                    "tries again",
                    ident,
                    e.message,
                )
            return None
        self._outbox_blocked.discard(ident)
        if count:
            log.info("database %s: its %d outbox change set(s) are in the log", ident, count)
        return count

    async def close(self) -> None:
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
