"""Sans-IO codec of the PostgreSQL frontend/backend protocol 3.0: bytes in, messages out, and back.

The parser never touches a socket, so every framing and validation rule is testable byte by byte, and the
asyncio adapter stays a thin loop of ``feed`` / ``next_message`` / ``write``. Two kinds of errors matter to
the session, and ``ProtocolError.fatal`` tells them apart the way PostgreSQL does: a broken frame (bad length,
unknown type byte, oversized message, anything in the startup phase) leaves no way to find the next message,
so the connection must close; a well-framed message with bad content (a string without its NUL, invalid
UTF-8, a bad format code) has already been consumed, so the session reports an ErrorResponse and, in the
extended protocol, skips to the next Sync.

Backend encoders return complete messages as ``bytes``; ``data_row`` is the hot path of every result set.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

# SQLSTATE codes this module raises (PostgreSQL's errcodes.txt)
PROTOCOL_VIOLATION = "08P01"
PROGRAM_LIMIT_EXCEEDED = "54000"
CHARACTER_NOT_IN_REPERTOIRE = "22021"
FEATURE_NOT_SUPPORTED = "0A000"

PROTOCOL_3_0 = 196608  # major 3 << 16 | minor 0
SSL_REQUEST_CODE = 80877103  # 1234 << 16 | 5679
GSSENC_REQUEST_CODE = 80877104  # 1234 << 16 | 5680
CANCEL_REQUEST_CODE = 80877102  # 1234 << 16 | 5678
# PostgreSQL's own caps (MAX_STARTUP_PACKET_LENGTH, PQ_SMALL_MESSAGE_LIMIT, PG_MAX_AUTH_TOKEN_LENGTH): a
# client has no business sending more, and a lower cap keeps an unauthenticated peer from making us buffer.
MAX_STARTUP_PACKET = 10_000
SMALL_MESSAGE_LIMIT = 10_000
MAX_AUTH_TOKEN = 65_535


class ProtocolError(Exception):
    """The peer broke the protocol; ``code`` is the SQLSTATE to report, ``fatal`` says the frame is lost."""

    def __init__(self, message: str, code: str = PROTOCOL_VIOLATION, *, fatal: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.fatal = fatal


# --- frontend messages -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StartupMessage:
    """``protocol`` is the full code (3.0 = 196608); a newer 3.x minor asks for NegotiateProtocolVersion."""

    protocol: int
    params: dict[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class SSLRequest:
    """Answered with the single byte ``ssl_refused()``/``ssl_accepted()``; a new startup packet follows."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GSSENCRequest:
    """Answered like SSLRequest; we refuse it and the client continues in the clear or gives up."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelRequest:
    pid: int
    secret: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    sql: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Parse:
    name: str
    sql: str
    param_oids: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Bind:
    """``param_formats`` holds 0, 1 or len(params) codes, exactly as sent; the session expands them."""

    portal: str
    statement: str
    param_formats: tuple[int, ...]
    params: tuple[bytes | None, ...]
    result_formats: tuple[int, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Describe:
    kind: str  # 'S' statement or 'P' portal
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Execute:
    portal: str
    max_rows: int  # 0 (or negative, as PostgreSQL reads it) means no limit


@dataclass(frozen=True, slots=True, kw_only=True)
class Sync:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Flush:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    kind: str  # 'S' statement or 'P' portal
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Terminate:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class PasswordMessage:
    """Raw body of 'p': a password, a SASLInitialResponse or a SASLResponse; only the session knows which."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyData:
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyDone:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyFail:
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionCall:
    """Parsed in full so the session can refuse it with feature_not_supported and keep the connection."""

    function_oid: int
    arg_formats: tuple[int, ...]
    args: tuple[bytes | None, ...]
    result_format: int


FrontendMessage = (
    StartupMessage
    | SSLRequest
    | GSSENCRequest
    | CancelRequest
    | Query
    | Parse
    | Bind
    | Describe
    | Execute
    | Sync
    | Flush
    | Close
    | Terminate
    | PasswordMessage
    | CopyData
    | CopyDone
    | CopyFail
    | FunctionCall
)


# --- body decoding ---------------------------------------------------------------------------------------

_I16 = struct.Struct("!h")
_U16 = struct.Struct("!H")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")


class _Reader:
    """Cursor over one message body; every error names the message and the field that broke."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def fail(self, problem: str, code: str = PROTOCOL_VIOLATION) -> ProtocolError:
        return ProtocolError(f"{self.what} message: {problem}", code, fatal=False)

    def need(self, n: int, field: str) -> None:
        left = len(self.data) - self.pos
        if n > left:
            raise self.fail(f"ends inside {field} ({n} bytes needed, {left} left)")

    def cstring(self, field: str) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise self.fail(f"{field} is not NUL-terminated")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(
                f"{field} is not valid UTF-8 ({exc.reason} at byte {exc.start})", CHARACTER_NOT_IN_REPERTOIRE
            ) from exc

    def byte(self, field: str) -> str:
        self.need(1, field)
        self.pos += 1
        return chr(self.data[self.pos - 1])

    def number(self, s: struct.Struct, field: str) -> int:
        self.need(s.size, field)
        (value,) = s.unpack_from(self.data, self.pos)
        self.pos += s.size
        return int(value)

    def formats(self, count: int, field: str) -> tuple[int, ...]:
        self.need(2 * count, f"{count} {field}")
        codes: tuple[int, ...] = struct.unpack_from(f"!{count}h", self.data, self.pos)
        self.pos += 2 * count
        for i, code in enumerate(codes):
            if code not in (0, 1):
                raise self.fail(f"{field[:-1]} {code} at position {i} is neither 0 (text) nor 1 (binary)")
        return codes

    def values(self, count: int, noun: str) -> tuple[bytes | None, ...]:
        """Length-prefixed values, -1 meaning NULL, as in Bind and FunctionCall."""
        data, pos, size = self.data, self.pos, len(self.data)
        out: list[bytes | None] = []
        for i in range(count):
            if pos + 4 > size:
                raise self.fail(f"{count} {noun} values announced, but the message ends after {i}")
            (n,) = _I32.unpack_from(data, pos)
            pos += 4
            if n == -1:
                out.append(None)
                continue
            if n < -1:
                raise self.fail(f"{noun} value {i} has negative length {n} (only -1, for NULL, is allowed)")
            if pos + n > size:
                raise self.fail(
                    f"{noun} value {i} announces {n} bytes, but only {size - pos} are left in the message"
                )
            out.append(data[pos : pos + n])
            pos += n
        self.pos = pos
        return tuple(out)

    def end(self) -> None:
        extra = len(self.data) - self.pos
        if extra:
            raise self.fail(f"{extra} bytes of trailing garbage after the last field")


def _kind(r: _Reader) -> str:
    kind = r.byte("kind")
    if kind not in ("S", "P"):
        raise r.fail(f"kind {kind!r} is neither 'S' (statement) nor 'P' (portal)")
    return kind


def _decode_query(r: _Reader) -> Query:
    sql = r.cstring("query string")
    r.end()
    return Query(sql=sql)


def _decode_parse(r: _Reader) -> Parse:
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
    """A well-formed Bind in one pass (most of a point read's decoding was ``_Reader`` calls); None for
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


def _decode_bind(r: _Reader) -> Bind:
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


def _decode_describe(r: _Reader) -> Describe:
    kind = _kind(r)
    name = r.cstring("name")
    r.end()
    return Describe(kind=kind, name=name)


def _decode_close(r: _Reader) -> Close:
    kind = _kind(r)
    name = r.cstring("name")
    r.end()
    return Close(kind=kind, name=name)


def _decode_execute(r: _Reader) -> Execute:
    data = r.data
    if len(data) == 5 and data[0] == 0:  # the unnamed portal, as nearly every client sends it
        return Execute(portal="", max_rows=_I32.unpack_from(data, 1)[0])
    portal = r.cstring("portal name")
    max_rows = r.number(_I32, "row limit")
    r.end()
    return Execute(portal=portal, max_rows=max_rows)


def _decode_copy_fail(r: _Reader) -> CopyFail:
    message = r.cstring("error message")
    r.end()
    return CopyFail(message=message)


def _decode_function_call(r: _Reader) -> FunctionCall:
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


def _empty(message: FrontendMessage) -> Callable[[_Reader], FrontendMessage]:
    def decode(r: _Reader) -> FrontendMessage:
        r.end()
        return message

    return decode


def _raw(cls: type[PasswordMessage | CopyData]) -> Callable[[_Reader], FrontendMessage]:
    return lambda r: cls(data=r.data)


class _Spec(NamedTuple):
    name: str
    decode: Callable[[_Reader], FrontendMessage]
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
    r = _Reader(packet, "StartupMessage")
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
                        decoded = spec.decode(_Reader(body, spec.name))
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
        return spec.decode(_Reader(body, spec.name))


# --- backend encoders ------------------------------------------------------------------------------------

_pack_i32 = _I32.pack
_HEADER = struct.Struct("!ci").pack
_ROW_HEADER = struct.Struct("!cih").pack
_FIELD = struct.Struct("!IhIhih").pack
_LENGTH_PREFIX = tuple(_pack_i32(n) for n in range(256))  # value lengths up to 255 skip struct.pack
_NULL = _pack_i32(-1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """One column of a RowDescription; ``type_size`` is pg_type.typlen (-1 for variable length)."""

    name: str
    type_oid: int
    type_size: int
    type_modifier: int = -1
    format: int = 0
    table_oid: int = 0
    column: int = 0


def _cstr(value: str) -> bytes:
    raw = value.encode("utf-8")
    if b"\0" in raw:
        raise ValueError(f"string {value!r} contains NUL, which the protocol cannot carry")
    return raw + b"\0"


def _message(type_byte: bytes, body: bytes) -> bytes:
    return _HEADER(type_byte, len(body) + 4) + body


def authentication_ok() -> bytes:
    return b"R\0\0\0\x08\0\0\0\0"


def authentication_cleartext() -> bytes:
    return b"R\0\0\0\x08\0\0\0\x03"


def authentication_md5(salt: bytes) -> bytes:
    if len(salt) != 4:
        raise ValueError(f"an MD5 salt is 4 bytes, not {len(salt)}")
    return b"R\0\0\0\x0c\0\0\0\x05" + salt


def authentication_sasl(mechanisms: list[str]) -> bytes:
    return _message(b"R", _pack_i32(10) + b"".join(_cstr(m) for m in mechanisms) + b"\0")


def authentication_sasl_continue(data: bytes) -> bytes:
    return _message(b"R", _pack_i32(11) + data)


def authentication_sasl_final(data: bytes) -> bytes:
    return _message(b"R", _pack_i32(12) + data)


def parameter_status(name: str, value: str) -> bytes:
    return _message(b"S", _cstr(name) + _cstr(value))


def backend_key_data(pid: int, secret: int) -> bytes:
    """Both are sent as unsigned 32-bit integers, the way CancelRequest decodes them."""
    return b"K\0\0\0\x0c" + struct.pack("!II", pid, secret)


def negotiate_protocol_version(newest_minor: int, unrecognized: Sequence[str]) -> bytes:
    """Answer a 3.x StartupMessage with a newer minor version or ``_pq_.`` options we do not know."""
    body = struct.pack("!ii", newest_minor, len(unrecognized)) + b"".join(_cstr(o) for o in unrecognized)
    return _message(b"v", body)


_READY = {status: b"Z\0\0\0\x05" + status.encode() for status in ("I", "T", "E")}


def ready_for_query(status: str) -> bytes:
    """``status`` is 'I' (idle), 'T' (in a transaction) or 'E' (in a failed transaction)."""
    try:
        return _READY[status]
    except KeyError:
        raise ValueError(f"transaction status must be 'I', 'T' or 'E', not {status!r}") from None


def row_description(fields: Sequence[Field]) -> bytes:
    parts = [b"", _U16.pack(len(fields))]
    for f in fields:
        parts.append(_cstr(f.name))
        parts.append(_FIELD(f.table_oid, f.column, f.type_oid, f.type_size, f.type_modifier, f.format))
    parts[0] = _HEADER(b"T", sum(map(len, parts)) + 4)
    return b"".join(parts)


def data_row(values: Sequence[bytes | None]) -> bytes:
    """One result row; each value is already encoded in its column's format, None meaning NULL."""
    prefix, pack, null = _LENGTH_PREFIX, _pack_i32, _NULL
    parts = [b""]
    append = parts.append
    size = 6
    for value in values:
        if value is None:
            append(null)
            size += 4
        else:
            n = len(value)
            append(prefix[n] if n < 256 else pack(n))
            append(value)
            size += 4 + n
    parts[0] = _ROW_HEADER(b"D", size, len(values))
    return b"".join(parts)


def command_complete(tag: str) -> bytes:
    return _message(b"C", _cstr(tag))


def empty_query_response() -> bytes:
    return b"I\0\0\0\x04"


def _report(
    type_byte: bytes,
    severity: str,
    code: str,
    message: str,
    detail: str | None,
    hint: str | None,
    position: int | None,
    where: str | None = None,
) -> bytes:
    """Error and notice bodies; a NUL in the text is escaped, since failing to report an error is worse."""
    if len(code) != 5 or not code.isascii() or not code.isalnum():
        raise ValueError(f"SQLSTATE must be 5 ASCII letters or digits, not {code!r}")
    fields = [("S", severity), ("V", severity), ("C", code), ("M", message)]
    if detail is not None:
        fields.append(("D", detail))
    if hint is not None:
        fields.append(("H", hint))
    if position is not None:
        fields.append(("P", str(position)))
    if where is not None:
        fields.append(("W", where))
    body = b"".join(
        key.encode() + value.replace("\0", "\\0").encode("utf-8", "replace") + b"\0" for key, value in fields
    )
    return _message(type_byte, body + b"\0")


def error_response(
    severity: str,
    code: str,
    message: str,
    *,
    detail: str | None = None,
    hint: str | None = None,
    position: int | None = None,
    where: str | None = None,
) -> bytes:
    """``severity`` is ERROR, FATAL or PANIC; ``position`` is a 1-based character index into the query;
    ``where`` is the context (psql's ``CONTEXT:`` line, e.g. ``COPY t, line 3``)."""
    return _report(b"E", severity, code, message, detail, hint, position, where)


def notice_response(
    severity: str,
    code: str,
    message: str,
    *,
    detail: str | None = None,
    hint: str | None = None,
    position: int | None = None,
) -> bytes:
    """``severity`` is WARNING, NOTICE, DEBUG, INFO or LOG."""
    return _report(b"N", severity, code, message, detail, hint, position)


def parse_complete() -> bytes:
    return b"1\0\0\0\x04"


def bind_complete() -> bytes:
    return b"2\0\0\0\x04"


def close_complete() -> bytes:
    return b"3\0\0\0\x04"


def no_data() -> bytes:
    return b"n\0\0\0\x04"


def portal_suspended() -> bytes:
    return b"s\0\0\0\x04"


def parameter_description(oids: Sequence[int]) -> bytes:
    return _message(b"t", struct.pack(f"!H{len(oids)}I", len(oids), *oids))


def ssl_refused() -> bytes:
    """Not a framed message: the single byte that answers SSLRequest and GSSENCRequest."""
    return b"N"


def ssl_accepted() -> bytes:
    return b"S"


def copy_in_response(binary: bool, columns: int) -> bytes:
    """Start of COPY FROM STDIN: the client now sends CopyData until CopyDone or CopyFail."""
    code = 1 if binary else 0
    return _message(b"G", struct.pack(f"!bH{columns}H", code, columns, *([code] * columns)))


def copy_out_response(binary: bool, columns: int) -> bytes:
    """Start of COPY TO STDOUT: CopyData messages follow, then CopyDone."""
    code = 1 if binary else 0
    return _message(b"H", struct.pack(f"!bH{columns}H", code, columns, *([code] * columns)))


def copy_data(data: bytes) -> bytes:
    return _HEADER(b"d", len(data) + 4) + data


def copy_done() -> bytes:
    return b"c\0\0\0\x04"
