"""Publishing one change set to the stream, resilient to the stream leader going away.

One publish is a series of short *attempts*, all with the same ``Nats-Msg-Id``, until the stream acknowledges
the change set or the overall timeout (``--replication-timeout``) runs out. Re-sending is safe: within the
stream's duplicate window the stream stores a message id once and answers a re-send with the first sequence.

Why attempts, and not one request with the whole timeout: when the stream's leader dies, the request that
was on its way to it is never answered; the replicas elect a new leader after 4-9 s (raft's election
timeout), and a request that was lost waits in vain until its own timeout. So an attempt waits at most
``ATTEMPT_TIMEOUT`` (more for a large payload), and a new attempt goes out at once when

- the stream has a new leader (JetStream's advisory ``$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.<stream>``),
- or the NATS connection came back (a reconnect loses what was in flight on the old connection).

How a failed attempt is judged:

- no answer in time, no responders (no leader yet), JetStream unavailable, a connection closed or
  reconnecting: try again after a short pause (or at once, on one of the events above);
- "duplicate message id is in process" (JetStream error 10158): an earlier attempt of this publish is being
  stored right now, so the message *is* going into the stream; ask again shortly, and the stream answers
  with the duplicate's sequence once it is stored. It is a success, never a failure;
- anything else (stream missing, payload too large, a refusal): a failure at once, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATSClient
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import (
    ConnectionClosedError,
    ConnectionReconnectingError,
    NoRespondersError,
    OutboundBufferLimitError,
)
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError

from sqlite_ha.replication.jetstream.common import describe
from sqlite_ha.replication.jetstream.connection import NatsConnection

log = logging.getLogger(__name__)

ATTEMPT_TIMEOUT = 1.0  # how long one attempt waits for its ack before it is sent again
ATTEMPT_BYTES_PER_S = 16 * 1024 * 1024  # plus the time a large payload takes to travel and be stored
RETRY_DELAY = (0.02, 0.25)  # pause after an attempt failed fast (no leader yet): first, and at most
IN_PROCESS = 10158  # JetStream: "duplicate message id is in process"
CLUSTER_UNAVAILABLE = 10008  # JetStream: "JetStream system temporarily unavailable"
STREAM_NOT_FOUND = 10059
STREAM_INFO_TIMEOUT = 0.5


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """A publish that ended: the ack; or ``timed_out`` with the last error another attempt might have fixed;
    or a final ``error``. ``attempts`` and ``in_process`` (answers 10158) for the counters."""

    ack: PubAck | None
    error: BaseException | None
    attempts: int
    in_process: int
    timed_out: bool


class _Retry(Exception):
    """An attempt failed in a way another attempt may fix; ``wait`` says how soon to send it."""

    def __init__(self, cause: BaseException | None, *, wait: float | None) -> None:
        super().__init__(describe(cause) if cause else "retry")
        self.cause = cause
        self.wait = wait  # None: the usual backoff; 0: at once


class Publisher:
    """Sends attempts for the driver and wakes them on leader changes and reconnects."""

    def __init__(self, conn: NatsConnection, *, stream: str) -> None:
        self._conn = conn
        self.stream = stream
        self._changed: asyncio.Future[str] | None = None
        self._advisories: NatsSubscription | None = None
        self._advisories_nc: NATSClient | None = None
        self.leader_changes = 0
        self.attempts = 0
        self.retries = 0
        self.in_process = 0
        conn.on_reconnect(lambda: self.wake("reconnected"))

    # ------------------------------------------------------------------------------------ events
    def _change(self) -> asyncio.Future[str]:
        if self._changed is None or self._changed.done():
            self._changed = asyncio.get_running_loop().create_future()
        return self._changed

    def wake(self, why: str) -> None:
        """Every attempt waiting for an answer or a retry goes again now."""
        changed, self._changed = self._changed, None
        if changed is not None and not changed.done():
            changed.set_result(why)

    async def watch(self, nc: NATSClient) -> None:
        """Listen to the stream's leader-elected advisories on this connection (once per connection)."""
        if self._advisories is not None and self._advisories_nc is nc:
            return
        self._advisories = await nc.subscribe(
            f"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{self.stream}", cb=self._on_leader_elected
        )
        self._advisories_nc = nc

    async def _on_leader_elected(self, _msg: object) -> None:
        self.leader_changes += 1
        log.info("stream %s has a new leader", self.stream)
        self.wake("new stream leader")

    async def close(self) -> None:
        sub, self._advisories, self._advisories_nc = self._advisories, None, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    # ------------------------------------------------------------------------------------ publish
    async def publish(
        self,
        nc: NATSClient,
        subject: str,
        payload: bytes,
        *,
        msg_id: str,
        timeout: float,
        expect: int | None = None,
    ) -> Outcome:
        """Attempt until acknowledged or ``timeout``; never raises for what another attempt may fix."""
        deadline = time.monotonic() + timeout
        per_attempt = ATTEMPT_TIMEOUT + len(payload) / ATTEMPT_BYTES_PER_S
        delay = RETRY_DELAY[0]
        attempts = in_process = 0
        last: BaseException | None = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return Outcome(ack=None, error=last, attempts=attempts, in_process=in_process, timed_out=True)
            changed = self._change()  # taken before sending: an event during the attempt counts
            if not nc.is_connected and attempts > 0:
                # Sent now, it would only pile up in the client's reconnect buffer: wait for the connection.
                await _first(changed, min(RETRY_DELAY[1], left))
                continue
            attempts += 1
            self.attempts += 1
            if attempts > 1:
                self.retries += 1
            try:
                ack = await self._attempt(
                    nc, subject, payload, msg_id, min(per_attempt, left), changed, expect
                )
                return Outcome(ack=ack, error=None, attempts=attempts, in_process=in_process, timed_out=False)
            except _Retry as retry:
                log.debug(
                    "publish %s: attempt %d: %s; sending it again",
                    msg_id,
                    attempts,
                    describe(retry.cause) if retry.cause else f"interrupted ({changed.result()})",
                )
                if isinstance(retry.cause, APIError) and retry.cause.err_code == IN_PROCESS:
                    # Being stored right now: the duplicate's ack with its seq comes in a moment.
                    in_process += 1
                    self.in_process += 1
                    pause = RETRY_DELAY[0] + len(payload) / ATTEMPT_BYTES_PER_S  # don't resend 8 MB at once
                else:
                    last = retry.cause or last
                    pause, delay = delay, min(delay * 2, RETRY_DELAY[1])
                if retry.wait != 0:
                    await _first(changed, min(pause, max(0.0, deadline - time.monotonic())))
            except Exception as e:  # final: the caller says what it means
                return Outcome(ack=None, error=e, attempts=attempts, in_process=in_process, timed_out=False)

    async def _attempt(
        self,
        nc: NATSClient,
        subject: str,
        payload: bytes,
        msg_id: str,
        timeout: float,
        changed: asyncio.Future[str],
        expect: int | None,
    ) -> PubAck:
        js = nc.jetstream()
        headers = {"Nats-Msg-Id": msg_id}
        if expect is not None:
            headers["Nats-Expected-Last-Subject-Sequence"] = str(expect)
        request = asyncio.ensure_future(
            js.publish(subject, payload, timeout=timeout, stream=self.stream, headers=headers)
        )
        try:
            waiters: set[asyncio.Future[Any]] = {request, changed}
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            request.cancel()
            raise
        if not request.done():  # a new leader, or a new connection: this request is likely lost
            request.cancel()
            await asyncio.wait({request})
            if request.cancelled():
                raise _Retry(None, wait=0)
        try:
            return request.result()
        except TimeoutError as e:
            raise _Retry(e, wait=0) from e
        except (NoStreamResponseError, NoRespondersError) as e:
            # No one takes the subject: no stream leader right now, or no stream at all. Only the second is
            # final, and the stream info says which (with no leader, it does not answer "not found").
            missing = asyncio.ensure_future(self._stream_missing(nc))
            asking: set[asyncio.Future[Any]] = {missing, changed}
            await asyncio.wait(asking, return_when=asyncio.FIRST_COMPLETED)
            if not missing.done():  # a leader announced itself meanwhile: the stream exists
                missing.cancel()
                await asyncio.wait({missing})
                raise _Retry(e, wait=0) from e
            if missing.result():
                raise
            raise _Retry(e, wait=None) from e
        except APIError as e:
            if e.err_code == IN_PROCESS:
                raise _Retry(e, wait=None) from e
            if isinstance(e, ServiceUnavailableError) and e.err_code in (None, 0, CLUSTER_UNAVAILABLE):
                raise _Retry(e, wait=None) from e
            raise
        except (ConnectionClosedError, ConnectionReconnectingError, OutboundBufferLimitError) as e:
            if nc.is_closed:
                raise
            raise _Retry(e, wait=None) from e

    async def _stream_missing(self, nc: NATSClient) -> bool:
        """Does JetStream say the stream does not exist? (Without a leader the stream does not answer: ask
        briefly, or the retry would wait for nothing.)"""
        try:
            msg = await nc.request(f"$JS.API.STREAM.INFO.{self.stream}", b"", timeout=STREAM_INFO_TIMEOUT)
            error = json.loads(msg.data).get("error") or {}
        except Exception:  # no answer (no leader), timeout, reconnecting: not known to be missing
            return False
        return bool(error.get("err_code") == STREAM_NOT_FOUND)


async def _first(changed: asyncio.Future[str], timeout: float) -> None:
    """Sleep ``timeout``, or less if ``changed`` completes first."""
    if timeout <= 0 or changed.done():
        return
    await asyncio.wait({changed}, timeout=timeout)
