"""One client socket of the PostgreSQL listener, as a plain asyncio protocol.

Why not asyncio's streams: a point read is three small messages in and three out, and with streams every
one of them costs a future, a task wake-up and a ``drain``, which was more than the read itself. Here bytes
go straight to the session (``Receiver.received``), which answers what it can on the spot, in this
callback (see ``Session.received``); only what must wait (a commit, a slow read) wakes the session's task.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Protocol, cast

# While the session's task is busy, bytes the client keeps sending pile up in the parser; past this
# much, the socket stops being read until the task catches up (the kernel's buffers then push back).
PAUSE_READING_AT = 256 * 1024


class Receiver(Protocol):
    def received(self, data: bytes) -> None: ...


class Connection(asyncio.Protocol):
    """The socket's bytes and the session's waits; the session is attached once the socket is open."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.receiver: Receiver | None = None
        self.eof = False
        self.encrypted = False  # TLS started (the SSLRequest was accepted and the handshake done)
        self.write_paused = False
        self._reading_paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # ------------------------------------------------------------------------------------ asyncio's side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream transport (uvloop's is no subclass)

    def data_received(self, data: bytes) -> None:
        if self.receiver is not None:
            self.receiver.received(data)

    def eof_received(self) -> bool:
        self.eof = True
        self.wake()
        return False  # close the transport: a client that stops sending is done

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(ConnectionResetError("the client closed the connection"))
        if not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # ------------------------------------------------------------------------------------ the session's side
    @property
    def waiting(self) -> bool:
        """Whether the session's task is parked waiting for the client (``wait``)."""
        return self._waiter is not None

    def wake(self) -> None:
        """Let the session's task go on: there is something to handle, or the client left."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout: float | None = None) -> None:
        """Until ``wake``; TimeoutError after ``timeout`` seconds."""
        if self.eof:
            return
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            if timeout is None:
                await self._waiter
            else:
                await asyncio.wait_for(self._waiter, timeout)
        finally:
            self._waiter = None

    def backlog(self, buffered: int) -> None:
        """The parser holds ``buffered`` unhandled bytes while the task is busy: push back past the limit."""
        if buffered > PAUSE_READING_AT and not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    async def drain(self) -> None:
        if self.eof and self.transport is not None and self.transport.is_closing():
            raise ConnectionResetError("the client closed the connection")
        if not self.write_paused:
            return
        self._drain_waiter = asyncio.get_running_loop().create_future()
        try:
            await self._drain_waiter
        finally:
            self._drain_waiter = None

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Upgrade the socket to TLS in place; this protocol goes on receiving the decrypted bytes."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(self.transport, self, context, server_side=True)
        if transport is None:
            raise ConnectionResetError("the client left during the TLS handshake")
        self.transport = transport
        self.encrypted = True

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
        await self._closed
