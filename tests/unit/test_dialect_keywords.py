"""Names that are keywords in SQLite, not in PostgreSQL: a column ``index``, as pandas' ``to_sql`` makes."""

from __future__ import annotations

import time

import apsw
import pytest

from sqlite_ha.server.pgwire.sql.dialect import SQLITE_ONLY_KEYWORDS, translate

# PostgreSQL 15's reserved key words (appendix C: "reserved" and "reserved (can be function or type)").
PG_RESERVED = {
    "ALL",
    "ANALYSE",
    "ANALYZE",
    "AND",
    "ANY",
    "ARRAY",
    "AS",
    "ASC",
    "ASYMMETRIC",
    "BOTH",
    "CASE",
    "CAST",
    "CHECK",
    "COLLATE",
    "COLUMN",
    "CONSTRAINT",
    "CREATE",
    "CURRENT_CATALOG",
    "CURRENT_DATE",
    "CURRENT_ROLE",
    "CURRENT_TIME",
    "CURRENT_TIMESTAMP",
    "CURRENT_USER",
    "DEFAULT",
    "DEFERRABLE",
    "DESC",
    "DISTINCT",
    "DO",
    "ELSE",
    "END",
    "EXCEPT",
    "FALSE",
    "FETCH",
    "FOR",
    "FOREIGN",
    "FROM",
    "GRANT",
    "GROUP",
    "HAVING",
    "IN",
    "INITIALLY",
    "INTERSECT",
    "INTO",
    "LATERAL",
    "LEADING",
    "LIMIT",
    "LOCALTIME",
    "LOCALTIMESTAMP",
    "NOT",
    "NULL",
    "OFFSET",
    "ON",
    "ONLY",
    "OR",
    "ORDER",
    "PLACING",
    "PRIMARY",
    "REFERENCES",
    "RETURNING",
    "SELECT",
    "SESSION_USER",
    "SOME",
    "SYMMETRIC",
    "TABLE",
    "THEN",
    "TO",
    "TRAILING",
    "TRUE",
    "UNION",
    "UNIQUE",
    "USER",
    "USING",
    "VARIADIC",
    "WHEN",
    "WHERE",
    "WINDOW",
    "WITH",
    "AUTHORIZATION",
    "BINARY",
    "COLLATION",
    "CONCURRENTLY",
    "CROSS",
    "CURRENT_SCHEMA",
    "FREEZE",
    "FULL",
    "ILIKE",
    "INNER",
    "IS",
    "ISNULL",
    "JOIN",
    "LEFT",
    "LIKE",
    "NATURAL",
    "NOTNULL",
    "OUTER",
    "OVERLAPS",
    "RIGHT",
    "SIMILAR",
    "TABLESAMPLE",
    "VERBOSE",
}
SQLGLOT_CANNOT_READ_AS_NAMES = {"ALTER", "BETWEEN", "DROP", "INSERT"}


def _sqlite_refuses_as_name(word: str) -> bool:
    conn = apsw.Connection(":memory:")
    conn.execute(f'CREATE TABLE t("{word}" INTEGER)')
    try:
        conn.execute(f"SELECT {word} FROM t").fetchall()
    except apsw.SQLError:
        return True
    return False


def test_the_list_is_what_this_sqlite_refuses_and_postgresql_does_not_reserve() -> None:
    refused = {w for w in apsw.keywords if w not in PG_RESERVED and _sqlite_refuses_as_name(w)}
    assert refused - SQLGLOT_CANNOT_READ_AS_NAMES == SQLITE_ONLY_KEYWORDS


@pytest.mark.parametrize(
    ("sql", "want"),
    [
        ("SELECT index FROM kw", 'SELECT "index" FROM kw'),
        ("SELECT kw.index FROM kw WHERE index > $1", 'SELECT kw."index" FROM kw WHERE "index" > ?1'),
        ("INSERT INTO t (index, v) VALUES ($1, $2)", 'INSERT INTO t ("index", v) VALUES (?1, ?2)'),
        ("UPDATE t SET index = 1", 'UPDATE t SET "index" = 1'),
        ("CREATE TABLE y (index BIGINT, v TEXT)", 'CREATE TABLE y ("index" BIGINT, v TEXT)'),
        ("SELECT set, values FROM t", 'SELECT "set", "values" FROM t'),
    ],
)
def test_such_names_are_quoted(sql: str, want: str) -> None:
    assert translate(sql).sql == want


@pytest.mark.parametrize(
    "sql",
    [
        'SELECT "index" FROM kw',
        "INSERT INTO t (a, b) VALUES ($1, $2)",
        "INSERT INTO t DEFAULT VALUES",
        "UPDATE t SET v = $1 WHERE id = $2",
        "DELETE FROM t WHERE id = $1",
        "CREATE INDEX IF NOT EXISTS ix ON t (v)",
        "DROP INDEX ix",
        "SELECT EXISTS (SELECT 1)",
        "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = excluded.a",
        "INSERT INTO t (a) VALUES (1) ON CONFLICT DO NOTHING",
        "CREATE TABLE x (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)",
        "ALTER TABLE t ADD COLUMN w TEXT",
        "WITH c AS (SELECT 1 AS a) UPDATE t SET v = (SELECT a FROM c)",
        "CREATE TABLE z (a BIGINT REFERENCES t (id) ON DELETE SET NULL ON UPDATE CASCADE)",  # integer: INT
    ],
)
def test_the_keywords_themselves_keep_the_fast_path(sql: str) -> None:
    """The common statements (every INSERT has VALUES) are not sent to sqlglot for these words."""
    assert not translate(sql).translated


def test_drop_table_drops_its_comments_too() -> None:
    """Not the fast path: the table's comments (pgwire/comments.py) go with it."""
    assert (
        translate("DROP TABLE IF EXISTS t").sql
        == 'DROP TABLE IF EXISTS t; DROP VIEW IF EXISTS "pg_comment:t"'
    )


def test_a_long_statement_full_of_keywords_is_checked_in_linear_time() -> None:
    """Each word's context is looked for near it, not in the whole text before it: 5,000 ``EXISTS`` in one
    230 kB statement took 8 s when every look went back to the start, 0.04 s now."""
    sql = "SELECT 1 WHERE " + " AND ".join(["x NOT IN (SELECT 1) AND EXISTS (SELECT 1)"] * 5000)
    started = time.monotonic()
    assert not translate(sql).translated
    assert time.monotonic() - started < 2.0
