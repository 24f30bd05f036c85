"""PostgreSQL arrays at the edge: the text literal, the binary format, and the JSON text SQLite works with.

Inside SQLite an array is JSON text (``[1,2]``), which its JSON functions read. PostgreSQL prints arrays as
literals (``{1,2}``, ``{a,"b c",NULL}``); ``int2vector`` and ``oidvector``, the catalog's key lists, print
as space-separated numbers (``1 2``) and number their elements from 0. ``items`` reads any of these forms,
``literal`` writes the PostgreSQL one, ``pack``/``unpack`` frame the binary format (one dimension) around
element bytes that the type module encodes.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlite_ha.db.values import SQLiteValue


@dataclass(frozen=True, slots=True)
class ArrayType:
    """An array type of pg_type: its name, its element type and the subscript of its first element."""

    oid: int
    name: str
    element: int
    lower: int = 1

    @property
    def vector(self) -> bool:
        return self.lower == 0


# (oid, name, element oid, first subscript), PostgreSQL 15
ARRAY_TYPES: dict[int, ArrayType] = {
    a.oid: a
    for a in (
        ArrayType(22, "int2vector", 21, 0),
        ArrayType(30, "oidvector", 26, 0),
        ArrayType(1000, "_bool", 16),
        ArrayType(1002, "_char", 18),
        ArrayType(1003, "_name", 19),
        ArrayType(1005, "_int2", 21),
        ArrayType(1007, "_int4", 23),
        ArrayType(1009, "_text", 25),
        ArrayType(1015, "_varchar", 1043),
        ArrayType(1016, "_int8", 20),
        ArrayType(1021, "_float4", 700),
        ArrayType(1022, "_float8", 701),
        ArrayType(1028, "_oid", 26),
        # what Django's bulk_create sends as unnest(%s::type[]) with server-side binding
        ArrayType(1001, "_bytea", 17),
        ArrayType(1182, "_date", 1082),
        ArrayType(1115, "_timestamp", 1114),
        ArrayType(1185, "_timestamptz", 1184),
        ArrayType(1231, "_numeric", 1700),
        ArrayType(199, "_json", 114),
        ArrayType(3807, "_jsonb", 3802),
        ArrayType(2951, "_uuid", 2950),
    )
}
BY_NAME = {a.name: a for a in ARRAY_TYPES.values()}
ARRAY_OF = {a.element: a for a in ARRAY_TYPES.values() if a.name.startswith("_")}  # by element type OID

_INTEGER = re.compile(r"-?\d+")
_NEEDS_QUOTES = re.compile(r'[{}",\\\s]|^$|^null$', re.I)
_HEADER = struct.Struct(">iiI")
_DIMENSION = struct.Struct(">ii")
_LENGTH = struct.Struct(">i")


def items(value: SQLiteValue) -> list[SQLiteValue]:
    """The elements of an array in any of its forms: JSON text, a PostgreSQL literal or a vector.

    Unquoted numbers of a literal or vector come back as integers (the catalog's arrays hold attribute
    numbers and OIDs, compared with integer columns); NULL as None.
    """
    if value is None:
        return []
    if isinstance(value, int | float):
        return [value]  # a one-element vector that SQLite's integer affinity stored as a number
    text = value.decode() if isinstance(value, bytes) else value
    stripped = text.strip()
    if stripped.startswith("["):
        parsed = json.loads(stripped)
        if not isinstance(parsed, list):
            raise ValueError(f"not an array: {text[:60]!r}")
        return [_json_item(v) for v in parsed]
    if stripped.startswith("{"):
        return _parse_literal(stripped)
    return [int(part) if _INTEGER.fullmatch(part) else part for part in stripped.split()]


def _json_item(value: object) -> SQLiteValue:
    if isinstance(value, bool):
        return int(value)
    if value is None or isinstance(value, int | float | str):
        return value
    return json.dumps(value, separators=(",", ":"))


def _parse_literal(text: str) -> list[SQLiteValue]:
    """``{a,"b c",NULL,3}`` → ``['a', 'b c', None, 3]`` (one dimension)."""
    return [int(v) if isinstance(v, _Unquoted) and _INTEGER.fullmatch(v) else v for v in literal_items(text)]


class _Unquoted(str):
    """An element written without quotes (which may be read as a number)."""


def literal_items(text: str) -> list[str | None]:
    """The elements of a one-dimensional array literal as text, as written: ``{a,"b c",NULL}``."""
    if not text.endswith("}"):
        raise ValueError(f"malformed array literal: {text[:60]!r}")
    body = text[1:-1]
    out: list[str | None] = []
    i, n = 0, len(body)
    while i < n:
        while i < n and body[i].isspace():
            i += 1
        if i < n and body[i] == "{":
            raise ValueError("multidimensional arrays are not supported")
        if i < n and body[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and body[i] != '"':
                if body[i] == "\\":
                    i += 1
                chars.append(body[i])
                i += 1
            out.append("".join(chars))
            i += 1
        else:
            chars = []
            while i < n and body[i] != ",":
                if body[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(body[i])
                i += 1
            word = "".join(chars).strip()
            out.append(None if word.upper() == "NULL" else _Unquoted(word))
        while i < n and body[i] != ",":
            i += 1
        i += 1
    return out


def literal(values: Iterable[SQLiteValue], array: ArrayType) -> str:
    """PostgreSQL's text output of an array of this type."""
    texts = [_element_text(v, array.element) for v in values]
    if array.vector:
        return " ".join("0" if t is None else t for t in texts)
    return "{" + ",".join("NULL" if t is None else _quoted(t) for t in texts) + "}"


def _element_text(value: SQLiteValue, element: int) -> str | None:
    if value is None:
        return None
    if element == 16:  # bool
        truthy = value.strip().lower() in ("t", "true", "1") if isinstance(value, str) else bool(value)
        return "t" if truthy else "f"
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    return repr(value) if isinstance(value, float) else str(value)


def _quoted(text: str) -> str:
    if not _NEEDS_QUOTES.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_json(value: SQLiteValue) -> str:
    """An array in any form as the JSON text SQLite's functions read."""
    return json.dumps(items(value), separators=(",", ":"))


def pack(elements: Sequence[bytes | None], array: ArrayType) -> bytes:
    """The binary format of a one-dimensional array whose elements are already encoded."""
    if not elements and not array.vector:
        return _HEADER.pack(0, 0, array.element)
    has_null = any(e is None for e in elements)
    parts = [_HEADER.pack(1, int(has_null), array.element), _DIMENSION.pack(len(elements), array.lower)]
    for element in elements:
        parts.append(_LENGTH.pack(-1) if element is None else _LENGTH.pack(len(element)) + element)
    return b"".join(parts)


def unpack(data: bytes) -> tuple[int, list[bytes | None]]:
    """The element type and the encoded elements of a binary array (one dimension at most)."""
    ndim, _flags, element = _HEADER.unpack_from(data, 0)
    if ndim == 0:
        return element, []
    if ndim != 1:
        raise ValueError("multidimensional arrays are not supported")
    count, _lower = _DIMENSION.unpack_from(data, _HEADER.size)
    pos = _HEADER.size + _DIMENSION.size
    out: list[bytes | None] = []
    for _ in range(count):
        (length,) = _LENGTH.unpack_from(data, pos)
        pos += _LENGTH.size
        if length < 0:
            out.append(None)
        else:
            out.append(data[pos : pos + length])
            pos += length
    return element, out
