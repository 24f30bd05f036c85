"""``FROM unnest(a1, a2, …)``: the rows of arrays side by side, as a subquery over ``json_each``.

Django's ``bulk_create`` (psycopg 3 backend) inserts with ``INSERT … SELECT * FROM UNNEST(('{…}')::varchar[],
('{1,2}'::int2[])::integer[], …)``: one array per column, a row per index. Arrays are JSON text in SQLite, so
each array becomes ``json_each(…)`` (a PostgreSQL array literal is turned into a JSON array of its element
texts here, once per statement text), the arrays are joined on the element index, and every element is cast
to the array's element type with the ordinary cast rewrite (so ``timestamptz[]`` elements are stored as any
timestamp is, ``boolean[]`` elements as 0/1, ``jsonb[]`` elements as JSON). Rows come in index order, which
``RETURNING`` keeps: Django pairs the returned ids with its objects by position. Shorter arrays are padded
with NULL, as PostgreSQL pads them; ``WITH ORDINALITY`` adds the 1-based index.

This runs before the node rewrites of ``rewrites``, while the casts that name the element types are still in
the tree.
"""

from __future__ import annotations

import json

import sqlglot
from sqlglot import exp

from sqlite_ha.db.jsonb import literal_items
from sqlite_ha.server.pgwire.sql.translation import TranslationError

DType = exp.DataType.Type


def rewrite_unnest_tables(tree: exp.Expr) -> None:
    for node in list(tree.find_all(exp.Unnest)):
        if isinstance(node.parent, exp.From | exp.Join) and node.expressions:
            select = node.parent.parent
            node.replace(_rows(node))
            if (
                isinstance(select, exp.Select)
                and isinstance(select.parent, exp.Insert)
                and not select.args.get("where")
            ):
                # INSERT … SELECT … ON CONFLICT: SQLite would read ON as a join's; WHERE true ends the SELECT
                select.where(exp.true(), copy=False)


def _array_source(arg: exp.Expr) -> tuple[exp.Expr, exp.DataType | None]:
    """What ``json_each`` reads for one argument, and the element type its outermost cast names."""
    element: exp.DataType | None = None
    node = arg
    while True:
        if isinstance(node, exp.Paren):
            node = node.this
        elif isinstance(node, exp.Cast) and node.to.this == DType.ARRAY:
            if element is None and node.to.expressions:
                element = node.to.expressions[0]
            inner = node.this
            while isinstance(inner, exp.Paren):
                inner = inner.this
            if isinstance(inner, exp.Literal) and inner.is_string:
                return exp.Literal.string(_literal_to_json(inner.name)), element
            if isinstance(inner, exp.ByteString):  # E'…', its escapes already read
                return exp.Literal.string(_literal_to_json(inner.name)), element
            if isinstance(inner, exp.Parameter):  # (%s)::type[]: the cast rewrite types the parameter
                return exp.Cast(this=inner, to=node.to.copy()), element
            if not isinstance(inner, exp.Cast):
                return node, element  # an expression: the cast rewrite keeps it (arrays are JSON)
            node = inner
        else:
            return node, element


def _literal_to_json(text: str) -> str:
    """``{a,"b c",NULL}`` → ``["a","b c",null]``: every element as its text, for the cast to convert."""
    stripped = text.strip()
    if not (stripped.startswith("{") and stripped.endswith("}")):
        raise TranslationError(f"malformed array literal: {text[:60]!r}")
    if "{" in stripped[1:-1] and '"' not in stripped[1:-1]:
        raise TranslationError("unnest of a multidimensional array is not supported")
    return json.dumps(literal_items(stripped[1:-1]), ensure_ascii=False, separators=(",", ":"))


def _each(source: exp.Expr, name: str) -> exp.Table:
    function = exp.Anonymous(this="json_each", expressions=[source])
    return exp.Table(this=function, alias=exp.TableAlias(this=exp.to_identifier(name)))


def _rows(node: exp.Unnest) -> exp.Subquery:
    sources = [_array_source(arg) for arg in node.expressions]
    alias = node.args.get("alias")
    names: list[str] = [c.name for c in alias.columns] if isinstance(alias, exp.TableAlias) else []
    table_name = alias.name if isinstance(alias, exp.TableAlias) and alias.name else "unnest"
    if not names and len(sources) == 1 and table_name != "unnest":
        names = [table_name]
    offset = node.args.get("offset")
    if len(sources) == 1:
        select = exp.select().from_(_each(sources[0][0], "_k"))
        values = [exp.column("value", "_k")]
    else:
        union = " UNION ".join(f"SELECT key FROM json_each(_a{i}_)" for i in range(len(sources)))
        key_rows = sqlglot.parse_one(f"SELECT key FROM ({union})", read="sqlite")
        for i, (source, _) in enumerate(sources):
            for column in list(key_rows.find_all(exp.Column)):
                if column.name == f"_a{i}_":
                    column.replace(source.copy())
        select = exp.select().from_(
            exp.Subquery(this=key_rows, alias=exp.TableAlias(this=exp.to_identifier("_k")))
        )
        values = []
        for i, (source, _) in enumerate(sources):
            select = select.join(_each(source, f"_j{i}"), on=f"_j{i}.key = _k.key", join_type="LEFT")
            values.append(exp.column("value", f"_j{i}"))
    columns: list[exp.Expr] = []
    for i, ((_, element), value) in enumerate(zip(sources, values, strict=True)):
        cell: exp.Expr = value if element is None else exp.Cast(this=value, to=element.copy())
        # unnamed columns are all "unnest" in PostgreSQL; "unnest(2)" keeps them apart for SQLite and the type
        # inference, and the front end names it "unnest" as it names a call
        default = "unnest" if len(sources) == 1 else f"unnest({i + 1})"
        columns.append(exp.alias_(cell, names[i] if i < len(names) else default, quoted=True))
    if offset:
        position = exp.Add(this=exp.column("key", "_k"), expression=exp.Literal.number(1))
        name = offset.name if isinstance(offset, exp.Identifier) else "ordinality"
        columns.append(exp.alias_(position, name, quoted=True))
    select = select.select(*columns).order_by(exp.column("key", "_k"))
    return exp.Subquery(this=select, alias=exp.TableAlias(this=exp.to_identifier(table_name)))
