"""What the extended query protocol names and keeps between messages: a ``Prepared`` statement (Parse), a
``Portal`` (Bind) and the ``Outcome`` of running one, with the command tags a client reads from them.

They are plain data, apart from the session, so that its parts (``handshake.py``, ``commands.py``,
``copy/``) can use them without importing the session. Command tags come from the client's SQL, not from
SQLite: a tag names what PostgreSQL would have run (``CREATE TABLE``, ``INSERT 0 n``), which SQLite's
result does not say.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlite_ha.db.cursor import RowCursor
from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.server.pgwire.errors import PgError
from sqlite_ha.server.pgwire.types import values as t
from sqlite_ha.server.pgwire.wire.backend_messages import Field
from sqlite_ha.server.pgwire.wire.frontend_messages import Bind

_FIRST_WORDS = re.compile(
    r"^\s*(\w+)(?:\s+(?:or\s+replace\s+|temp(?:orary)?\s+|unique\s+|if\s+not\s+exists\s+)*(\w+))?", re.I
)
_COUNTED = {"UPDATE", "DELETE", "MERGE"}


@dataclass(slots=True)
class Prepared:
    """A parsed statement: the client's SQL, what runs on SQLite, and the types it announces."""

    sql: str  # as the client sent it
    kind: str  # dialect.classify
    run_sql: str  # translated (empty for session commands)
    param_oids: list[int]
    columns: list[t.Column] | None = None  # None: not known before execution (session commands)
    catalog: bool = False  # answered from the catalog database (pg_catalog, information_schema)
    explain: bool = False  # a PostgreSQL EXPLAIN: SQLite's query plan, as lines of one text column
    temp: bool = False  # runs on the session's own TEMP connection (temp.py)
    read_only: bool | None = None  # what SQLite says of the statement, once asked
    locks: bool = False  # SELECT … FOR UPDATE/SHARE: in a block, it takes the writer as a write does
    verb: str = ""  # the statement's first word, upper case: it makes the command tag
    descriptions: dict[tuple[int, ...], bytes] = field(default_factory=dict)  # RowDescription by formats

    def __post_init__(self) -> None:
        self.verb = verb(self.sql)

    def row_tag(self, count: int) -> str:
        """The command tag of a statement that returned ``count`` rows."""
        verb = self.verb
        if verb == "INSERT":
            return f"INSERT 0 {count}"
        return f"{verb} {count}" if verb in _COUNTED else f"SELECT {count}"

    def change_tag(self, affected: int) -> str:
        """The command tag of a statement that returned no rows, having changed ``affected`` of them."""
        verb = self.verb
        if verb == "INSERT":
            return f"INSERT 0 {affected}"
        if verb in ("UPDATE", "DELETE"):
            return f"{verb} {affected}"
        if verb in ("CREATE", "DROP", "ALTER"):
            found = _FIRST_WORDS.match(self.sql)
            obj = (found.group(2) or "").upper() if found else ""
            return f"{verb} {obj}".strip()
        if verb == "TRUNCATE":
            return "TRUNCATE TABLE"
        if verb in ("SELECT", "WITH", "VALUES"):
            return "SELECT 0"
        return verb or "OK"


@dataclass(slots=True)
class Portal:
    prepared: Prepared
    params: tuple[SQLiteValue, ...]
    result_binary: Sequence[int]
    rows: list[tuple[SQLiteValue, ...]] | None = None  # after the first Execute
    columns: list[t.Column] | None = None
    tag: str = ""
    sent: int = 0
    bind: Bind | None = None  # the message that made it, replayed on the writer when it is forwarded
    cursor: str | None = None  # a DECLAREd cursor (cursors.py): "hold" (WITH HOLD) or "block"; None: Bind's
    cursor_block: bool = False  # declared inside the transaction block still open
    lazy: RowCursor | None = None  # a cursor whose rows are read as FETCH asks (else ``rows`` holds them)


@dataclass(slots=True)
class Outcome:
    """What one statement produced, ready to be encoded."""

    tag: str
    columns: list[t.Column] | None = None  # None: no rows (CommandComplete only)
    rows: list[tuple[SQLiteValue, ...]] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)


def verb(sql: str) -> str:
    """A statement's first word, upper case: it makes the command tag."""
    found = _FIRST_WORDS.match(sql)
    return found.group(1).upper() if found else ""


def guess_oid(name: str) -> int:
    """Expression columns have no declared type; a few names say what they hold."""
    low = name.lower()
    if low.startswith(("count(", "length(", "changes(", "total_changes(", "last_insert_rowid(")):
        return t.INT8
    if low.startswith(("avg(", "total(")):
        return t.FLOAT8
    return t.TEXT


def formats(codes: Sequence[int], n: int) -> list[int]:
    """Bind's format codes (none, one for all, or one each) as one per value."""
    if not codes:
        return [0] * n
    if len(codes) == 1:
        return [codes[0]] * n
    if len(codes) != n:
        raise PgError("08P01", f"{len(codes)} format codes for {n} values")
    return list(codes)


def column_field(column: t.Column, fmt: int | None = None) -> Field:
    """A column as RowDescription announces it."""
    return Field(
        name=column.name,
        type_oid=column.oid,
        type_size=t.type_size(column.oid),
        type_modifier=column.typmod,
        format=(1 if column.binary else 0) if fmt is None else fmt,
    )


def parameter_type(declared: str | None, param_oids: list[int]) -> str | None:
    """``SELECT $1`` has the type of its parameter (psycopg's Decimal: numeric; untyped: text)."""
    if declared is None or not declared.startswith("$"):
        return declared
    n = int(declared[1:]) - 1
    oid = param_oids[n] if 0 <= n < len(param_oids) else 0
    found = t.REGISTRY.get(oid) if oid else None
    return found.name if found is not None else "TEXT"
