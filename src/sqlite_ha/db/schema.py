"""What replication needs to know about a user table, read from SQLite and cached per schema version."""

from __future__ import annotations

from dataclasses import dataclass

import apsw

from sqlite_ha.db.authorizer import INTERNAL_PREFIX


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def is_user_table(name: str) -> bool:
    lowered = name.lower()
    return not lowered.startswith((INTERNAL_PREFIX, "sqlite_"))


@dataclass(frozen=True, slots=True)
class TableInfo:
    name: str
    columns: tuple[str, ...]
    pk_columns: tuple[str, ...]  # in primary-key order; () when the table has no declared primary key
    without_rowid: bool

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
    return TableInfo(name=name, columns=columns, pk_columns=pk, without_rowid=bool(listed[0][1]))
