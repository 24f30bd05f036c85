"""Encoders of the messages the server sends (protocol 3.0): each returns one complete message as ``bytes``.

Functions rather than message classes, because the server only ever writes these: building an object to
serialize it at once would cost an allocation per message for nothing, and ``data_row`` is the hot path of
every result set. Fixed messages are byte literals; the codec's tests check each encoder by decoding its
output with the test client (``backend_parser``).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

_U16 = struct.Struct("!H")
_I32 = struct.Struct("!i")
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
