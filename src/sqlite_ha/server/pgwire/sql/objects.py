"""Statements about what SQLite has no word for, as the PG front end keeps it (``schemas.py``): ``CREATE
SCHEMA`` (the view ``"s."``), materialized views (a table and the view ``"pg_matview.v"`` with its query)
and the comments view ``"pg_comment:t"`` that a ``DROP`` of ``t`` drops with it."""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp

from sqlite_ha.server.pgwire.sql import schemas
from sqlite_ha.server.pgwire.sql.translation import TranslationError

_REFRESH = re.compile(
    r"^\s*MATERIALIZED\s+VIEW\s+(?:CONCURRENTLY\s+)?(.+?)(?:\s+WITH\s+(NO\s+)?DATA)?\s*$", re.I
)


def materialized_view(tree: exp.Expr) -> list[exp.Expr] | None:
    """A materialized view ``v`` is a table ``v`` holding the rows of its query as they were when it was
    made or last refreshed (what PostgreSQL answers from one), with the query kept as the view
    ``"pg_matview.v"`` (``schemas.MATVIEW``): ``REFRESH`` empties the table and fills it from that view,
    and the catalog shows ``v`` with ``relkind 'm'``. All of it is ordinary DDL and rows: it replicates."""
    if isinstance(tree, exp.Create) and tree.find(exp.MaterializedProperty) is not None:
        if not isinstance(tree.this, exp.Table) or not isinstance(tree.expression, exp.Query):
            return None
        target = tree.this
        definition = exp.Create(
            this=exp.Table(this=exp.to_identifier(schemas.matview(_dotted(target)), quoted=True)),
            kind="VIEW",
            expression=tree.expression,
        )
        rows = exp.select("*").from_(
            exp.Table(this=exp.to_identifier(schemas.matview(_dotted(target)), quoted=True))
        )
        table = exp.Create(this=target.copy(), kind="TABLE", expression=rows)
        if tree.args.get("exists"):
            definition.set("exists", True)
            table.set("exists", True)
        return [definition, table]
    if isinstance(tree, exp.Drop) and tree.args.get("materialized"):
        statements: list[exp.Expr] = []
        for target in tree.args.get("tables") or []:
            exists = bool(tree.args.get("exists"))
            statements.append(exp.Drop(this=None, kind="TABLE", tables=[target.copy()], exists=exists))
            marker = exp.Table(this=exp.to_identifier(schemas.matview(_dotted(target)), quoted=True))
            statements.append(exp.Drop(kind="VIEW", tables=[marker], exists=exists))
            statements.append(drop_comments(exp.Drop(kind="TABLE", tables=[target.copy()])))
        return statements
    if isinstance(tree, exp.Command) and str(tree.this).upper() == "REFRESH":
        text = tree.expression.name if isinstance(tree.expression, exp.Literal) else str(tree.expression)
        found = _REFRESH.match(text)
        if found is None:
            return None
        target = exp.to_table(found.group(1), dialect="postgres")
        marker = exp.Table(this=exp.to_identifier(schemas.matview(_dotted(target)), quoted=True))
        fill = exp.insert(exp.select("*").from_(marker), target.copy())
        return [exp.Delete(this=target.copy()), *([] if found.group(2) else [fill])]
    return None


def split_drop(tree: exp.Drop) -> list[exp.Drop]:
    """One DROP per object (SQLite drops one at a time), without CASCADE/RESTRICT/CONCURRENTLY."""
    tree.set("cascade", False)
    tree.set("restrict", False)
    tree.set("concurrently", False)
    tables = tree.args.get("tables") or []
    if len(tables) <= 1:
        return [tree]
    drops = [tree.copy() for _ in tables]  # SQLite drops one object per statement
    for drop, table in zip(drops, tables, strict=True):
        drop.set("tables", [table.copy()])
    return drops


def drop_comments(drop: exp.Drop) -> exp.Drop:
    """The DROP of the comments view of the object ``drop`` drops (pgwire/comments.py)."""
    table = (drop.args.get("tables") or [exp.Table(this=exp.to_identifier(""))])[0]
    marker = exp.Table(this=exp.to_identifier(schemas.COMMENTS + _dotted(table), quoted=True))
    return exp.Drop(kind="VIEW", tables=[marker], exists=True)


def _dotted(table: exp.Table) -> str:
    db = table.args.get("db")
    name = table.name
    if isinstance(db, exp.Identifier) and schemas.is_user_schema(db.name):
        return schemas.prefixed(db.name, name)
    return name


def schema_statement(tree: exp.Create | exp.Drop) -> exp.Expr:
    """``CREATE SCHEMA s``: the view that records it (see ``schemas.py``)."""
    target = tree.this if isinstance(tree, exp.Create) else (tree.args.get("tables") or [None])[0]
    db = target.args.get("db") if isinstance(target, exp.Table) else None
    name = db.name if isinstance(db, exp.Identifier) else ""
    if isinstance(tree, exp.Drop):
        raise TranslationError(  # one schema is dropped by the session (pgwire/comments.py)
            "DROP SCHEMA of several schemas at once is not supported",
            hint="drop them one by one",
            sqlstate="0A000",
        )
    if name.lower().startswith("pg_"):
        raise TranslationError(f'unacceptable schema name "{name}"', sqlstate="42939")
    if not name or not schemas.is_user_schema(name):
        raise TranslationError(f'schema "{name}" already exists', sqlstate="42P06")
    schemas.note({name})  # statements naming it must now go through sqlglot (their cache is dropped later)
    view: exp.Expr = sqlglot.parse_one(schemas.marker_view(name), read="sqlite")
    if tree.args.get("exists"):
        view.set("exists", True)
    return view
