"""The JetStream driver of the ``Replicator`` boundary.

One stream (``--replication-stream``, subjects ``<stream>.>``) holds every database's change sets, one
subject per database (``<stream>.<subject_token(database)>``). Each node reads each database through its own
durable pull consumer (see ``pull``). The driver never owns the NATS connection: the node does, and keeps
it alive; the driver waits for it, uses it and survives its reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import time
from typing import Any

from nats.aio.client import Client as NATSClient
from nats.errors import MaxPayloadError, NoRespondersError
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import (
    APIError,
    BadRequestError,
    NoStreamResponseError,
    NotFoundError,
)

from sqlite_ha.changes.rowids import RowidSlot
from sqlite_ha.replication.jetstream import rowid_slots
from sqlite_ha.replication.jetstream.common import describe, parse_policy, valid_name
from sqlite_ha.replication.jetstream.connection import NatsConnection, redact_url
from sqlite_ha.replication.jetstream.publisher import STREAM_NOT_FOUND, Publisher
from sqlite_ha.replication.jetstream.pull import PullConsumer, count_after
from sqlite_ha.replication.replicator import (
    Handler,
    PublishTimeout,
    ReplicationError,
    Replicator,
    Retention,
    Subscription,
    WrongLastSequence,
    subject_token,
)

log = logging.getLogger(__name__)

HEADER_ROOM = 1024  # Nats-Msg-Id and the protocol line travel with the payload

DUPLICATE_WINDOW = 120.0
POLL_TIMEOUT, POLL_INTERVAL = 0.5, 0.05  # waiting for JetStream to answer at start
_NO_MESSAGE = 10037  # JetStream: "no message found"
_NOT_CLUSTERED = 10074  # "replicas > 1 not supported in non-clustered mode"


class _GaveUp(Exception):
    """Every attempt of a publish failed in a way a later one might have fixed, until the timeout."""

    def __init__(self, cause: BaseException | None, attempts: int) -> None:
        super().__init__("publish timed out")
        self.cause = cause
        self.attempts = attempts


class JetStreamReplicator:
    """Change sets in a JetStream stream; ``name`` is "jetstream".

    Sequences are the *stream* sequences: one counter shared by every database of the stream, so a
    database's sequences are strictly increasing but not contiguous (other databases' change sets take the
    numbers in between). They are the same on every node and are what ``min_seq`` reads wait for.
    """

    name = "jetstream"
    durable = True

    def __init__(
        self,
        conn: NatsConnection,
        *,
        node: str,
        stream: str = "ha_replication",
        replicas: int = 1,
        max_age: float = 86400.0,
        fetch_batch: int = 256,
        start_timeout: float = 30.0,
        subscribe_only: bool = False,
    ) -> None:
        """``subscribe_only``: a read replica's log. It reads the stream the nodes made and never changes
        it: ``start`` waits for the stream instead of creating or reconfiguring it (its max age is the
        stream's, not a setting's), and publishing and claiming a rowid slot are refused. It needs no more
        of JetStream than a consumer does."""
        if not valid_name(stream):
            raise ReplicationError(f"invalid stream name {stream!r}", retryable=False)
        self._conn = conn
        self.node = node
        self.stream = stream
        self.replicas = replicas
        self.max_age = max_age
        self.fetch_batch = max(1, fetch_batch)
        self.start_timeout = start_timeout
        self.subscribe_only = subscribe_only
        self._consumers: dict[str, PullConsumer] = {}
        self._closed = False
        self._js: JetStreamContext | None = None
        self._js_nc: NATSClient | None = None
        self.published = 0
        self.duplicates = 0
        self.fenced = 0  # conditional publishes refused: another node wrote since (writer modes)
        self.publish_errors = 0
        self.publish_timeouts = 0
        self.in_process = 0  # publishes answered "duplicate message id is in process" before their ack
        self._publisher = Publisher(conn, stream=stream)

    def subject(self, database: str) -> str:
        return f"{self.stream}.{subject_token(database)}"

    def _jetstream(self) -> JetStreamContext:
        nc = self._conn.client
        if nc is None or nc.is_closed:
            raise ReplicationError(f"not connected to NATS at {redact_url(self._conn.url)}")
        if self._js is None or self._js_nc is not nc:
            self._js, self._js_nc = nc.jetstream(), nc
        return self._js

    # ------------------------------------------------------------------------------------ stream
    async def start(self) -> None:
        """Create the stream, or bring replicas, max age and duplicate window of an existing one in line.

        A fresh clustered JetStream needs a few seconds before it takes streams: retry until
        ``start_timeout``, then raise ``ReplicationError`` saying what the server answered last.
        """
        deadline = time.monotonic() + self.start_timeout
        if not await self._conn.wait_connected(self.start_timeout):
            state = self._conn.state()
            raise ReplicationError(
                f"not connected to NATS at {state.url} after {self.start_timeout:g}s"
                + (f": {state.last_error}" if state.last_error else "")
            )
        delay = 0.1
        while True:
            try:
                if self.subscribe_only:
                    await self._read_stream()
                else:
                    await self._ensure_stream()
                return
            except APIError as e:
                if isinstance(e, BadRequestError) or e.err_code == _NOT_CLUSTERED:
                    raise ReplicationError(
                        f"JetStream refused stream {self.stream}: {describe(e)}",
                        retryable=False,
                        hint="--replicas must not exceed the number of NATS servers"
                        if e.err_code == _NOT_CLUSTERED
                        else None,
                    ) from e
                error: Exception = e
            except ReplicationError:
                raise
            except Exception as e:  # no responders, timeouts, reconnects: JetStream is not there yet
                error = e
            if time.monotonic() + delay > deadline:
                raise ReplicationError(
                    f"JetStream stream {self.stream} not available after {self.start_timeout:g}s: "
                    f"{describe(error)}",
                    hint="is JetStream enabled, and are there enough NATS servers for --replicas?",
                ) from error
            log.info("JetStream not ready for stream %s (%s); retrying", self.stream, describe(error))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def wait_answering(self, timeout: float) -> bool:
        """Poll until JetStream answers for the stream: with its info (it has a leader) or with "not found"
        (there is a meta leader to say so). A NATS cluster that is still forming answers neither for a few
        seconds (the meta leader's election), and a request then waits its whole timeout for nothing: each
        poll waits at most ``POLL_TIMEOUT``. False after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            nc = self._conn.client
            if nc is not None and nc.is_connected:
                try:
                    msg = await nc.request(f"$JS.API.STREAM.INFO.{self.stream}", b"", timeout=POLL_TIMEOUT)
                    answer = json.loads(msg.data)
                    error = answer.get("error") or {}
                    if not error or error.get("err_code") == STREAM_NOT_FOUND:
                        return True
                except Exception as e:  # no responders, no answer yet: JetStream is not there yet
                    log.debug("JetStream does not answer yet: %s", describe(e))
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(POLL_INTERVAL, left))

    async def _read_stream(self) -> None:
        """A subscriber's start: the stream must exist (a node creates it); its max age is what gap checks
        compare with (``ReplicatedDatabase._log_may_have_dropped``)."""
        try:
            info = await self._jetstream().stream_info(self.stream)
        except NotFoundError:
            raise ReplicationError(
                f"stream {self.stream} does not exist (yet)",
                hint="start a node of the cluster first (it creates the stream), or check "
                "--replication-stream",
            ) from None
        if f"{self.stream}.>" not in (info.config.subjects or []):
            raise ReplicationError(
                f"stream {self.stream} exists with subjects {info.config.subjects}, not {self.stream}.>",
                retryable=False,
            )
        self.max_age = float(info.config.max_age or 0)

    async def _ensure_stream(self) -> None:
        js = self._jetstream()
        window = min(DUPLICATE_WINDOW, self.max_age) if self.max_age > 0 else DUPLICATE_WINDOW
        try:
            info = await js.stream_info(self.stream)
        except NotFoundError:
            await js.add_stream(
                StreamConfig(
                    name=self.stream,
                    subjects=[f"{self.stream}.>"],
                    retention=RetentionPolicy.LIMITS,
                    storage=StorageType.FILE,
                    num_replicas=self.replicas,
                    max_age=self.max_age,
                    duplicate_window=window,
                )
            )
            log.info("created stream %s (replicas %d, max age %gs)", self.stream, self.replicas, self.max_age)
            return
        config = info.config
        if f"{self.stream}.>" not in (config.subjects or []):
            raise ReplicationError(
                f"stream {self.stream} exists with subjects {config.subjects}, not {self.stream}.>",
                retryable=False,
            )
        if (config.num_replicas, config.max_age, config.duplicate_window) != (
            self.replicas,
            self.max_age,
            window,
        ):
            await js.update_stream(
                config.evolve(num_replicas=self.replicas, max_age=self.max_age, duplicate_window=window)
            )
            log.info("updated stream %s (replicas %d, max age %gs)", self.stream, self.replicas, self.max_age)

    # ------------------------------------------------------------------------------------ publish
    def max_payload(self) -> int | None:
        """The largest change set a publish can carry: the server's max_payload less room for headers."""
        nc = self._conn.client
        if nc is None or not nc.is_connected or not nc.max_payload:
            return None
        return int(nc.max_payload) - HEADER_ROOM

    def available(self) -> bool:
        """Connected to NATS right now (a publish may still fail: stream missing, no JetStream quorum)."""
        nc = self._conn.client
        return nc is not None and nc.is_connected

    async def publish(
        self, database: str, payload: bytes, *, msg_id: str, timeout: float, expect: int | None = None
    ) -> int:
        """Store one change set and return its stream sequence once JetStream acknowledged it.

        Short attempts with the same ``Nats-Msg-Id`` until ``timeout`` (see ``publisher``), so a stream
        leader that goes away costs the time until there is a new one, not the whole timeout. The id makes a
        re-publish within the stream's duplicate window (2 minutes) return the first sequence. JetStream
        dedups per stream, not per subject: a ``msg_id`` already used for another database raises
        ``ReplicationError`` rather than return that database's sequence.
        """
        if self.subscribe_only:
            raise ReplicationError(
                f"this log is subscribe-only (a read replica): it publishes nothing to {database}",
                retryable=False,
            )
        subject = self.subject(database)
        started = time.monotonic()
        try:
            js = self._jetstream()
            assert self._js_nc is not None
            with contextlib.suppress(Exception):  # without advisories, retries still go out in time
                await self._publisher.watch(self._js_nc)
            outcome = await self._publisher.publish(
                self._js_nc, subject, payload, msg_id=msg_id, timeout=timeout, expect=expect
            )
            if outcome.in_process:
                self.in_process += 1
            ack = outcome.ack
            if ack is None:
                if outcome.timed_out:
                    raise _GaveUp(outcome.error, outcome.attempts)
                assert outcome.error is not None
                if expect is not None and _wrong_last_sequence(outcome.error):
                    left = max(timeout - (time.monotonic() - started), 0.001)
                    return await asyncio.wait_for(
                        self._landed_after(subject, expect, msg_id, outcome.error), left
                    )
                raise outcome.error
            if ack.duplicate:
                self.duplicates += 1
                left = max(timeout - (time.monotonic() - started), 0.001)
                original = await asyncio.wait_for(js.get_msg(self.stream, seq=ack.seq), left)
                if original.subject != subject:
                    raise ReplicationError(
                        f"msg_id {msg_id!r} was already used for {original.subject}, seq {ack.seq}",
                        retryable=False,
                    )
        except (TimeoutError, _GaveUp) as e:
            self.publish_timeouts += 1
            state = self._conn.state()
            why = "" if state.connected else f" (not connected to NATS at {state.url})"
            if isinstance(e, _GaveUp) and e.cause is not None and not isinstance(e.cause, TimeoutError):
                why += f"; last answer: {describe(e.cause)}"
            attempts = f" ({e.attempts} attempts)" if isinstance(e, _GaveUp) and e.attempts > 1 else ""
            raise PublishTimeout(
                f"no acknowledgement from stream {self.stream} for {database} within {timeout:g}s"
                f"{attempts}{why}"
            ) from e
        except ReplicationError:
            self.publish_errors += 1
            raise
        except Exception as e:
            self.publish_errors += 1
            raise self._publish_error(e, database) from e
        self.published += 1
        return int(ack.seq)

    async def _landed_after(self, subject: str, expect: int, msg_id: str, refusal: BaseException) -> int:
        """A conditional publish refused: did an earlier attempt of it land (JetStream checks the expected
        sequence before the message id, so the retry of an attempt that landed is refused too)? Only right
        after ``expect`` can it have: the first message of the subject after it says."""
        try:
            first = await self._jetstream().get_msg(self.stream, seq=expect + 1, subject=subject, next=True)
        except NotFoundError:
            first = None
        if first is not None and first.headers and first.headers.get("Nats-Msg-Id") == msg_id:
            self.duplicates += 1
            self.published += 1
            return int(first.seq or 0)
        self.fenced += 1
        last = _last_in(refusal)
        raise WrongLastSequence(
            f"{subject}: the log's last change set is at {last if last is not None else 'another position'}, "
            f"not {expect}: another node wrote since",
            last=last,
        )

    def _publish_error(self, e: Exception, database: str) -> ReplicationError:
        where = f"publishing to {self.subject(database)}"
        if isinstance(e, NoStreamResponseError | NoRespondersError):
            return ReplicationError(
                f"{where}: no JetStream stream answers (stream {self.stream} missing or JetStream down)"
            )
        if isinstance(e, MaxPayloadError):
            return ReplicationError(f"{where}: the change set exceeds max_payload", retryable=False)
        if isinstance(e, APIError):
            return ReplicationError(f"{where}: JetStream refused it: {describe(e)}", retryable=e.code == 503)
        state = self._conn.state()
        if not state.connected:
            return ReplicationError(f"{where}: not connected to NATS at {state.url}: {describe(e)}")
        return ReplicationError(f"{where}: {describe(e)}")

    async def last_seq(self, database: str) -> int:
        """The stream sequence of the database's newest change set, asked of the stream leader; 0 if none."""
        try:
            msg = await self._jetstream().get_last_msg(self.stream, self.subject(database))
        except NotFoundError as e:
            if e.err_code == _NO_MESSAGE:
                return 0
            raise ReplicationError(f"stream {self.stream}: {describe(e)}") from e
        except ReplicationError:
            raise
        except Exception as e:
            raise ReplicationError(f"last sequence of {database}: {describe(e)}") from e
        return int(msg.seq or 0)

    async def stream_last_seq(self) -> int:
        """The stream's last sequence, whatever the database."""
        try:
            info = await self._jetstream().stream_info(self.stream)
        except Exception as e:
            raise ReplicationError(f"stream {self.stream}: {describe(e)}") from e
        return int(info.state.last_seq or 0)

    async def first_seq(self, database: str) -> int:
        """The stream's first sequence (the stream's, not the subject's: an aged-out message of another
        database looks the same, so this errs on the side of a snapshot); 0 when there is no stream yet."""
        try:
            info = await self._jetstream().stream_info(self.stream)
        except NotFoundError:
            return 0
        except Exception as e:
            raise ReplicationError(f"first sequence of stream {self.stream}: {describe(e)}") from e
        return int(info.state.first_seq or 0)

    async def rowid_slot(self, node: str, stride: int) -> RowidSlot:
        """Claimed in the key-value bucket ``<stream>_ROWID_SLOTS`` (see ``rowid_slots``)."""
        if self.subscribe_only:
            raise ReplicationError("a read replica inserts nothing: it claims no rowid slot", retryable=False)
        return await rowid_slots.claim(
            self._jetstream(), stream=self.stream, replicas=self.replicas, node=node, stride=stride
        )

    async def retention(self) -> Retention:
        """The stream's limits and what it holds now."""
        try:
            info = await self._jetstream().stream_info(self.stream)
        except Exception as e:
            raise ReplicationError(f"stream {self.stream}: {describe(e)}") from e
        config, state = info.config, info.state
        return Retention(
            max_age=float(config.max_age or 0),
            max_msgs=max(0, int(config.max_msgs or 0)),
            max_bytes=max(0, int(config.max_bytes or 0)),
            messages=int(state.messages or 0),
            bytes=int(state.bytes or 0),
            first_seq=int(state.first_seq or 0),
            last_seq=int(state.last_seq or 0),
        )

    async def oldest_after(self, database: str, seq: int) -> tuple[int, float] | None:
        """The sequence and storage time (unix seconds) of the database's first change set after ``seq``
        still in the stream; None when there is none."""
        try:
            msg = await self._jetstream().get_msg(
                self.stream, seq=seq + 1, subject=self.subject(database), next=True
            )
        except NotFoundError as e:
            if e.err_code == _NO_MESSAGE:
                return None
            raise ReplicationError(f"stream {self.stream}: {describe(e)}") from e
        except ReplicationError:
            raise
        except Exception as e:
            raise ReplicationError(f"oldest change set of {database} after {seq}: {describe(e)}") from e
        stored = msg.time.timestamp() if msg.time is not None else time.time()
        return int(msg.seq or 0), stored

    async def count_after(self, database: str, seq: int) -> int:
        """How many change sets of the database the stream holds after ``seq`` (see ``pull.count_after``)."""
        return await count_after(self._jetstream(), self.stream, self.subject(database), seq)

    # ------------------------------------------------------------------------------------ subscribe
    async def subscribe(self, subscription: Subscription, handler: Handler) -> None:
        """Deliver the database's change sets after ``subscription.after_seq`` through the node's durable
        pull consumer ``subscription.consumer``, created with ``subscription.policy`` if missing."""
        if self._closed:
            raise ReplicationError("the replicator is closed", retryable=False)
        parse_policy(subscription.policy)
        if not valid_name(subscription.consumer):
            raise ReplicationError(f"invalid consumer name {subscription.consumer!r}", retryable=False)
        if subscription.consumer in self._consumers:
            raise ReplicationError(f"consumer {subscription.consumer} is already subscribed", retryable=False)
        consumer = PullConsumer(
            self._conn,
            stream=self.stream,
            subject=self.subject(subscription.database),
            subscription=subscription,
            handler=handler,
            node=self.node,
            batch=self.fetch_batch,
        )
        await consumer.start()
        self._consumers[subscription.consumer] = consumer

    async def unsubscribe(self, consumer: str) -> None:
        pull = self._consumers.pop(consumer, None)
        if pull is not None:
            await pull.stop()

    # ------------------------------------------------------------------------------------ status
    def stats(self) -> dict[str, Any]:
        state = self._conn.state()
        subs = [c.stats() for c in self._consumers.values()]
        return {
            "driver": self.name,
            "stream": self.stream,
            "published": self.published,
            "duplicates": self.duplicates,
            "fenced": self.fenced,
            "publish_errors": self.publish_errors,
            "publish_timeouts": self.publish_timeouts,
            "publish_attempts": self._publisher.attempts,
            "publish_retries": self._publisher.retries,
            "publish_in_process": self.in_process,
            "stream_leader_changes": self._publisher.leader_changes,
            "delivered": sum(s["delivered"] for s in subs),
            "handler_errors": sum(s["handler_errors"] for s in subs),
            "subscriptions": subs,
            "connected": state.connected,
            "jetstream": state.jetstream,
            "last_error": state.last_error,
        }

    async def consumers(self) -> list[dict[str, Any]]:
        """Every consumer of the stream (all nodes), for ``GET /replications``."""
        js = self._jetstream()
        out: list[dict[str, Any]] = []
        try:
            while True:
                page: list[ConsumerInfo] = await js.consumers_info(self.stream, offset=len(out))
                out.extend(_consumer_dict(info) for info in page)
                if not page:
                    return out
        except Exception as e:
            raise ReplicationError(f"consumers of stream {self.stream}: {describe(e)}") from e

    async def consumer(self, name: str) -> dict[str, Any] | None:
        if not valid_name(name):
            return None
        try:
            return _consumer_dict(await self._jetstream().consumer_info(self.stream, name))
        except NotFoundError:
            return None
        except ReplicationError:
            raise
        except Exception as e:
            raise ReplicationError(f"consumer {name}: {describe(e)}") from e

    async def delete_consumer(self, name: str) -> bool:
        """Delete a consumer (typically a departed node's). One this replicator reads through is recreated
        by its fetch loop right after the last change set it delivered."""
        if not valid_name(name):
            return False
        try:
            return bool(await self._jetstream().delete_consumer(self.stream, name))
        except NotFoundError:
            return False
        except ReplicationError:
            raise
        except Exception as e:
            raise ReplicationError(f"deleting consumer {name}: {describe(e)}") from e

    async def close(self) -> None:
        """Stop the fetch loops (a running handler call may finish first); the NATS connection stays open."""
        self._closed = True
        consumers, self._consumers = list(self._consumers.values()), {}
        await asyncio.gather(*(c.stop() for c in consumers))
        await self._publisher.close()


def _consumer_dict(info: ConsumerInfo) -> dict[str, Any]:
    config = info.config
    delivered, floor = info.delivered, info.ack_floor
    active = [s.last_active for s in (delivered, floor) if s is not None and s.last_active is not None]
    metadata = config.metadata or {}
    return {
        "name": info.name,
        "stream": info.stream_name,
        "filter_subject": config.filter_subject,
        "node": metadata.get("sqlite_ha_node"),
        "database": metadata.get("sqlite_ha_database"),
        "deliver_policy": str(getattr(config.deliver_policy, "value", config.deliver_policy)),
        "ack_policy": str(getattr(config.ack_policy, "value", config.ack_policy)),
        "delivered_stream_seq": delivered.stream_seq if delivered else 0,
        "ack_floor_stream_seq": floor.stream_seq if floor else 0,
        "num_pending": info.num_pending or 0,
        "num_ack_pending": info.num_ack_pending or 0,
        "num_redelivered": info.num_redelivered or 0,
        "num_waiting": info.num_waiting or 0,
        "created": _iso(info.created),
        "last_active": _iso(max(active)) if active else None,
    }


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime.datetime) else None


def _conforms(driver: JetStreamReplicator) -> Replicator:
    return driver  # mypy checks here that the driver implements the protocol


WRONG_LAST_SEQUENCE = 10071  # JetStream: "wrong last sequence: N"


def _wrong_last_sequence(e: BaseException) -> bool:
    return isinstance(e, APIError) and e.err_code == WRONG_LAST_SEQUENCE


def _last_in(e: BaseException) -> int | None:
    """N of JetStream's "wrong last sequence: N"."""
    text = getattr(e, "description", None) or str(e)
    tail = str(text).rsplit(":", 1)[-1].strip()
    return int(tail) if tail.isdigit() else None
