"""Delivery of one database's change sets to one node: a durable pull consumer, pulled by hand.

nats-py's ``fetch(n)`` waits until ``n`` messages came or its timeout ran out, so a lone change set would
wait a whole timeout. This loop speaks the pull protocol itself: it keeps one pull request (``batch``
messages, ``expires``, idle heartbeats) open and hands over whatever has arrived as soon as it arrives; the
rest of the request streams in while the handler works.

Order and completeness are checked, not assumed. Every delivery a consumer makes (redeliveries included)
takes the next *consumer* sequence, so a jump in it means a delivery was lost on the way (a reconnect
dropped it); the server would redeliver it only after ``ack_wait``, behind newer change sets. Then, and when
the consumer is gone or has delivered beyond what the node applied, the consumer is recreated to start right
after the last change set the handler accepted (``cursor``). Change sets at or below the cursor are
acknowledged and skipped, so the handler sees each sequence once, in increasing order.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import secrets
import time
from typing import Any

from nats.aio.client import Client as NATSClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, ConsumerInfo, DeliverPolicy
from nats.js.errors import NotFoundError

from sqlite_ha.replication.jetstream.common import StartPolicy, describe, parse_policy
from sqlite_ha.replication.jetstream.connection import NatsConnection
from sqlite_ha.replication.replicator import Delivery, Handler, ReplicationError, Subscription

log = logging.getLogger(__name__)

EXPIRES = 10.0  # lifetime of one pull request
HEARTBEAT = 2.0  # the server's idle heartbeat on an open pull request
SILENCE = 5.0  # nothing at all for this long: the request is lost; send another
ACK_WAIT = 30.0
# Bytes one pull request may bring (at least one message of the largest size): the server holds at most
# max_pending (64 MB) for a client that reads slowly before it drops it as a slow consumer, and 256 chunks
# of a large change set are 2 GB.
MAX_BYTES = 32 * 1024 * 1024
# Acknowledgements are sent (AckAll: one covers every lower seq) once this many deliveries await one, or when
# nothing more arrived for ACK_DELAY: one ack per delivery cost a message and a send() each, on every node.
ACK_EVERY = 64
ACK_BYTES = 4 * 1024 * 1024  # or once they hold this much: a large change set's chunks are acked one by one
ACK_DELAY = 0.02
HANDLER_BACKOFF = (0.05, 5.0)
STOP_GRACE = 10.0  # close() lets a running handler call finish for this long
# An ephemeral consumer the server removes after this long without a pull request (its subscriber died
# without deleting it); a pull request is open nearly all the time while the subscriber lives.
INACTIVE_THRESHOLD = 60.0
_NS = 1_000_000_000


def _ack_fields(reply: str) -> tuple[int, int, int]:
    """(stream seq, consumer seq, timestamp ns) from a JetStream ack subject (v1 and v2 forms)."""
    tokens = reply.split(".")
    off = 2 if len(tokens) == 9 else 4  # $JS.ACK[.<domain>.<account hash>].<stream>.<consumer>.<delivered>...
    return int(tokens[off + 3]), int(tokens[off + 4]), int(tokens[off + 5])


def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a handler call's outcome as seen (it is logged where it is awaited, or moot after close)."""
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def count_after(js: JetStreamContext, stream: str, subject: str, seq: int) -> int:
    """How many messages of ``subject`` the stream holds after ``seq`` (stream sequences are shared by every
    subject, so a difference of positions says nothing): the pending count of a short-lived ephemeral
    consumer that starts right after ``seq``, deleted at once."""
    name = f"count-{secrets.token_hex(6)}"
    try:
        info = await js.add_consumer(
            stream,
            ConsumerConfig(
                name=name,
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=seq + 1,
                ack_policy=AckPolicy.NONE,
                filter_subject=subject,
                inactive_threshold=5.0,
            ),
        )
    except Exception as e:
        raise ReplicationError(f"counting the messages of {subject}: {describe(e)}") from e
    with contextlib.suppress(Exception):  # else the server drops it after its inactivity threshold
        await js.delete_consumer(stream, name)
    return int(info.num_pending or 0)


class _Reattach(Exception):
    """Look the consumer up again (and create it if it is gone) before the next pull request."""


class _Resync(Exception):
    """The consumer must be recreated right after the cursor; the text says why."""


class PullConsumer:
    """The durable consumer ``subscription.consumer`` on one database's subject, and its fetch loop."""

    def __init__(
        self,
        conn: NatsConnection,
        *,
        stream: str,
        subject: str,
        subscription: Subscription,
        handler: Handler,
        node: str,
        batch: int,
    ) -> None:
        self._conn = conn
        self._stream = stream
        self._subject = subject
        self.subscription = subscription
        self._handler = handler
        self._node = node
        self._batch = batch
        self._start = parse_policy(subscription.policy)
        self.cursor = subscription.after_seq  # highest seq the handler accepted (or the node already had)
        self.delivered = 0
        self.handler_errors = 0
        self.resyncs = 0
        self.last_error: str | None = None
        self._ack_policy = AckPolicy.ALL
        self._next_cseq = 1
        self._attached = False
        self._ever_attached = False
        self._resync: str | None = None
        self._queue: collections.deque[Msg] = collections.deque()
        self._arrival: asyncio.Future[None] | None = None
        self._unacked: tuple[int, Msg] | None = None  # (stream seq, message) of the highest unacked delivery
        self._unacked_count = 0
        self._unacked_bytes = 0
        self._inbox = ""
        self._sub: NatsSubscription | None = None
        self._sub_nc: NATSClient | None = None
        self._requests = 0
        self._task: asyncio.Task[None] | None = None
        self._inflight: asyncio.Future[None] | None = None

    @property
    def name(self) -> str:
        return self.subscription.consumer

    # ------------------------------------------------------------------------------------ life
    async def start(self) -> None:
        """Attach to (or create) the consumer now if NATS is there, then run the fetch loop."""
        nc = self._conn.client
        if nc is not None and nc.is_connected:
            try:
                await self._attach(nc)
            except ReplicationError as e:
                if not e.retryable:
                    raise
                self._note(e)
            except Exception as e:  # transient (timeout, leader election): the loop tries again
                self._note(e)
        self._task = asyncio.create_task(self._run(), name=f"jetstream-pull-{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        inflight, self._inflight = self._inflight, None
        if inflight is not None and not inflight.done():  # let a handler call finish rather than cut it
            await asyncio.wait({inflight}, timeout=STOP_GRACE)
            if not inflight.done():
                inflight.cancel()
                await asyncio.wait({inflight})
        await self._unsubscribe()
        if not self.subscription.durable:
            await self._delete_ephemeral()

    async def _delete_ephemeral(self) -> None:
        """An ephemeral consumer goes with its subscriber (the server would drop it after
        ``INACTIVE_THRESHOLD`` anyway): nothing of a departed read replica stays in the log."""
        nc = self._conn.client
        if nc is None or not nc.is_connected or not self._ever_attached:
            return
        try:
            await asyncio.wait_for(nc.jetstream().delete_consumer(self._stream, self.name), 2.0)
        except NotFoundError:
            pass
        except Exception as e:  # gone with the connection: the inactivity threshold removes it
            log.debug("deleting ephemeral consumer %s: %s", self.name, describe(e))

    def stats(self) -> dict[str, Any]:
        return {
            "database": self.subscription.database,
            "consumer": self.name,
            "delivered_seq": self.cursor,
            "delivered": self.delivered,
            "handler_errors": self.handler_errors,
            "resyncs": self.resyncs,
            "running": self._task is not None and not self._task.done(),
            "last_error": self.last_error,
        }

    def _note(self, e: BaseException, level: int = logging.WARNING) -> None:
        self.last_error = describe(e)
        log.log(level, "replication of %s (consumer %s): %s", self._subject, self.name, self.last_error)

    # ------------------------------------------------------------------------------------ consumer
    async def _attach(self, nc: NATSClient) -> None:
        js = nc.jetstream()
        try:
            info: ConsumerInfo | None = await js.consumer_info(self._stream, self.name)
        except NotFoundError:
            info = None
        if info is None:  # new, or deleted while this node read it: then right after what it had
            await self._create(js, self._new_config(self.cursor, resume=self._ever_attached))
        else:
            self._check(info)
            if await self._ahead(js, info):
                log.warning(
                    "consumer %s delivered beyond seq %d, the last this node applied; recreating it there",
                    self.name,
                    self.cursor,
                )
                await self._recreate(js, resume=self.cursor > 0)
            else:
                self._use(info)
        self._attached = self._ever_attached = True

    def _check(self, info: ConsumerInfo) -> None:
        config = info.config
        role = (config.metadata or {}).get("sqlite_ha_role", "node")
        if role != self.subscription.role:
            # Two processes pulling one consumer would each miss what the other was handed.
            raise ReplicationError(
                f"consumer {self.name} of stream {self._stream} belongs to a {role}, not to this "
                f"{self.subscription.role}",
                retryable=False,
                hint="give the read replica a --durable name no node has"
                if role == "node"
                else "give the node a name no read replica uses (--name)",
            )
        if config.deliver_subject or config.filter_subject != self._subject:
            raise ReplicationError(
                f"consumer {self.name} of stream {self._stream} exists but is not a pull consumer on "
                f"{self._subject} (filter {config.filter_subject!r})",
                retryable=False,
                hint="delete it (DELETE /replications/{name}) or give the node another name",
            )

    async def _ahead(self, js: JetStreamContext, info: ConsumerInfo) -> bool:
        """Has the consumer delivered a change set the node did not apply? Then it would never come again."""
        delivered = info.delivered.stream_seq if info.delivered else 0
        if delivered <= self.cursor:
            return False
        try:
            following = await js.get_msg(self._stream, seq=self.cursor + 1, subject=self._subject, next=True)
        except NotFoundError:
            return False
        return following.seq is not None and following.seq <= delivered

    def _new_config(self, after: int, *, resume: bool = False) -> ConsumerConfig:
        """A consumer starting where the policy says, or right after ``after`` when resuming.

        With ``all`` (or a start sequence below it) a node that has everything up to ``after`` starts right
        after it too: streaming it all again just to skip it would be pointless.
        """
        start = self._start
        if resume or (after > 0 and start.deliver in (DeliverPolicy.ALL, DeliverPolicy.BY_START_SEQUENCE)):
            first = max(after + 1, start.start_seq or 0)
            start = StartPolicy(DeliverPolicy.BY_START_SEQUENCE, start_seq=first)
        durable = self.subscription.durable
        return ConsumerConfig(
            name=self.name,
            durable_name=self.name if durable else None,
            inactive_threshold=None if durable else INACTIVE_THRESHOLD,
            description=f"sqlite-ha node {self._node}, database {self.subscription.database}",
            deliver_policy=start.deliver,
            opt_start_seq=start.start_seq,
            opt_start_time=start.start_time,
            ack_policy=AckPolicy.ALL,
            ack_wait=ACK_WAIT,
            filter_subject=self._subject,
            max_ack_pending=max(1000, 2 * self._batch),
            metadata={
                "sqlite_ha_node": self._node,
                "sqlite_ha_database": self.subscription.database,
                "sqlite_ha_role": self.subscription.role,
            },
        )

    async def _create(self, js: JetStreamContext, config: ConsumerConfig) -> None:
        info = await js.add_consumer(self._stream, config)
        self._use(info)
        log.info("created consumer %s on %s (%s)", self.name, self._subject, config.deliver_policy)

    async def _recreate(self, js: JetStreamContext, *, resume: bool) -> None:
        with contextlib.suppress(NotFoundError):
            await js.delete_consumer(self._stream, self.name)
        await self._create(js, self._new_config(self.cursor, resume=resume))
        await self._unsubscribe()  # leftovers of the old consumer must not mix with the new one's

    def _use(self, info: ConsumerInfo) -> None:
        self._ack_policy = AckPolicy(info.config.ack_policy or AckPolicy.EXPLICIT)
        delivered = info.delivered
        self._next_cseq = (delivered.consumer_seq if delivered else 0) + 1
        # A consumer starting at N reports N-1 delivered: nothing at or below that is for this node.
        self.cursor = max(self.cursor, delivered.stream_seq if delivered else 0)

    # ------------------------------------------------------------------------------------ fetch loop
    async def _run(self) -> None:
        delay = 0.1
        while True:
            try:
                nc = self._conn.client
                if nc is None or not nc.is_connected:
                    await self._conn.wait_connected(EXPIRES)
                    continue
                if self._resync is not None:
                    # Right after the last change set delivered, whatever the policy said at the start.
                    await self._recreate(nc.jetstream(), resume=True)
                    self._resync = None
                elif not self._attached:
                    await self._attach(nc)
                await self._pull(nc)
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except _Reattach as e:
                self._attached = False
                self._note(e, logging.INFO)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except _Resync as e:
                self._resync = str(e)
                self.resyncs += 1
                self._note(e)
                await asyncio.sleep(0.1)  # two pullers on one consumer would otherwise spin
            except Exception as e:  # disconnects, timeouts, leader elections: log, back off, keep going
                self._note(e, logging.DEBUG if not self._conn.state().connected else logging.WARNING)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _subscribe(self, nc: NATSClient) -> None:
        if self._sub is not None and self._sub_nc is nc:
            return
        await self._unsubscribe()
        self._inbox = nc.new_inbox()
        self._queue.clear()
        self._sub = await nc.subscribe(f"{self._inbox}.*", cb=self._on_msg)
        self._sub_nc = nc

    async def _unsubscribe(self) -> None:
        sub, self._sub, self._sub_nc = self._sub, None, None
        self._queue.clear()
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _on_msg(self, msg: Msg) -> None:
        self._queue.append(msg)
        arrival = self._arrival
        if arrival is not None and not arrival.done():
            arrival.set_result(None)

    async def _wait_arrival(self, timeout: float) -> None:
        """Until a message is queued or ``timeout`` passed (a bare future: cheaper than wait_for)."""
        loop = asyncio.get_running_loop()
        arrival = self._arrival = loop.create_future()
        timer = loop.call_later(timeout, _settle, arrival)
        try:
            await arrival
        finally:
            timer.cancel()
            self._arrival = None

    async def _pull(self, nc: NATSClient) -> None:
        """One pull request: hand over its change sets as they arrive, until it is complete or ends."""
        await self._subscribe(nc)
        self._requests += 1
        reply = f"{self._inbox}.{self._requests}"
        request = {
            "batch": self._batch,
            "max_bytes": max(MAX_BYTES, 2 * int(nc.max_payload or 0)),
            "expires": int(EXPIRES * _NS),
            "idle_heartbeat": int(HEARTBEAT * _NS),
        }
        reconnects = nc.stats["reconnects"]
        await nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{self.name}", json.dumps(request).encode(), reply=reply
        )
        try:
            await self._serve_request(nc, reply, reconnects)
        finally:
            await self._flush_ack(nc)

    async def _serve_request(self, nc: NATSClient, reply: str, reconnects: int) -> None:
        remaining = self._batch
        heard = time.monotonic()
        while remaining > 0:
            if not self._queue:
                if self._unacked is not None:
                    await self._wait_arrival(ACK_DELAY)
                    if not self._queue:
                        await self._flush_ack(nc)
                        continue
                else:
                    await self._wait_arrival(HEARTBEAT)
            if nc.stats["reconnects"] != reconnects:
                return  # the request may have gone with the old connection
            if not self._queue:
                if time.monotonic() - heard > SILENCE:
                    log.debug("pull request %s of %s got no answer; sending another", reply, self.name)
                    return
                continue
            heard = time.monotonic()
            messages = list(self._queue)
            self._queue.clear()
            data = [m for m in messages if m.reply]
            remaining -= len(data)
            if data:
                await self._deliver(nc, data)
            if self._statuses([m for m in messages if not m.reply], reply):
                return

    def _statuses(self, messages: list[Msg], reply: str) -> bool:
        """React to the status messages of pull requests; True when the current request is over."""
        ended = False
        for m in messages:
            status = (m.headers or {}).get("Status", "")
            if status == "100":
                continue  # idle heartbeat
            text = (m.headers or {}).get("Description", "")
            if status == "409" and "Deleted" in text:
                raise _Resync("the consumer was deleted")
            if m.subject != reply:
                continue  # the end of an earlier request
            if status == "503":  # no responders: the consumer is gone, or its leader is being elected
                raise _Reattach("the consumer does not answer (deleted, or a new leader is being elected)")
            if status == "409":  # leadership change, server shutdown, ...: just ask again
                log.debug("pull request of %s ended: %s %s", self.name, status, text)
            elif status not in ("404", "408"):
                raise ReplicationError(f"JetStream refused the pull request: {status} {text}".strip())
            ended = True
        return ended

    async def _deliver(self, nc: NATSClient, messages: list[Msg]) -> None:
        batch: list[Delivery] = []
        gap: str | None = None
        ackable: list[Msg] = []
        top = (0, messages[0])  # the highest stream seq seen, whose ack covers the others (AckAll)
        for m in messages:
            seq, cseq, ts = _ack_fields(m.reply)
            if cseq != self._next_cseq:  # lost on the way, or the server's state went back: start over
                gap = f"expected delivery {self._next_cseq} of the consumer, got {cseq}"
                break
            self._next_cseq += 1
            ackable.append(m)
            if seq > top[0]:
                top = (seq, m)
            if seq <= self.cursor:
                continue  # the node has it already
            if batch and seq <= batch[-1].seq:
                gap = f"seq {seq} came after seq {batch[-1].seq}"
                break
            msg_id = m.headers.get("Nats-Msg-Id") if m.headers else None
            batch.append(Delivery(seq=seq, payload=m.data, msg_id=msg_id, published_at=ts / _NS))
        if batch:
            await self._handle(batch)
            self.cursor = batch[-1].seq
            self.delivered += len(batch)
        if ackable:
            await self._ack(nc, ackable, top)
        if gap is not None:
            raise _Resync(gap)

    async def _handle(self, batch: list[Delivery]) -> None:
        """Call the handler until it accepts the batch; it runs shielded so that close() never cuts it."""
        delay = HANDLER_BACKOFF[0]
        while True:
            self._inflight = asyncio.ensure_future(self._handler(batch))
            self._inflight.add_done_callback(_retrieve)
            try:
                await asyncio.shield(self._inflight)
                self._inflight = None
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.handler_errors += 1
                self.last_error = f"handler failed on seq {batch[0].seq}..{batch[-1].seq}"
                expected = isinstance(e, ReplicationError)  # said why: no traceback needed
                log.log(
                    logging.INFO if expected else logging.WARNING,
                    "replication of %s: the handler failed on seq %d..%d%s; retrying in %.2fs",
                    self._subject,
                    batch[0].seq,
                    batch[-1].seq,
                    f" ({e})" if expected else "",
                    delay,
                    exc_info=not expected,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, HANDLER_BACKOFF[1])

    async def _ack(self, nc: NATSClient, messages: list[Msg], top: tuple[int, Msg]) -> None:
        if self._ack_policy == AckPolicy.ALL:  # one ack, later, covers every lower stream seq too
            if self._unacked is None or top[0] > self._unacked[0]:
                self._unacked = top
            self._unacked_count += len(messages)
            self._unacked_bytes += sum(len(m.data) for m in messages)
            if self._unacked_count >= ACK_EVERY or self._unacked_bytes >= ACK_BYTES:
                await self._flush_ack(nc)
        elif self._ack_policy == AckPolicy.EXPLICIT:
            for m in messages:
                await nc.publish(m.reply, b"+ACK")

    async def _flush_ack(self, nc: NATSClient) -> None:
        top, self._unacked, self._unacked_count, self._unacked_bytes = self._unacked, None, 0, 0
        if top is not None and nc.is_connected:
            with contextlib.suppress(Exception):  # a lost ack is redelivered, and skipped as already had
                await nc.publish(top[1].reply, b"+ACK")
