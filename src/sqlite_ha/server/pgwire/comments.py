"""``COMMENT ON TABLE | VIEW | MATERIALIZED VIEW | COLUMN | CONSTRAINT``: comments kept, replicated, and read
back through ``obj_description``, ``col_description`` and ``pg_description``; and ``DROP SCHEMA``, which
like them turns into statements over what the session's catalog lists.

SQLite has no place for comments, so the comments of a table ``t`` live in one view of its own,
``"pg_comment:t"``, whose rows are ``(attname, description)`` (``''`` for the table itself): ordinary DDL,
which replicates to every node with the table's own, and which the catalog reads when it rebuilds after a
schema change (the view itself is not listed). A ``COMMENT`` statement is answered by writing that view
anew with the table's other comments (read from the session's catalog) and the new one: it runs as one
write, inside the session's transaction block if there is one. ``DROP TABLE t`` drops the view with the
table (sql/rewrites.py), so a table made again under the same name starts without comments, as in
PostgreSQL. Comments on other objects (constraints, indexes, schemas, …) are accepted with a notice and not
kept. Two sessions commenting on columns of the same table at the same moment may lose one of the two.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from sqlite_ha.server.pgwire.errors import PgError
from sqlite_ha.server.pgwire.sql import schemas

if TYPE_CHECKING:
    from sqlite_ha.server.pgwire.catalog.catalog import Catalog

_KEPT = re.compile(
    r"^\s*COMMENT\s+ON\s+(?:TABLE|VIEW|MATERIALIZED\s+VIEW|COLUMN|FOREIGN\s+TABLE|CONSTRAINT)\b", re.I
)
# COMMENT ON CONSTRAINT c ON t: kept with t's comments under the key "pg_constraint:c"
_CONSTRAINT = re.compile(r'^\s*COMMENT\s+ON\s+CONSTRAINT\s+("(?:[^"]|"")+"|\w+)\s+ON\s+(.*)$', re.I | re.S)
CONSTRAINT_KEY = schemas.CONSTRAINT_KEY
_IS_NULL = re.compile(r"\bIS\s+NULL\s*;?\s*$", re.I)


def kept(sql: str) -> bool:
    """Whether a COMMENT statement is about an object whose comments are kept."""
    return _KEPT.match(sql) is not None


def statement(sql: str, catalog: Catalog) -> str:
    """The SQLite statements that record what ``sql`` (a ``COMMENT ON …`` of a kept kind) says."""
    text = _IS_NULL.sub("IS ''", sql)
    constraint = _CONSTRAINT.match(text)
    key_prefix = ""
    if constraint is not None:
        name = constraint.group(1)
        name = name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()
        key_prefix = CONSTRAINT_KEY + name
        text = f"COMMENT ON TABLE {constraint.group(2)}"
    try:
        tree = sqlglot.parse_one(text, read="postgres")
    except SqlglotError as e:
        raise PgError("42601", f"syntax error in COMMENT: {e}") from e
    if not isinstance(tree, exp.Comment) or not isinstance(tree.expression, exp.Literal):
        raise PgError("42601", "COMMENT ON … IS 'text' or IS NULL expected")
    target = tree.this
    if isinstance(target, exp.Column):
        table = _name(target.args.get("db"), target.args.get("table"))
        column = target.name
    elif isinstance(target, exp.Table):
        table = _name(target.args.get("db"), target.this)
        column = key_prefix
    else:
        raise PgError("42601", "COMMENT ON: a table, view or column name expected")
    if not table:
        raise PgError("42601", "COMMENT ON COLUMN needs table.column")
    comments = {k: v for k, v in catalog.comments_of(table).items() if k.lower() != column.lower()}
    if tree.expression.name:  # '' and NULL drop the comment, as in PostgreSQL
        comments[column] = tree.expression.name
    view = exp.to_identifier(view_name(table), quoted=True).sql(dialect="sqlite")
    out = [f"DROP VIEW IF EXISTS {view}"]
    if comments:
        rows = ", ".join(
            f"({exp.Literal.string(k).sql(dialect='sqlite')}, {exp.Literal.string(v).sql(dialect='sqlite')})"
            for k, v in sorted(comments.items())
        )
        out.append(f"CREATE VIEW {view}(attname, description) AS VALUES {rows}")
    return "; ".join(out)


def view_name(table: str) -> str:
    return schemas.COMMENTS + table


def _name(db: exp.Expr | None, name: exp.Expr | None) -> str:
    table = name.name if isinstance(name, exp.Identifier) else ""
    if isinstance(db, exp.Identifier) and db.name.lower() != "public" and schemas.is_user_schema(db.name):
        return schemas.prefixed(db.name, table)
    return table


# --- DROP SCHEMA, which also needs the catalog's view of what is in the schema ---------------------------

_DROP_SCHEMA = re.compile(
    r'^\s*DROP\s+SCHEMA\s+(IF\s+EXISTS\s+)?("(?:[^"]|"")+"|\w+)\s*(CASCADE|RESTRICT)?\s*;?\s*$', re.I
)


def drop_schema(sql: str, catalog: Catalog) -> str | None:
    """``DROP SCHEMA s [CASCADE]``: the SQLite statements that drop its tables, views and materialized
    views (with their comments) and the view that records it (``sql/schemas.py``); None when ``sql`` is not
    one (several schemas at once are refused by the dialect)."""
    found = _DROP_SCHEMA.match(sql)
    if found is None:
        return None
    name = found.group(2)
    name = name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()
    if not schemas.is_user_schema(name):
        raise PgError("2BP01", f"cannot drop schema {name} because other objects depend on it")
    exists = catalog.conn.execute("SELECT oid FROM pg_namespace WHERE nspname = ?", (name,)).fetchall()
    if not exists:
        if found.group(1):
            return "SELECT 1 WHERE 0"  # IF EXISTS: nothing to drop
        raise PgError("3F000", f'schema "{name}" does not exist')
    inside = catalog.conn.execute(
        "SELECT relname, relkind FROM pg_class WHERE relnamespace = ? AND relkind IN ('r', 'v', 'm')",
        (exists[0][0],),
    ).fetchall()
    if inside and (found.group(3) or "").upper() != "CASCADE":
        raise PgError(
            "2BP01",
            f"cannot drop schema {name} because other objects depend on it",
            hint="Use DROP ... CASCADE to drop the dependent objects too.",
        )
    out: list[str] = []
    for relname, relkind in inside:
        table = schemas.prefixed(name, str(relname))
        quoted = exp.to_identifier(table, quoted=True).sql(dialect="sqlite")
        out.append(f"DROP {'VIEW' if relkind == 'v' else 'TABLE'} IF EXISTS {quoted}")
        if relkind == "m":
            marker = exp.to_identifier(schemas.matview(table), quoted=True).sql(dialect="sqlite")
            out.append(f"DROP VIEW IF EXISTS {marker}")
        comments = exp.to_identifier(view_name(table), quoted=True).sql(dialect="sqlite")
        out.append(f"DROP VIEW IF EXISTS {comments}")
    marker = exp.to_identifier(name + schemas.MARKER_SUFFIX, quoted=True).sql(dialect="sqlite")
    out.append(f"DROP VIEW IF EXISTS {marker}")
    return "; ".join(out)
