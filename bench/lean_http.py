"""A minimal HTTP/1.1 keep-alive client for load generators: one connection, one request at a time.

The benchmarks run the load generator on the same two cores as the cluster it measures, so every
microsecond the client spends is taken from the nodes. aiohttp's client costs about 0.4 ms of CPU per
request here; this one, an ``asyncio.Protocol`` that writes one preformatted request and parses only the
status line and ``Content-Length``, costs a fraction of that, which is what ``wrk`` would cost. It speaks
exactly what a sqlite-ha node answers (``Content-Length`` bodies, no chunking) and fails loudly otherwise.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit


class HTTPError(Exception):
    """The connection broke or the answer was not HTTP/1.1 as expected."""


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.closed: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = HTTPError(f"connection closed: {exc}" if exc else "connection closed by the server")
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(self.closed)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end])
        try:
            status = int(head[9:12])
            length = _content_length(head)
        except ValueError as e:
            waiter.set_exception(HTTPError(f"unreadable answer {head[:200]!r}: {e}"))
            return
        total = end + 4 + length
        if len(self.buffer) < total:
            return
        body = bytes(self.buffer[end + 4 : total])
        del self.buffer[:total]
        waiter.set_result((status, body))


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError("no Content-Length")


def _expire(waiter: asyncio.Future[tuple[int, bytes]], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError(f"no answer within {timeout:g}s"))


class Connection:
    """One keep-alive connection to ``url``'s host; ``post`` sends a request and returns (status, body)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = parts.path or "/"
        self._protocol: _Protocol | None = None
        self._prefix = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(_Protocol, self.host, self.port)
        return protocol

    async def post(self, body: bytes, timeout: float) -> tuple[int, bytes]:
        protocol = self._protocol
        if protocol is None or protocol.closed is not None:
            protocol = self._protocol = await asyncio.wait_for(self._connect(), timeout)
        assert protocol.transport is not None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[tuple[int, bytes]] = loop.create_future()
        protocol.waiter = waiter
        protocol.transport.write(b"%s%d\r\n\r\n%s" % (self._prefix, len(body), body))
        timer = loop.call_later(timeout, _expire, waiter, timeout)  # cheaper than wait_for's task
        try:
            return await waiter
        except BaseException:
            self.close()  # an answer may still come: this connection can no longer be trusted
            raise
        finally:
            timer.cancel()

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()
