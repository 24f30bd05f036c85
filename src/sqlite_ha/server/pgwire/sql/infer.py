"""Parameter types for ParameterDescription, read off the statement: asyncpg encodes every argument strictly
by the type the server announces, so ``WHERE id = $1`` must announce the type of ``id``, not text.

A statement's text is enough for the shapes clients and ORMs send: ``INSERT INTO t(a, b) VALUES (?1, ?2)``,
``col <op> ?n`` (and ``?n <op> col``), ``SET col = ?n``, ``LIMIT ?n`` / ``OFFSET ?n``. The column's declared
type comes from the tables the statement names; a parameter found nowhere is announced as text.
"""

from __future__ import annotations

import contextlib
import functools
import re
from collections.abc import Callable

import sqlglot
from sqlglot import exp
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify

from sqlite_ha.server.pgwire.sql.translation import NOW_SQL
from sqlite_ha.server.pgwire.types import arrays
from sqlite_ha.server.pgwire.types import values as t

_NAME = r'(?:"(?:[^"]|"")+"|\[[^\]]+\]|`[^`]+`|[A-Za-z_][\w$]*)'
_TABLES = re.compile(rf"\b(?:from|join|into|update)\s+(?:{_NAME}\s*\.\s*)?({_NAME})", re.I)
_INSERT = re.compile(
    rf"\binsert\s+(?:or\s+\w+\s+)?into\s+(?:{_NAME}\s*\.\s*)?({_NAME})\s*(?:\(([^)]*)\))?\s*values\s*\(",
    re.I,
)
_COMPARE_LEFT = re.compile(
    rf"(?:{_NAME}\s*\.\s*)?({_NAME})\s*(?:=|==|<>|!=|<=|>=|<|>|\blike\b|\bis\b)\s*\?(\d+)", re.I
)
_COMPARE_RIGHT = re.compile(rf"\?(\d+)\s*(?:=|==|<>|!=|<=|>=|<|>)\s*(?:{_NAME}\s*\.\s*)?({_NAME})", re.I)
_LIMIT = re.compile(r"\b(?:limit|offset)\s+\?(\d+)", re.I)
_IN = re.compile(rf"(?:{_NAME}\s*\.\s*)?({_NAME})\s+(?:not\s+)?in\s*\(([^()]*)\)", re.I)
# what dialect makes of col = ANY($n), col <> ALL($n), col > ANY($n)…: the parameter is an array of col's type
_QUANTIFIED = re.compile(
    rf"(?:{_NAME}\s*\.\s*)?({_NAME})\s*(?:not\s+in|in|=|<>|!=|<=|>=|<|>)\s*"
    r"\(\s*select\s+(?:value|min\(value\)|max\(value\))\s+from\s+json_each\(\s*\?(\d+)\s*\)\s*\)",
    re.I,
)


def _unquote(name: str) -> str:
    if name[:1] in '"[`':
        return name[1:-1].replace('""', '"')
    return name


def infer(sql: str, count: int, table_types: Callable[[str], dict[str, str]]) -> list[str | None]:
    """Declared types for parameters ``?1``..``?count`` (None where the statement does not say)."""
    out: list[str | None] = [None] * count
    if not count:
        return out
    tables = list(dict.fromkeys(_unquote(m.group(1)) for m in _TABLES.finditer(sql)))
    columns: dict[str, str] = {}
    for table in reversed(tables):  # the first table named wins a clash of column names
        columns.update(table_types(table))

    def put(index: str, column: str) -> None:
        i = int(index) - 1
        decl = columns.get(_unquote(column).lower())
        if 0 <= i < count and out[i] is None and decl:
            out[i] = decl

    for m in _INSERT.finditer(sql):
        if m.group(2) is None:  # no column list: the table's columns, in order
            names = list(table_types(_unquote(m.group(1))))
        else:
            names = [c.strip() for c in m.group(2).split(",")]
        rest = sql[m.end() :]
        values = rest.split(")", 1)[0].split(",")
        for name, value in zip(names, values, strict=False):
            param = re.fullmatch(r"\s*\?(\d+)\s*", value)
            if param:
                put(param.group(1), name)
    for m in _COMPARE_LEFT.finditer(sql):
        put(m.group(2), m.group(1))
    for m in _COMPARE_RIGHT.finditer(sql):
        put(m.group(1), m.group(2))
    for m in _IN.finditer(sql):
        for param in re.findall(r"\?(\d+)", m.group(2)):
            put(param, m.group(1))
    for m in _QUANTIFIED.finditer(sql):
        i = int(m.group(2)) - 1
        element = columns.get(_unquote(m.group(1)).lower())
        array = arrays.ARRAY_OF.get(t.oid_for_declared(element) or t.TEXT) if element else None
        if 0 <= i < count and out[i] is None and array is not None:
            out[i] = array.name
    for m in _LIMIT.finditer(sql):
        i = int(m.group(1)) - 1
        if 0 <= i < count and out[i] is None:
            out[i] = "BIGINT"
    return out


def key_types(sql: str, names: list[str], create_sql: Callable[[str], str | None]) -> list[str | None]:
    """The PostgreSQL types of result columns that are a rowid alias declared ``INTEGER /*pg:int4*/``
    (SERIAL and the like: their CREATE TABLE keeps the type), for a statement over one table; None for
    the others, which keep SQLite's INTEGER (int8). Over several tables a name could be either's."""
    tables = {_unquote(m.group(1)).lower() for m in _TABLES.finditer(sql)}
    if len(tables) != 1:
        return [None] * len(names)
    kept = t.pg_type_comments(create_sql(tables.pop()))
    return [kept.get(name.lower()) for name in names]


def result_types(sql: str, table_types: Callable[[str], dict[str, str]]) -> list[str | None]:
    """Declared-type names for a query's result columns, expressions included (``count(*)`` is a bigint):
    SQLite gives no type to expressions, but asyncpg decodes by the type announced before any row exists.
    None where the type cannot be told."""
    tables = tuple(dict.fromkeys(_unquote(m.group(1)) for m in _TABLES.finditer(sql)))
    schema = tuple((table, tuple(table_types(table).items())) for table in tables)
    return list(_result_types(sql, schema))


@functools.lru_cache(maxsize=2048)
def _result_types(
    sql: str, schema: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
) -> tuple[str | None, ...]:
    # a column without declared type is unknown (its values decide), not text
    tables: dict[str, object] = {
        table: {c: d or "UNKNOWN" for c, d in cols} for table, cols in schema if cols
    }
    try:  # sqlglot reads SQLite's ?NNN parameters as plain ?: they are named :pNNN to keep their numbers
        tree = sqlglot.parse_one(_NUMBERED_PARAM.sub(r":p\1", sql), read="sqlite")
    except Exception:
        return ()
    # Columns bound to their tables first: unbound, max(id) or sum(id) would have no type. What qualify
    # cannot bind stays untyped, as without it.
    with contextlib.suppress(Exception):
        tree = qualify(tree, schema=tables, dialect="sqlite", validate_qualify_columns=False, identify=False)
    try:
        typed = annotate_types(tree, schema=tables, dialect="sqlite")
    except Exception:
        return ()
    if not isinstance(typed, exp.Query):
        return ()
    out: list[str | None] = []
    for select in typed.selects:
        value = select.unalias()
        kind = select.type.this if select.type is not None else None
        decl = _DTYPES.get(kind.name) if kind is not None else None
        if isinstance(value, exp.Literal) and not value.is_string and value.name.isdigit():
            decl = "INT" if int(value.name) <= 2**31 - 1 else "BIGINT"  # SELECT 1 is an int4
        elif isinstance(value, exp.Placeholder) and value.name[1:].isdigit():
            decl = f"${value.name[1:]}"  # a bare parameter: the session gives it the parameter's type
        elif (
            decl in ("DOUBLE PRECISION", "NUMERIC") or (decl is None and isinstance(value, _ARITHMETIC))
        ) and _numeric(value):
            decl = _numeric_type(value, tables)
        elif decl is None and isinstance(value, _ARITHMETIC) and _floating(value):
            decl = "DOUBLE PRECISION"  # float8 + anything numeric is a float8 (``f + $1``)
        if isinstance(value, exp.Anonymous) and value.name.lower() == "pg_interval_add" and value.expressions:
            decl = _interval_sum_type(value.expressions[0])
        out.append(decl if decl is not None else _computed_type(_source(typed, value)))
    return tuple(out)


_ARITHMETIC = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.Paren)
_FLOATS = (exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT)
_DECIMAL = exp.DataType.Type.DECIMAL


def _numeric(value: exp.Expr) -> bool:
    """Whether PostgreSQL computes ``value`` as a numeric: arithmetic over numeric columns, decimal literals
    (1.5 is a numeric there) and integers, avg() and round() of them; not when a float takes part."""
    for node in value.walk():
        if isinstance(node, exp.Column | exp.Cast) and node.type is not None and node.type.this in _FLOATS:
            return False
    return any(
        (
            isinstance(node, exp.Column)
            and node.type is not None
            and node.type.this == exp.DataType.Type.DECIMAL
        )
        or (isinstance(node, exp.Literal) and not node.is_string and not node.name.isdigit())
        or isinstance(node, exp.Avg | exp.Round)
        or (isinstance(node, exp.Anonymous) and node.name.lower() == "pg_numeric")
        for node in value.walk()
    )


def _interval_sum_type(base: exp.Expr) -> str | None:
    """The type of ``base ± interval``: base's own (a timestamp, a time, an interval); a date's is a
    timestamp, as in PostgreSQL."""
    kind = base.type.this if base.type is not None else None
    decl = _DTYPES.get(kind.name) if kind is not None else None
    decl = decl or _computed_type(base)
    return "TIMESTAMP" if decl == "DATE" else decl


def _floating(value: exp.Expr) -> bool:
    """Whether a float column or a cast to a float takes part in ``value``'s arithmetic."""
    return any(
        isinstance(node, exp.Column | exp.Cast) and node.type is not None and node.type.this in _FLOATS
        for node in value.walk()
    )


def _numeric_type(value: exp.Expr, tables: dict[str, object]) -> str:
    """NUMERIC, with the column's scale where PostgreSQL keeps it (the column itself, max, min, sum)."""
    inner = value.this if isinstance(value, exp.Max | exp.Min | exp.Sum | exp.Coalesce) else value
    if isinstance(inner, exp.Column):
        columns = tables.get(inner.table)
        declared = columns.get(inner.name) if isinstance(columns, dict) else None
        if isinstance(declared, str) and declared.upper().startswith(("NUMERIC", "DECIMAL")):
            return declared
    return "NUMERIC"


def _source(query: exp.Query, expression: exp.Expr) -> exp.Expr:
    """What a column of a derived table computes (``SELECT * FROM (SELECT datetime(…) AS t) AS s``: the
    ``datetime(…)``), so that its type is told as if it were selected directly; else ``expression``."""
    for _ in range(8):  # nested derived tables, a few levels deep
        if not isinstance(expression, exp.Column) or not isinstance(query, exp.Select):
            return expression
        sources = [query.args.get("from_"), *(query.args.get("joins") or [])]
        inner = next(
            (
                s.this.this
                for s in sources
                if isinstance(s, exp.From | exp.Join)
                and isinstance(s.this, exp.Subquery)
                and s.this.alias_or_name == expression.table
            ),
            None,
        )
        if not isinstance(inner, exp.Select):
            return expression
        found = next((e for e in inner.selects if e.alias_or_name == expression.name), None)
        if found is None:
            return expression
        query, expression = inner, found.unalias()
    return expression


_NUMBERED_PARAM = re.compile(r"\?(\d+)")


def _computed_type(expression: exp.Expr) -> str | None:
    """The type of what dialect's translations compute, which sqlglot leaves untyped: timestamps are
    ``datetime(…)`` (now() among them, a timestamptz in PostgreSQL), and ``->`` gives JSON."""
    if isinstance(expression, exp.JSONExtract):
        return "JSONB"
    text = expression.sql(dialect="sqlite")
    if text == NOW_SQL:
        return "TIMESTAMPTZ"
    if isinstance(expression, exp.Anonymous) and expression.name.lower() in _CAST_FUNCTIONS:
        args = expression.expressions
        if expression.name.lower() == "pg_numeric" and len(args) == 3:  # numeric(p, s): its scale shows
            return f"NUMERIC({args[1].name},{args[2].name})"
        return _CAST_FUNCTIONS[expression.name.lower()]
    upper = text.upper()
    if upper.startswith(("DATETIME(", "PG_DATE_TRUNC(")):
        return "TIMESTAMP"
    if upper.startswith("DATE("):
        return "DATE"
    if upper.startswith(("PG_JSONB_PATH(", "JSON(")):  # json(…): a cast to json or jsonb
        return "JSONB"
    return None


# what the dialect's casts to date/time types call (``sqlite_ha.db.functions``)
_CAST_FUNCTIONS = {
    "pg_timestamp": "TIMESTAMP",
    "pg_timestamptz": "TIMESTAMPTZ",
    "pg_date": "DATE",
    "pg_time": "TIME",
    "pg_timetz": "TIMETZ",
    "pg_bool": "BOOLEAN",
    "pg_numeric": "NUMERIC",
    # the sequence functions (changes/sequences.py) answer a bigint, as PostgreSQL's
    "nextval": "BIGINT",
    "setval": "BIGINT",
    "currval": "BIGINT",
    "lastval": "BIGINT",
    "pg_sequence_last_value": "BIGINT",
}


_DTYPES = {
    "BIGINT": "BIGINT",
    "INT": "BIGINT",
    "SMALLINT": "BIGINT",
    "TINYINT": "BIGINT",
    "DOUBLE": "DOUBLE PRECISION",
    "FLOAT": "DOUBLE PRECISION",
    "DECIMAL": "NUMERIC",
    "VARCHAR": "TEXT",
    "TEXT": "TEXT",
    "CHAR": "TEXT",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "DATETIME": "TIMESTAMP",
    "TIMESTAMP": "TIMESTAMP",
    "TIMESTAMPTZ": "TIMESTAMPTZ",
    "TIME": "TIME",
    "INTERVAL": "INTERVAL",
    "BLOB": "BYTEA",
    "VARBINARY": "BYTEA",
}
