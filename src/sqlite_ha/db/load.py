"""Reading an existing SQLite file for ``load``: its schema, in the order to recreate it, and its rows, in
bounded chunks of INSERT statements.

Loading goes through the normal write path (each chunk one transaction and one change set), so every node
ends with the content by the same rules as any other write, and no node has to stop. The file is read with a
read-only connection and keyset pagination (``WHERE rowid > ?``), so memory stays bounded by one chunk however
large the file is. Triggers are created after the rows, so loading does not fire them; foreign-key parents
are loaded before their children.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import apsw

from sqlite_ha.db.schema import USER_OBJECTS, quote
from sqlite_ha.db.statement import Statement
from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.errors import BadRequest

CHUNK_BYTES = 512 << 10  # values per change set, roughly; a change set must stay well under NATS max_payload
CHUNK_ROWS = 1000
_MAGIC = b"SQLite format 3\x00"


@dataclass(frozen=True, slots=True)
class SourceTable:
    name: str
    sql: str
    columns: tuple[str, ...]  # the ones an INSERT can set (generated columns are left out)
    key: tuple[str, ...]  # what orders and pages the rows: ("rowid",) or a WITHOUT ROWID table's primary key
    with_rowid: bool  # the INSERT sets rowid explicitly (a rowid table without an INTEGER PRIMARY KEY)

    def insert_sql(self) -> str:
        cols = (["rowid"] if self.with_rowid else []) + [quote(c) for c in self.columns]
        marks = ", ".join("?" * len(cols))
        return f"INSERT INTO {quote(self.name)}({', '.join(cols)}) VALUES ({marks})"

    def select_sql(self, first: bool) -> str:
        picked = [*(["rowid"] if self.with_rowid else []), *(quote(c) for c in self.columns)]
        keys = [k if k == "rowid" else quote(k) for k in self.key]
        # the key columns come last too, to page from them whatever the INSERT needs
        sql = f"SELECT {', '.join(picked + keys)} FROM {quote(self.name)}"
        if not first:
            sql += f" WHERE ({', '.join(keys)}) > ({', '.join('?' * len(keys))})"
        return sql + f" ORDER BY {', '.join(keys)} LIMIT ?"


@dataclass(frozen=True, slots=True)
class SourcePlan:
    tables: tuple[SourceTable, ...]  # parents before children
    after_rows: tuple[str, ...]  # indexes, views and triggers, created once the rows are in
    size: int


def open_source(path: str) -> apsw.Connection:
    """Open the file read-only after checking that it is a SQLite database at all."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_MAGIC))
    except OSError as e:
        raise BadRequest(f"cannot read the uploaded file: {e.strerror or e}") from e
    if head != _MAGIC:
        raise BadRequest("the uploaded file is not a SQLite database (no 'SQLite format 3' header)")
    try:
        conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
        conn.execute("PRAGMA query_only=ON")
        conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()
    except apsw.Error as e:
        raise BadRequest(f"the uploaded file is not a usable SQLite database: {e}") from e
    return conn


def plan(conn: apsw.Connection, size: int) -> SourcePlan:
    """The file's schema as the load recreates it; refuses files it cannot load faithfully."""
    try:
        check = conn.execute("PRAGMA quick_check").fetchall()
    except apsw.Error as e:
        raise BadRequest(f"the uploaded database is corrupt: {e}") from e
    if check != [("ok",)]:
        raise BadRequest(f"the uploaded database is corrupt: {check[0][0]}")
    entries = conn.execute(
        "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE sql IS NOT NULL "
        f"AND {USER_OBJECTS} ORDER BY rowid"
    ).fetchall()
    tables: dict[str, SourceTable] = {}
    after: list[str] = []
    virtual = []
    for kind, name, _tbl, sql in entries:
        sql, name = str(sql), str(name)
        if kind == "table":
            if sql.upper().startswith("CREATE VIRTUAL"):
                virtual.append(name)
                continue
            tables[name] = _table(conn, name, sql)
        else:
            after.append(sql)
    if virtual:
        raise BadRequest(
            f"the uploaded database has virtual tables ({', '.join(virtual)}), which load does not support",
            hint="drop them from the file, load it, then create them on the cluster",
        )
    return SourcePlan(tables=tuple(_parents_first(conn, tables)), after_rows=tuple(after), size=size)


def _table(conn: apsw.Connection, name: str, sql: str) -> SourceTable:
    info = conn.execute(f"PRAGMA table_xinfo({quote(name)})").fetchall()
    columns = tuple(str(r[1]) for r in info if r[6] == 0)  # hidden: 2, 3 = generated
    pk = sorted((int(r[5]), str(r[1])) for r in info if r[5])
    without_rowid = bool(
        conn.execute("SELECT 1 FROM pragma_table_list WHERE name = ? AND wr = 1", (name,)).fetchall()
    )
    if without_rowid:
        return SourceTable(name, sql, columns, tuple(c for _, c in pk), with_rowid=False)
    integer_pk = len(pk) == 1 and any(str(r[1]) == pk[0][1] and str(r[2]).upper() == "INTEGER" for r in info)
    return SourceTable(name, sql, columns, ("rowid",), with_rowid=not integer_pk)


def _parents_first(conn: apsw.Connection, tables: dict[str, SourceTable]) -> list[SourceTable]:
    """Tables ordered so that foreign-key parents come before their children (cycles: file order)."""
    parents = {
        name: {str(r[2]) for r in conn.execute(f"PRAGMA foreign_key_list({quote(name)})").fetchall()}
        for name in tables
    }
    ordered: list[SourceTable] = []
    placed: set[str] = set()
    visiting: set[str] = set()

    def place(name: str) -> None:
        if name in placed or name in visiting or name not in tables:
            return
        visiting.add(name)
        for parent in sorted(parents[name]):
            place(parent)
        visiting.discard(name)
        placed.add(name)
        ordered.append(tables[name])

    for name in tables:
        place(name)
    return ordered


def read_chunk(
    conn: apsw.Connection, table: SourceTable, after: Sequence[SQLiteValue] | None
) -> tuple[list[Statement], tuple[SQLiteValue, ...] | None, int]:
    """The next chunk of ``table``'s rows after the key ``after`` as INSERT statements, the key of its last
    row, and the bytes of values it carries; an empty list at the end."""
    params: list[SQLiteValue] = [*(after or ()), CHUNK_ROWS]
    cursor = conn.execute(table.select_sql(after is None), params)
    insert = table.insert_sql()
    width = len(table.columns) + (1 if table.with_rowid else 0)
    statements: list[Statement] = []
    size = 0
    last: tuple[SQLiteValue, ...] | None = None
    for row in cursor:
        values = tuple(row[:width])
        statements.append(Statement(sql=insert, bindings=values))
        last = tuple(row[width:])
        size += sum(len(v) if isinstance(v, str | bytes) else 8 for v in values)
        if size >= CHUNK_BYTES:
            break
    cursor.close()
    return statements, last, size
