"""Snapshot requests between nodes over NATS request/reply (see ``replication.snapshot_request``).

Subject ``_HA.<stream>.snapshot.<database token>``: outside the replication stream's subjects
(``<stream>.>``), so a request is never stored as a change set. A request is published once to an inbox the
asker reads every reply from, the first good one winning; NATS answers at once "no responders" when no node
listens. With a cluster secret, requests and replies are sealed like change sets (see ``seal``): a request
bound to its subject, a reply to the inbox it answers; one that does not verify is ignored and counted.
(Forging one could only make nodes take snapshots or an asker stop waiting: what is installed is the stored
snapshot, whose manifest is verified on its own.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeout

from sqlite_ha.replication.jetstream.common import describe
from sqlite_ha.replication.jetstream.connection import NatsConnection
from sqlite_ha.replication.replicator import subject_token
from sqlite_ha.replication.seal import PLAIN, Sealer, Unauthenticated
from sqlite_ha.replication.snapshot_request import Answer, EnvelopeError, SnapshotReply, SnapshotRequest

log = logging.getLogger(__name__)

_NO_RESPONDERS = "503"
_REQUEST, _REPLY = b"snapshot_request", b"snapshot_reply"  # what a seal says the message is
ACK_WAIT = 3.0  # how long the asker waits for a node to say it is working on it


class NatsSnapshotRequests:
    def __init__(
        self, conn: NatsConnection, *, node: str, stream: str = "ha_replication", sealer: Sealer = PLAIN
    ) -> None:
        self._conn = conn
        self.sealer = sealer
        self.node = node
        self.prefix = f"_HA.{stream}.snapshot"
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._answering: set[asyncio.Task[None]] = set()
        self.asked = 0
        self.answered = 0
        self.refused = 0
        self.unauthenticated = 0  # requests and replies ignored because their MAC did not verify

    def subject(self, database: str) -> str:
        return f"{self.prefix}.{subject_token(database)}"

    # ------------------------------------------------------------------------------------ answering
    def serve(self, answer: Answer) -> None:
        """Subscribe as soon as NATS is connected (in the background: the node starts without NATS too);
        nats-py renews the subscription after every reconnect."""

        async def subscribe() -> None:
            delay = 0.1
            while True:
                if await self._conn.wait_connected(5.0) and (nc := self._conn.client) is not None:
                    try:
                        self._sub = await nc.subscribe(f"{self.prefix}.*", cb=on_request)
                        return
                    except Exception as e:  # reconnecting right now: this node must answer, so try again
                        log.warning("cannot subscribe to snapshot requests yet: %s (retrying)", describe(e))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

        async def on_request(msg: Msg) -> None:
            try:
                request = SnapshotRequest.decode(self._open(msg.subject, msg.data, _REQUEST))
            except (EnvelopeError, Unauthenticated) as e:
                log.warning("ignoring a malformed snapshot request on %s: %s", msg.subject, e)
                return
            if request.node == self.node or not msg.reply or msg.subject != self.subject(request.database):
                return
            # answering may take a while (a snapshot is made and stored): the next request must not wait
            task = asyncio.create_task(self._answer(answer, request, msg.reply), name="snapshot-answer")
            self._answering.add(task)
            task.add_done_callback(self._answering.discard)

        self._task = asyncio.create_task(subscribe(), name="snapshot-requests")

    async def _answer(self, answer: Answer, request: SnapshotRequest, reply_to: str) -> None:
        async def send(reply: SnapshotReply) -> None:
            if reply.ok:
                self.answered += 1
            elif not reply.pending:
                self.refused += 1
            nc = self._conn.client
            if nc is None or not nc.is_connected:
                return
            try:
                await nc.publish(reply_to, self.sealer.seal(reply_to, reply.encode(), kind=_REPLY))
            except Exception as e:  # the asker may ask again; nothing here depends on the reply arriving
                log.warning("cannot answer %s's snapshot request: %s", request.node, describe(e))

        await answer(request, send)

    # ------------------------------------------------------------------------------------ asking
    async def ask(self, request: SnapshotRequest, timeout: float) -> SnapshotReply | None:
        """The first ``ok`` reply covering ``request.need``; else the last refusal, else None (no node
        listens, NATS is not connected, or nobody answered). Waits ``ACK_WAIT`` for nodes to say they are
        working on it, then as long as one of them still is, up to ``timeout``."""
        nc = self._conn.client
        if nc is None or not nc.is_connected:
            return None
        self.asked += 1
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        refusal: SnapshotReply | None = None
        working: set[str] = set()
        started = time.monotonic()
        try:
            # the server answers "no responders" at once to the inbox when no node listens
            subject = self.subject(request.database)
            await nc.publish(subject, self.sealer.seal(subject, request.encode(), kind=_REQUEST), reply=inbox)
            while (left := started + (timeout if working else ACK_WAIT) - time.monotonic()) > 0:
                try:
                    msg = await sub.next_msg(timeout=left)
                except (NatsTimeout, TimeoutError):
                    break
                if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
                    break
                try:
                    reply = SnapshotReply.decode(self._open(inbox, msg.data, _REPLY))
                except (EnvelopeError, Unauthenticated) as e:
                    log.warning("ignoring a malformed snapshot reply: %s", e)
                    continue
                if reply.database != request.database:
                    continue
                if reply.pending:
                    working.add(reply.node)
                    continue
                working.discard(reply.node)
                if reply.ok and reply.covers >= request.need:
                    return reply
                refusal = reply
        except Exception as e:  # a connection that drops while asking: no answer
            log.warning("asking for a snapshot of %s: %s", request.database, describe(e))
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return refusal

    def _open(self, bound_to: str, data: bytes, kind: bytes) -> bytes:
        try:
            return self.sealer.open(bound_to, data, kind=kind)
        except Unauthenticated:
            self.unauthenticated += 1
            raise

    def stats(self) -> dict[str, int]:
        return {
            "asked": self.asked,
            "answered": self.answered,
            "refused": self.refused,
            "unauthenticated": self.unauthenticated,
        }

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._answering) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._task = None
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
