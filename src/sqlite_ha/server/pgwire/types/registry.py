"""One record per PostgreSQL type, in one registry, as psycopg keeps its adapters.

A ``PgType`` says everything the server knows of a type: what pg_type holds for it (oid, name, length,
category, its array type), the name ``format_type`` prints, the names a declared type or a cast may use
for it, and its four codecs (text and binary output of a stored SQLite value; text and binary input of a
Bind parameter into the value SQLite stores). Type inference, the catalog, the dialect's casts and the wire
all read this one registry; the records themselves are in ``builtin``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sqlite_ha.db.values import SQLiteValue

Encoder = Callable[[SQLiteValue], bytes]
Decoder = Callable[[bytes], SQLiteValue]


class NotEncodable(ValueError):
    """A stored value that the announced type cannot carry (SQLSTATE 22P02, or 22003 out of range)."""

    def __init__(self, message: str, sqlstate: str = "22P02") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class BadParameter(ValueError):
    """A parameter value that does not parse as its type (SQLSTATE 22P02 unless the type says better)."""

    def __init__(self, message: str, sqlstate: str = "22P02") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


@dataclass(frozen=True, slots=True, kw_only=True)
class PgType:
    """A type of pg_type and how its values travel."""

    oid: int
    name: str  # typname
    sql_name: str  # what format_type prints ("timestamp without time zone")
    length: int  # typlen: bytes, -1 variable, -2 C string
    category: str  # typcategory: N numeric, S string, D date/time, B boolean, U user, A array…
    array: int = 0  # typarray: the OID of the array of this type
    element: int = 0  # typelem of an array type
    aliases: tuple[str, ...] = ()  # other names a declared type or cast uses for it ("int", "integer")
    text_out: Encoder
    binary_out: Encoder | None = None  # None: binary is the text bytes (text-like types)
    text_in: Decoder
    binary_in: Decoder | None = None  # None: binary parameters of this type are refused

    @property
    def by_value(self) -> bool:
        return 0 < self.length <= 8


@dataclass
class Registry:
    """The known types by OID and by every name (lower case)."""

    by_oid: dict[int, PgType] = field(default_factory=dict)
    by_name: dict[str, PgType] = field(default_factory=dict)

    def add(self, pg_type: PgType) -> PgType:
        self.by_oid[pg_type.oid] = pg_type
        for name in (pg_type.name, pg_type.sql_name, *pg_type.aliases):
            self.by_name.setdefault(name.lower(), pg_type)
        return pg_type

    def get(self, oid: int) -> PgType | None:
        return self.by_oid.get(oid)

    def named(self, name: str) -> PgType | None:
        return self.by_name.get(name.strip().lower())

    def __iter__(self) -> Iterator[PgType]:
        return iter(self.by_oid.values())


REGISTRY = Registry()
