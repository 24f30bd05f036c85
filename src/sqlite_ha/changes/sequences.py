"""PostgreSQL's sequence functions (``nextval``, ``setval``, ``currval``, ``lastval``) on a node's writer.

Two kinds of sequence exist here, both numbered by the node's rowid allocator (``rowids``), so that two nodes
never hand out the same value, whatever they have seen of each other (values are unique, not gap-free,
as PostgreSQL's are not either):

* the *implicit* sequence of a SERIAL or IDENTITY key, ``<table>_<column>_seq``: no object, the key is the
  table's rowid alias. ``nextval`` hands out the table's next key exactly as an insert would take it (the
  allocator remembers it, so no insert takes it again); ``setval(v)`` raises the floor of the keys the node
  hands out, so the next one is above ``v``. The floor only rises: SQLite's rule is max(key) + 1 in any case.
* a *standalone* sequence (``CREATE SEQUENCE``, ``sql/sequences.py``): a one-row table marked
  ``/*pg:sequence*/`` holding ``last_value``, ``is_called`` and the options, so it replicates as any row.
  Its k-th value is ``origin + k * increment`` (``origin``: one step before START, or what ``setval``
  set), and k comes from the allocator under the sequence's name: the node's residue of the cluster's
  stride, as for keys.

The functions exist on the writer connection only, so a statement calling them is never classified as a
read and always runs where the allocator is. ``currval``/``lastval`` answer what this node's writer handed
out last; PostgreSQL answers per session, so they are refused (0A000) rather than risk another session's
value: take the value from ``nextval`` or ``RETURNING``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass

import apsw

from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.errors import HAError, NotFound, NotSupported
from sqlite_ha.server.pgwire.types.values import pg_key_numbering, sequence_name

MARKER = "/*pg:sequence*/"
_REGCLASS = re.compile(r"^\s*(?:public\s*\.\s*)?(\"(?:[^\"]|\"\")+\"|[^\s.\"]+)\s*$", re.IGNORECASE)


class SequenceLimit(HAError):
    """nextval past MAXVALUE (or below MINVALUE): PostgreSQL's sequence_generator_limit_exceeded."""

    code = "sequence_limit"

    def __init__(self, message: str) -> None:
        super().__init__(message, sqlstate="2200H")


@dataclass(frozen=True, slots=True)
class _Implicit:
    table: str
    key: str


Allocate = Callable[[str, int], int]  # (name, largest so far) → the node's next k
Floor = Callable[[str, int], None]  # (name, k) → the next k handed out is above it (or from it, lowered)


def _name(value: SQLiteValue) -> str:
    """A sequence named as ``nextval`` takes it: ``'s'``, ``'public.s'``, ``'"S"'``; case folds unquoted."""
    text = str(value if value is not None else "")
    found = _REGCLASS.match(text)
    if found is None:
        return text  # "schema.s" of another schema: that table's name (sql/schemas.py)
    name = found.group(1)
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


class Sequences:
    """The sequence functions of one database's writer connection."""

    def __init__(self, conn: apsw.Connection, allocate: Allocate, floor: Floor) -> None:
        self._conn = conn
        self._allocate = allocate
        self._floor = floor
        flags = apsw.SQLITE_INNOCUOUS  # allowed in a column DEFAULT (trusted_schema is off)
        conn.create_scalar_function("nextval", self.nextval, 1, flags=flags)
        conn.create_scalar_function("setval", self.setval, -1, flags=flags)
        conn.create_scalar_function("pg_sequence_init", self.init, 1)
        # in a statement with nextval (the catalog answers it alone): nextval(pg_get_serial_sequence(…))
        conn.create_scalar_function("pg_get_serial_sequence", self.serial_sequence, 2)
        conn.create_scalar_function("currval", self._per_session("currval"), -1)
        conn.create_scalar_function("lastval", self._per_session("lastval"), -1)

    def nextval(self, *args: SQLiteValue) -> int:
        seq = _name(args[0])
        if self._is_standalone(seq):
            return self._next_standalone(seq)
        implicit = self._implicit(seq)
        largest = self._conn.execute(f'SELECT max("{_q(implicit.key)}") FROM "{_q(implicit.table)}"').get
        return self._allocate(implicit.table, largest if isinstance(largest, int) else 0)

    def init(self, *args: SQLiteValue) -> None:
        """The row of a sequence just created (``sql/sequences.py``): its columns' defaults are its
        options; a sequence made again with IF NOT EXISTS keeps its row."""
        seq = _name(args[0])
        if self._is_standalone(seq) and not self._conn.execute(f'SELECT 1 FROM "{_q(seq)}"').fetchall():
            self._conn.execute(f'INSERT INTO "{_q(seq)}" DEFAULT VALUES')
            self._floor(seq, 0)  # a sequence of an earlier name's: its values are not this one's

    def setval(self, *args: SQLiteValue) -> int:
        if len(args) not in (2, 3) or not isinstance(args[1], int):
            raise NotSupported("setval takes a sequence, a bigint value and optionally is_called")
        seq, value = _name(args[0]), args[1]
        called = bool(args[2]) if len(args) == 3 else True
        if self._is_standalone(seq):
            _, step, low, high = self._options(seq)
            if not low <= value <= high:
                raise SequenceLimit(
                    f'setval: value {value} is out of bounds for sequence "{seq}" ({low}..{high})'
                )
            # the values that follow are value + k * step, k from 1: "origin" is value (or one step back)
            origin = value if called else value - step
            self._conn.execute(
                f'UPDATE "{_q(seq)}" SET last_value = ?, is_called = ?, origin = ?',
                (value, int(called), origin),
            )
            self._floor(seq, 0)
            return value
        implicit = self._implicit(seq)
        self._floor(implicit.table, value if called else value - 1)
        return value

    def serial_sequence(self, *args: SQLiteValue) -> str | None:
        table, column = args
        wanted = (_name(table).lower(), str(column or "").lower())
        for name, found in self._implicit_all().items():
            if (found.table.lower(), found.key.lower()) == wanted:
                return f"public.{name}"
        return None

    def _per_session(self, name: str) -> Callable[..., int]:
        def refuse(*args: SQLiteValue) -> int:
            raise NotSupported(
                f"{name} is not supported: this node cannot tell which session took a sequence's last value",
                hint="use the value nextval() returned, or INSERT … RETURNING",
            )

        return refuse

    # ------------------------------------------------------------------------------------ standalone
    def _is_standalone(self, seq: str) -> bool:
        found = self._conn.execute(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", (seq,)
        ).fetchall()
        return bool(found) and MARKER in str(found[0][0] or "")

    def _options(self, seq: str) -> tuple[int, int, int, int]:
        row = self._conn.execute(
            f'SELECT start_value, increment_by, min_value, max_value FROM "{_q(seq)}"'
        ).fetchall()
        if not row:
            raise NotFound(f'sequence "{seq}" has lost its row', sqlstate="55000")
        start, step, low, high = (int(v) for v in row[0])  # type: ignore[arg-type]
        return start, step, low, high

    def _next_standalone(self, seq: str) -> int:
        row = self._conn.execute(f'SELECT last_value, is_called, origin FROM "{_q(seq)}"').fetchall()
        _, step, low, high = self._options(seq)
        last, called, origin = int(row[0][0]), bool(row[0][1]), int(row[0][2])  # type: ignore[arg-type]
        # the k-th value is origin + k * step; k comes from the allocator, so nodes never share one
        k = self._allocate(seq, (last - origin) // step - (0 if called else 1))
        value = origin + k * step
        if not low <= value <= high:
            bound = (
                f'maximum value of sequence "{seq}" ({high})'
                if step > 0
                else f'minimum value of sequence "{seq}" ({low})'
            )
            raise SequenceLimit(f"nextval: reached {bound}")
        self._conn.execute(f'UPDATE "{_q(seq)}" SET last_value = ?, is_called = 1', (value,))
        return value

    # ------------------------------------------------------------------------------------ implicit
    def _implicit_all(self) -> dict[str, _Implicit]:
        schema = tuple(
            (str(n), str(s or ""))
            for n, s in self._conn.execute(
                "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND sql LIKE '%/*pg:%'"
            ).fetchall()
        )
        return _implicit_sequences(schema)

    def _implicit(self, seq: str) -> _Implicit:
        found = self._implicit_all().get(seq.lower())
        if found is None:
            raise NotFound(f'relation "{seq}" does not exist', sqlstate="42P01")
        return found


@functools.lru_cache(maxsize=64)
def _implicit_sequences(schema: tuple[tuple[str, str], ...]) -> dict[str, _Implicit]:
    """Implicit sequence name (lower case) → its table and key, for the tables' CREATE statements."""
    out: dict[str, _Implicit] = {}
    for table, sql in schema:
        for column, numbering in pg_key_numbering(sql).items():
            if numbering:
                out[sequence_name(table, column).lower()] = _Implicit(table, _column_name(sql, column))
    return out


def _column_name(sql: str, lower: str) -> str:
    """The column as the table spells it (pg_key_numbering gives it lower case)."""
    found = re.search(rf'("?)({re.escape(lower)})\1\s+INTEGER\s*/\*pg:', sql, re.IGNORECASE)
    return found.group(2) if found else lower


def _q(name: str) -> str:
    return name.replace('"', '""')


def state(conn: apsw.Connection, name: SQLiteValue) -> tuple[int, bool]:
    """``(last_value, is_called)`` of a sequence, as ``SELECT last_value, is_called FROM s`` shows it (what
    pg_dump reads to write its setval): a standalone one's row; an implicit one's from the table's largest
    key (1 and false for an empty table, as PostgreSQL shows a sequence never used). Any connection."""
    seq = _name(name)
    found = conn.execute("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", (seq,)).fetchall()
    if found and MARKER in str(found[0][0] or ""):
        row = conn.execute(f'SELECT last_value, is_called FROM "{_q(seq)}"').fetchall()
        return (int(row[0][0]), bool(row[0][1])) if row else (1, False)  # type: ignore[arg-type]
    schema = tuple(
        (str(n), str(s or ""))
        for n, s in conn.execute(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'table' AND sql LIKE '%/*pg:%'"
        ).fetchall()
    )
    implicit = _implicit_sequences(schema).get(seq.lower())
    if implicit is None:
        raise NotFound(f'relation "{seq}" does not exist', sqlstate="42P01")
    largest = conn.execute(f'SELECT max("{_q(implicit.key)}") FROM "{_q(implicit.table)}"').get
    return (largest, True) if isinstance(largest, int) else (1, False)
