"""PostgreSQL schemas over SQLite: a schema is a name prefix.

SQLite has one namespace per database file (ATTACHed files would not be captured by the change capture, so
they could not replicate). A PostgreSQL table ``s.t`` in a schema ``s`` other than ``public`` is therefore
the table ``"s.t"`` of the one database, its indexes ``"s.ix"``: ordinary tables, whose rows and DDL
replicate as any other. ``CREATE SCHEMA s`` makes an empty view ``"s."`` that records the schema (it
replicates as DDL too); the catalog lists ``s`` in ``pg_namespace`` and shows ``"s.t"`` as ``t`` in it.
The dialect rewrites schema-qualified names (``s.t``, ``s.t.col``, ``CREATE INDEX ix ON s.t``) to the
prefixed ones. Unqualified names are in ``public`` (``search_path`` stays ``"$user", public``).

The fast path (plain SQLite, no sqlglot) does not see schema-qualified names; so the node keeps the names
of the schemas it has seen (``note``) and a statement naming one goes through sqlglot.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlite_ha.db.database import Database

# schemas that are not prefixes: PostgreSQL's own, and SQLite's (main, temp) which clients may name
SYSTEM = frozenset({"public", "pg_catalog", "information_schema", "main", "temp", "pg_temp", "pg_toast"})
MARKER_SUFFIX = "."  # the view "s." records the schema s

_known: set[str] = set()
_pattern: re.Pattern[str] | None = None
generation = 0  # counts changes of the known schemas: cached translations older than it are dropped


def is_user_schema(name: str) -> bool:
    return name.lower() not in SYSTEM and not name.lower().startswith("pg_temp")


def prefixed(schema: str, name: str) -> str:
    return f"{schema}.{name}"


def split(name: str, schemas: set[str] | frozenset[str]) -> tuple[str | None, str]:
    """(schema, name in it) of a table or index name of the database; (None, name) for ``public``."""
    schema, dot, rest = name.partition(".")
    if dot and rest and schema.lower() in schemas:
        return schema, rest
    return None, name


COMMENTS = "pg_comment:"  # the view "pg_comment:t" holds the comments of t and its columns (comments.py)
CONSTRAINT_KEY = "pg_constraint:"  # in it, the comment of t's constraint c is the row "pg_constraint:c"
MATVIEW = "pg_matview."  # the view "pg_matview.v" keeps the query of the materialized view v (rewrites.py)


def matview(name: str) -> str:
    return MATVIEW + name


def marker_view(schema: str) -> str:
    return f'CREATE VIEW "{schema}{MARKER_SUFFIX}" AS SELECT NULL WHERE 0'


def note(names: set[str] | frozenset[str]) -> bool:
    """Record the schemas of a database (lower case); True when new ones appeared (the caller then drops
    cached translations that went the fast path)."""
    global _pattern, generation
    new = {n.lower() for n in names} - _known
    if not new:
        return False
    _known.update(new)
    generation += 1
    _pattern = re.compile(r"\b(?:" + "|".join(re.escape(n.upper()) for n in sorted(_known)) + r")\s*\.")
    return True


def known() -> frozenset[str]:
    """The schemas this process has seen (lower case)."""
    return frozenset(_known)


def needs_sqlglot(upper: str, words: list[str]) -> bool:
    """Whether upper-cased, string-masked SQL is about schemas (``CREATE SCHEMA``) or names a known one
    (``S.T``): sqlglot must rewrite it."""
    if "SCHEMA" in words or "MATERIALIZED" in words:
        return True
    if len(words) > 1 and words[0] == "DROP" and words[1] in ("TABLE", "VIEW"):
        return True  # it drops the object's comments too (sql/rewrites.py)
    return _pattern is not None and _pattern.search(upper) is not None


_NO_SUCH_QUALIFIED = re.compile(r"no such (?:table|view|index): [^.\s]+\.")


def unknown_schema(message: str) -> bool:
    """Whether SQLite's error says a statement named a schema it does not know (``s.t`` read as ATTACHed)."""
    return "unknown database" in message or _NO_SUCH_QUALIFIED.search(message) is not None


def learn(db: Database) -> bool:
    """Note the schemas recorded in ``db`` (a ``Database``: its marker views); True when one was new."""
    rows = db.reader_connection.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'view' AND name LIKE '%.'"
    ).fetchall()
    return note({str(row[0])[:-1] for row in rows})
