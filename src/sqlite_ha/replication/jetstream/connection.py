"""The node's connection to NATS, kept alive in the background.

The node must start and serve local reads even when NATS is not reachable yet (an external server still
booting, a cluster peer restarting), so connecting is a background loop and readiness reports the state
rather than start-up failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nats
from nats.aio.client import Client as NATSClient
from nats.js import JetStreamContext

log = logging.getLogger(__name__)

PING_INTERVAL = 2
MAX_OUTSTANDING_PINGS = 2


def redact_url(url: str) -> str:
    """Hide credentials in a NATS URL before it is logged or shown."""
    return re.sub(r"://[^@/]*@", "://***@", url)


@dataclass(frozen=True, kw_only=True)
class NatsState:
    url: str
    connected: bool
    jetstream: bool
    last_error: str | None
    since: float | None  # monotonic time of the last state change


class NatsConnection:
    def __init__(
        self,
        url: str,
        *,
        name: str,
        login: dict[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url
        self._name = name
        self._login = dict(login or {})  # nats.connect's user/password, or user_credentials / nkeys_seed
        self._tls = tls  # used when the URL says tls:// or the server requires TLS
        self._nc: NATSClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._jetstream_ok = False
        self._last_error: str | None = None
        self._since: float | None = None
        self._reconnect_listeners: list[Callable[[], None]] = []
        self._closing = False  # close() called: the disconnection that follows is expected

    @property
    def client(self) -> NATSClient | None:
        return self._nc

    def jetstream(self) -> JetStreamContext:
        if self._nc is None:
            raise RuntimeError("not connected to NATS")
        return self._nc.jetstream()

    def on_reconnect(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` each time the connection is back after a loss (what was in flight on the old
        connection may be lost: a request waiting for its answer should be sent again)."""
        self._reconnect_listeners.append(listener)

    def server(self) -> str | None:
        """``host:port`` of the server the client is connected to now (a peer, after a failover)."""
        nc = self._nc
        url = nc.connected_url if nc is not None and nc.is_connected else None
        return f"{url.hostname}:{url.port}" if url is not None else None

    def start(self) -> None:
        self._task = asyncio.create_task(self._connect_loop(), name="nats-connect")

    async def wait_connected(self, within: float) -> bool:
        try:
            await asyncio.wait_for(self._connected.wait(), within)
        except TimeoutError:
            return False
        return True

    async def _connect_loop(self) -> None:
        delay = 0.1
        while True:
            try:
                kwargs: dict[str, Any] = dict(self._login)
                if self._tls is not None:
                    kwargs.update(tls=self._tls)
                self._nc = await nats.connect(
                    servers=self.url.split(","),
                    name=f"sqlite-ha {self._name}",
                    connect_timeout=2,
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    # A server that stops answering without closing the connection (paused, cut off) is
                    # given up after about PING_INTERVAL * (MAX_OUTSTANDING_PINGS + 1) s and the client moves
                    # to another server of the cluster; nats-py's default (2 min) held writes that long.
                    ping_interval=PING_INTERVAL,
                    max_outstanding_pings=MAX_OUTSTANDING_PINGS,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                    **kwargs,
                )
            except Exception as e:  # any failure to connect is retried; the state says why
                self._last_error = _describe(e)
                log.warning(
                    "cannot connect to NATS at %s: %s (retrying)", redact_url(self.url), self._last_error
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            self._mark(True)
            log.info("connected to NATS at %s", redact_url(self.url))
            await self.check_jetstream()
            return

    async def check_jetstream(self) -> bool:
        """Ask the server for the JetStream account: the only proof JetStream is usable right now."""
        if self._nc is None or not self._nc.is_connected:
            self._jetstream_ok = False
            return False
        try:
            await self._nc.jetstream().account_info()
            self._jetstream_ok = True
        except Exception as e:  # not enabled, no quorum yet, timeout: all mean "not usable now"
            self._jetstream_ok = False
            self._last_error = f"JetStream: {_describe(e)}"
        return self._jetstream_ok

    def _mark(self, connected: bool) -> None:
        self._since = time.monotonic()
        if connected:
            self._connected.set()
        else:
            self._connected.clear()

    async def _on_error(self, e: Exception) -> None:
        self._last_error = _describe(e)
        log.debug("NATS: %s", self._last_error)

    async def _on_disconnected(self) -> None:
        self._mark(False)
        self._jetstream_ok = False
        # (closing on purpose disconnects too: not worth a warning)
        log.log(logging.DEBUG if self._closing else logging.WARNING, "disconnected from NATS")

    async def _on_reconnected(self) -> None:
        self._mark(True)
        log.info("reconnected to NATS at %s", self.server())
        for listener in self._reconnect_listeners:
            listener()

    async def _on_closed(self) -> None:
        self._mark(False)

    def state(self) -> NatsState:
        connected = self._nc is not None and self._nc.is_connected
        return NatsState(
            url=redact_url(self.url),
            connected=connected,
            jetstream=connected and self._jetstream_ok,
            last_error=self._last_error,
            since=self._since,
        )

    async def close(self) -> None:
        self._closing = True
        task = self._task
        if task is not None:
            # nats-py's first connect retries forever and may swallow one cancellation: insist until done.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._nc.drain(), 5)
            with contextlib.suppress(Exception):
                await self._nc.close()


def _describe(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return redact_url(text)
