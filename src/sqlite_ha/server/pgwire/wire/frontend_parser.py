"""``FrontendParser``: the sans-IO state machine that turns what a client sends into frontend messages.

It never touches a socket, so every framing and validation rule is testable byte by byte, and the asyncio
adapter stays a thin loop of ``feed`` / ``next_message``. The body decoders live here, beside the parser,
rather than with the message classes: ``next_message`` inlines the common case (a whole, well-sized message
of a known type) and Bind and Execute have fast paths, and a prepared point read spends most of its decoding
in them, so the tables and structs they use are globals of this one module, reached without an extra call or
a lookup through another module.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import NamedTuple

from sqlite_ha.server.pgwire.wire.frontend_messages import (
    Bind,
    CancelRequest,
    Close,
    CopyData,
    CopyDone,
    CopyFail,
    Describe,
    Execute,
    Flush,
    FrontendMessage,
    FunctionCall,
    GSSENCRequest,
    Parse,
    PasswordMessage,
    Query,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
)
from sqlite_ha.server.pgwire.wire.protocol import (
    CANCEL_REQUEST_CODE,
    FEATURE_NOT_SUPPORTED,
    GSSENC_REQUEST_CODE,
    PROGRAM_LIMIT_EXCEEDED,
    SSL_REQUEST_CODE,
    BodyReader,
    ProtocolError,
)

# PostgreSQL's own caps (MAX_STARTUP_PACKET_LENGTH, PQ_SMALL_MESSAGE_LIMIT, PG_MAX_AUTH_TOKEN_LENGTH): a
# client has no business sending more, and a lower cap keeps an unauthenticated peer from making us buffer.
MAX_STARTUP_PACKET = 10_000
SMALL_MESSAGE_LIMIT = 10_000
MAX_AUTH_TOKEN = 65_535

_I16 = struct.Struct("!h")
_U16 = struct.Struct("!H")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")


# --- body decoding ---------------------------------------------------------------------------------------


def _kind(r: BodyReader) -> str:
    kind = r.byte("kind")
    if kind not in ("S", "P"):
        raise r.fail(f"kind {kind!r} is neither 'S' (statement) nor 'P' (portal)")
    return kind


def _decode_query(r: BodyReader) -> Query:
    sql = r.cstring("query string")
    r.end()
    return Query(sql=sql)


def _decode_parse(r: BodyReader) -> Parse:
    name = r.cstring("statement name")
    sql = r.cstring("query string")
    count = r.number(_U16, "parameter type count")
    left = len(r.data) - r.pos
    if 4 * count > left:
        raise r.fail(f"{count} parameter types announced, but the message ends after {left // 4}")
    oids: tuple[int, ...] = struct.unpack_from(f"!{count}I", r.data, r.pos)
    r.pos += 4 * count
    r.end()
    return Parse(name=name, sql=sql, param_oids=oids)


_COUNTED_I16: dict[int, struct.Struct] = {n: struct.Struct(f"!{n}h") for n in range(8)}


def _bind_fast(data: bytes) -> Bind | None:
    """A well-formed Bind in one pass (most of a point read's decoding was ``BodyReader`` calls); None for
    anything unusual or wrong, which ``_decode_bind`` then decodes or explains field by field."""
    try:
        a = data.index(0)
        b = data.index(0, a + 1)
        pos = b + 1
        n = (data[pos] << 8) | data[pos + 1]
        pos += 2
        param_formats: tuple[int, ...] = _COUNTED_I16[n].unpack_from(data, pos)
        pos += 2 * n
        count = (data[pos] << 8) | data[pos + 1]
        pos += 2
        params: list[bytes | None] = []
        for _ in range(count):
            (size,) = _I32.unpack_from(data, pos)
            pos += 4
            if size < 0:
                if size != -1:
                    return None
                params.append(None)
            else:
                params.append(data[pos : pos + size])
                pos += size
        n = (data[pos] << 8) | data[pos + 1]
        pos += 2
        result_formats: tuple[int, ...] = _COUNTED_I16[n].unpack_from(data, pos)
        if pos + 2 * n != len(data) or len(param_formats) not in (0, 1, count):
            return None
        for code in param_formats + result_formats:
            if code not in (0, 1):
                return None
        return Bind(
            portal=data[:a].decode(),
            statement=data[a + 1 : b].decode(),
            param_formats=param_formats,
            params=tuple(params),
            result_formats=result_formats,
        )
    except (ValueError, IndexError, KeyError, struct.error):  # UnicodeDecodeError is a ValueError
        return None


def _decode_bind(r: BodyReader) -> Bind:
    fast = _bind_fast(r.data)
    if fast is not None:
        return fast
    portal = r.cstring("portal name")
    statement = r.cstring("statement name")
    param_formats = r.formats(r.number(_U16, "parameter format count"), "parameter format codes")
    count = r.number(_U16, "parameter value count")
    if len(param_formats) not in (0, 1, count):
        raise r.fail(
            f"{len(param_formats)} parameter format codes for {count} parameter values"
            f" (expected 0, 1 or {count})"
        )
    params = r.values(count, "parameter")
    result_formats = r.formats(r.number(_U16, "result format count"), "result format codes")
    r.end()
    return Bind(
        portal=portal,
        statement=statement,
        param_formats=param_formats,
        params=params,
        result_formats=result_formats,
    )


def _decode_describe(r: BodyReader) -> Describe:
    kind = _kind(r)
    name = r.cstring("name")
    r.end()
    return Describe(kind=kind, name=name)


def _decode_close(r: BodyReader) -> Close:
    kind = _kind(r)
    name = r.cstring("name")
    r.end()
    return Close(kind=kind, name=name)


def _decode_execute(r: BodyReader) -> Execute:
    data = r.data
    if len(data) == 5 and data[0] == 0:  # the unnamed portal, as nearly every client sends it
        return Execute(portal="", max_rows=_I32.unpack_from(data, 1)[0])
    portal = r.cstring("portal name")
    max_rows = r.number(_I32, "row limit")
    r.end()
    return Execute(portal=portal, max_rows=max_rows)


def _decode_copy_fail(r: BodyReader) -> CopyFail:
    message = r.cstring("error message")
    r.end()
    return CopyFail(message=message)


def _decode_function_call(r: BodyReader) -> FunctionCall:
    oid = r.number(_U32, "function OID")
    arg_formats = r.formats(r.number(_U16, "argument format count"), "argument format codes")
    count = r.number(_U16, "argument count")
    if len(arg_formats) not in (0, 1, count):
        raise r.fail(
            f"{len(arg_formats)} argument format codes for {count} arguments (expected 0, 1 or {count})"
        )
    args = r.values(count, "argument")
    result_format = r.number(_I16, "result format")
    if result_format not in (0, 1):
        raise r.fail(f"result format {result_format} is neither 0 (text) nor 1 (binary)")
    r.end()
    return FunctionCall(function_oid=oid, arg_formats=arg_formats, args=args, result_format=result_format)


def _empty(message: FrontendMessage) -> Callable[[BodyReader], FrontendMessage]:
    def decode(r: BodyReader) -> FrontendMessage:
        r.end()
        return message

    return decode


def _raw(cls: type[PasswordMessage | CopyData]) -> Callable[[BodyReader], FrontendMessage]:
    return lambda r: cls(data=r.data)


class _Spec(NamedTuple):
    name: str
    decode: Callable[[BodyReader], FrontendMessage]
    limit: int | None  # a cap below max_message_size, or None


# Every message type a frontend may send after startup, by type byte.
_TYPED: dict[int, _Spec] = {
    ord("Q"): _Spec("Query", _decode_query, None),
    ord("P"): _Spec("Parse", _decode_parse, None),
    ord("B"): _Spec("Bind", _decode_bind, None),
    ord("D"): _Spec("Describe", _decode_describe, SMALL_MESSAGE_LIMIT),
    ord("E"): _Spec("Execute", _decode_execute, SMALL_MESSAGE_LIMIT),
    ord("S"): _Spec("Sync", _empty(Sync()), SMALL_MESSAGE_LIMIT),
    ord("H"): _Spec("Flush", _empty(Flush()), SMALL_MESSAGE_LIMIT),
    ord("C"): _Spec("Close", _decode_close, SMALL_MESSAGE_LIMIT),
    ord("X"): _Spec("Terminate", _empty(Terminate()), SMALL_MESSAGE_LIMIT),
    ord("p"): _Spec("PasswordMessage", _raw(PasswordMessage), MAX_AUTH_TOKEN),
    ord("d"): _Spec("CopyData", _raw(CopyData), None),
    ord("c"): _Spec("CopyDone", _empty(CopyDone()), SMALL_MESSAGE_LIMIT),
    ord("f"): _Spec("CopyFail", _decode_copy_fail, None),
    ord("F"): _Spec("FunctionCall", _decode_function_call, None),
}


def _decode_startup(packet: bytes) -> FrontendMessage:
    """Decode a whole startup packet (length included); every problem here is fatal."""
    length = len(packet)
    (code,) = _U32.unpack_from(packet, 4)
    special = {SSL_REQUEST_CODE: 8, GSSENC_REQUEST_CODE: 8, CANCEL_REQUEST_CODE: 16}.get(code)
    if special is not None:
        if length != special:
            name = {SSL_REQUEST_CODE: "SSLRequest", GSSENC_REQUEST_CODE: "GSSENCRequest"}.get(
                code, "CancelRequest"
            )
            raise ProtocolError(f"{name} packet has length {length}, expected {special}")
        if code == SSL_REQUEST_CODE:
            return SSLRequest()
        if code == GSSENC_REQUEST_CODE:
            return GSSENCRequest()
        pid, secret = struct.unpack_from("!II", packet, 8)
        return CancelRequest(pid=pid, secret=secret)
    major, minor = code >> 16, code & 0xFFFF
    if major != 3:
        raise ProtocolError(
            f"unsupported frontend protocol {major}.{minor}: this server speaks protocol 3.0",
            FEATURE_NOT_SUPPORTED,
        )
    r = BodyReader(packet, "StartupMessage")
    r.pos = 8
    params: dict[str, str] = {}
    try:
        while True:
            if r.pos == length:
                raise r.fail("ends without the NUL that terminates the parameter list")
            key = r.cstring("parameter name")
            if key == "":
                break
            params[key] = r.cstring(f"value of parameter {key!r}")
        r.end()
    except ProtocolError as exc:
        exc.fatal = True  # no session exists yet to report a recoverable error to
        raise
    return StartupMessage(protocol=code, params=params)


# --- the parser ------------------------------------------------------------------------------------------


class Phase(enum.Enum):
    STARTUP = "startup"  # untyped packets: length, then a protocol code
    TYPED = "typed"  # type byte, then length
    CLOSED = "closed"  # after CancelRequest or Terminate: nothing more may arrive
    FAILED = "failed"  # a fatal error lost the framing; it is raised again on every call


# The one transition table: the phase after a message of this class (absent: phase unchanged).
_TRANSITIONS: dict[type, Phase] = {
    StartupMessage: Phase.TYPED,
    CancelRequest: Phase.CLOSED,
    Terminate: Phase.CLOSED,
}


class FrontendParser:
    """Incremental parser of everything a client sends, from the first startup packet to Terminate.

    ``next_message`` returns ``None`` when it needs more bytes. After an SSLRequest that the server accepts,
    ``buffered`` must be 0: bytes that arrived before the TLS handshake were not encrypted, and accepting
    them lets a man in the middle inject commands (CVE-2021-23214).
    """

    __slots__ = ("_buf", "_error", "_last", "_limits", "_max", "_pos", "phase")

    def __init__(self, max_message_size: int = 64 * 1024 * 1024) -> None:
        if max_message_size < 5:
            raise ValueError(f"max_message_size must be at least 5 bytes, not {max_message_size}")
        self._buf = bytearray()
        self._pos = 0
        self._max = max_message_size
        self._error: ProtocolError | None = None
        self._last = ""
        # per type byte: the spec and the size limit that applies with this parser's max_message_size
        self._limits = {
            code: (spec, max_message_size if spec.limit is None else min(spec.limit, max_message_size))
            for code, spec in _TYPED.items()
        }
        self.phase = Phase.STARTUP

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as messages."""
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if self.phase is not Phase.FAILED:
            self._buf += data

    def next_message(self) -> FrontendMessage | None:
        if self.phase is Phase.TYPED:
            # The common case inline (it is most of a point read's decoding): a whole, well-sized message
            # of a known type. Anything else takes the careful path below, which explains what is wrong.
            buf, pos = self._buf, self._pos
            if len(buf) - pos < 5:
                if pos == len(buf):
                    return None
            else:
                known = self._limits.get(buf[pos])
                if known is not None:
                    (length,) = _I32.unpack_from(buf, pos + 1)
                    end = pos + 1 + length
                    if 4 <= length <= known[1] and end <= len(buf):
                        spec = known[0]
                        body = bytes(buf[pos + 5 : end])
                        if end == len(buf):
                            buf.clear()
                            self._pos = 0
                        elif end >= 65536 and 2 * end >= len(buf):
                            del buf[:end]
                            self._pos = 0
                        else:
                            self._pos = end
                        decoded = spec.decode(BodyReader(body, spec.name))
                        self._last = spec.name
                        if type(decoded) is Terminate:
                            self.phase = Phase.CLOSED
                        return decoded
        if self._error is not None:
            raise self._error
        try:
            if self.phase is Phase.TYPED:
                message = self._next_typed()
            elif self.phase is Phase.STARTUP:
                message = self._next_startup()
            elif self.buffered:
                raise ProtocolError(f"{self.buffered} bytes received after {self._last}")
            else:
                return None
        except ProtocolError as exc:
            if exc.fatal:
                self._error = exc
                self.phase = Phase.FAILED
                self._buf.clear()
                self._pos = 0
            raise
        if message is not None:
            self._last = type(message).__name__
            phase = _TRANSITIONS.get(type(message))
            if phase is not None:
                self.phase = phase
        return message

    def _take(self, start: int, end: int) -> bytes:
        """Copy out ``buf[start:end]`` and consume through ``end``, compacting now and then."""
        buf = self._buf
        with memoryview(buf) as view:
            body = bytes(view[start:end])
        if end == len(buf):
            buf.clear()
            self._pos = 0
        elif end >= 65536 and 2 * end >= len(buf):
            del buf[:end]
            self._pos = 0
        else:
            self._pos = end
        return body

    def _next_startup(self) -> FrontendMessage | None:
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 4:
            return None
        (length,) = _I32.unpack_from(buf, pos)
        if length < 8:
            raise ProtocolError(
                f"invalid startup packet length {length}: at least 8 (length and protocol code)"
            )
        limit = min(MAX_STARTUP_PACKET, self._max)
        if length > limit:
            raise ProtocolError(
                f"startup packet of {length} bytes exceeds the limit of {limit} bytes", PROGRAM_LIMIT_EXCEEDED
            )
        if len(buf) - pos < length:
            return None
        return _decode_startup(self._take(pos, pos + length))

    def _next_typed(self) -> FrontendMessage | None:
        buf, pos = self._buf, self._pos
        available = len(buf) - pos
        if available < 1:
            return None
        spec = _TYPED.get(buf[pos])
        if spec is None:
            raise ProtocolError(f"invalid frontend message type {chr(buf[pos])!r} (0x{buf[pos]:02x})")
        if available < 5:
            return None
        (length,) = _I32.unpack_from(buf, pos + 1)
        if length < 4:
            raise ProtocolError(
                f"{spec.name} message has invalid length {length} (it counts itself: at least 4)"
            )
        limit = self._max if spec.limit is None else min(spec.limit, self._max)
        if length > limit:
            raise ProtocolError(
                f"{spec.name} message of {length} bytes exceeds the limit of {limit} bytes",
                PROGRAM_LIMIT_EXCEEDED,
            )
        if available < 1 + length:
            return None
        body = self._take(pos + 5, pos + 1 + length)
        return spec.decode(BodyReader(body, spec.name))
