"""Rewrites that turn a PostgreSQL syntax tree, as sqlglot parses it, into one that SQLite runs.

Statement-level rewrites come first, as some turn one statement into several (``TRUNCATE``, ``DROP a, b``)
or look at a whole table (SERIAL columns); then each node type with a PostgreSQL meaning has one rewrite in
the ``_REWRITES`` table, applied bottom-up by ``rewrite_tree``. Only the statements the fast path of
``dialect`` cannot pass through get here, so clarity counts for more than speed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from sqlglot import exp

from sqlite_ha.db.functions import PatternError, like_to_glob
from sqlite_ha.server.pgwire.sql import clauses, jsonb, objects, schemas
from sqlite_ha.server.pgwire.sql.casts import interval_value, rewrite_cast, rewrite_make_interval
from sqlite_ha.server.pgwire.sql.intervals import interval_modifiers
from sqlite_ha.server.pgwire.sql.translation import NOW_SQL, TranslationError, check_param
from sqlite_ha.server.pgwire.sql.trees import (
    RewriteContext,
    call,
    fill,
    is_call,
    param_number,
    template_tree,
)

DType = exp.DataType.Type


# --- statement rewrites ------------------------------------------------------------------------------------


def values_aliases_to_ctes(statement: exp.Expr) -> None:
    """``FROM (VALUES …) AS v(a, b)`` (SQLAlchemy's bulk INSERT … SELECT sends it) as a CTE: SQLite cannot
    name a VALUES list's columns in a table alias, but it can in ``WITH v(a, b) AS (VALUES …)``."""
    ctes = []
    for values in list(statement.find_all(exp.Values)):
        alias = values.args.get("alias")
        if not isinstance(values.parent, exp.From | exp.Join) or alias is None or not alias.columns:
            continue
        ctes.append(
            exp.CTE(
                this=exp.Values(expressions=values.expressions),
                alias=exp.TableAlias(this=exp.to_identifier(alias.name), columns=alias.columns),
            )
        )
        values.replace(exp.Table(this=exp.to_identifier(alias.name)))
    if not ctes:
        return
    key = "with_" if "with_" in statement.arg_types else "with"
    existing = statement.args.get(key)
    if isinstance(existing, exp.With):
        existing.set("expressions", [*existing.expressions, *ctes])
    else:
        statement.set(key, exp.With(expressions=ctes))


def split_statement(tree: exp.Expr) -> list[exp.Expr]:
    """Statement-level rewrites, some of which turn one statement into several."""
    if isinstance(tree, exp.TruncateTable):  # RESTART IDENTITY is implied for a rowid alias; CASCADE ignored
        return [exp.Delete(this=table.copy()) for table in tree.expressions]
    if isinstance(tree, exp.Create | exp.Drop) and str(tree.args.get("kind") or "").upper() == "SCHEMA":
        return [objects.schema_statement(tree)]
    materialized = objects.materialized_view(tree)
    if materialized is not None:
        return materialized
    if isinstance(tree, exp.Drop):
        drops: list[exp.Expr] = list(objects.split_drop(tree))
        if str(tree.args.get("kind") or "").upper() in ("TABLE", "VIEW"):
            # and its comments (pgwire/comments.py): a table made again under this name has none
            return [statement for drop in drops for statement in (drop, objects.drop_comments(drop))]  # type: ignore[arg-type]
        return drops
    if isinstance(tree, exp.Create):
        tree.set("concurrently", False)
        if isinstance(tree.this, exp.Schema):
            _rewrite_identity_columns(tree.this)
        replaced = clauses.replace_view(tree)
        if replaced is not None:
            return replaced
    return [tree]


def _rewrite_identity_columns(schema: exp.Schema) -> None:
    """SERIAL and IDENTITY columns become ``INTEGER PRIMARY KEY``: SQLite numbers only the rowid alias."""
    columns = [e for e in schema.expressions if isinstance(e, exp.ColumnDef)]
    table_keys = [e for e in schema.expressions if isinstance(e, exp.PrimaryKey)]
    for column in columns:
        kind = column.args.get("kind")
        identity = [
            c for c in column.constraints if isinstance(c.kind, exp.GeneratedAsIdentityColumnConstraint)
        ]
        is_serial = isinstance(kind, exp.DataType) and kind.this in (
            DType.SERIAL,
            DType.BIGSERIAL,
            DType.SMALLSERIAL,
        )
        if not (is_serial or identity):
            continue
        # how the key is numbered, for the catalog (its implicit sequence, pg_attrdef, attidentity): serial,
        # or always/default for GENERATED ALWAYS / BY DEFAULT AS IDENTITY
        numbering = "serial"
        for constraint in identity:
            numbering = "always" if constraint.kind.args.get("this") else "default"
            constraint.pop()
        # exactly INTEGER: the rowid alias. The PostgreSQL type stays in a comment that sqlite_schema keeps
        # and that replicates with the DDL text; the catalog reads it back (types.values.pg_type_comments)
        column.set(
            "kind",
            exp.DataType(this=DType.USERDEFINED, kind=f"INTEGER /*pg:{_key_type(kind)} {numbering}*/"),
        )
        if any(isinstance(c.kind, exp.PrimaryKeyColumnConstraint) for c in column.constraints):
            continue
        # PRIMARY KEY (id), also named: CONSTRAINT t_pk PRIMARY KEY (id)
        table_keys = table_keys + [
            k
            for e in schema.expressions
            if isinstance(e, exp.Constraint)
            for k in e.expressions
            if isinstance(k, exp.PrimaryKey)
        ]
        key_names = [[_key_name(k) for k in key.expressions] for key in table_keys]
        if key_names == [[column.name]]:
            continue  # PRIMARY KEY (id) on an INTEGER column is the rowid alias as well
        has_key = table_keys or any(
            isinstance(c.kind, exp.PrimaryKeyColumnConstraint) for col in columns for c in col.constraints
        )
        if has_key:
            raise TranslationError(
                f"column {column.name!r} is SERIAL or IDENTITY but not the table's only primary key column",
                hint="SQLite generates values only for an INTEGER PRIMARY KEY column",
            )
        column.append("constraints", exp.ColumnConstraint(kind=exp.PrimaryKeyColumnConstraint()))


def _key_type(kind: object) -> str:
    """The PostgreSQL type of a SERIAL or IDENTITY column (int4 for serial and for an int identity)."""
    if not isinstance(kind, exp.DataType):
        return "int4"
    return {
        DType.BIGSERIAL: "int8",
        DType.BIGINT: "int8",
        DType.SMALLSERIAL: "int2",
        DType.SMALLINT: "int2",
    }.get(kind.this, "int4")


def _key_name(key: exp.Expr) -> str:
    return key.this.name if isinstance(key, exp.Ordered) else key.name


def rewrite_tree(tree: exp.Expr, ctx: RewriteContext) -> None:
    """Apply the node rewrites bottom-up, so each sees its operands already translated."""
    rewrites = _CATALOG_REWRITES if ctx.catalog else _REWRITES
    for node in reversed(list(tree.walk(bfs=False))):
        rewrite = rewrites.get(type(node))
        if rewrite is None:
            continue
        new = rewrite(node, ctx)
        if new is not node:
            if node is tree:
                raise TranslationError(f"cannot rewrite a whole {type(node).__name__} statement")
            node.replace(new)
    if not ctx.catalog and (subscript := tree.find(exp.Bracket)) is not None:
        raise TranslationError(
            f"the subscript {subscript.sql(dialect='postgres')!r} is not supported",
            hint="arrays are JSON text in SQLite: use json_extract(col, '$[0]'); a jsonb takes doc['key']",
        )
    for interval in list(tree.find_all(exp.Interval)):  # a value of its own: as an interval column stores it
        if isinstance(interval.this, exp.Literal) and interval is not tree:
            interval.replace(interval_value(interval))
    leftover = tree.find(exp.Interval, exp.Any, exp.All)
    if leftover is not None:
        raise TranslationError(
            f"{leftover.sql(dialect='postgres')!r} is supported only as "
            + ("timestamp ± interval" if isinstance(leftover, exp.Interval) else "= ANY (…) or <> ALL (…)")
        )


# --- node rewrites -----------------------------------------------------------------------------------------


def _rewrite_parameter(node: exp.Parameter, ctx: RewriteContext) -> exp.Expr:
    name = node.name
    if not name.isdigit():
        raise TranslationError(f"parameter ${name} is not a positional parameter ($1, $2, …)")
    ctx.highest = max(ctx.highest, check_param(int(name)))
    return exp.Var(this=f"?{int(name)}")


_UUID_V4 = (
    "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-'"
    " || substr('89ab', 1 + (random() & 3), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))"
)


def _now(node: exp.Expr, ctx: RewriteContext) -> exp.Expr:
    return template_tree(NOW_SQL).copy()


def _refuse_version(node: exp.CurrentVersion, ctx: RewriteContext) -> exp.Expr:
    raise TranslationError(  # sqlglot would answer with sqlite_version(), which clients cannot parse
        "version() is answered by the PostgreSQL catalog, not by SQLite",
        hint="the session answers catalog queries before translating",
    )


def _rewrite_anonymous(node: exp.Anonymous, ctx: RewriteContext) -> exp.Expr:
    name = node.name.lower()
    if name == "uuid_generate_v4":
        return fill(_UUID_V4)
    if name == "pg_advisory_unlock_all":  # there are no advisory locks to release
        return exp.Null()
    return node


def _rewrite_interval_arithmetic(node: exp.Add | exp.Sub, ctx: RewriteContext) -> exp.Expr:
    left, right = node.this, node.expression
    if isinstance(right, exp.Interval) and not isinstance(left, exp.Interval):
        base, interval = left, right
    elif isinstance(node, exp.Add) and isinstance(left, exp.Interval) and not isinstance(right, exp.Interval):
        base, interval = right, left
    else:
        return node
    modifiers = interval_modifiers(interval, -1 if isinstance(node, exp.Sub) else 1)
    if is_call(base, "datetime") and base.expressions[1:2] == [exp.Literal.string("subsec")]:
        return call("datetime", *base.expressions, *modifiers)  # flatten chained arithmetic
    return call("datetime", base, "subsec", *modifiers)


_TRUNC = {
    "second": "datetime(strftime('%Y-%m-%d %H:%M:%S', _x_))",  # datetime(…): typed as a timestamp
    "minute": "datetime(strftime('%Y-%m-%d %H:%M:00', _x_))",
    "hour": "datetime(strftime('%Y-%m-%d %H:00:00', _x_))",
    "day": "datetime(_x_, 'start of day')",
    "week": "datetime(_x_, 'start of day', '-6 days', 'weekday 1')",  # PostgreSQL weeks start on Monday
    "month": "datetime(_x_, 'start of month')",
    "quarter": "datetime(_x_, 'start of month', '-' || ((CAST(strftime('%m', _x_) AS INTEGER) - 1) % 3)"
    " || ' months')",
    "year": "datetime(_x_, 'start of year')",
}


def _rewrite_date_trunc(node: exp.TimestampTrunc | exp.DateTrunc, ctx: RewriteContext) -> exp.Expr:
    unit = node.text("unit").lower()
    given = node.args.get("unit")
    if given is not None and (
        param_number(given) is not None or not isinstance(given, exp.Literal | exp.Var)
    ):
        # a parameter (Django with server-side binding): the unit is known when the statement runs
        return exp.Anonymous(this="pg_date_trunc", expressions=[given, node.this])
    if unit not in _TRUNC:
        raise TranslationError(f"date_trunc to {unit or node.args.get('unit')!r} is not supported")
    return fill(_TRUNC[unit], _x_=node.this)


_EXTRACT_FORMATS = {
    "year": "%Y",
    "month": "%m",
    "day": "%d",
    "hour": "%H",
    "minute": "%M",
    "dow": "%w",
    "isodow": "%u",
    "doy": "%j",
    "week": "%V",
    "isoyear": "%G",
}
_EXTRACT = {
    "epoch": "unixepoch(_x_, 'subsec')",
    "second": "CAST(strftime('%f', _x_) AS REAL)",
    "milliseconds": "CAST(strftime('%f', _x_) AS REAL) * 1000",
    "microseconds": "CAST(strftime('%f', _x_) AS REAL) * 1000000",
    "quarter": "(CAST(strftime('%m', _x_) AS INTEGER) + 2) / 3",
    **{k: f"CAST(strftime('{v}', _x_) AS INTEGER)" for k, v in _EXTRACT_FORMATS.items()},
}


def _rewrite_extract(node: exp.Extract, ctx: RewriteContext) -> exp.Expr:
    part = node.this.name.lower()
    if part not in _EXTRACT:
        raise TranslationError(f"extract({part} from …) is not supported")
    return fill(_EXTRACT[part], _x_=node.expression)


def _rewrite_quantified(node: exp.Binary, ctx: RewriteContext) -> exp.Expr:
    """``x = ANY(array)`` → ``x IN (…)``; arrays are JSON text, read back with ``json_each``."""
    quantified = node.expression
    if isinstance(quantified, exp.Any | exp.All):
        quantifier, operand = ("all" if isinstance(quantified, exp.All) else "any"), quantified.this
    elif isinstance(quantified, exp.Anonymous) and quantified.name.lower() in ("any", "some", "all"):
        if len(quantified.expressions) != 1:
            return node
        quantifier = "all" if quantified.name.lower() == "all" else "any"
        operand = quantified.expressions[0]
    else:
        return node
    while isinstance(operand, exp.Paren):
        operand = operand.this
    is_query = isinstance(operand, exp.Subquery | exp.Query)
    if is_query and not isinstance(operand, exp.Subquery):
        operand = exp.Subquery(this=operand)
    op = type(node)
    if (op is exp.EQ and quantifier == "any") or (op is exp.NEQ and quantifier == "all"):
        if is_call(operand, "json_array"):
            test: exp.Expr = exp.In(this=node.this, expressions=operand.expressions)
        elif is_query:
            test = exp.In(this=node.this, query=operand)
        else:
            test = exp.In(this=node.this, query=fill("(SELECT value FROM json_each(_x_))", _x_=operand))
        return test if op is exp.EQ else exp.Not(this=test)
    if op in (exp.GT, exp.GTE, exp.LT, exp.LTE) and not is_query:
        smallest = (op in (exp.GT, exp.GTE)) == (quantifier == "any")
        bound = fill(f"(SELECT {'min' if smallest else 'max'}(value) FROM json_each(_x_))", _x_=operand)
        return op(this=node.this, expression=bound)
    symbol = {exp.EQ: "=", exp.NEQ: "<>"}.get(op, "<, <=, >, >=")
    raise TranslationError(
        f"{symbol} {quantifier.upper()} (…) is not supported here", hint="use = ANY (…) or <> ALL (…)"
    )


def _rewrite_array(node: exp.Array, ctx: RewriteContext) -> exp.Expr:
    return call("json_array", *node.expressions)


def _rewrite_table(node: exp.Table, ctx: RewriteContext) -> exp.Expr:
    if node.args.get("only"):  # FROM ONLY t (pg_dump --inserts): no table inherits here, so it is t
        node.set("only", None)
    if isinstance(node.this, exp.ExplodingGenerateSeries | exp.GenerateSeries) and not ctx.catalog:
        return _generate_series(node, node.this)
    return _drop_public_schema(node, ctx)


_SERIES = (
    "(WITH RECURSIVE _series(v) AS (SELECT _start_ WHERE {continues} "
    "UNION ALL SELECT v + _step_ FROM _series WHERE {next_continues}) SELECT v FROM _series)"
)
_CONTINUES = "CASE WHEN _step_ > 0 THEN {x} <= _end_ WHEN _step_ < 0 THEN {x} >= _end_ END"


def _generate_series(table: exp.Table, series: exp.Expr) -> exp.Expr:
    """``FROM generate_series(start, stop[, step]) [AS t[(x)]]`` of integers: SQLite has no such table
    function in this build, so the rows come from a recursive CTE, named as PostgreSQL names them (the
    column is ``x``, else the alias, else ``generate_series``). A zero step gives no rows."""
    start, end = series.args.get("start"), series.args.get("end")
    step = series.args.get("step") or exp.Literal.number(1)
    if start is None or end is None or any(isinstance(a, exp.Interval) for a in (start, end, step)):
        raise TranslationError("generate_series is supported over integers only")
    template = _SERIES.format(
        continues=_CONTINUES.format(x="_start_"), next_continues=_CONTINUES.format(x="v + _step_")
    )
    rows = fill(template, _start_=start, _end_=end, _step_=step)
    select = rows.this if isinstance(rows, exp.Subquery) else rows
    if not isinstance(select, exp.Select):
        raise TranslationError("generate_series: unexpected template")  # cannot happen: the template is fixed
    alias = table.args.get("alias")
    table_name = alias.name if alias is not None and alias.name else "generate_series"
    columns = alias.columns if alias is not None else []
    column = columns[0].name if columns else table_name
    select.set("expressions", [exp.alias_(exp.column("v"), column, quoted=True)])
    return exp.Subquery(this=select, alias=exp.TableAlias(this=exp.to_identifier(table_name)))


def _drop_public_schema(node: exp.Table | exp.Column, ctx: RewriteContext) -> exp.Expr:
    db = node.args.get("db")
    if not isinstance(db, exp.Identifier) or node.args.get("catalog"):
        return node
    if db.name.lower() == "public":
        node.set("db", None)
    elif not ctx.catalog and schemas.is_user_schema(db.name):
        # s.t is the table "s.t" (schemas.py); s.t.col a column of it
        if isinstance(node, exp.Table) and node.name:
            node.set("this", exp.to_identifier(schemas.prefixed(db.name, node.name), quoted=True))
            node.set("db", None)
        elif isinstance(node, exp.Column) and node.table:
            node.set("table", exp.to_identifier(schemas.prefixed(db.name, node.table), quoted=True))
            node.set("db", None)
    return node


def _rewrite_index(node: exp.Index, ctx: RewriteContext) -> exp.Expr:
    """``CREATE INDEX ix ON s.t``: the index is ``"s.ix"``, in its table's schema as in PostgreSQL."""
    table, name = node.args.get("table"), node.args.get("this")
    if isinstance(table, exp.Table) and isinstance(name, exp.Identifier):
        schema, dot, _ = table.name.partition(".")
        if dot and table.this.args.get("quoted") and schemas.is_user_schema(schema):
            node.set("this", exp.to_identifier(schemas.prefixed(schema, name.name), quoted=True))
    return node


def _rewrite_on_conflict(node: exp.OnConflict, ctx: RewriteContext) -> exp.Expr:
    if node.args.get("constraint") is not None:
        raise TranslationError(
            "ON CONFLICT ON CONSTRAINT is not supported", hint="name the conflict columns: ON CONFLICT (col)"
        )
    keys = node.args.get("conflict_keys") or []
    node.set("conflict_keys", [k.this if isinstance(k, exp.Ordered) else k for k in keys])
    return node


def _rewrite_index_parameters(node: exp.IndexParameters, ctx: RewriteContext) -> exp.Expr:
    clauses.drop_include(node)
    node.set("using", None)  # btree is what SQLite has; GIN/GiST become plain indexes
    for column in node.args.get("columns") or []:
        if isinstance(column, exp.Ordered):  # SQLite's own NULL order, so no NULLS FIRST/LAST is printed
            column.set("nulls_first", not column.args.get("desc"))
    return node


def _rewrite_column_def(node: exp.ColumnDef, ctx: RewriteContext) -> exp.Expr:
    """A column's PostgreSQL type as its declared type, which the wire announces back (``INT`` is int4,
    SQLite's ``INTEGER`` int8). An ``integer PRIMARY KEY`` becomes ``INTEGER``, the rowid alias."""
    kind = node.args.get("kind")
    if isinstance(kind, exp.DataType) and kind.this == DType.INTERVAL:
        kind = exp.DataType(this=DType.INTERVAL)  # interval(p): values keep microseconds, PostgreSQL's most
    if isinstance(kind, exp.DataType) and kind.this != DType.USERDEFINED:
        # (PostgreSQL's real is a float4; SQLite's REAL, which it prints, is announced float8)
        name = re.sub(r"^DECIMAL\b", "NUMERIC", re.sub(r"^REAL\b", "FLOAT4", kind.sql(dialect="postgres")))
        primary = any(isinstance(c.kind, exp.PrimaryKeyColumnConstraint) for c in node.constraints)
        name = re.sub(r"^(?:INT\b|INT4\b)", "INTEGER /*pg:int4*/" if primary else "INT", name)
        if name in ("JSON", "JSONB"):  # TEXT affinity: a document '3.0' must not become the integer 3
            name += " TEXT"
        elif name.startswith("NUMERIC"):  # REAL affinity: 7 stays 7.0, so 7 / 2 is 3.5 as in PostgreSQL
            name = "NUMERIC REAL" + name[len("NUMERIC") :]
        node.set("kind", exp.DataType(this=DType.USERDEFINED, kind=name))
    return node


def _rewrite_default(node: exp.DefaultColumnConstraint, ctx: RewriteContext) -> exp.Expr:
    value = node.this
    plain = isinstance(value, exp.Literal | exp.Null | exp.Boolean | exp.Paren) or (
        isinstance(value, exp.Neg) and isinstance(value.this, exp.Literal)
    )
    if not plain:  # SQLite wants expression defaults in parentheses
        node.set("this", exp.Paren(this=value))
    return node


def _drop_locks(node: exp.Select, ctx: RewriteContext) -> exp.Expr:
    """FOR UPDATE / FOR SHARE: SQLite has no row locks; the session takes the writer instead (``locks``)."""
    if node.args.get("locks"):
        ctx.locks = True
        node.set("locks", None)
    return clauses.rewrite_with_ties(node, ctx)


def _as_string(node: exp.ByteString | exp.RawString, ctx: RewriteContext) -> exp.Expr:
    return exp.Literal.string(node.name)  # E'…' and $$…$$ are plain text strings once parsed


def _rewrite_like(node: exp.Like | exp.ILike | exp.Escape, ctx: RewriteContext) -> exp.Expr:
    """PostgreSQL's LIKE matches case-sensitively and ``\\`` escapes by default; SQLite's LIKE ignores case.

    ``x LIKE p`` becomes ``x GLOB …``, SQLite's case-sensitive match: a literal pattern is converted here,
    any other goes through ``pg_like_glob`` (``sqlite_ha.db.functions``) when the statement runs. ILIKE stays
    SQLite's LIKE (case-insensitive for ASCII letters only), with PostgreSQL's default escape.
    """
    if isinstance(node, exp.Escape):
        like, escape = node.this, node.expression
        if not isinstance(like, exp.Like | exp.ILike):
            return node
    elif isinstance(node.parent, exp.Escape):
        return node  # the Escape around it rewrites both
    else:
        like, escape = node, exp.Literal.string("\\")
    subject, pattern, negate = like.this, like.expression, bool(like.args.get("negate"))
    if ctx.catalog or isinstance(pattern, exp.Any | exp.All):
        return node
    if isinstance(like, exp.ILike):
        return exp.Escape(this=exp.Like(this=subject, expression=pattern, negate=negate), expression=escape)
    if _is_string(pattern) and _is_string(escape):
        try:
            glob: exp.Expr = exp.Literal.string(like_to_glob(pattern.name, escape.name) or "")
        except PatternError as e:
            raise TranslationError(str(e)) from None
    else:
        glob = call("pg_like_glob", pattern, escape)
    match = exp.Glob(this=subject, expression=glob)
    return exp.Not(this=match) if negate else match


def _rewrite_subscript(node: exp.Bracket, ctx: RewriteContext) -> exp.Expr:
    """``doc['key']`` (jsonb subscripting, which SQLAlchemy sends for ``column["key"]``) → ``doc -> 'key'``.

    A text key can only subscript a jsonb, and so can a number after one (``doc['a'][0]``, 0-based). Any
    other subscript could be a PostgreSQL array's (1-based) as well as a jsonb's (0-based), which the
    statement alone does not tell: it is refused (``rewrite_tree``), never passed on, since SQLite would read
    ``[…]`` as a quoted name and answer something else without an error.
    """
    if ctx.catalog or len(node.expressions) != 1:
        return node
    key = node.expressions[0]
    # (a cast is rewritten first: to SQLite's TEXT, a user-defined type to sqlglot)
    text_cast = isinstance(key, exp.Cast) and (
        key.to.this in (DType.TEXT, DType.VARCHAR) or str(key.to.args.get("kind") or "").upper() == "TEXT"
    )
    if _is_string(key) or text_cast:
        return exp.JSONExtract(this=node.this, expression=key)
    if isinstance(node.this, exp.JSONExtract):
        # sqlglot keeps subscripts 0-based, PostgreSQL's arrays being 1-based: as written, it is one more
        index = _integer(key)
        if index is not None:
            return exp.JSONExtract(this=node.this, expression=exp.Literal.number(index + 1))
        if isinstance(key, exp.Add) and _integer(key.expression) == -1:  # what sqlglot makes of [$2]
            return exp.JSONExtract(this=node.this, expression=key.this)
    return node


def _integer(node: exp.Expr) -> int | None:
    if isinstance(node, exp.Neg):
        inner = _integer(node.this)
        return None if inner is None else -inner
    if isinstance(node, exp.Literal) and not node.is_string and node.name.lstrip("-").isdigit():
        return int(node.name)
    return None


def _is_string(node: exp.Expr) -> bool:
    return isinstance(node, exp.Literal) and node.is_string


_REWRITES: dict[type[exp.Expr], Callable[[Any, RewriteContext], exp.Expr]] = {
    exp.Bracket: _rewrite_subscript,
    exp.Like: _rewrite_like,
    exp.ILike: _rewrite_like,
    exp.Escape: _rewrite_like,
    exp.Parameter: _rewrite_parameter,
    exp.Cast: rewrite_cast,
    exp.CurrentTimestamp: _now,
    exp.Localtimestamp: _now,
    exp.Uuid: lambda node, ctx: fill(_UUID_V4),
    exp.Anonymous: _rewrite_anonymous,
    exp.CurrentSchema: lambda node, ctx: exp.Literal.string("public"),
    exp.CurrentVersion: _refuse_version,
    exp.Add: _rewrite_interval_arithmetic,
    exp.Sub: _rewrite_interval_arithmetic,
    exp.TimestampTrunc: _rewrite_date_trunc,
    exp.DateTrunc: _rewrite_date_trunc,
    exp.Extract: _rewrite_extract,
    **dict.fromkeys((exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE), _rewrite_quantified),
    exp.Array: _rewrite_array,
    exp.Table: _rewrite_table,
    exp.Column: _drop_public_schema,
    exp.Index: _rewrite_index,
    exp.OnConflict: _rewrite_on_conflict,
    exp.IndexParameters: _rewrite_index_parameters,
    exp.ColumnDef: _rewrite_column_def,
    exp.DefaultColumnConstraint: _rewrite_default,
    exp.Select: _drop_locks,
    exp.Collate: clauses.rewrite_collate,
    **dict.fromkeys((exp.Union, exp.Except, exp.Intersect), clauses.rewrite_set_operation),
    exp.Literal: clauses.check_numeric_literal,
    exp.MakeInterval: rewrite_make_interval,
    exp.Create: clauses.refuse_no_columns,
    exp.ByteString: _as_string,
    exp.RawString: _as_string,
}
_CATALOG_REWRITES = dict(_REWRITES)
_REWRITES.update(jsonb.REWRITES)
