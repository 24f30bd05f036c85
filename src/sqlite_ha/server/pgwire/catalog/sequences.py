"""The implicit sequence of a SERIAL or IDENTITY key, as PostgreSQL's catalog shows it.

Here such a key is SQLite's rowid alias, numbered by the node's allocator (``changes/autokeys.py``), and
no sequence object exists. PostgreSQL clients still look for one: SQLAlchemy reflects a column as
autoincrement from its default ``nextval('t_id_seq'::regclass)`` or from ``attidentity``, Django's inspectdb
prints an AutoField from the same, and pg_dump dumps ``CREATE SEQUENCE … OWNED BY`` from the ``pg_depend``
link. So each such key gets the rows PostgreSQL would make: a ``pg_class`` relation of kind ``S`` named
``<table>_<column>_seq``, its ``pg_sequence`` row, an automatic (SERIAL, ``a``) or internal (IDENTITY,
``i``) dependency on the column, the column's default (SERIAL) or ``attidentity`` (IDENTITY), and a row of
``pg_sequences`` and ``information_schema.sequences``.
"""

from __future__ import annotations

from dataclasses import dataclass

import apsw

from sqlite_ha.server.pgwire.catalog.names import quote
from sqlite_ha.server.pgwire.types import values as t

# PostgreSQL's bounds of a sequence of each integer type: (type name, OID, precision, max value)
_BOUNDS = {
    "int2": ("smallint", t.INT2, 16, 2**15 - 1),
    "int4": ("integer", t.INT4, 32, 2**31 - 1),
    "int8": ("bigint", t.INT8, 64, 2**63 - 1),
}
PER_DATABASE = ("pg_sequence", "pg_sequences", "information_schema.sequences")


@dataclass(frozen=True, slots=True)
class Implicit:
    """The sequence of one key column."""

    name: str  # <table>_<column>_seq, as its schema shows it
    schema: str  # the table's namespace name
    pg_type: str  # int2, int4 or int8
    numbering: str  # serial, always or default

    @property
    def qualified(self) -> str:
        """As pg_get_serial_sequence returns it and nextval's regclass text names it outside public."""
        return f"{quote(self.schema)}.{quote(self.name)}"

    @property
    def default(self) -> str | None:
        """The column default pg_get_expr prints: ``nextval('t_id_seq'::regclass)`` for SERIAL (qualified
        outside public, as PostgreSQL prints a relation not on the search path); none for IDENTITY."""
        if self.numbering != "serial":
            return None
        shown = quote(self.name) if self.schema == "public" else self.qualified
        return f"nextval('{shown.replace(chr(39), chr(39) * 2)}'::regclass)"

    @property
    def identity(self) -> str:
        """``pg_attribute.attidentity``: a for ALWAYS, d for BY DEFAULT, empty for SERIAL."""
        return {"always": "a", "default": "d"}.get(self.numbering, "")


def implicit(table: str, column: str, schema: str, pg_type: str, numbering: str) -> Implicit:
    return Implicit(
        t.sequence_name(table, column), schema, pg_type if pg_type in _BOUNDS else "int4", numbering
    )


@dataclass(frozen=True, slots=True)
class Options:
    """What pg_sequence says of a sequence."""

    type_name: str  # smallint, integer or bigint
    start: int
    step: int
    low: int
    high: int
    cache: int = 1

    @classmethod
    def of_implicit(cls, sequence: Implicit) -> Options:
        type_name, _, _, maximum = _BOUNDS[sequence.pg_type]
        return cls(type_name, 1, 1, 1, maximum)


_BY_NAME = {name: (oid, bits) for name, oid, bits, _ in _BOUNDS.values()}


def fill(
    conn: apsw.Connection,
    database: str,
    owner: str,
    name: tuple[str, str],
    options: Options,
    oid: int,
    owned_by: tuple[int, int, str] | None,
) -> None:
    """The rows of one sequence, its ``pg_class`` row excepted (the catalog makes it). ``name``: its schema
    and name; ``owned_by``: the table's OID, the column's number and the dependency (``a`` SERIAL's, ``i``
    IDENTITY's), for an implicit sequence. ``last_value`` is not shown (NULL): the catalog is rebuilt on
    schema changes, not on each nextval — ``SELECT last_value FROM s`` reads it."""
    schema, seq = name
    type_oid, precision = _BY_NAME.get(options.type_name, (t.INT8, 64))
    conn.execute(
        "INSERT INTO pg_sequence VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
        (oid, type_oid, options.start, options.step, options.high, options.low, options.cache),
    )
    if owned_by is not None:
        conn.execute("INSERT INTO pg_depend VALUES (1259, ?, 0, 1259, ?, ?, ?)", (oid, *owned_by))
    conn.execute(
        "INSERT INTO pg_sequences VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, NULL)",
        (
            schema,
            seq,
            owner,
            options.type_name,
            options.start,
            options.low,
            options.high,
            options.step,
            options.cache,
        ),
    )
    if owned_by is not None and owned_by[2] == "i":
        return  # PostgreSQL's view leaves out identity columns' sequences (an internal dependency)
    conn.execute(
        "INSERT INTO information_schema.sequences VALUES (?, ?, ?, ?, ?, 2, 0, ?, ?, ?, ?, 'NO')",
        (
            database,
            schema,
            seq,
            options.type_name,
            precision,
            *map(str, (options.start, options.low, options.high, options.step)),
        ),
    )
