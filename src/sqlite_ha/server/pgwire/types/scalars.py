"""Codecs of the scalar types other than numbers with a scale and dates: booleans, integers, floats, text,
bytea, uuid and json. Each is a plain function of one value, picked once per column from the registry, so
the per-value path is one call.

An integer column announced int2 or int4 may hold a larger value (SQLite integers are 64-bit): such a value
is refused with 22003 ("integer out of range"), in text as in binary format, never cut to a wrong one.
"""

from __future__ import annotations

import json
import math
import struct
import uuid
from decimal import Decimal
from typing import Any

from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.server.pgwire.types.registry import BadParameter, NotEncodable

_I2, _I4, _I8 = struct.Struct(">h"), struct.Struct(">i"), struct.Struct(">q")
_U4 = struct.Struct(">I")
_F4, _F8 = struct.Struct(">f"), struct.Struct(">d")


# ---------------------------------------------------------------------------------------- text
def float_text(v: float) -> str:
    """PostgreSQL's float8 output: the shortest digits that read back, fixed-point for decimal exponents
    from -4 to 14, else ``1e+15`` style."""
    if v != v:
        return "NaN"
    if v in (math.inf, -math.inf):
        return "Infinity" if v > 0 else "-Infinity"
    r = repr(v)
    if "e" not in r and (1e-4 <= abs(v) < 1e15):
        return r[:-2] if r.endswith(".0") else r
    return _pg_float(r, 15)


def float4_text(v: float) -> str:
    """The shortest text that reads back as the same float4, as PostgreSQL prints a real."""
    if v != v or v in (math.inf, -math.inf):
        return float_text(v)
    single = _F4.unpack(_F4.pack(v))[0]
    for digits in range(1, 10):
        text = f"{single:.{digits - 1}e}"
        if _F4.unpack(_F4.pack(float(text)))[0] == single:
            return _pg_float(text, 6)
    return _pg_float(repr(single), 6)


def _pg_float(shortest: str, fixed_below: int) -> str:
    sign, digits, exponent = Decimal(shortest).as_tuple()
    assert isinstance(exponent, int)
    text = "".join(map(str, digits)).rstrip("0")
    if not text:
        return "-0" if sign else "0"
    exponent += len(digits) - len(text)
    point = len(text) + exponent - 1  # the decimal exponent of the first digit
    if -4 <= point < fixed_below:
        body = format(Decimal((0, tuple(int(c) for c in text), exponent)), "f")
    else:
        mantissa = text[0] + ("." + text[1:] if len(text) > 1 else "")
        body = f"{mantissa}e{'+' if point >= 0 else '-'}{abs(point):02d}"
    return "-" + body if sign else body


def bytes_text(v: bytes) -> str:
    return "\\x" + v.hex()


def text_out(v: SQLiteValue) -> bytes:
    """Text as it is stored; other storage classes as their text (a BLOB that is no UTF-8 as hex)."""
    if type(v) is str:
        return v.encode()
    if isinstance(v, bytes):
        try:
            v.decode()
        except UnicodeDecodeError:
            return bytes_text(v).encode()
        return v
    if isinstance(v, float):
        return float_text(v).encode()
    return str(v).encode()


def text_in(data: bytes) -> SQLiteValue:
    return data.decode()


def truthy(value: SQLiteValue) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("t", "true", "1", "yes", "on", "y")
    if isinstance(value, bytes):
        return truthy(value.decode(errors="replace"))
    return bool(value)


def bool_text(v: SQLiteValue) -> bytes:
    return b"t" if truthy(v) else b"f"


def bool_binary(v: SQLiteValue) -> bytes:
    return b"\x01" if truthy(v) else b"\x00"


def bool_in(data: bytes) -> SQLiteValue:
    low = data.decode().strip().lower()
    if low and ("true".startswith(low) or "yes".startswith(low) or low in ("on", "1")):
        return 1
    if low and ("false".startswith(low) or "no".startswith(low) or low in ("of", "off", "0")):
        return 0
    raise BadParameter(f'invalid input syntax for type boolean: "{data.decode()}"')


def bool_cast(value: SQLiteValue) -> SQLiteValue:
    """A cast to boolean of a stored value (``pg_bool``: what is not a literal): numbers by zero or not,
    PostgreSQL's words (``t``, ``yes``, ``off``, …), and 22P02 for any other text, as PostgreSQL refuses
    it (not NULL)."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return int(value != 0)
    return bool_in(value if isinstance(value, bytes) else value.encode())


def bool_recv(data: bytes) -> SQLiteValue:
    if len(data) != 1:
        raise BadParameter("a binary boolean is one byte", "08P01")
    return 1 if data != b"\x00" else 0


# ---------------------------------------------------------------------------------------- integers
def int_codecs(name: str, bits: int) -> tuple[Any, Any, Any, Any]:
    """(text_out, binary_out, text_in, binary_in) of a signed integer type of ``bits`` bits."""
    low, high = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    packer = {16: _I2, 32: _I4, 64: _I8}[bits]
    label = {16: "smallint", 32: "integer", 64: "bigint"}[bits]

    def out_of_range() -> NotEncodable:
        return NotEncodable(f"{label} out of range", "22003")

    def text(v: SQLiteValue) -> bytes:
        if type(v) is int:
            if bits == 64 or low <= v <= high:
                return str(v).encode()
            raise out_of_range()
        if isinstance(v, float) and v.is_integer():
            if low <= v <= high:
                return str(int(v)).encode()
            raise out_of_range()
        return text_out(v)  # not an integer at all: what is stored, as SQLite lets a column hold it

    pack = packer.pack

    def binary(v: SQLiteValue) -> bytes:
        if type(v) is int and low <= v <= high:
            return pack(v)
        n = as_int(v)
        if low <= n <= high:
            return packer.pack(n)
        raise out_of_range()

    def parse(data: bytes) -> SQLiteValue:
        try:
            n = int(data)
        except ValueError:
            raise BadParameter(f'invalid input syntax for type {label}: "{data.decode()}"') from None
        if low <= n <= high:
            return n
        raise BadParameter(f'value "{data.decode()}" is out of range for type {label}', "22003")

    def recv(data: bytes) -> SQLiteValue:
        return int(packer.unpack(data)[0])

    return text, binary, parse, recv


def as_int(value: SQLiteValue) -> int:
    if type(value) is int:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str | bytes):
        return int(value)
    raise TypeError(f"not an integer: {value!r}")


def oid_binary(v: SQLiteValue) -> bytes:
    return _U4.pack(as_int(v))


def oid_recv(data: bytes) -> SQLiteValue:
    return int(_U4.unpack(data)[0])


def oid_in(data: bytes) -> SQLiteValue:
    return int(data.decode())


# ---------------------------------------------------------------------------------------- floats
def as_float(value: SQLiteValue) -> float:
    if isinstance(value, bytes):
        return float(value.decode())
    if value is None:
        raise TypeError("NULL")
    return float(value)


def float8_text(v: SQLiteValue) -> bytes:
    if type(v) is float:
        return float_text(v).encode()
    if type(v) is int:
        return str(v).encode()
    return text_out(v)


def float4_out(v: SQLiteValue) -> bytes:
    if isinstance(v, int | float):
        return float4_text(float(v)).encode()
    return text_out(v)


def float_in(data: bytes) -> SQLiteValue:
    text = data.decode()
    try:
        return not_nan(float(text))
    except ValueError:
        raise BadParameter(f'invalid input syntax for type double precision: "{text}"') from None


def not_nan(value: float) -> SQLiteValue:
    """SQLite stores a NaN as NULL: it is stored as the text 'NaN', which reads back as NaN."""
    return "NaN" if value != value else value


def float4_binary(v: SQLiteValue) -> bytes:
    return _F4.pack(as_float(v))


def float8_binary(v: SQLiteValue) -> bytes:
    return _F8.pack(as_float(v))


def float4_recv(data: bytes) -> SQLiteValue:
    """A float4 as the float8 its shortest text reads as (1.1, not 1.100000023841858), as PostgreSQL's
    real→double conversion would not, but as every client meant it."""
    single = float(_F4.unpack(data)[0])
    return float(float4_text(single)) if math.isfinite(single) else not_nan(single)


def float8_recv(data: bytes) -> SQLiteValue:
    return not_nan(_F8.unpack(data)[0])


# ---------------------------------------------------------------------------------------- bytea
def bytea_text(v: SQLiteValue) -> bytes:
    if isinstance(v, bytes):
        return bytes_text(v).encode()
    return bytes_text(text_out(v)).encode()  # text in a BLOB column: its bytes


def bytea_binary(v: SQLiteValue) -> bytes:
    return v if isinstance(v, bytes) else text_out(v)


def bytea_in(data: bytes) -> SQLiteValue:
    if data.startswith(b"\\x"):
        try:
            return bytes.fromhex(data[2:].decode())
        except ValueError:
            raise BadParameter("invalid hexadecimal data in a bytea") from None
    if b"\\" not in data:
        return data
    out, i = bytearray(), 0  # the escape format: \\ and \ooo
    while i < len(data):
        if data[i : i + 1] != b"\\":
            out.append(data[i])
            i += 1
        elif data[i + 1 : i + 2] == b"\\":
            out.append(0x5C)
            i += 2
        elif len(data) >= i + 4 and data[i + 1 : i + 4].isdigit():
            out.append(int(data[i + 1 : i + 4], 8))
            i += 4
        else:
            raise BadParameter("invalid input syntax for type bytea")
    return bytes(out)


def bytea_recv(data: bytes) -> SQLiteValue:
    return data


# ---------------------------------------------------------------------------------------- uuid
def uuid_text(v: SQLiteValue) -> bytes:
    if isinstance(v, bytes) and len(v) == 16:
        return str(uuid.UUID(bytes=v)).encode()
    if type(v) is str and len(v) == 36 and v.islower():
        return v.encode()
    try:
        return str(uuid.UUID(v.decode() if isinstance(v, bytes) else str(v))).encode()
    except ValueError:
        return text_out(v)


def uuid_binary(v: SQLiteValue) -> bytes:
    if isinstance(v, bytes) and len(v) == 16:
        return v
    return uuid.UUID(v.decode() if isinstance(v, bytes) else str(v)).bytes


def uuid_in(data: bytes) -> SQLiteValue:
    text = data.decode()
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        raise BadParameter(f'invalid input syntax for type uuid: "{text}"') from None


def uuid_recv(data: bytes) -> SQLiteValue:
    return str(uuid.UUID(bytes=data))


# ---------------------------------------------------------------------------------------- json
def json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def json_in(data: bytes) -> SQLiteValue:
    text = data.decode()
    try:
        json.loads(text)
    except ValueError:
        raise BadParameter("invalid input syntax for type json") from None
    return text


def jsonb_in(data: bytes) -> SQLiteValue:
    """A jsonb as PostgreSQL keeps it, so it reads back as PostgreSQL prints it: keys ordered (shorter
    first, then bytewise), the last of duplicate keys kept, ``", "`` and ``": "`` between items."""
    text = data.decode()
    try:
        parsed = json.loads(text, parse_float=Decimal, parse_int=int)
    except ValueError:
        raise BadParameter("invalid input syntax for type json") from None
    return jsonb_dump(parsed)


def jsonb_dump(value: Any) -> str:
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return (
            "{"
            + ", ".join(f"{json.dumps(k, ensure_ascii=False)}: {jsonb_dump(value[k])}" for k in keys)
            + "}"
        )
    if isinstance(value, list):
        return "[" + ", ".join(jsonb_dump(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return format(value, "f")
    return json.dumps(value, ensure_ascii=False)


def jsonb_binary(v: SQLiteValue) -> bytes:
    return b"\x01" + text_out(v)


def jsonb_recv(data: bytes) -> SQLiteValue:
    if not data or data[0] != 1:
        raise BadParameter("unsupported jsonb version number")
    return jsonb_in(data[1:])
