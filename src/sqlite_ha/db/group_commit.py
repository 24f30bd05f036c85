"""The write side of a ``Database``: group commit, and the held commit of writer modes.

Writes queue while the writer is busy and commit together, one SQLite transaction and one change set for the
group (each request in its own savepoint, so one failing rolls back alone). In a writer mode the group's
transaction is held open until the log took its change set, then committed; rolled back when the log refuses
it or does not answer (see ``replication/fence.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import apsw

from sqlite_ha.db.sqlerrors import translate
from sqlite_ha.db.statement import Result, Statement
from sqlite_ha.errors import HAError

if TYPE_CHECKING:
    from sqlite_ha.changes.capture import Capture
    from sqlite_ha.changes.changeset import ChangeSet
    from sqlite_ha.db.connection import Guarded
    from sqlite_ha.db.dsn import DatabaseSpec
    from sqlite_ha.db.hooks import WriteHooks


@dataclass(slots=True)
class Execution:
    """What a request produced: one result per statement, and the change set if it changed anything."""

    results: list[Result]
    changeset: ChangeSet | None = None
    payload: bytes | None = None  # the change set as encoded into the outbox
    seq: int | None = None  # where the log took it, when it did so before COMMIT (writer modes)


def first_outcome(outcomes: Sequence[Execution | BaseException]) -> Execution:
    """The first outcome: its execution, or its error raised."""
    outcome = outcomes[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class GroupCommit:
    """The write queue of a ``Database`` (a mixin: it uses the attributes declared below)."""

    id: str
    spec: DatabaseSpec
    capture: Capture | None
    hooks: WriteHooks | None
    _queue: list[tuple[Sequence[Statement], asyncio.Future[Execution]]]
    _committers: set[asyncio.Task[None]]
    _write_lock: asyncio.Lock
    _writer: Guarded
    _lent: asyncio.Event | None

    # Database._execute(c, requests, begin, *, write, hold=False): runs requests on a connection
    _execute: Callable[..., Awaitable[list[Execution | HAError]]]

    async def _write(self, statements: Sequence[Statement]) -> Execution:
        """Queue a write; the writes queued while the writer is busy commit together (group commit).

        Each request keeps its own atomicity (a savepoint each: a failing request rolls back alone), and
        the group is one SQLite transaction and one change set: one commit, one publish, one apply on every
        other node, however many clients wrote at once.
        """
        future: asyncio.Future[Execution] = asyncio.get_running_loop().create_future()
        self._queue.append((statements, future))
        if len(self._queue) == 1:
            task = asyncio.create_task(self._commit_queued(), name=f"commit-{self.id}")
            self._committers.add(task)
            task.add_done_callback(self._committers.discard)
        return await future

    async def _commit_queued(self) -> None:
        if self.hooks is not None:
            try:
                await self.hooks.gate()
            except BaseException as e:  # the gate refuses (writer modes: no current view of the log)
                queued, self._queue = self._queue, []
                for _, future in queued:
                    if not future.done():
                        future.set_exception(e)
                if not isinstance(e, Exception):
                    raise
                return
        async with self._write_lock:
            queued, self._queue = self._queue, []
            if not queued:
                return
            requests = [statements for statements, _ in queued]
            outcomes: list[Execution | BaseException]
            try:
                outcomes = list(await self._write_group(requests))
            except BaseException as e:
                if len(queued) == 1 or not isinstance(e, HAError):
                    outcomes = [e] * len(queued)
                else:  # the group failed as a whole (SQLite rolled it all back): each request on its own
                    outcomes = []
                    for statements in requests:
                        try:
                            outcomes.append(first_outcome(await self._write_group([statements])))
                        except HAError as alone:
                            outcomes.append(alone)
            for (_, future), outcome in zip(queued, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, asyncio.CancelledError):
                    future.cancel()
                elif isinstance(outcome, BaseException):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)

    async def _write_group(self, requests: Sequence[Sequence[Statement]]) -> list[Execution | BaseException]:
        """Run requests as one write transaction; in writer modes the log takes its change set first."""
        hold = self.hooks is not None and self.hooks.holds_commits
        outcomes = await self._execute(self._writer, requests, "BEGIN IMMEDIATE", write=True, hold=hold)
        if not hold:
            return list(outcomes)
        return await self._settle_held(outcomes)

    async def _settle_held(self, outcomes: list[Execution | HAError]) -> list[Execution | BaseException]:
        """Publish a held transaction's change set, then COMMIT; ROLLBACK when the log did not take it (each
        request that ran gets the log's error). The writer lock is held throughout."""
        c = self._writer
        done = next((o for o in outcomes if isinstance(o, Execution)), None)
        cs = done.changeset if done is not None else None
        payload = done.payload if done is not None else None
        # An in-memory database's one connection shows the open transaction: lent meanwhile, so that
        # nobody reads what may still be rolled back.
        lent = self._lent = asyncio.Event() if self.spec.memory else self._lent
        committed, seq = False, None
        failure: BaseException | None = None
        try:
            if cs is not None and payload is not None and self.hooks is not None:
                seq = await self.hooks.publish_held(cs, payload)
            try:
                c.control("COMMIT")
            except apsw.Error as e:
                raise translate(e, conn=c.conn) from e
            committed = True
        except BaseException as e:  # the log refused or did not answer: nothing stays
            failure = e
        finally:
            self.end_write(committed)
            if cs is not None and self.hooks is not None:
                self.hooks.held_done(cs, committed)
            if self.spec.memory and lent is not None:
                self._lent = None
                lent.set()
        if failure is not None:
            return [failure if isinstance(o, Execution) else o for o in outcomes]
        for o in outcomes:
            if isinstance(o, Execution):
                o.seq = seq
        return list(outcomes)

    def end_write(self, committed: bool) -> None:
        """A write transaction on the writer is over, committed or not: close its capture (telling it which)
        and roll back whatever is left open."""
        c, capture = self._writer, self.capture
        if capture is not None:
            capture.abort()
        if c.conn.in_transaction:
            c.control("ROLLBACK")
        if capture is not None:
            capture.end(committed)
