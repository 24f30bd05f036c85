"""The client half of the protocol, for tests: encode frontend messages, split and decode backend ones.

Tests of the server drive it with these instead of a real driver when they need to control every byte (a
pipelined batch, a message cut in two, a malformed packet), and the codec's own tests check each encoder by
decoding its output here. Decoders are strict, so a server bug shows up as a ProtocolError, not as a
plausible-looking value.
"""

from __future__ import annotations

import struct

from sqlite_ha.server.pgwire.wire.codec import (
    CANCEL_REQUEST_CODE,
    GSSENC_REQUEST_CODE,
    PROTOCOL_3_0,
    SSL_REQUEST_CODE,
    Bind,
    CancelRequest,
    Close,
    CopyData,
    CopyDone,
    CopyFail,
    Describe,
    Execute,
    Field,
    Flush,
    FrontendMessage,
    FunctionCall,
    GSSENCRequest,
    Parse,
    PasswordMessage,
    ProtocolError,
    Query,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
)
from sqlite_ha.server.pgwire.wire.protocol import BodyReader

_I16 = struct.Struct("!h")
_U16 = struct.Struct("!H")
_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")


class BackendParser:
    """Splits what a server sends into ``(type, body)`` pairs; the single-byte SSL answer is read apart."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        self._buf += data

    def read_byte(self) -> str | None:
        """The unframed answer to SSLRequest/GSSENCRequest ('S' or 'N'), or None if nothing arrived yet."""
        if not self._buf:
            return None
        value = chr(self._buf[0])
        del self._buf[:1]
        return value

    def next_message(self) -> tuple[str, bytes] | None:
        buf = self._buf
        if len(buf) < 5:
            return None
        (length,) = _I32.unpack_from(buf, 1)
        if length < 4:
            raise ProtocolError(f"backend message {chr(buf[0])!r} has invalid length {length}")
        if len(buf) < 1 + length:
            return None
        type_, body = chr(buf[0]), bytes(buf[5 : 1 + length])
        del buf[: 1 + length]
        return type_, body

    def messages(self) -> list[tuple[str, bytes]]:
        """Every complete message buffered so far."""
        out = []
        while (message := self.next_message()) is not None:
            out.append(message)
        return out


def decode_authentication(body: bytes) -> tuple[int, bytes]:
    """The request code (0 ok, 3 cleartext, 5 MD5, 10 SASL, 11 continue, 12 final) and what follows it."""
    r = BodyReader(body, "Authentication")
    return r.number(_I32, "request code"), body[4:]


def decode_sasl_mechanisms(data: bytes) -> list[str]:
    """The payload of AuthenticationSASL (code 10): NUL-terminated names, then an empty one."""
    r = BodyReader(data, "AuthenticationSASL")
    names = []
    while (name := r.cstring("mechanism name")) != "":
        names.append(name)
    r.end()
    return names


def decode_parameter_status(body: bytes) -> tuple[str, str]:
    r = BodyReader(body, "ParameterStatus")
    name, value = r.cstring("name"), r.cstring("value")
    r.end()
    return name, value


def decode_backend_key_data(body: bytes) -> tuple[int, int]:
    r = BodyReader(body, "BackendKeyData")
    pid, secret = r.number(_U32, "process ID"), r.number(_U32, "secret key")
    r.end()
    return pid, secret


def decode_ready_for_query(body: bytes) -> str:
    r = BodyReader(body, "ReadyForQuery")
    status = r.byte("transaction status")
    r.end()
    if status not in ("I", "T", "E"):
        raise r.fail(f"transaction status {status!r} is not 'I', 'T' or 'E'")
    return status


def decode_command_complete(body: bytes) -> str:
    r = BodyReader(body, "CommandComplete")
    tag = r.cstring("command tag")
    r.end()
    return tag


def decode_row_description(body: bytes) -> tuple[Field, ...]:
    r = BodyReader(body, "RowDescription")
    fields = []
    for _ in range(r.number(_U16, "field count")):
        name = r.cstring("field name")
        table_oid, column = r.number(_U32, "table OID"), r.number(_I16, "column number")
        type_oid, type_size = r.number(_U32, "type OID"), r.number(_I16, "type size")
        type_modifier, format_ = r.number(_I32, "type modifier"), r.number(_I16, "format code")
        fields.append(
            Field(
                name=name,
                type_oid=type_oid,
                type_size=type_size,
                type_modifier=type_modifier,
                format=format_,
                table_oid=table_oid,
                column=column,
            )
        )
    r.end()
    return tuple(fields)


def decode_data_row(body: bytes) -> tuple[bytes | None, ...]:
    r = BodyReader(body, "DataRow")
    values = r.values(r.number(_U16, "column count"), "column")
    r.end()
    return values


def decode_error_response(body: bytes) -> dict[str, str]:
    """Field code ('S', 'C', 'M', ...) to value; NoticeResponse has the same body."""
    r = BodyReader(body, "ErrorResponse")
    fields: dict[str, str] = {}
    while (code := r.byte("field type")) != "\0":
        fields[code] = r.cstring(f"field {code!r}")
    r.end()
    return fields


def decode_parameter_description(body: bytes) -> tuple[int, ...]:
    r = BodyReader(body, "ParameterDescription")
    oids = tuple(r.number(_U32, "parameter type") for _ in range(r.number(_U16, "parameter count")))
    r.end()
    return oids


def decode_negotiate_protocol_version(body: bytes) -> tuple[int, tuple[str, ...]]:
    r = BodyReader(body, "NegotiateProtocolVersion")
    minor = r.number(_I32, "newest minor version")
    options = tuple(r.cstring("option name") for _ in range(r.number(_I32, "option count")))
    r.end()
    return minor, options


# --- frontend encoding -----------------------------------------------------------------------------------


def _cstr(value: str) -> bytes:
    return value.encode("utf-8") + b"\0"


def _typed(type_byte: bytes, body: bytes) -> bytes:
    return type_byte + _I32.pack(len(body) + 4) + body


def _values(values: tuple[bytes | None, ...]) -> bytes:
    return _U16.pack(len(values)) + b"".join(
        _I32.pack(-1) if v is None else _I32.pack(len(v)) + v for v in values
    )


def _formats(codes: tuple[int, ...]) -> bytes:
    return struct.pack(f"!H{len(codes)}h", len(codes), *codes)


def encode_frontend(message: FrontendMessage) -> bytes:
    """The exact bytes a client sends for ``message``, framing included."""
    match message:
        case StartupMessage(protocol=protocol, params=params):
            body = b"".join(_cstr(k) + _cstr(v) for k, v in params.items()) + b"\0"
            return _I32.pack(len(body) + 8) + _U32.pack(protocol) + body
        case SSLRequest():
            return struct.pack("!iI", 8, SSL_REQUEST_CODE)
        case GSSENCRequest():
            return struct.pack("!iI", 8, GSSENC_REQUEST_CODE)
        case CancelRequest(pid=pid, secret=secret):
            return struct.pack("!iIII", 16, CANCEL_REQUEST_CODE, pid, secret)
        case Query(sql=sql):
            return _typed(b"Q", _cstr(sql))
        case Parse(name=name, sql=sql, param_oids=oids):
            return _typed(b"P", _cstr(name) + _cstr(sql) + struct.pack(f"!H{len(oids)}I", len(oids), *oids))
        case Bind():
            body = _cstr(message.portal) + _cstr(message.statement) + _formats(message.param_formats)
            return _typed(b"B", body + _values(message.params) + _formats(message.result_formats))
        case Describe(kind=kind, name=name):
            return _typed(b"D", kind.encode() + _cstr(name))
        case Execute(portal=portal, max_rows=max_rows):
            return _typed(b"E", _cstr(portal) + _I32.pack(max_rows))
        case Close(kind=kind, name=name):
            return _typed(b"C", kind.encode() + _cstr(name))
        case Sync():
            return b"S\0\0\0\x04"
        case Flush():
            return b"H\0\0\0\x04"
        case Terminate():
            return b"X\0\0\0\x04"
        case PasswordMessage(data=data):
            return _typed(b"p", data)
        case CopyData(data=data):
            return _typed(b"d", data)
        case CopyDone():
            return b"c\0\0\0\x04"
        case CopyFail(message=text):
            return _typed(b"f", _cstr(text))
        case FunctionCall():
            body = _U32.pack(message.function_oid) + _formats(message.arg_formats) + _values(message.args)
            return _typed(b"F", body + _I16.pack(message.result_format))
    raise TypeError(f"not a frontend message: {message!r}")


def startup(user: str, database: str | None = None, **params: str) -> bytes:
    """A protocol 3.0 StartupMessage, the usual first packet of a test client."""
    merged = {"user": user, **({"database": database} if database is not None else {}), **params}
    return encode_frontend(StartupMessage(protocol=PROTOCOL_3_0, params=merged))
