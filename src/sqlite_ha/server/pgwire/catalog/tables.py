"""The served database's tables as PostgreSQL's catalog describes them: columns, indexes, constraints.

SQLite's pragmas give columns, indexes (with the constraint that made them) and foreign keys, but not the
names given to constraints nor CHECK constraints; those are read from the table's ``CREATE TABLE`` text.
Unnamed constraints are named as PostgreSQL names them (``t_pkey``, ``t_a_b_key``, ``t_a_fkey``,
``t_a_check``), so a schema made through the PG front end reflects the way it would on PostgreSQL.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from typing import Any

import apsw
import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from sqlite_ha.server.pgwire.sql import schemas
from sqlite_ha.server.pgwire.sql.sequences import MARKER as SEQUENCE_MARKER
from sqlite_ha.server.pgwire.types.values import pg_key_numbering, pg_type_comments

# the affinity word the dialect adds after a type ("JSONB TEXT", "NUMERIC REAL(10, 2)"), unknown to sqlglot
_TEXT_STORED = re.compile(r"\b(JSONB?|NUMERIC)\s+(?:TEXT|REAL)\b", re.I)
_ACTIONS = {"NO ACTION": "a", "RESTRICT": "r", "CASCADE": "c", "SET NULL": "n", "SET DEFAULT": "d"}


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    declared: str
    notnull: bool
    default: str | None
    numbering: str = ""  # a rowid-alias key's: serial, always or default (types.values.pg_key_numbering)


@dataclass(frozen=True, slots=True)
class Index:
    name: str
    columns: tuple[str | None, ...]  # None: an expression, spelt in ``expressions``
    unique: bool
    primary: bool
    constraint: bool  # made by a UNIQUE constraint (or the primary key), not CREATE INDEX
    descending: tuple[bool, ...] = ()
    expressions: tuple[str | None, ...] = ()
    predicate: str | None = None  # WHERE of a partial index, PostgreSQL syntax


@dataclass(frozen=True, slots=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]
    on_update: str = (
        "a"  # pg_constraint.confupdtype: a no action, r restrict, c cascade, n set null, d default
    )
    on_delete: str = "a"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    expression: str  # PostgreSQL syntax, without the CHECK ( … ) around it


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    kind: str  # 'r' table, 'v' view
    columns: tuple[Column, ...]
    indexes: tuple[Index, ...] = ()
    foreign_keys: tuple[ForeignKey, ...] = ()
    checks: tuple[Check, ...] = ()
    query: str | None = None  # a view's SELECT, in PostgreSQL syntax, its tables qualified with "public."
    uses: tuple[str, ...] = ()  # the tables and views a view reads
    triggers: tuple[tuple[str, str], ...] = ()  # (name, CREATE TRIGGER text as SQLite keeps it)
    # a standalone sequence (kind 'S', sql/sequences.py): type name, start, increment, min, max, cache
    sequence: tuple[str, int, int, int, int, int] | None = None

    @classmethod
    def read(cls, conn: apsw.Connection, kind: str, name: str, schema: str = "main") -> Table:
        """``schema``: ``main``, or ``temp`` for a session's TEMP table (see ``pgwire/temp.py``)."""
        info = conn.execute(
            'SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?, ?)', (name, schema)
        )
        rows = info.fetchall()
        columns = tuple(
            Column(str(r[0]), str(r[1] or ""), bool(r[2]) or bool(r[4]), _opt(r[3])) for r in rows
        )
        if kind != "table":
            query, uses = view_query(_sql(conn, "view", name, schema))
            return cls(name, "v", columns, query=query, uses=uses)
        create_sql = _sql(conn, "table", name, schema)
        if create_sql is not None and SEQUENCE_MARKER in create_sql:
            return cls(name, "S", (), sequence=_sequence(conn, name, schema))
        kept = pg_type_comments(create_sql)  # "id INTEGER /*pg:int4*/ PRIMARY KEY": a serial is an int4
        if kept:
            columns = tuple(
                replace(c, declared=kept[c.name.lower()])
                if c.declared.upper() == "INTEGER" and c.name.lower() in kept
                else c
                for c in columns
            )
            numbering = pg_key_numbering(create_sql)
            if numbering:
                columns = tuple(replace(c, numbering=numbering.get(c.name.lower(), "")) for c in columns)
        declared = _declared(name, create_sql)
        pk = tuple(str(r[0]) for r in sorted((r for r in rows if r[4]), key=lambda r: int(r[4])))  # type: ignore[arg-type]
        indexes = _indexes(conn, name, declared, schema)
        if pk and not any(index.primary for index in indexes):  # the rowid alias: SQLite lists no index
            indexes.insert(0, Index(declared.primary_key or f"{name}_pkey", pk, True, True, True))
        triggers = tuple(
            (str(n), str(sql))
            for n, sql in conn.execute(
                "SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ? ORDER BY name",
                (name,),
            ).fetchall()
        )
        return cls(
            name,
            "r",
            columns,
            tuple(indexes),
            _foreign_keys(conn, name, declared),
            declared.checks,
            triggers=triggers,
        )


def _sequence(conn: apsw.Connection, name: str, schema: str) -> tuple[str, int, int, int, int, int]:
    quoted = '"' + name.replace('"', '""') + '"'
    listed = "data_type, start_value, increment_by, min_value, max_value, cache_size"
    rows = conn.execute(f"SELECT {listed} FROM {schema}.{quoted}").fetchall()
    if not rows:  # its row is written by the writer right after the table: a reader may not see it yet
        return ("bigint", 1, 1, 1, 2**63 - 1, 1)
    kind, *numbers = rows[0]
    start, step, low, high, cache = (int(n) for n in numbers)  # type: ignore[arg-type]
    return str(kind), start, step, low, high, cache


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _sql(conn: apsw.Connection, kind: str, name: str, schema: str = "main") -> str | None:
    table = "temp.sqlite_schema" if schema == "temp" else "main.sqlite_schema"
    found = conn.execute(f"SELECT sql FROM {table} WHERE type = ? AND name = ?", (kind, name)).fetchall()
    return _opt(found[0][0]) if found else None


def _key(columns: tuple[str | None, ...]) -> tuple[str, ...]:
    return tuple((c or "").lower() for c in columns)


@functools.lru_cache(maxsize=4096)
def _declared(table: str, sql: str | None) -> _Declared:
    """Parsed once per statement text: a schema change re-reads only the tables it changed."""
    return _Declared.parse(table, sql)


@dataclass
class _Declared:
    """What a CREATE TABLE statement says that the pragmas do not: constraint names and CHECKs."""

    table: str
    primary_key: str | None = None
    uniques: dict[tuple[str, ...], str] = field(default_factory=dict)
    foreign_keys: dict[tuple[tuple[str, ...], str], str] = field(default_factory=dict)
    checks: tuple[Check, ...] = ()

    @classmethod
    def parse(cls, table: str, sql: str | None) -> _Declared:
        declared = cls(table)
        try:  # "meta JSON TEXT": how the front end declares a json column (text affinity): sqlglot reads JSON
            tree = sqlglot.parse_one(_TEXT_STORED.sub(r"\1", sql or ""), read="sqlite")
        except SqlglotError:
            return declared  # a statement beyond sqlglot: PostgreSQL's default names, no CHECKs
        if not isinstance(tree, exp.Create) or not isinstance(tree.this, exp.Schema):
            return declared
        checks: list[Check] = []
        for item in tree.this.expressions:
            if isinstance(item, exp.ColumnDef):
                for constraint in item.constraints:
                    declared._add(constraint.kind, constraint.name or None, (item.name,), checks)
            elif isinstance(item, exp.Constraint):
                for kind in item.expressions:
                    declared._add(kind, item.name, (), checks)
            else:
                declared._add(item, None, (), checks)
        declared.checks = tuple(checks)
        return declared

    def _add(self, kind: exp.Expr, name: str | None, column: tuple[str, ...], checks: list[Check]) -> None:
        if isinstance(kind, exp.PrimaryKeyColumnConstraint | exp.PrimaryKey):
            self.primary_key = name or self.primary_key
        elif isinstance(kind, exp.UniqueColumnConstraint):
            listed = kind.this.expressions if isinstance(kind.this, exp.Schema) else []
            columns = tuple(c.name for c in listed) or column
            if name:
                self.uniques[_key(columns)] = name
        elif isinstance(kind, exp.ForeignKey | exp.Reference):
            reference = kind.args.get("reference") if isinstance(kind, exp.ForeignKey) else kind
            parent = reference.find(exp.Table) if reference is not None else None
            columns = tuple(c.name for c in kind.expressions) if isinstance(kind, exp.ForeignKey) else column
            if name and parent is not None:
                self.foreign_keys[(_key(columns), parent.name.lower())] = name
        elif isinstance(kind, exp.CheckColumnConstraint):
            referenced = sorted({c.name for c in kind.this.find_all(exp.Column)})
            default = f"{self.table}_{referenced[0]}_check" if len(referenced) == 1 else f"{self.table}_check"
            checks.append(
                Check(name or default, kind.this.sql(dialect="postgres", normalize_functions="lower"))
            )


def _indexes(conn: apsw.Connection, table: str, declared: _Declared, schema: str = "main") -> list[Index]:
    indexes: list[Index] = []
    for _, index, unique, origin, partial in conn.execute(
        'SELECT seq, name, "unique", origin, partial FROM pragma_index_list(?, ?)', (table, schema)
    ).fetchall():
        keys = conn.execute(
            'SELECT name, "desc" FROM pragma_index_xinfo(?, ?) WHERE key ORDER BY seqno', (index, schema)
        ).fetchall()
        columns = tuple(_opt(k[0]) for k in keys)
        descending = tuple(bool(k[1]) for k in keys)
        expressions: tuple[str | None, ...] = ()
        predicate = None
        if origin == "c" and (partial or None in columns):
            expressions, predicate = _index_parts(_sql(conn, "index", str(index), schema), len(columns))
        if origin == "pk":
            shown = declared.primary_key or f"{table}_pkey"
        elif origin == "u":
            shown = declared.uniques.get(_key(columns)) or f"{table}_{'_'.join(c or '' for c in columns)}_key"
        else:
            shown = str(index)
        indexes.append(
            Index(
                shown,
                columns,
                bool(unique),
                origin == "pk",
                origin in ("pk", "u"),
                descending,
                expressions,
                predicate,
            )
        )
    indexes.sort(key=lambda index: not index.primary)
    return indexes


@functools.lru_cache(maxsize=4096)
def _index_parts(sql: str | None, count: int) -> tuple[tuple[str | None, ...], str | None]:
    """The key expressions and the WHERE of a CREATE INDEX statement, in PostgreSQL syntax."""
    try:
        tree = sqlglot.parse_one(sql or "", read="sqlite")
    except SqlglotError:
        return (None,) * count, None
    params = tree.find(exp.IndexParameters)
    if params is None:
        return (None,) * count, None
    keys = [k.this if isinstance(k, exp.Ordered) else k for k in params.args.get("columns") or []]
    where = params.args.get("where")
    expressions = tuple(_expression_text(k) for k in keys)
    return expressions, (
        where.this.sql(dialect="postgres", normalize_functions="lower")
        if isinstance(where, exp.Where)
        else None
    )


def _expression_text(key: exp.Expr) -> str:
    """An index key expression as pg_get_indexdef prints it: in parentheses unless a bare function call."""
    while isinstance(key, exp.Paren):
        key = key.this
    text = key.sql(dialect="postgres", normalize_functions="lower")
    bare = isinstance(key, exp.Func) and not isinstance(key, exp.Cast | exp.Binary | exp.Connector)
    return text if bare else f"({text})"


def _foreign_keys(conn: apsw.Connection, table: str, declared: _Declared) -> tuple[ForeignKey, ...]:
    parts: dict[int, list[tuple[Any, ...]]] = {}
    listed = 'SELECT id, "table", "from", "to", on_update, on_delete FROM pragma_foreign_key_list(?)'
    for row in conn.execute(f"{listed} ORDER BY id, seq", (table,)).fetchall():
        parts.setdefault(int(row[0]), []).append(row)  # type: ignore[arg-type]
    keys = []
    for rows in parts.values():
        parent = str(rows[0][1])
        columns = tuple(str(r[2]) for r in rows)
        parent_columns = tuple(str(r[3]) for r in rows if r[3] is not None)
        if len(parent_columns) != len(columns):  # REFERENCES parent: its primary key
            parent_columns = tuple(
                str(r[0])
                for r in conn.execute(
                    "SELECT name FROM pragma_table_info(?) WHERE pk ORDER BY pk", (parent,)
                ).fetchall()
            )
        name = (
            declared.foreign_keys.get((_key(columns), parent.lower())) or f"{table}_{'_'.join(columns)}_fkey"
        )
        on_update, on_delete = (_ACTIONS.get(str(rows[0][i]).upper(), "a") for i in (4, 5))
        keys.append(ForeignKey(name, columns, parent, parent_columns, on_update, on_delete))
    return tuple(keys)


@functools.lru_cache(maxsize=1024)
def view_query(sql: str | None) -> tuple[str | None, tuple[str, ...]]:
    """The SELECT of a CREATE VIEW statement as PostgreSQL prints it (pg_get_viewdef): PostgreSQL syntax,
    tables qualified with their schema (pg_dump empties the search_path, so the text must stand alone); and
    the tables it reads (pg_dump orders a view after them)."""
    try:
        tree = sqlglot.parse_one(sql or "", read="sqlite")
    except SqlglotError:
        return None, ()
    query = tree.expression if isinstance(tree, exp.Create) else None
    if not isinstance(query, exp.Query):
        return None, ()
    query = query.copy()
    ctes = {cte.alias_or_name.lower() for cte in query.find_all(exp.CTE)}
    uses: list[str] = []
    for table in query.find_all(exp.Table):
        if (
            isinstance(table.this, exp.Identifier)
            and not table.args.get("db")
            and table.name.lower() not in ctes
        ):
            uses.append(table.name)
            schema, name = schemas.split(table.name, schemas.known())  # "s.t": s.t (sql/schemas.py)
            if schema is not None:
                table.set("this", exp.to_identifier(name))
            table.set("db", exp.to_identifier(schema or "public"))
    return " " + query.sql(dialect="postgres") + ";", tuple(dict.fromkeys(uses))
