"""EXPLAIN as PostgreSQL prints it, from SQLite's EXPLAIN QUERY PLAN."""

from __future__ import annotations

import apsw
import pytest

from sqlite_ha.server.pgwire.explain import AnalyzeRefused, plan_lines, split


@pytest.mark.parametrize(
    ("sql", "target"),
    [
        ("EXPLAIN SELECT 1", "SELECT 1"),
        ("explain verbose SELECT 1", "SELECT 1"),
        ("EXPLAIN (COSTS OFF, FORMAT TEXT) SELECT 1", " SELECT 1"),
        ("EXPLAIN (ANALYZE false) SELECT 1", " SELECT 1"),
        ("EXPLAIN QUERY PLAN SELECT 1", None),  # SQLite's own: left to SQLite
        ("SELECT 1", None),
    ],
)
def test_split(sql: str, target: str | None) -> None:
    assert split(sql) == target


@pytest.mark.parametrize("sql", ["EXPLAIN ANALYZE SELECT 1", "EXPLAIN (ANALYZE, BUFFERS) SELECT 1"])
def test_analyze_is_refused(sql: str) -> None:
    with pytest.raises(AnalyzeRefused, match="would run the statement"):
        split(sql)


def test_plan_lines_nest_children_under_their_node() -> None:
    conn = apsw.Connection(":memory:")
    conn.execute("CREATE TABLE t(a, b); CREATE INDEX ta ON t(a)")
    rows = conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM t WHERE a IN (SELECT a FROM t WHERE b > 1) ORDER BY b"
    ).fetchall()
    assert plan_lines(rows) == [
        ("SEARCH t USING INDEX ta (a=?)",),
        ("LIST SUBQUERY 1",),
        ("  ->  SCAN t",),
        ("USE TEMP B-TREE FOR ORDER BY",),
    ]
