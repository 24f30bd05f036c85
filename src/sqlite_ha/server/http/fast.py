"""The HTTP server's fast path: plain ``POST /query`` requests served without aiohttp's per-request machinery.

aiohttp spends about 45 µs of CPU on each request here (request and response objects, header handling, its
per-connection task), more than a replicated write spends in SQLite, and a node's load is almost all
``POST /query``. So each connection starts with this protocol. It serves the common, well-formed case of the
query routes itself: HTTP/1.1, ``Content-Length``, no query string, no ``Expect``, no ``Transfer-Encoding``.
The first request that is anything else (another route, a chunked or oversized body, HTTP/1.0, a head it does
not read with certainty) is handed, with every byte received so far, to aiohttp's own protocol, which serves
the connection from then on. So the fast path never has to judge unusual input: what it does not recognise,
aiohttp answers, exactly as before. Requests on one connection are answered in order, pipelined or not.

Every connection starts here, so here too the listener keeps its limits (``Limits``): at most
``max_connections`` at once (counting those aiohttp serves), the next ones answered 503 and closed, except the
health checks, which are answered over the cap; a request head that takes longer than ``header_timeout``
to arrive, or a body longer than ``body_timeout``, ends its connection with 408; an idle connection is
closed after ``keepalive_timeout``. One timer a second checks the deadlines of every connection, so a
request pays for none.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.utils import formatdate
from typing import cast

from aiohttp.http import SERVER_SOFTWARE
from aiohttp.tcp_helpers import tcp_keepalive

from sqlite_ha.server.http.errors import error_body

MAX_HEAD = 8192  # a head this long without its end is not a plain query: aiohttp takes it
SWEEP = 1.0  # seconds between two checks of the connections' deadlines
HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
_ID = re.compile(r"[A-Za-z0-9_.\-]+")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field names
_HANDS_OVER = frozenset(
    {"transfer-encoding", "expect", "upgrade", "x-min-sequence", "x-read-level", "content-encoding"}
)
_STATIC_HEADERS = f"Content-Type: application/json\r\nServer: {SERVER_SOFTWARE}\r\n"

# (status, body, extra headers) for a query: what the API answers, errors included.
Answer = tuple[int, bytes, dict[str, str] | None]
HAND_OVER: Answer = (0, b"", None)
"""A responder's answer that it does not serve the request here (a write on a node that is not the writer,
forwarded by the full app): the request, whole, and the rest of its connection go to aiohttp."""
Responder = Callable[[str | None, bytes, str], Awaitable[Answer]]
Health = Callable[[str], Answer]  # the answer to GET /healthz or /readyz, given over the connection cap


@dataclass(frozen=True, kw_only=True)
class Limits:
    """What one client may take of the listener (see the module's docstring)."""

    max_connections: int = 0  # 0: no cap
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    keepalive_timeout: float = 75.0  # as nginx's: an idle connection waits this long for its next request

    @property
    def over_cap_max(self) -> int:
        """Connections over the cap that are still answered (503, or a health check); beyond them a new
        connection is closed at once, so a flood cannot hold descriptors for a header timeout each."""
        return max(16, self.max_connections // 10)


class _HandOver(Exception):
    """The request at the head of the buffer is not for the fast path."""


class _Request:
    __slots__ = ("auth", "body", "close", "database", "head")

    def __init__(self, database: str | None, body: bytes, close: bool, auth: str, head: bytes = b"") -> None:
        self.database = database
        self.body = body
        self.close = close
        self.auth = auth
        self.head = head  # as received, without the blank line that ends it


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
    head = bytes(buf[:end])  # kept (no copy more) to hand the request over after all
    try:
        lines = head.decode("ascii").split("\r\n")
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
    return _Request(database, body, close, auth or "", head)


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
        limits: Limits | None = None,
        handed_over: Callable[[], int] | None = None,
        health: Health | None = None,
    ) -> None:
        self.respond = respond  # (database, body, authorization) -> answer; never raises
        self.fallback = fallback  # aiohttp's protocol factory
        self.max_body = max_body
        self.access_log = access_log  # as aiohttp's (--log-level debug)
        self.limits = limits or Limits()
        self.handed_over = handed_over  # how many connections aiohttp serves now
        self.health = health
        self.date = _Date()
        self.connections: set[_Connection] = set()
        self.over_cap = 0  # connections in ``connections`` being refused
        self.refused = 0  # connections refused since start (503 or closed at once)
        self._sweeper: asyncio.TimerHandle | None = None

    def __call__(self) -> asyncio.Protocol:
        return _Connection(self)

    def open_connections(self) -> int:
        """Connections served now (those being refused over the cap not counted)."""
        served = len(self.connections) - self.over_cap
        return served + (self.handed_over() if self.handed_over is not None else 0)

    def watch(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(SWEEP, self._sweep)

    def _sweep(self) -> None:
        """End the connections past their deadline (those being answered are left alone)."""
        self._sweeper = None
        if not self.connections:
            return
        now = asyncio.get_running_loop().time()
        for conn in [c for c in self.connections if c.deadline < now and c.task is None]:
            conn.expire()
        self.watch()

    async def close(self, timeout: float) -> None:
        """Answer the requests being served (for ``timeout`` at most), then close every fast connection."""
        busy = [c.task for c in self.connections if c.task is not None and not c.task.done()]
        if busy:
            await asyncio.wait(busy, timeout=timeout)
        for conn in list(self.connections):
            conn.abort()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


class _Connection(asyncio.Protocol):
    def __init__(self, fast: FastPath) -> None:
        self.fast = fast
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.task: asyncio.Task[None] | None = None
        self.paused = False
        self.eof = False
        self.tls = False
        self.over = False  # over the connection cap: answer the one request (503 or health), then close
        self.answered = False  # over the cap, and answered: what else arrives is dropped
        self.idle = False  # between two requests, nothing received yet
        self.in_body = False  # the head is in, the body is not
        self.deadline = 0.0  # loop time by which the current phase (idle, head, body) must end

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not registered as one
        self.tls = transport.get_extra_info("sslcontext") is not None
        fast, limits = self.fast, self.fast.limits
        if limits.max_connections and fast.open_connections() >= limits.max_connections:
            fast.refused += 1
            if fast.over_cap >= limits.over_cap_max:
                self.transport.close()  # too many being refused already: no answer at all
                self.transport = None
                return
            fast.over_cap += 1
            self.over = True
        fast.connections.add(self)
        tcp_keepalive(self.transport)  # as aiohttp does: a peer that vanished is noticed
        self.deadline = asyncio.get_running_loop().time() + limits.header_timeout
        fast.watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget()
        self.transport = None

    def _forget(self) -> None:
        if self in self.fast.connections:
            self.fast.connections.discard(self)
            if self.over:
                self.fast.over_cap -= 1

    def expire(self) -> None:
        """The deadline passed: a request half-received is answered 408, an idle connection just closed."""
        transport = self.transport
        if transport is None:
            return
        if self.buf and not transport.is_closing():
            if self.in_body:
                phase, setting, limit = "body", "--body-timeout", self.fast.limits.body_timeout
            else:
                phase, setting, limit = "head", "--header-timeout", self.fast.limits.header_timeout
            message = f"the request's {phase} did not arrive within {limit:g}s ({setting})"
            body, _ = error_body(408, "request_timeout", message)
            transport.write(response_bytes(408, body, None, self.fast.date(), True))
        transport.close()
        self._forget()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self.answered:
            return
        self.buf += data
        if self.idle:  # the next request begins: its head has the header timeout
            self.idle = False
            self.deadline = asyncio.get_running_loop().time() + self.fast.limits.header_timeout
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
        if self.over:
            self._refuse()
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
            if not self.in_body and self.buf.find(b"\r\n\r\n", 0, MAX_HEAD + 4) >= 0:
                self.in_body = True  # the head is in: the body has its own timeout from now
                self.deadline = asyncio.get_running_loop().time() + self.fast.limits.body_timeout
            return
        self.in_body = False
        self.task = asyncio.get_running_loop().create_task(self._serve(request))

    def _refuse(self) -> None:
        """Over the cap: once the head is in, answer a health check, or 503, and close."""
        assert self.transport is not None
        end = self.buf.find(b"\r\n\r\n", 0, MAX_HEAD + 4)
        if end < 0 and len(self.buf) <= MAX_HEAD and not self.eof:
            return
        line = bytes(self.buf[: self.buf.find(b"\r\n")]).split(b" ")
        path = line[1].decode("latin-1") if len(line) == 3 and line[0] in (b"GET", b"HEAD") else ""
        if path in HEALTH_PATHS and self.fast.health is not None:
            status, body, headers = self.fast.health(path)
        else:
            status = 503
            cap = self.fast.limits.max_connections
            message = f"the node serves its most connections at once ({cap}, --max-connections); try again"
            body, _ = error_body(status, "too_many_connections", message)
            headers = {"Retry-After": "1"}
        if line[0] == b"HEAD":
            body = b""
        self.transport.write(response_bytes(status, body, headers, self.fast.date(), True))
        self.buf.clear()
        self.answered = True
        if self.eof or not self.transport.can_write_eof():
            self.transport.close()
            return
        # Half-close and read on until the client closes: closing with its body unread would reset the
        # connection, and a reset can destroy the answer before the client reads it.
        self.transport.write_eof()
        self.deadline = asyncio.get_running_loop().time() + min(2.0, self.fast.limits.header_timeout)

    async def _serve(self, request: _Request) -> None:
        status, body, headers = await self.fast.respond(request.database, request.body, request.auth)
        transport = self.transport
        self.task = None
        if transport is None or transport.is_closing():
            return
        if status == 0:  # HAND_OVER: aiohttp serves it, from its first byte
            self.buf[:0] = b"".join((request.head, b"\r\n\r\n", request.body))
            self._hand_over()
            return
        close = request.close or self.eof
        transport.write(response_bytes(status, body, headers, self.fast.date(), close))
        if self.fast.access_log is not None:
            path = "/query" if request.database is None else f"/databases/{request.database}"
            self.fast.access_log.debug('"POST %s HTTP/1.1" %d %d (fast path)', path, status, len(body))
        if close:
            transport.close()
            return
        limits = self.fast.limits
        if self.buf:  # the next request is under way (pipelined): its head has the header timeout
            self.deadline = asyncio.get_running_loop().time() + limits.header_timeout
        else:
            self.idle = True
            self.deadline = asyncio.get_running_loop().time() + limits.keepalive_timeout
        self._next()

    def _hand_over(self) -> None:
        """From here on aiohttp serves this connection, starting with the bytes not yet served."""
        transport = self.transport
        assert transport is not None
        self._forget()
        self.transport = None
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
