"""What replication needs to know about a user table, read from SQLite and cached per schema version."""

from __future__ import annotations

from dataclasses import dataclass

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


class SchemaCache:
    """Table descriptions, dropped whenever SQLite's schema version moves."""

    def __init__(self) -> None:
        self._version: int | None = None
        self._tables: dict[str, TableInfo | None] = {}
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

    def table(self, conn: apsw.Connection, name: str) -> TableInfo | None:
        if name not in self._tables:
            self._tables[name] = _read(conn, name)
        return self._tables[name]


def _read(conn: apsw.Connection, name: str) -> TableInfo | None:
    listed = conn.execute(
        "SELECT type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ?", (name,)
    ).fetchall()
    if not listed or listed[0][0] != "table":
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
