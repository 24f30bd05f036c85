"""Schema changes SQLite's ALTER TABLE cannot make, made by rebuilding the table inside the transaction.

This is SQLite's documented procedure ("Making Other Kinds Of Table Schema Changes",
https://www.sqlite.org/lang_altertable.html): foreign keys off, remember the table's indexes and triggers,
create the new table from the edited definition, copy the rows, drop the old table, rename the new one,
create the indexes and triggers again, check the foreign keys, foreign keys back on. It runs in the caller's
transaction (a client's BEGIN … COMMIT), inside a savepoint of its own so that a failure (a duplicate for a
new UNIQUE constraint) leaves the transaction as it was.

A rebuild is asked for with one SQL statement, ``SELECT sqlite_ha_rebuild('<json>')``: the JSON names the
table and the edits (``Rebuild``), not the resulting table, so that the same text applied to another node's
schema makes the same change there. SQLite itself does not know the function, so such a statement can never
run as a silent no-op: the writer's request runner recognises it and runs ``run`` instead. The same text is
what travels in the change set (``changes.capture``): every node rebuilds its own rows.

Replication state survives: the table keeps its name, so the rows' versions (keyed by table and primary key)
stay valid; a rebuild that gives a table without primary key one moves each row's version from its rowid
identity to its primary key. The former column list of a table whose columns changed is kept in
``_ha_shapes``, so that a change another node wrote in the old shape, arriving after the rebuild, is applied
to the new shape (``changes.lww``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import apsw
import orjson

from sqlite_ha.db import sequence_keys, tabledef
from sqlite_ha.db.authorizer import Permission
from sqlite_ha.db.runner import Budget, run_statement
from sqlite_ha.db.schema import TableInfo, quote, read_table
from sqlite_ha.db.statement import Result, Statement
from sqlite_ha.db.tabledef import TableDef, TableDefError
from sqlite_ha.errors import PermissionDenied

if TYPE_CHECKING:
    from sqlite_ha.changes.capture import Capture
    from sqlite_ha.db.connection import Guarded

FUNCTION = "sqlite_ha_rebuild"
_STATEMENT = re.compile(r"SELECT\s+sqlite_ha_rebuild\('((?:[^']|'')*)'\)\s*;?", re.IGNORECASE)
_NEW_SUFFIX = "__sqlite_ha_rebuild"
_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_NUMBERING = re.compile(r"/\*pg:\w+\s+(\w+)\*/")
_PG_INTEGER = {"BIGINT": "int8", "INT8": "int8", "BIGSERIAL": "int8", "SERIAL8": "int8", "SMALLINT": "int2",
               "INT2": "int2", "SMALLSERIAL": "int2", "SERIAL2": "int2", "INTEGER": "int8"}  # fmt: skip
_INTEGER_TYPE = re.compile(r"^\s*(?:INT[248]?|INTEGER|SMALLINT|BIGINT|(?:SMALL|BIG)?SERIAL[248]?)\s*$", re.I)

Edit = tuple[Any, ...]  # ("add_constraint", text), ("drop_column", name), … (see ``TableDef``)
_EDITS = frozenset(
    {"sql", "add_constraint", "drop_constraint", "rename_constraint", "set_type", "set_default",
     "set_not_null", "drop_column"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Rebuild:
    """An ALTER TABLE as edits of the table, applied in order; ``("sql", text)`` runs SQLite's own ALTER
    TABLE statement ``text`` between them. ``if_exists``: a missing table is no error (nothing is done)."""

    table: str
    edits: tuple[Edit, ...]
    if_exists: bool = False

    def sql(self) -> str:
        doc = orjson.dumps(
            {"table": self.table, "edits": [list(e) for e in self.edits], "if_exists": self.if_exists}
        ).decode()
        return f"SELECT {FUNCTION}('{doc.replace(chr(39), chr(39) * 2)}')"

    @classmethod
    def parse(cls, text: str) -> Rebuild:
        doc = orjson.loads(text)
        if not isinstance(doc, dict) or not isinstance(doc.get("table"), str):
            raise TableDefError("a rebuild must name its table", sqlstate="XX000")
        edits = doc.get("edits")
        if not isinstance(edits, list) or not all(
            isinstance(e, list) and e and e[0] in _EDITS for e in edits
        ):
            raise TableDefError("a rebuild's edits are not understood", sqlstate="XX000")
        return cls(
            table=doc["table"], edits=tuple(tuple(e) for e in edits), if_exists=bool(doc.get("if_exists"))
        )


def mentioned(sql: str) -> bool:
    """Cheap test (a substring) whether a statement's text may hold a rebuild."""
    return FUNCTION in sql


def split(sql: str) -> list[str | Rebuild]:
    """The statements of ``sql`` with the rebuilds taken out: SQL text pieces and ``Rebuild``s, in order."""
    out: list[str | Rebuild] = []
    pos = 0
    for m in _STATEMENT.finditer(sql):
        before = sql[pos : m.start()].strip().strip(";").strip()
        if before:
            out.append(before)
        out.append(Rebuild.parse(m.group(1).replace("''", "'")))
        pos = m.end()
    tail = sql[pos:].strip().strip(";").strip()
    if tail:
        out.append(tail)
    return out


def execute(
    c: Guarded,
    stmt: Statement,
    budget: Budget,
    on_statement: Callable[[apsw.Cursor, str], None] | None,
    capture: Capture | None,
    database: str,
) -> Result:
    """Run a statement holding table rebuilds on the writer: SQL pieces as any statement, rebuilds by the
    procedure, told to the capture so that a rebuild travels as one schema step and its copied rows do
    not."""
    if stmt.grant is not None and Permission.DDL not in stmt.grant:
        raise PermissionDenied("ddl", database)
    result = Result()
    for piece in split(stmt.sql):
        if isinstance(piece, str):
            result = run_statement(c.conn, Statement(sql=piece, bindings=stmt.bindings), budget, on_statement)
            continue
        outcomes: list[Outcome] | None = None
        # The procedure's own steps (its savepoint, the capture's tables) run as the node's; the statements
        # made of the client's text (the new table, the copy, SQLite's own ALTERs) under the client's rules.
        c.authorizer.internal = True
        try:
            if capture is not None:
                capture.pause(c.conn)
            outcomes = run(c.conn, piece, guard=lambda: _as_client(c))
        finally:
            try:
                if (
                    capture is not None
                ):  # even after a failed pause: what the transaction does next is captured
                    capture.resume(c.conn, piece, outcomes)
            finally:
                c.authorizer.internal = False
        result = Result()
    return result


@contextlib.contextmanager
def _as_client(c: Guarded) -> Iterator[None]:
    c.authorizer.internal = False
    try:
        yield
    finally:
        c.authorizer.internal = True


@dataclass(frozen=True, slots=True)
class Outcome:
    old: TableInfo
    new: TableInfo
    expressions: tuple[str, ...]  # per new column: what it was computed from, over the old table's columns


Guard = Callable[[], contextlib.AbstractContextManager[None]]


def run(
    conn: apsw.Connection, spec: Rebuild, *, guard: Guard = contextlib.nullcontext, savepoint: bool = True
) -> list[Outcome]:
    """Apply ``spec`` inside the open transaction: one rebuild per run of edits SQLite cannot make itself.

    ``guard`` wraps the statements made of the spec's text (on a node applying the log: the authorizer's
    rule for replicated SQL); the procedure's own steps run outside it. ``savepoint``: undo a failed
    rebuild alone (the caller has none of its own around it)."""
    found = conn.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name = ? COLLATE NOCASE", (spec.table,)
    ).fetchall()
    if not found:
        if spec.if_exists:
            return []
        raise TableDefError(f'relation "{spec.table}" does not exist', sqlstate="42P01")
    name = str(found[0][0])
    outcomes: list[Outcome] = []
    pending: list[Edit] = []
    for edit in spec.edits:
        if edit[0] != "sql":
            pending.append(edit)
            continue
        if pending:
            outcomes.append(_rebuild(conn, name, pending, guard, savepoint))
            pending = []
        with guard():
            conn.execute(str(edit[1]))
    if pending:
        outcomes.append(_rebuild(conn, name, pending, guard, savepoint))
    return outcomes


def _rebuild(conn: apsw.Connection, name: str, edits: list[Edit], guard: Guard, savepoint: bool) -> Outcome:
    found = conn.execute(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", (name,)
    ).fetchall()
    create = str(found[0][0])
    old_info = read_table(conn, name)
    if old_info is None:
        raise TableDefError(f'"{name}" is not a table that can be altered', sqlstate="42809")
    definition = TableDef.parse(name, create)
    expressions = {c.name: quote(c.name) for c in definition.columns}
    dropped: list[str] = []
    for edit in edits:
        _apply(definition, edit, expressions, dropped)
    adopted = sequence_keys.adopt(conn, name, definition)  # a restored SERIAL key: the rowid alias again
    if old_info.pk_columns and not definition.has_primary_key():
        raise TableDefError(
            f'table "{name}" would lose its primary key, by which its rows are replicated', sqlstate="0A000"
        )
    new_name = name + _NEW_SUFFIX
    saved = [
        (str(kind), str(obj), str(sql))
        for kind, obj, sql in conn.execute(
            "SELECT type, name, sql FROM sqlite_schema WHERE tbl_name = ? AND type IN ('index', 'trigger') "
            "AND sql IS NOT NULL ORDER BY rowid",
            (name,),
        ).fetchall()
    ]
    saved = [s for s in saved if not (s[0] == "index" and _uses(conn, s[1], s[2], dropped))]
    columns = [c.name for c in definition.columns]
    keep_rowid = not old_info.without_rowid and not definition.without_rowid
    targets = ", ".join((["rowid"] if keep_rowid else []) + [quote(c) for c in columns])
    sources = ", ".join((["rowid"] if keep_rowid else []) + [expressions[c] for c in columns])
    broken_before = _broken_views(conn) if dropped else []
    foreign_keys = bool(conn.config(apsw.SQLITE_DBCONFIG_ENABLE_FKEY, -1))
    with _foreign_keys_off(conn, foreign_keys), _savepoint(conn) if savepoint else contextlib.nullcontext():
        with guard():
            conn.execute(definition.sql(new_name))
            conn.execute(f"INSERT INTO {quote(new_name)}({targets}) SELECT {sources} FROM {quote(name)}")
        conn.execute(f"DROP TABLE {quote(name)}")
        # legacy: the views and triggers that name the table are left as written (they name it again once
        # renamed), instead of being checked while it is missing
        legacy = conn.config(apsw.SQLITE_DBCONFIG_LEGACY_ALTER_TABLE, -1)
        conn.config(apsw.SQLITE_DBCONFIG_LEGACY_ALTER_TABLE, 1)
        try:
            conn.execute(f"ALTER TABLE {quote(new_name)} RENAME TO {quote(name)}")
        finally:
            conn.config(apsw.SQLITE_DBCONFIG_LEGACY_ALTER_TABLE, legacy)
        for _, _, sql in saved:
            conn.execute(sql)
        if adopted is not None:
            sequence_keys.drop(conn, adopted)
        if dropped:
            cascade = any(e[0] == "drop_column" and e[3:4] == (True,) for e in edits)
            _dependent_views(conn, name, broken_before, cascade=cascade)
        if foreign_keys:
            broken = conn.execute(f"PRAGMA foreign_key_check({quote(name)})").fetchall()
            if broken:
                raise TableDefError(
                    f'insert or update on table "{name}" violates foreign key constraint: a row references '
                    f'a missing row of "{broken[0][2]}"',
                    sqlstate="23503",
                )
    new_info = read_table(conn, name)
    assert new_info is not None
    return Outcome(old=old_info, new=new_info, expressions=tuple(expressions[c] for c in columns))


def _apply(definition: TableDef, edit: Edit, expressions: dict[str, str], dropped: list[str]) -> None:
    op = edit[0]
    if op == "add_constraint":
        definition.add_constraint(str(edit[1]))
    elif op == "drop_constraint":
        definition.drop_constraint(str(edit[1]), missing_ok=bool(edit[2]) if len(edit) > 2 else False)
    elif op == "rename_constraint":
        definition.rename_constraint(str(edit[1]), str(edit[2]))
    elif op == "set_type":
        column = definition.column(str(edit[1]))
        # INTEGER PRIMARY KEY is the rowid, which numbers new rows: an integer type of any width keeps it so
        # (Django widens an AutoField's id to bigint; "BIGINT PRIMARY KEY" would leave new ids NULL)
        # (the PostgreSQL type rides along in a comment, "INTEGER /*pg:int4*/", which the catalog reads)
        alias = (
            _COMMENT.sub("", column.type).strip().upper() == "INTEGER"
            and column.constraint("PRIMARY") is not None
        )
        new_type = _COMMENT.sub("", str(edit[2])).strip()
        if alias and _INTEGER_TYPE.match(new_type):
            # and how it is numbered ("/*pg:int4 serial*/": its implicit sequence in the catalog) stays
            kept = _NUMBERING.search(column.type)
            numbering = f" {kept.group(1)}" if kept else ""
            column.type = f"INTEGER /*pg:{_PG_INTEGER.get(new_type.upper(), 'int4')}{numbering}*/"
        else:
            column.type = str(edit[2])
        if len(edit) > 3 and edit[3]:
            expressions[column.name] = f"({edit[3]})"
    elif op == "set_default":
        definition.set_default(str(edit[1]), None if edit[2] is None else str(edit[2]))
    elif op == "set_not_null":
        definition.set_not_null(str(edit[1]), bool(edit[2]))
    elif op == "drop_column":
        if (
            len(edit) > 2
            and edit[2]
            and not any(c.name.lower() == str(edit[1]).lower() for c in definition.columns)
        ):
            return
        column = definition.column(str(edit[1]))
        if len(definition.columns) == 1:
            raise TableDefError(
                f'cannot drop column "{column.name}": a SQLite table needs at least one column',
                sqlstate="0A000",
            )
        definition.drop_column(column.name)
        expressions.pop(column.name, None)
        dropped.append(column.name)


def _broken_views(conn: apsw.Connection) -> list[str]:
    """Views that cannot be read (they name a column or table that is not there)."""
    broken = []
    for (view,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'view'").fetchall():
        try:
            conn.execute(f"SELECT * FROM {quote(str(view))} LIMIT 0").fetchall()
        except apsw.SQLError as e:
            if "no such column" not in str(e) and "no such table" not in str(e):
                raise
            broken.append(str(view))
    return broken


def _dependent_views(conn: apsw.Connection, table: str, before: list[str], *, cascade: bool) -> None:
    """Views that no longer work without the dropped columns: dropped with CASCADE, as PostgreSQL drops
    them; else the column may not go (2BP01). (Views of views that then break go the same way; views
    broken before are not this change's.)"""
    for _ in range(64):
        broken = [v for v in _broken_views(conn) if v not in before]
        if not broken:
            return
        if not cascade:
            raise TableDefError(
                f'cannot drop a column of table "{table}" because view "{broken[0]}" depends on it',
                sqlstate="2BP01",
            )
        for view in broken:
            conn.execute(f"DROP VIEW {quote(view)}")


def _uses(conn: apsw.Connection, index: str, sql: str, dropped: list[str]) -> bool:
    """Whether the index covers a dropped column (PostgreSQL drops such indexes with the column)."""
    if not dropped:
        return False
    gone = {d.lower() for d in dropped}
    names = {
        str(r[2]).lower() for r in conn.execute(f"PRAGMA index_xinfo({quote(index)})") if r[2] is not None
    }
    if names & gone:
        return True
    words = {tabledef.unquote(t).lower() for t in tabledef.tokens(sql)}
    return bool(words & gone)  # an expression or a WHERE clause naming it


@contextlib.contextmanager
def _foreign_keys_off(conn: apsw.Connection, on: bool) -> Iterator[None]:
    """Step 1 of the procedure. (``PRAGMA foreign_keys`` does nothing inside a transaction; the connection
    flag it sets can still be changed through sqlite3_db_config.)"""
    if not on:
        yield
        return
    conn.config(apsw.SQLITE_DBCONFIG_ENABLE_FKEY, 0)
    try:
        yield
    finally:
        conn.config(apsw.SQLITE_DBCONFIG_ENABLE_FKEY, 1)


@contextlib.contextmanager
def _savepoint(conn: apsw.Connection) -> Iterator[None]:
    conn.execute("SAVEPOINT _ha_rebuild")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK TO _ha_rebuild")
            conn.execute("RELEASE _ha_rebuild")
        raise
    conn.execute("RELEASE _ha_rebuild")
