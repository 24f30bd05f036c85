"""What replication needs to know about a user table, read from SQLite and cached per schema version."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import apsw

from sqlite_ha.db.authorizer import INTERNAL_PREFIX


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# A WHERE condition on sqlite_schema for the user's own objects: not SQLite's, not the node's (_ha_*), and
# nothing that belongs to a node's table (indexes and triggers go by tbl_name).
USER_OBJECTS = "name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND tbl_name NOT LIKE '\\_ha\\_%' ESCAPE '\\'"


def is_user_table(name: str) -> bool:
    lowered = name.lower()
    return not lowered.startswith((INTERNAL_PREFIX, "sqlite_"))


@dataclass(frozen=True, slots=True)
class UniqueIndex:
    """A UNIQUE constraint other than the primary key, on plain columns."""

    name: str
    columns: tuple[str, ...]
    collations: tuple[str, ...]  # upper case: BINARY, NOCASE, RTRIM


@dataclass(frozen=True, slots=True)
class TableInfo:
    name: str
    columns: tuple[str, ...]
    pk_columns: tuple[str, ...]  # in primary-key order; () when the table has no declared primary key
    without_rowid: bool
    unique: tuple[UniqueIndex, ...] = ()
    # A UNIQUE index on an expression, with a WHERE clause or a custom collation: clashes on it cannot be
    # resolved by comparing values, so a change that clashes on it is parked instead.
    opaque_unique: tuple[str, ...] = ()
    # An FTS5 table keeping its own content: its rows replicate as (rowid, columns…), read from its content
    # table, and every node's FTS5 builds its own index from them (``columns`` starts with "rowid").
    fts: bool = False

    @property
    def by_rowid(self) -> bool:
        return not self.pk_columns

    def pk_where(self) -> str:
        return " AND ".join(f"{quote(c)} IS ?" for c in self.pk_columns)

    def select_sql(self) -> str:
        cols = ", ".join(quote(c) for c in self.columns)
        where = "rowid = ?" if self.by_rowid else self.pk_where()
        return f"SELECT {cols} FROM {quote(self.name)} WHERE {where}"

    def pk_positions(self) -> tuple[int, ...]:
        return tuple(self.columns.index(c) for c in self.pk_columns)


ShadowRole = Literal["content", "index", "config"]


@dataclass(frozen=True, slots=True)
class Shadow:
    """A table a virtual table keeps its data in (SQLite calls it a shadow table).

    The session extension sees changes to shadow tables only, never to the virtual table itself. Those of an
    FTS5 table with its own content (``fts`` set) are understood: its ``content`` table holds its rows, the
    ``index`` tables are derived from them, its ``config`` holds options set with ``INSERT INTO t(t, …)``.
    Other virtual tables' shadow tables are opaque: their changes cannot be replicated.
    """

    owner: str  # the virtual table
    role: ShadowRole
    fts: TableInfo | None = None  # the FTS5 table, when its rows replicate
    content: TableInfo | None = None  # this content table as an ordinary table (role "content")


class SchemaCache:
    """Table descriptions, dropped whenever SQLite's schema version moves."""

    def __init__(self) -> None:
        self._version: int | None = None
        self._tables: dict[str, TableInfo | None] = {}
        self._shadows: dict[str, Shadow | None] = {}
        self.shadowed: set[str] | None = None  # tables with hidden rows (see ``unique``), loaded lazily

    def has_shadows(self, conn: apsw.Connection, table: str) -> bool:
        if self.shadowed is None:
            rows = conn.execute("SELECT DISTINCT tbl FROM _ha_shadow").fetchall()
            self.shadowed = {str(r[0]) for r in rows}
        return table in self.shadowed

    def refresh(self, conn: apsw.Connection) -> None:
        version = int(conn.execute("PRAGMA schema_version").fetchall()[0][0] or 0)
        if version != self._version:
            self._version = version
            self._tables.clear()
            self._shadows.clear()

    def table(self, conn: apsw.Connection, name: str) -> TableInfo | None:
        """An ordinary table, or an FTS5 table whose rows replicate; None for anything else."""
        if name not in self._tables:
            self._tables[name] = _read(conn, name)
        return self._tables[name]

    def shadow(self, conn: apsw.Connection, name: str) -> Shadow | None:
        """What the shadow table ``name`` is to its virtual table; None if it is not one (or is gone)."""
        if name not in self._shadows:
            self._shadows[name] = _read_shadow(conn, name)
        return self._shadows[name]


_VIRTUAL = re.compile(
    r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*CREATE\s+VIRTUAL\s+TABLE\s.*?\bUSING\s+(\w+)\s*(?:\((.*)\))?\s*;?\s*$",
    re.I | re.S,
)
# FTS5 options that keep the rows elsewhere (external content) or nowhere (contentless): a content= option.
_FTS5_CONTENT_OPTION = re.compile(r"(?:^|,)\s*content\s*=", re.I)
_FTS5_INDEX_SHADOWS = ("data", "idx", "docsize")
# Modules whose tables keep rows in shadow tables that cannot be read back as the table's rows.
_OPAQUE_MODULES = frozenset({"fts3", "fts4", "rtree", "rtree_i32", "geopoly"})


def unreplicable_virtual_table(sql: str) -> str | None:
    """Why the virtual table ``CREATE VIRTUAL TABLE`` statement ``sql`` makes could not replicate its rows
    (the session extension sees only its shadow tables), or None when it can (an FTS5 table with its own
    content) or keeps no rows (table-valued modules such as ``dbstat``)."""
    match = _VIRTUAL.match(sql)
    if match is None:
        return None
    module, args = match.group(1).lower(), match.group(2) or ""
    if module == "fts5":
        return (
            "an FTS5 table with a content= option (external content or contentless)"
            if (_FTS5_CONTENT_OPTION.search(args))
            else None
        )
    return f"a virtual table using {module}" if module in _OPAQUE_MODULES else None


def _read_fts(conn: apsw.Connection, name: str) -> TableInfo | None:
    """The FTS5 table ``name`` if it keeps its own content, as a table keyed by rowid."""
    found = conn.execute(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", (name,)
    ).fetchall()
    match = _VIRTUAL.match(str(found[0][0] or "")) if found else None
    if match is None or match.group(1).lower() != "fts5" or _FTS5_CONTENT_OPTION.search(match.group(2) or ""):
        return None
    columns = tuple(str(r[0]) for r in conn.execute("SELECT name FROM pragma_table_info(?)", (name,)))
    return TableInfo(
        name=name, columns=("rowid", *columns), pk_columns=("rowid",), without_rowid=False, fts=True
    )


def _read_shadow(conn: apsw.Connection, name: str) -> Shadow | None:
    listed = conn.execute(
        "SELECT type FROM pragma_table_list WHERE schema = 'main' AND name = ?", (name,)
    ).fetchall()
    if not listed or listed[0][0] != "shadow":
        return None
    owners = [
        str(r[0])
        for r in conn.execute("SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'virtual'")
        if name.lower().startswith(str(r[0]).lower() + "_")
    ]
    if not owners:
        return None
    owner = max(owners, key=len)
    suffix = name[len(owner) + 1 :].lower()
    fts = _read_fts(conn, owner)
    if fts is None:
        return Shadow(owner=owner, role="index")
    if suffix == "content":
        return Shadow(owner=owner, role="content", fts=fts, content=_read(conn, name, kind="shadow"))
    return Shadow(owner=owner, role="index" if suffix in _FTS5_INDEX_SHADOWS else "config", fts=fts)


def read_table(conn: apsw.Connection, name: str) -> TableInfo | None:
    """The table ``name`` as it is now, uncached."""
    return _read(conn, name)


def _read(conn: apsw.Connection, name: str, kind: str = "table") -> TableInfo | None:
    listed = conn.execute(
        "SELECT type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ?", (name,)
    ).fetchall()
    if listed and listed[0][0] == "virtual" and kind == "table":
        return _read_fts(conn, name)
    if not listed or listed[0][0] != kind:
        return None
    info = conn.execute("SELECT name, pk FROM pragma_table_info(?)", (name,)).fetchall()
    columns = tuple(str(r[0]) for r in info)
    pk = tuple(str(r[0]) for r in sorted((r for r in info if r[1]), key=lambda r: int(r[1] or 0)))
    unique: list[UniqueIndex] = []
    opaque: list[str] = []
    for _, index, is_unique, origin, partial in conn.execute(f"PRAGMA index_list({quote(name)})").fetchall():
        if not is_unique or origin == "pk":
            continue
        keys = [r for r in conn.execute(f"PRAGMA index_xinfo({quote(str(index))})").fetchall() if r[5]]
        collations = tuple(str(r[4]).upper() for r in keys)
        if partial or any(r[1] == -2 for r in keys) or any(c not in _COLLATIONS for c in collations):
            opaque.append(str(index))
            continue
        unique.append(
            UniqueIndex(name=str(index), columns=tuple(str(r[2]) for r in keys), collations=collations)
        )
    return TableInfo(
        name=name,
        columns=columns,
        pk_columns=pk,
        without_rowid=bool(listed[0][1]),
        unique=tuple(unique),
        opaque_unique=tuple(opaque),
    )


_COLLATIONS = frozenset({"BINARY", "NOCASE", "RTRIM"})
