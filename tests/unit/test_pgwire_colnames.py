"""Result column names as PostgreSQL gives them, from the names SQLite gives."""

from __future__ import annotations

import pytest

from sqlite_ha.server.pgwire.sql.colnames import pg_column_name


@pytest.mark.parametrize(
    ("sqlite_name", "pg_name"),
    [
        ("count(*)", "count"),
        ("COUNT(*)", "count"),
        ("pg_catalog.upper(name)", "upper"),
        ("coalesce(x, ')')", "coalesce"),
        ("max(a) + min(b)", "?column?"),
        ("a + b", "?column?"),
        ("1", "?column?"),
        ("'text'", "?column?"),
        ("?1", "?column?"),
        ("(SELECT max(z) FROM u)", "?column?"),
        ("CASE WHEN x THEN 1 END", "case"),
        ("EXISTS (SELECT 1)", "exists"),
        ("CAST(id AS TEXT)", "id"),
        ("cast(id as text)", "id"),
        ("CAST(1 AS INTEGER)", "?column?"),
        ("DATETIME('now', 'subsec')", "now"),
        ("CURRENT_DATE", "current_date"),
        ("id", "id"),
        ("Mixed_Case", "Mixed_Case"),
    ],
)
def test_names(sqlite_name: str, pg_name: str) -> None:
    assert pg_column_name(sqlite_name, "SELECT …") == pg_name


def test_a_quoted_alias_keeps_its_name() -> None:
    assert pg_column_name("count(*)", 'SELECT count(*) AS "count(*)" FROM t') == "count(*)"
    assert pg_column_name("my total", 'SELECT sum(x) AS "my total" FROM t') == "my total"
