"""PEP 249's type constructors and type objects, how parameters become SQLite values, and ``Row``.

Parameters are what SQLite stores: ``int`` (64-bit), ``float``, ``str``, ``bytes`` (``bytearray`` and
``memoryview`` as bytes), ``None``; ``bool`` as 0/1. ``datetime.date``/``datetime`` are stored as ISO 8601
text exactly as ``sqlite3``'s default adapters do (so the PEP 249 constructors below can be bound). Any
other type is a ``ProgrammingError`` naming the parameter, never a silent ``str()``.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlite_ha.db.values import INT64_MAX, INT64_MIN, SQLiteValue
from sqlite_ha.driver.exceptions import ProgrammingError

Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime
Binary = bytes


def DateFromTicks(ticks: float) -> datetime.date:
    return Date(*time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> datetime.time:
    return Time(*time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> datetime.datetime:
    return Timestamp(*time.localtime(ticks)[:6])


class DBAPITypeObject:
    """Compares equal to each declared-type name it stands for (PEP 249: ``cursor.description[i][1] ==
    STRING``). SQLite reports no type in ``description`` (``sqlite3`` neither), so these serve programs that
    compare type codes they got elsewhere."""

    def __init__(self, *names: str) -> None:
        self.values = frozenset(n.upper() for n in names)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return other.upper() in self.values
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.values)

    def __repr__(self) -> str:
        return f"DBAPITypeObject({', '.join(sorted(self.values))})"


STRING = DBAPITypeObject("TEXT", "CHAR", "VARCHAR", "CLOB", "STRING", "NCHAR", "NVARCHAR")
BINARY = DBAPITypeObject("BLOB", "BINARY", "VARBINARY")
NUMBER = DBAPITypeObject("INTEGER", "INT", "REAL", "NUMERIC", "FLOAT", "DOUBLE", "DECIMAL", "BIGINT")
DATETIME = DBAPITypeObject("DATE", "TIME", "DATETIME", "TIMESTAMP")
ROWID = DBAPITypeObject("ROWID", "INTEGER PRIMARY KEY")


def adapt(value: Any, where: str) -> SQLiteValue:
    """One parameter as an SQLite value; ``where`` names it in the error."""
    kind = type(value)
    if kind is str or kind is float or value is None or kind is bytes:
        return value  # type: ignore[no-any-return]
    if kind is int or kind is bool:
        if not INT64_MIN <= value <= INT64_MAX:
            raise OverflowError(f"{where}: Python int too large to convert to SQLite INTEGER")
        return int(value)
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat(" ")
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, int):  # an int subclass (IntEnum)
        return adapt(int(value), where)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, float):
        return float(value)
    raise ProgrammingError(f"Error binding {where}: type {kind.__name__!r} is not supported")


def bindings(params: Any) -> tuple[SQLiteValue, ...] | dict[str, SQLiteValue] | None:
    """A statement's parameters (a sequence, or a mapping for ``:name``) as SQLite values."""
    if params is None:
        return None
    if isinstance(params, Mapping):
        return {str(k): adapt(v, f"parameter :{k}") for k, v in params.items()}
    if isinstance(params, str | bytes) or not isinstance(params, Sequence):
        raise ProgrammingError("parameters are of unsupported type")
    return tuple(adapt(v, f"parameter {i}") for i, v in enumerate(params, 1))


class Row:
    """A result row like ``sqlite3.Row``: a tuple indexed by position or by column name (case-insensitive),
    with ``keys()``. Set ``connection.row_factory = sqlite_ha.Row`` (``sqlite3.Row`` is taken to mean it:
    that class accepts only ``sqlite3``'s own cursors)."""

    __slots__ = ("_names", "_values")

    def __init__(self, cursor: Any, values: tuple[Any, ...]) -> None:
        self._names: tuple[str, ...] = tuple(d[0] for d in (cursor.description or ()))
        self._values = tuple(values)

    def keys(self) -> list[str]:
        return list(self._names)

    def __getitem__(self, key: int | str | slice) -> Any:
        if isinstance(key, str):
            folded = key.casefold()
            for name, value in zip(self._names, self._values, strict=False):
                if name.casefold() == folded:
                    return value
            raise IndexError("No item with that key")
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Row):
            return NotImplemented
        return self._names == other._names and self._values == other._values

    def __hash__(self) -> int:
        return hash(self._names) ^ hash(self._values)

    def __repr__(self) -> str:
        return f"<sqlite_ha.Row {dict(zip(self._names, self._values, strict=False))!r}>"
