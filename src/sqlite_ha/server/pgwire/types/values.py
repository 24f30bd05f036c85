"""PostgreSQL types for SQLite values: which OID a column announces, and how values travel both ways.

SQLite has five storage classes and a free-form declared type per column; PostgreSQL clients need a type OID
per result column (asyncpg and psycopg pick their decoder by it, and asyncpg encodes arguments strictly by
the OIDs of ParameterDescription). The OID comes from the declared type, read the way SQLite reads it (the
name decides, not the exact spelling), and for expressions without one (``count(*)``, ``1 + 1``) from the
values. A declared ``INTEGER`` is SQLite's 64-bit integer and announced as int8 (tables made over HTTP, the
rowid alias); PostgreSQL's ``integer``/``int`` columns are written ``INT`` by the dialect and announced int4.

Everything per type (names, length, codecs) is one record of the registry (``registry``, ``builtin``); this
module is the API the session, the catalog and COPY use: ``Column`` picks its encoder once, so a value costs
one call; ``decode_param`` turns a Bind parameter into what SQLite stores.
"""

from __future__ import annotations

import decimal
import functools
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.server.pgwire.types import builtin, numeric
from sqlite_ha.server.pgwire.types.datetimes import DatetimeError
from sqlite_ha.server.pgwire.types.registry import REGISTRY, BadParameter, NotEncodable, PgType
from sqlite_ha.server.pgwire.types.scalars import json_text

__all__ = ["REGISTRY", "BadParameter", "Column", "NotEncodable", "PgType", "builtin", "json_text"]

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


# What ``format_type`` and the catalogs name each type, derived from the registry (older callers' views)
TYPE_INFO: dict[int, tuple[str, int]] = {p.oid: (p.name, p.length) for p in REGISTRY}
SQL_NAMES: dict[int, str] = {p.oid: p.sql_name for p in REGISTRY}


def type_size(oid: int) -> int:
    found = REGISTRY.by_oid.get(oid)
    return found.length if found is not None else -1


# Declared types whose SQLite meaning differs from the PostgreSQL type of the same name: SQLite's INTEGER
# and REAL are 64-bit; a declared CHAR is PostgreSQL's character (bpchar), not the one-byte "char".
_DECLARED: dict[str, int] = {
    "integer": INT8,
    "real": FLOAT8,
    "char": BPCHAR,
    "character": BPCHAR,
    "double": FLOAT8,
    "float": FLOAT8,
    "tinyint": INT2,
    "datetime": TIMESTAMP,
    "timestamp with time zone": TIMESTAMPTZ,
    "timestamp without time zone": TIMESTAMP,
    "time without time zone": TIME,
}


# types whose columns the dialect declares with an affinity word after the name (SQLite reads the affinity
# from the whole declared type): JSON documents stay text, numerics are always floats (never int / int)
_AFFINITY_SUFFIX = {"json": "text", "jsonb": "text", "numeric": "real", "decimal": "real"}


def oid_for_declared(declared: str | None) -> int | None:
    """The OID a column of this declared type announces; None when there is no declared type."""
    if not declared:
        return None
    return declared_type(declared)[0]


@functools.lru_cache(maxsize=1024)
def declared_type(declared: str) -> tuple[int, int]:
    """(OID, type modifier) of a declared type: ``NUMERIC(10,2)`` → (numeric, its typmod)."""
    t = " ".join(declared.strip().lower().split())
    base, _, rest = t.partition("(")
    base = base.strip()
    modifiers, _, after = rest.partition(")")
    if after.strip():  # "timestamp(3) with time zone"
        base = f"{base} {after.strip()}"
    first, _, affinity = base.rpartition(" ")
    if _AFFINITY_SUFFIX.get(first) == affinity:  # "JSONB TEXT": a jsonb with TEXT affinity
        base = first
    oid = _DECLARED.get(base)
    if oid is None:
        known = REGISTRY.by_name.get(base)
        oid = known.oid if known is not None else _affinity(base, t)
    typmod = -1
    numbers = [int(n) for n in re.findall(r"\d+", modifiers)]
    if oid == NUMERIC and numbers:
        typmod = numeric.typmod_of(numbers[0], numbers[1] if len(numbers) > 1 else 0)
    elif oid in (VARCHAR, BPCHAR) and numbers:
        typmod = numbers[0] + 4
    return oid, typmod


def _affinity(base: str, t: str) -> int:
    """SQLite's affinity rules, in its order, for a declared type no record names."""
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


_TYPE_COMMENT = re.compile(
    r'("(?:[^"]|"")+"|`[^`]+`|\[[^\]]+\]|[^\s(,]+)\s+INTEGER\s*/\*pg:(\w+)(?:\s+(\w+))?\*/', re.I
)


@functools.lru_cache(maxsize=1024)
def pg_type_comments(create_sql: str | None) -> dict[str, str]:
    """The PostgreSQL types kept in a CREATE TABLE's comments, by lower-case column name: a SERIAL or
    integer primary key must be declared exactly INTEGER to be SQLite's rowid alias, so the dialect
    writes ``id INTEGER /*pg:int4*/ PRIMARY KEY`` and the catalog announces int4 for it, not int8."""
    out: dict[str, str] = {}
    if not create_sql or "/*pg:" not in create_sql:
        return out
    for name, kept, _ in _type_comments(create_sql):
        out[name] = kept
    return out


@functools.lru_cache(maxsize=1024)
def pg_key_numbering(create_sql: str | None) -> dict[str, str]:
    """How the rowid-alias keys of a CREATE TABLE are numbered, by lower-case column name: ``serial``
    (SERIAL/BIGSERIAL: a default ``nextval`` of an implicit sequence), ``always`` or ``default``
    (GENERATED ALWAYS / BY DEFAULT AS IDENTITY), kept by the dialect as ``/*pg:int4 serial*/``. A plain
    ``integer PRIMARY KEY`` (``/*pg:int4*/``) has none, as in PostgreSQL: no sequence, no default."""
    if not create_sql or "/*pg:" not in create_sql:
        return {}
    return {name: numbering for name, _, numbering in _type_comments(create_sql) if numbering}


def sequence_name(table: str, column: str) -> str:
    """PostgreSQL's name for the implicit sequence of ``table.column``: ``<table>_<column>_seq``, the longer
    part cut first (ChooseRelationName) so that the name fits in 63 bytes."""
    table_part, column_part = table, column
    while len(f"{table_part}_{column_part}_seq".encode()) > 63:
        if len(table_part.encode()) >= len(column_part.encode()):
            table_part = table_part[:-1]
        else:
            column_part = column_part[:-1]
    return f"{table_part}_{column_part}_seq"


def _type_comments(create_sql: str) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    for m in _TYPE_COMMENT.finditer(create_sql):
        name = m.group(1)
        if name[:1] in '"`[':
            name = name[1:-1].replace('""', '"')
        out.append((name.lower(), m.group(2).lower(), (m.group(3) or "").lower()))
    return out


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


# ---------------------------------------------------------------------------------------- output
_ENCODE_ERRORS = (struct.error, ValueError, TypeError, OverflowError, decimal.InvalidOperation)


def encoder(oid: int, binary: bool, typmod: int = -1) -> Callable[[SQLiteValue], bytes]:
    """The function that encodes a non-NULL value of a column of this type and format."""
    pg_type = REGISTRY.by_oid.get(oid) or REGISTRY.by_oid[TEXT]
    scale = numeric.scale_of(typmod) if oid == NUMERIC else None
    if scale is not None:
        text, binary_out = numeric.scaled(scale)
        return binary_out if binary else text
    if binary:
        return pg_type.binary_out or pg_type.text_out
    return pg_type.text_out


@dataclass(frozen=True, slots=True)
class Column:
    """How one result column is announced and encoded (the encoder is picked once, from the registry)."""

    name: str
    oid: int
    binary: bool
    typmod: int = -1
    _encode: Callable[[SQLiteValue], bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_encode", encoder(self.oid, self.binary, self.typmod))

    def encode(self, value: SQLiteValue) -> bytes | None:
        if value is None:
            return None
        try:
            return self._encode(value)
        except NotEncodable:
            raise
        except _ENCODE_ERRORS as e:
            if not self.binary:
                return REGISTRY.by_oid[TEXT].text_out(value)  # text: what is stored, as it is stored
            name = TYPE_INFO.get(self.oid, (str(self.oid),))[0]
            raise NotEncodable(f"{value!r} cannot be sent as {name}: {e}") from e


def declared_column(name: str, declared: str | None, default: int = TEXT, binary: bool = False) -> Column:
    """A column of a declared type (its OID and type modifier); ``default`` when it has none."""
    if not declared:
        return Column(name, default, binary)
    oid, typmod = declared_type(declared)
    return Column(name, oid, binary, typmod)


def result_column(name: str, declared: str | None, rows: list[tuple[SQLiteValue, ...]], index: int) -> Column:
    """A result column as its declared type announces it, else as its first non-NULL value does."""
    if declared:
        return declared_column(name, declared)
    return Column(name, column_oid(None, rows, index), False)


def to_text(value: SQLiteValue, oid: int) -> bytes:
    """PostgreSQL's text output of ``value`` as a column of type ``oid``."""
    out = Column("", oid, False).encode(value)
    return b"" if out is None else out


def to_binary(value: SQLiteValue, oid: int) -> bytes:
    """PostgreSQL's binary (send) representation of ``value`` as type ``oid``."""
    out = Column("", oid, True).encode(value)
    return b"" if out is None else out


numeric_send = numeric.numeric_send
numeric_recv = numeric.numeric_recv


# ---------------------------------------------------------------------------------------- parameters
_DECODE_ERRORS = (ValueError, struct.error, UnicodeDecodeError, decimal.InvalidOperation, OverflowError)


def decode_param(data: bytes | None, oid: int, binary: bool) -> SQLiteValue:
    """A Bind parameter as the SQLite value it binds as (its storage form)."""
    if data is None:
        return None
    pg_type = REGISTRY.by_oid.get(oid)
    if pg_type is None:
        if binary and oid:
            raise BadParameter(f"binary parameters of type {oid} are not supported")
        try:
            return data.decode()
        except UnicodeDecodeError as e:
            raise BadParameter("invalid byte sequence for encoding UTF8", "22021") from e
    decode = pg_type.binary_in if binary else pg_type.text_in
    if decode is None:
        raise BadParameter(f"binary parameters of type {pg_type.name} are not supported", "0A000")
    try:
        return decode(data)
    except BadParameter:
        raise
    except DatetimeError as e:
        raise BadParameter(str(e), e.sqlstate) from e
    except _DECODE_ERRORS as e:
        raise BadParameter(f"invalid input for {pg_type.name}: {data[:60]!r}") from e
