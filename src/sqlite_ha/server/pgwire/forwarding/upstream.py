"""The connection a non-writer's session opens to the writer's PostgreSQL port, to run its writes there.

It is a PostgreSQL client of the writer, with three differences from any other: the startup message says
``ha.forwarded_by=<this node>``, the password is replaced by the node's answer to the writer's challenge (see
``security/node_auth.sign_session``), and what the writer answers is mostly not read but passed on, byte for
byte, to the session's client (``relay``), so that results, errors and SQLSTATEs reach it unchanged.

Passing bytes on needs to know which answer belongs to which request, because the session also sends
requests of its own that the client never made (the block's BEGIN, a prepared statement the writer has not
seen yet) and whose answers must be swallowed. Each request sent is a ``_Request`` in a queue; every backend
message belongs to the oldest one, and the table ``_LAST`` says which message ends which request. An
ErrorResponse ends the request it answers and, in the extended protocol, every later one up to the next
Sync, as the server skips them: that is PostgreSQL's rule, so the queue follows the writer exactly.

The writer is read all the time by a task of its own (``_pump``), so a client that pipelines thousands of
messages before its Sync never deadlocks with a writer that waits for its answers to be read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlite_ha.security.keys import MacKey
from sqlite_ha.security.node_auth import sign_session
from sqlite_ha.server.pgwire.wire import codec
from sqlite_ha.server.pgwire.wire.backend_parser import (
    BackendParser,
    decode_authentication,
    decode_backend_key_data,
    decode_error_response,
    decode_parameter_status,
    decode_ready_for_query,
    encode_frontend,
)

log = logging.getLogger(__name__)

FORWARDED_BY = "ha.forwarded_by"  # the startup parameter that names the node forwarding a session
_I32 = struct.Struct("!i")
_READ_SIZE = 256 * 1024

# The backend messages that end the answer to each kind of frontend message (an ErrorResponse also ends
# every kind but a simple Query, which always ends with ReadyForQuery).
_LAST = {
    "Q": frozenset("Z"),
    "P": frozenset("1"),
    "B": frozenset("2"),
    "D": frozenset("Tn"),
    "E": frozenset("CIs"),
    "C": frozenset("3"),
    "S": frozenset("Z"),
}


class UpstreamError(Exception):
    """The writer could not be reached or refused the session; ``code`` the SQLSTATE it said, if any."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(slots=True)
class _Request:
    kind: str  # the frontend message's type byte
    relay: bool  # its answers go to the client; False: the session's own request, its answers swallowed


class Upstream:
    """One forwarded session on the writer; ``relay`` receives the bytes meant for the client."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        target: tuple[str, int],
        relay: Callable[[bytes], None],
        on_seq: Callable[[int], None],
        on_lost: Callable[[], None] = lambda: None,
    ) -> None:
        self.target = target
        self.database = ""  # the database the writer's session is on
        self.pid = 0
        self.secret = 0
        self.status = "I"  # of the writer's last ReadyForQuery
        self.lost: str | None = None  # why the connection ended, once it has
        self.copy_in = False  # the writer waits for CopyData from the client
        self.swallowed_error: bytes | None = None  # an ErrorResponse to one of the session's own requests
        self._reader = reader
        self._writer = writer
        self._relay = relay
        self._on_seq = on_seq
        self._on_lost = on_lost
        self._parser = BackendParser()
        self._requests: deque[_Request] = deque()
        self._at_rest = True  # nothing sent since the last ReadyForQuery, and every request answered
        self._progress = asyncio.Event()
        self._pump_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------------------------ opening
    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        params: dict[str, str],
        key: MacKey,
        node: str,
        timeout: float,
        relay: Callable[[bytes], None],
        on_seq: Callable[[int], None],
        on_lost: Callable[[], None],
    ) -> Upstream:
        """Open a forwarded session: TLS if the writer offers it, the node's answer to its challenge, up to
        the first ReadyForQuery. ``UpstreamError`` when it cannot be opened; ``OSError``/``TimeoutError``
        when the writer does not answer."""
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        try:
            up = cls(reader, writer, target=(host, port), relay=relay, on_seq=on_seq, on_lost=on_lost)
            await asyncio.wait_for(up._start(params, key, node), timeout)
        except BaseException:
            writer.close()
            raise
        up._pump_task = asyncio.get_running_loop().create_task(up._pump(), name=f"pg-upstream-{host}:{port}")
        return up

    async def _start(self, params: dict[str, str], key: MacKey, node: str) -> None:
        writer = self._writer
        # TLS when the writer offers it. The writer's certificate is not verified (nodes have no CA for each
        # other's PostgreSQL certificates): TLS keeps the traffic from passive observers; the session itself
        # is authenticated by the node's answer, which no one can make or replay without the key.
        writer.write(encode_frontend(codec.SSLRequest()))
        await writer.drain()
        if await self._reader.readexactly(1) == b"S":
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            await writer.start_tls(context)
        writer.write(encode_frontend(codec.StartupMessage(protocol=codec.PROTOCOL_3_0, params=params)))
        await writer.drain()
        user, database = params.get("user", ""), params.get("database", "")
        while True:
            type_, body = await self._next()
            if type_ == "R":
                code, rest = decode_authentication(body)
                if code == 5:  # the writer's challenge (AuthenticationMD5Password's salt)
                    answer = sign_session(key, node, user, database, rest[:4]).encode() + b"\0"
                    writer.write(encode_frontend(codec.PasswordMessage(data=answer)))
                    await writer.drain()
                elif code != 0:
                    raise UpstreamError(f"the writer asked for authentication method {code}, not a node's")
            elif type_ == "E":
                fields = decode_error_response(body)
                raise UpstreamError(fields.get("M", "refused"), fields.get("C"))
            elif type_ == "K":
                self.pid, self.secret = decode_backend_key_data(body)
            elif type_ == "Z":
                self.status = decode_ready_for_query(body)
                self.database = database
                return

    async def _next(self) -> tuple[str, bytes]:
        while (message := self._parser.next_message()) is None:
            data = await self._reader.read(_READ_SIZE)
            if not data:
                raise UpstreamError("the writer closed the connection during the start of the session")
            self._parser.feed(data)
        return message

    # ------------------------------------------------------------------------------------ requests
    def send(self, messages: Sequence[codec.FrontendMessage], *, relay: bool = True) -> None:
        """Send messages in order; their answers are relayed to the client, or swallowed (``relay=False``:
        the session's own requests, whose first error lands in ``swallowed_error``)."""
        if self.lost is not None:
            return
        for msg in messages:
            data = encode_frontend(msg)
            kind = chr(data[0])
            if kind in _LAST:
                self._requests.append(_Request(kind, relay))
            if isinstance(msg, codec.CopyDone | codec.CopyFail):
                self.copy_in = False
            self._writer.write(data)
        self._at_rest = False

    @property
    def at_rest(self) -> bool:
        """Every request answered, the last answer a ReadyForQuery: ``status`` is the writer's state now."""
        return self._at_rest

    async def settle(self) -> None:
        """Until every request sent is answered (or the writer waits for COPY data, or the link is lost)."""
        with contextlib.suppress(ConnectionError):
            await self._writer.drain()
        while self._requests and not self.copy_in and self.lost is None:
            self._progress.clear()
            await self._progress.wait()

    async def cancel(self) -> None:
        """A CancelRequest for the writer's session, on a connection of its own (PostgreSQL's way)."""
        host, port = self.target
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5.0)
        except (OSError, TimeoutError):
            return
        writer.write(encode_frontend(codec.CancelRequest(pid=self.pid, secret=self.secret)))
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(writer.drain(), 5.0)
            await asyncio.wait_for(reader.read(1), 5.0)  # the server closes it once handled
        writer.close()

    async def close(self) -> None:
        """End the session on the writer (which rolls back a block still open there)."""
        if self.lost is None:
            self.lost = "closed"
            with contextlib.suppress(Exception):
                self._writer.write(encode_frontend(codec.Terminate()))
        self._writer.close()
        if self._pump_task is not None:
            self._pump_task.cancel()
            with contextlib.suppress(BaseException):
                await self._pump_task

    # ------------------------------------------------------------------------------------ answers
    async def _pump(self) -> None:
        try:
            while True:
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    self._end("the writer closed the connection")
                    return
                self._parser.feed(data)
                out = self._take()
                if out:
                    self._relay(out)
                self._progress.set()
        except (OSError, codec.ProtocolError) as e:
            self._end(f"the connection to the writer failed: {e}")
        except asyncio.CancelledError:
            self._end("closed")
            raise

    def _end(self, why: str) -> None:
        if self.lost is None:
            self.lost = why
            log.info("forwarded PostgreSQL session to %s:%d ended: %s", *self.target, why)
            if why != "closed":
                self._on_lost()
        self._progress.set()

    def _take(self) -> bytes:
        """Attribute the complete messages received to their requests; the bytes to relay."""
        out: list[bytes] = []
        requests = self._requests
        while (message := self._parser.next_message()) is not None:
            type_, body = message
            request = requests[0] if requests else None
            if type_ == "S":
                name, value = decode_parameter_status(body)
                if name == "ha.seq" and value.isdigit():
                    self._on_seq(int(value))
            elif type_ == "G":
                self.copy_in = True
            if request is None or request.relay:
                out.append(_framed(type_, body))
            if request is None:
                continue
            if type_ == "E":
                if not request.relay and self.swallowed_error is None:
                    self.swallowed_error = _framed(type_, body)
                if request.kind == "Q":
                    continue  # a simple query's answer goes on to its ReadyForQuery
                requests.popleft()
                while requests and requests[0].kind != "S":  # skipped by the writer up to the next Sync
                    requests.popleft()
                continue
            if type_ in _LAST[request.kind]:
                requests.popleft()
                if type_ == "Z":
                    self.status = decode_ready_for_query(body)
                    self._at_rest = not requests
        return b"".join(out)


def _framed(type_: str, body: bytes) -> bytes:
    return type_.encode() + _I32.pack(len(body) + 4) + body
