"""PostgreSQL types for SQLite values: which OID a column announces, and how values travel both ways.

SQLite has five storage classes and a free-form declared type per column; PostgreSQL clients need a type OID
per result column (asyncpg and psycopg pick their decoder by it, and asyncpg encodes arguments strictly by
the OIDs of ParameterDescription). The OID comes from the declared type, read the way SQLite reads it (the
name decides, not the exact spelling), and for expressions without one (``count(*)``, ``1 + 1``) from the
values. Declared ``INTEGER`` is announced as int8: SQLite integers are 64-bit, and announcing int4 would make
a large value unrepresentable in binary format.

Text format is what PostgreSQL prints; binary format is PostgreSQL's send/recv representation. A value that
does not fit the announced type (SQLite lets a TEXT column hold a BLOB) is sent in text format as the closest
faithful text (a BLOB as ``\\x`` hex), never silently changed.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
import math
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.server.pgwire.types import arrays

# OIDs of pg_type (PostgreSQL 15)
BOOL = 16
BYTEA = 17
CHAR = 18
NAME = 19
INT8 = 20
INT2 = 21
INT4 = 23
REGPROC = 24
TEXT = 25
OID = 26
JSON = 114
FLOAT4 = 700
FLOAT8 = 701
UNKNOWN = 705
BPCHAR = 1042
VARCHAR = 1043
DATE = 1082
TIME = 1083
TIMESTAMP = 1114
TIMESTAMPTZ = 1184
INTERVAL = 1186
NUMERIC = 1700
UUID = 2950
JSONB = 3802
TEXT_ARRAY = 1009
INT8_ARRAY = 1016
INT4_ARRAY = 1007

# (oid, typlen) of the names ``format_type`` and catalogs use
TYPE_INFO: dict[int, tuple[str, int]] = {
    BOOL: ("bool", 1),
    BYTEA: ("bytea", -1),
    CHAR: ("char", 1),
    NAME: ("name", 64),
    INT8: ("int8", 8),
    INT2: ("int2", 2),
    INT4: ("int4", 4),
    REGPROC: ("regproc", 4),
    TEXT: ("text", -1),
    OID: ("oid", 4),
    JSON: ("json", -1),
    FLOAT4: ("float4", 4),
    FLOAT8: ("float8", 8),
    UNKNOWN: ("unknown", -2),
    BPCHAR: ("bpchar", -1),
    VARCHAR: ("varchar", -1),
    DATE: ("date", 4),
    TIME: ("time", 8),
    TIMESTAMP: ("timestamp", 8),
    TIMESTAMPTZ: ("timestamptz", 8),
    INTERVAL: ("interval", 16),
    NUMERIC: ("numeric", -1),
    UUID: ("uuid", 16),
    JSONB: ("jsonb", -1),
    **{a.oid: (a.name, -1) for a in arrays.ARRAY_TYPES.values()},
}

# SQL type names (as written in CREATE TABLE or casts) for each OID, for format_type and DDL answers
SQL_NAMES: dict[int, str] = {
    BOOL: "boolean",
    BYTEA: "bytea",
    INT8: "bigint",
    INT2: "smallint",
    INT4: "integer",
    TEXT: "text",
    JSON: "json",
    FLOAT4: "real",
    FLOAT8: "double precision",
    VARCHAR: "character varying",
    BPCHAR: "character",
    DATE: "date",
    TIME: "time without time zone",
    TIMESTAMP: "timestamp without time zone",
    TIMESTAMPTZ: "timestamp with time zone",
    INTERVAL: "interval",
    NUMERIC: "numeric",
    UUID: "uuid",
    JSONB: "jsonb",
    NAME: "name",
    OID: "oid",
    CHAR: '"char"',
}


def type_size(oid: int) -> int:
    return TYPE_INFO.get(oid, ("", -1))[1]


def oid_for_declared(declared: str | None) -> int | None:
    """The OID a column of this declared type announces; None when there is no declared type."""
    if not declared:
        return None
    t = declared.strip().lower()
    base = t.split("(", 1)[0].strip()
    exact = _EXACT.get(base)
    if exact is not None:
        return exact
    # SQLite's affinity rules, in its order, for everything else
    if "int" in base:
        return INT8
    if "char" in base or "clob" in base or "text" in base:
        return TEXT
    if "blob" in base or "bytea" in base:
        return BYTEA
    if "real" in base or "floa" in base or "doub" in base:
        return FLOAT8
    if "bool" in base:
        return BOOL
    if "timestamp" in base:
        return (
            TIMESTAMPTZ
            if ("with time zone" in t and "without" not in t) or base.endswith("tz")
            else TIMESTAMP
        )
    return NUMERIC if ("numeric" in base or "decimal" in base) else TEXT


_EXACT: dict[str, int] = {
    "bool": BOOL,
    "boolean": BOOL,
    "smallint": INT2,
    "int2": INT2,
    "int": INT4,
    "int4": INT4,
    "mediumint": INT4,
    "serial": INT4,
    "smallserial": INT2,
    "integer": INT8,
    "bigint": INT8,
    "int8": INT8,
    "bigserial": INT8,
    "real": FLOAT8,
    "float4": FLOAT4,
    "float": FLOAT8,
    "float8": FLOAT8,
    "double": FLOAT8,
    "double precision": FLOAT8,
    "numeric": NUMERIC,
    "decimal": NUMERIC,
    "text": TEXT,
    "clob": TEXT,
    "varchar": VARCHAR,
    "character varying": VARCHAR,
    "nvarchar": VARCHAR,
    "char": BPCHAR,
    "character": BPCHAR,
    "bpchar": BPCHAR,
    "blob": BYTEA,
    "bytea": BYTEA,
    "date": DATE,
    "time": TIME,
    "datetime": TIMESTAMP,
    "timestamp": TIMESTAMP,
    "timestamp without time zone": TIMESTAMP,
    "timestamptz": TIMESTAMPTZ,
    "timestamp with time zone": TIMESTAMPTZ,
    "interval": INTERVAL,
    "json": JSON,
    "jsonb": JSONB,
    "uuid": UUID,
    "name": NAME,
    "oid": OID,
    # the catalog's array columns ("_text", "int2vector"); a user's INTEGER[] stays JSON text
    **{name: a.oid for name, a in arrays.BY_NAME.items()},
}


def oid_for_value(value: SQLiteValue) -> int:
    """The OID for a column without declared type, from one of its values (NULL: text)."""
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT8
    if isinstance(value, float):
        return FLOAT8
    if isinstance(value, bytes):
        return BYTEA
    return TEXT


def column_oid(declared: str | None, rows: list[tuple[SQLiteValue, ...]], index: int) -> int:
    """A result column's OID: from its declared type, else from its first non-NULL value."""
    oid = oid_for_declared(declared)
    if oid is not None:
        return oid
    for row in rows:
        if row[index] is not None:
            return oid_for_value(row[index])
    return TEXT


# ---------------------------------------------------------------------------------------- text format
def _float_text(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return repr(v)


def _bytes_text(v: bytes) -> str:
    return "\\x" + v.hex()


def to_text(value: SQLiteValue, oid: int) -> bytes:
    """PostgreSQL's text output of ``value`` as a column of type ``oid``."""
    if isinstance(value, bytes):
        if oid in (BYTEA, UNKNOWN):
            return _bytes_text(value).encode()
        if oid == UUID and len(value) == 16:
            return str(uuid.UUID(bytes=value)).encode()
        try:
            value.decode()  # text as it is stored, if it is text at all
        except UnicodeDecodeError:
            return _bytes_text(value).encode()
        return value
    if oid == BOOL and isinstance(value, int | float | str):
        return b"t" if _truthy(value) else b"f"
    if isinstance(value, float):
        return _float_text(value).encode()
    if isinstance(value, int):
        if oid in (TIMESTAMPTZ, TIMESTAMP):
            stamp = dt.datetime.fromtimestamp(value, dt.UTC)
            return _timestamp_text(stamp, oid == TIMESTAMPTZ).encode()
        return str(value).encode()
    text = str(value)
    if oid == TIMESTAMPTZ and _lacks_offset(text):
        text += "+00"
    return text.encode()


def _truthy(value: int | float | str) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("t", "true", "1", "yes", "on", "y")
    return bool(value)


def _lacks_offset(text: str) -> bool:
    tail = text[10:]  # after the date
    return bool(tail) and not (tail.endswith("Z") or "+" in tail or tail.count("-") > 0)


def _timestamp_text(stamp: dt.datetime, tz: bool) -> str:
    text = stamp.strftime("%Y-%m-%d %H:%M:%S") + (
        f".{stamp.microsecond:06d}".rstrip("0") if stamp.microsecond else ""
    )
    return text + ("+00" if tz else "")


# ---------------------------------------------------------------------------------------- binary format
_EPOCH_DATE = dt.date(2000, 1, 1)
_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_I2, _I4, _I8 = struct.Struct(">h"), struct.Struct(">i"), struct.Struct(">q")
_F4, _F8 = struct.Struct(">f"), struct.Struct(">d")


class NotEncodable(ValueError):
    """A value that the announced type cannot carry in binary format."""


def to_binary(value: SQLiteValue, oid: int) -> bytes:
    """PostgreSQL's binary (send) representation of ``value`` as type ``oid``."""
    try:
        encode = _BINARY[oid]
    except KeyError:
        return to_text(value, oid)  # text-like types: the same bytes
    try:
        return encode(value)
    except (struct.error, ValueError, TypeError, OverflowError, decimal.InvalidOperation) as e:
        raise NotEncodable(f"{value!r} cannot be sent as {TYPE_INFO.get(oid, (str(oid),))[0]}: {e}") from e


def _int_value(value: SQLiteValue) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str | bytes):
        return int(value)
    raise TypeError(f"not an integer: {value!r}")


def _float_value(value: SQLiteValue) -> float:
    if isinstance(value, bytes):
        return float(value.decode())
    if value is None:
        raise TypeError("NULL")
    return float(value)


def _parse_timestamp(value: SQLiteValue) -> dt.datetime:
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    text = value.decode() if isinstance(value, bytes) else str(value)
    text = text.strip().replace("T", " ")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    if len(text) > 3 and text[-3] in "+-" and text[-3:].lstrip("+-").isdigit() and ":" not in text[-6:]:
        text += ":00"  # "+00" → "+00:00"
    stamp = dt.datetime.fromisoformat(text)
    return stamp if stamp.tzinfo is not None else stamp.replace(tzinfo=dt.UTC)


def _timestamp_binary(value: SQLiteValue) -> bytes:
    delta = _parse_timestamp(value) - _EPOCH
    return _I8.pack((delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds)


def _date_binary(value: SQLiteValue) -> bytes:
    text = value.decode() if isinstance(value, bytes) else str(value)
    return _I4.pack((dt.date.fromisoformat(text[:10]) - _EPOCH_DATE).days)


def _time_binary(value: SQLiteValue) -> bytes:
    text = value.decode() if isinstance(value, bytes) else str(value)
    t = dt.time.fromisoformat(text)
    return _I8.pack(((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond)


def _uuid_binary(value: SQLiteValue) -> bytes:
    if isinstance(value, bytes) and len(value) == 16:
        return value
    return uuid.UUID(str(value.decode() if isinstance(value, bytes) else value)).bytes


def _numeric_binary(value: SQLiteValue) -> bytes:
    if isinstance(value, float):
        if math.isnan(value):
            return struct.pack(">hhHH", 0, 0, 0xC000, 0)
        if math.isinf(value):
            return struct.pack(">hhHH", 0, 0, 0xD000 if value > 0 else 0xF000, 0)
        d = decimal.Decimal(repr(value))
    else:
        d = decimal.Decimal(value.decode() if isinstance(value, bytes) else str(value))
    return numeric_send(d)


def numeric_send(d: decimal.Decimal) -> bytes:
    """PostgreSQL's numeric binary format: base-10000 digits, weight, sign and display scale."""
    if d.is_nan():
        return struct.pack(">hhHH", 0, 0, 0xC000, 0)
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    dscale = max(0, -exponent)
    text = "".join(map(str, digits))
    if exponent >= 0:
        int_part, frac_part = text + "0" * exponent, ""
    else:
        cut = len(text) + exponent
        int_part, frac_part = (text[:cut] if cut > 0 else ""), (text[cut:] if cut >= 0 else "0" * -cut + text)
    int_part = int_part.lstrip("0")
    int_groups = []
    if int_part:
        pad = (-len(int_part)) % 4
        padded = "0" * pad + int_part
        int_groups = [int(padded[i : i + 4]) for i in range(0, len(padded), 4)]
    frac_groups = []
    if frac_part:
        padded = frac_part + "0" * ((-len(frac_part)) % 4)
        frac_groups = [int(padded[i : i + 4]) for i in range(0, len(padded), 4)]
    groups = int_groups + frac_groups
    weight = len(int_groups) - 1
    while groups and groups[-1] == 0:
        groups.pop()
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    if not groups:
        weight = 0
    return struct.pack(f">hhHH{len(groups)}H", len(groups), weight, 0x4000 if sign else 0, dscale, *groups)


def _jsonb_binary(value: SQLiteValue) -> bytes:
    return b"\x01" + to_text(value, JSONB)


_BINARY: dict[int, Callable[[SQLiteValue], bytes]] = {
    BOOL: lambda v: b"\x01" if _truthy(v) else b"\x00",  # type: ignore[arg-type]
    INT2: lambda v: _I2.pack(_int_value(v)),
    INT4: lambda v: _I4.pack(_int_value(v)),
    INT8: lambda v: _I8.pack(_int_value(v)),
    OID: lambda v: struct.pack(">I", _int_value(v)),
    FLOAT4: lambda v: _F4.pack(_float_value(v)),
    FLOAT8: lambda v: _F8.pack(_float_value(v)),
    BYTEA: lambda v: v if isinstance(v, bytes) else str(v).encode(),
    TIMESTAMP: _timestamp_binary,
    TIMESTAMPTZ: _timestamp_binary,
    DATE: _date_binary,
    TIME: _time_binary,
    UUID: _uuid_binary,
    NUMERIC: _numeric_binary,
    JSONB: _jsonb_binary,
}


def _array_binary(value: SQLiteValue, array: arrays.ArrayType) -> bytes:
    return arrays.pack(
        [None if v is None else to_binary(v, array.element) for v in arrays.items(value)], array
    )


_BINARY.update({oid: functools.partial(_array_binary, array=a) for oid, a in arrays.ARRAY_TYPES.items()})


@dataclass(frozen=True, slots=True)
class Column:
    """How one result column is announced and encoded."""

    name: str
    oid: int
    binary: bool

    def encode(self, value: SQLiteValue) -> bytes | None:
        if value is None:
            return None
        if self.binary:
            return to_binary(value, self.oid)
        return to_text(value, self.oid)


# ---------------------------------------------------------------------------------------- parameters
class BadParameter(ValueError):
    """A parameter value that does not parse as its type (SQLSTATE 22P02)."""


def decode_param(data: bytes | None, oid: int, binary: bool) -> SQLiteValue:
    """A Bind parameter as the SQLite value it binds as."""
    if data is None:
        return None
    try:
        return _decode_binary(data, oid) if binary else _decode_text(data, oid)
    except BadParameter:
        raise
    except (ValueError, struct.error, UnicodeDecodeError, decimal.InvalidOperation) as e:
        name = TYPE_INFO.get(oid, (f"type {oid}",))[0]
        raise BadParameter(f"invalid input for {name}: {data[:60]!r}") from e


def _decode_text(data: bytes, oid: int) -> SQLiteValue:
    if oid == BYTEA:
        text = data.decode()
        if text.startswith("\\x"):
            return bytes.fromhex(text[2:])
        return data
    text = data.decode()
    if oid in (INT2, INT4, INT8, OID):
        return int(text)
    if oid in (FLOAT4, FLOAT8):
        return float(text)
    if oid == BOOL:
        low = text.strip().lower()
        if low in ("t", "true", "yes", "on", "1", "y"):
            return 1
        if low in ("f", "false", "no", "off", "0", "n"):
            return 0
        raise BadParameter(f"invalid input syntax for type boolean: {text!r}")
    if oid == NUMERIC:
        d = decimal.Decimal(text)
        return int(d) if d == d.to_integral_value() and "." not in text and "e" not in text.lower() else text
    array = arrays.ARRAY_TYPES.get(oid)
    if array is not None and text.lstrip().startswith("{"):  # arrays are JSON text in SQLite
        element = array.element
        values = [
            None if v is None else _decode_text(v.encode(), element) for v in arrays.literal_items(text)
        ]
        return json_text([_bytes_text(v) if isinstance(v, bytes) else v for v in values])
    return text


def _decode_binary(data: bytes, oid: int) -> SQLiteValue:
    if oid == INT2:
        return int(_I2.unpack(data)[0])
    if oid == INT4:
        return int(_I4.unpack(data)[0])
    if oid == INT8:
        return int(_I8.unpack(data)[0])
    if oid == OID:
        return int(struct.unpack(">I", data)[0])
    if oid == FLOAT4:
        return float(_F4.unpack(data)[0])
    if oid == FLOAT8:
        return float(_F8.unpack(data)[0])
    if oid == BOOL:
        if len(data) != 1:
            raise BadParameter("a binary boolean is one byte")
        return 1 if data != b"\x00" else 0
    if oid == BYTEA:
        return data
    if oid == UUID:
        return str(uuid.UUID(bytes=data))
    if oid == DATE:
        return (_EPOCH_DATE + dt.timedelta(days=_I4.unpack(data)[0])).isoformat()
    if oid in (TIMESTAMP, TIMESTAMPTZ):
        stamp = _EPOCH + dt.timedelta(microseconds=_I8.unpack(data)[0])
        text = stamp.strftime("%Y-%m-%d %H:%M:%S") + (
            f".{stamp.microsecond:06d}" if stamp.microsecond else ""
        )
        return text + ("+00:00" if oid == TIMESTAMPTZ else "")
    if oid == TIME:
        micros = _I8.unpack(data)[0]
        seconds, micro = divmod(micros, 1_000_000)
        return (dt.datetime.min + dt.timedelta(seconds=seconds, microseconds=micro)).time().isoformat()
    if oid == NUMERIC:
        return str(numeric_recv(data))
    if oid == JSONB:
        if not data or data[0] != 1:
            raise BadParameter("unsupported jsonb version")
        return data[1:].decode()
    if oid in (JSON, TEXT, VARCHAR, BPCHAR, NAME, UNKNOWN, 0):
        return data.decode()
    if oid in arrays.ARRAY_TYPES:  # arrays are JSON text in SQLite
        element, raw = arrays.unpack(data)
        values = [None if b is None else _decode_binary(b, element) for b in raw]
        return json_text([_bytes_text(v) if isinstance(v, bytes) else v for v in values])
    raise BadParameter(f"binary parameters of type {TYPE_INFO.get(oid, (str(oid),))[0]} are not supported")


def numeric_recv(data: bytes) -> decimal.Decimal:
    ndigits, weight, sign, dscale = struct.unpack(">hhHH", data[:8])
    if sign == 0xC000:
        return decimal.Decimal("NaN")
    if sign in (0xD000, 0xF000):
        return decimal.Decimal("Infinity" if sign == 0xD000 else "-Infinity")
    digits = struct.unpack(f">{ndigits}H", data[8 : 8 + 2 * ndigits])
    value = decimal.Decimal(0)
    for i, group in enumerate(digits):
        value += decimal.Decimal(group) * (decimal.Decimal(10000) ** (weight - i))
    if sign == 0x4000:
        value = -value
    return (
        value.quantize(decimal.Decimal(1).scaleb(-dscale)) if dscale else value.quantize(decimal.Decimal(1))
    )


def json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
