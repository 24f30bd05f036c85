"""The HTTP server's fast path: plain ``POST /query`` requests served without aiohttp's per-request machinery.

aiohttp spends about 45 µs of CPU on each request here (request and response objects, header handling, its
per-connection task), more than a replicated write spends in SQLite, and a node's load is almost all
``POST /query``. So each connection starts with this protocol. It serves the common, well-formed case of the
query routes itself: HTTP/1.1, ``Content-Length``, no query string, no ``Expect``, no ``Transfer-Encoding``.
The first request that is anything else (another route, a chunked or oversized body, HTTP/1.0, a head it does
not read with certainty) is handed, with every byte received so far, to aiohttp's own protocol, which serves
the connection from then on. So the fast path never has to judge unusual input: what it does not recognise,
aiohttp answers, exactly as before. Requests on one connection are answered in order, pipelined or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import re
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import cast

from aiohttp.http import SERVER_SOFTWARE
from aiohttp.tcp_helpers import tcp_keepalive

MAX_HEAD = 8192  # a head this long without its end is not a plain query: aiohttp takes it
IDLE_TIMEOUT = 3630.0  # an idle connection is closed after this long, as aiohttp's keep-alive timeout does
_ID = re.compile(r"[A-Za-z0-9_.\-]+")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field names
_HANDS_OVER = frozenset({"transfer-encoding", "expect", "upgrade", "x-min-sequence", "content-encoding"})
_STATIC_HEADERS = f"Content-Type: application/json\r\nServer: {SERVER_SOFTWARE}\r\n"

# (status, body, extra headers) for a query: what the API answers, errors included.
Answer = tuple[int, bytes, dict[str, str] | None]
Responder = Callable[[str | None, bytes, str], Awaitable[Answer]]


class _HandOver(Exception):
    """The request at the head of the buffer is not for the fast path."""


class _Request:
    __slots__ = ("auth", "body", "close", "database")

    def __init__(self, database: str | None, body: bytes, close: bool, auth: str) -> None:
        self.database = database
        self.body = body
        self.close = close
        self.auth = auth


def _route(target: str) -> str | None:
    """The database a query route names (None: the default one); raises _HandOver for any other target."""
    if target in ("/query", "/"):
        return None
    if target.startswith("/databases/"):
        ident = target[len("/databases/") :]
        if _ID.fullmatch(ident):
            return ident
    raise _HandOver


def parse(buf: bytearray, max_body: int) -> _Request | None:
    """The complete request at the start of ``buf`` (removed from it), None while it is incomplete."""
    end = buf.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
    if end < 0:
        if len(buf) > MAX_HEAD:
            raise _HandOver
        return None
    try:
        lines = bytes(buf[:end]).decode("ascii").split("\r\n")
    except UnicodeDecodeError:
        raise _HandOver from None
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] != "POST" or parts[2] != "HTTP/1.1":
        raise _HandOver
    database = _route(parts[1])
    length: int | None = None
    close = False
    auth: str | None = None
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):  # obs-fold, a space before the colon, no colon at all
            raise _HandOver
        key = name.lower()
        value = value.strip(" \t")
        if key == "content-length":
            if length is not None or not value.isdigit():
                raise _HandOver
            length = int(value)
        elif key == "connection":
            tokens = {t.strip() for t in value.lower().split(",")}
            if not tokens <= {"close", "keep-alive", ""}:
                raise _HandOver
            close = "close" in tokens
        elif key == "authorization":
            if auth is not None:
                raise _HandOver
            auth = value
        elif key in _HANDS_OVER:
            raise _HandOver
    if length is None or length > max_body:
        raise _HandOver
    total = end + 4 + length
    if len(buf) < total:
        return None
    body = bytes(buf[end + 4 : total])
    del buf[:total]
    return _Request(database, body, close, auth or "")


class _Date:
    """The Date header's value, formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = ""

    def __call__(self) -> str:
        now = int(time.time())
        if now != self._second:
            self._second, self._value = now, formatdate(now, usegmt=True)
        return self._value


def response_bytes(status: int, body: bytes, headers: dict[str, str] | None, date: str, close: bool) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items()) if headers else ""
    if close:
        extra += "Connection: close\r\n"
    head = (
        f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\n{_STATIC_HEADERS}"
        f"Content-Length: {len(body)}\r\nDate: {date}\r\n{extra}\r\n"
    )
    return head.encode("latin-1") + body


class FastPath:
    """The protocol factory of the HTTP listener: one ``_Connection`` per client connection."""

    def __init__(
        self,
        respond: Responder,
        fallback: Callable[[], asyncio.Protocol],
        *,
        max_body: int,
        access_log: logging.Logger | None = None,
    ) -> None:
        self.respond = respond  # (database, body, authorization) -> answer; never raises
        self.fallback = fallback  # aiohttp's protocol factory
        self.max_body = max_body
        self.access_log = access_log  # as aiohttp's (--log-level debug)
        self.date = _Date()
        self.connections: set[_Connection] = set()

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)

    async def close(self, timeout: float) -> None:
        """Answer the requests being served (for ``timeout`` at most), then close every fast connection."""
        busy = [c.task for c in self.connections if c.task is not None and not c.task.done()]
        if busy:
            await asyncio.wait(busy, timeout=timeout)
        for conn in list(self.connections):
            conn.abort()


class _Connection(asyncio.Protocol):
    def __init__(self, fast: FastPath) -> None:
        self.fast = fast
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.task: asyncio.Task[None] | None = None
        self.paused = False
        self.eof = False
        self.active = 0.0  # loop time of the last bytes received or answer sent
        self.idle_timer: asyncio.TimerHandle | None = None
        self.tls = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not registered as one
        self.tls = transport.get_extra_info("sslcontext") is not None
        self.fast.connections.add(self)
        tcp_keepalive(self.transport)  # as aiohttp does: a peer that vanished is noticed
        loop = asyncio.get_running_loop()
        self.active = loop.time()
        self.idle_timer = loop.call_later(IDLE_TIMEOUT, self._check_idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fast.connections.discard(self)
        self.transport = None
        if self.idle_timer is not None:
            self.idle_timer.cancel()

    def _check_idle(self) -> None:
        """Close the connection once nothing happened on it for IDLE_TIMEOUT (one timer, re-armed lazily)."""
        if self.transport is None:
            return
        loop = asyncio.get_running_loop()
        left = self.active + IDLE_TIMEOUT - loop.time()
        if left <= 0 and self.task is None:
            self.transport.close()
            return
        self.idle_timer = loop.call_later(max(left, 1.0), self._check_idle)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.active = asyncio.get_running_loop().time()
        if self.task is None:
            self._next()
        elif len(self.buf) > self.fast.max_body + MAX_HEAD and self.transport is not None:
            self.transport.pause_reading()  # a pipelining client waits for the answers first
            self.paused = True

    def eof_received(self) -> bool:
        self.eof = True
        if self.task is None and self.transport is not None:
            self.transport.close()
        # Keep the transport open to answer a request still being served. Over TLS the client's close_notify
        # ends the session whatever we answer (asyncio and uvloop warn when asked to keep it open).
        return not self.tls

    def _next(self) -> None:
        """Serve the next request in the buffer, or hand the connection over."""
        if self.transport is None:
            return
        try:
            request = parse(self.buf, self.fast.max_body)
        except _HandOver:
            self._hand_over()
            return
        if request is None:
            if self.eof:
                self.transport.close()
            elif self.paused:
                self.paused = False
                self.transport.resume_reading()
            return
        self.task = asyncio.get_running_loop().create_task(self._serve(request))

    async def _serve(self, request: _Request) -> None:
        status, body, headers = await self.fast.respond(request.database, request.body, request.auth)
        transport = self.transport
        self.task = None
        if transport is None or transport.is_closing():
            return
        close = request.close or self.eof
        transport.write(response_bytes(status, body, headers, self.fast.date(), close))
        self.active = asyncio.get_running_loop().time()
        if self.fast.access_log is not None:
            path = "/query" if request.database is None else f"/databases/{request.database}"
            self.fast.access_log.debug('"POST %s HTTP/1.1" %d %d (fast path)', path, status, len(body))
        if close:
            transport.close()
            return
        self._next()

    def _hand_over(self) -> None:
        """From here on aiohttp serves this connection, starting with the bytes not yet served."""
        transport = self.transport
        assert transport is not None
        self.fast.connections.discard(self)
        self.transport = None
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        protocol = self.fast.fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self.paused:
            transport.resume_reading()
        if self.buf:
            protocol.data_received(bytes(self.buf))
            self.buf.clear()
        if self.eof:
            with contextlib.suppress(Exception):
                protocol.eof_received()
