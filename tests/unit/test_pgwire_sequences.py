"""CREATE/ALTER/DROP SEQUENCE as SQLite statements (sql/sequences.py): what is refused, with which SQLSTATE,
and a sequence's table as a real SQLite database reads it."""

from __future__ import annotations

import apsw
import pytest

from sqlite_ha.server.pgwire.sql.dialect import TranslationError, translate
from sqlite_ha.server.pgwire.sql.sequences import sequence_calls, state_query


@pytest.mark.parametrize(
    ("sql", "sqlstate"),
    [
        ("CREATE SEQUENCE s CYCLE", "0A000"),
        ("CREATE TEMP SEQUENCE s", "0A000"),
        ("CREATE SEQUENCE s INCREMENT BY 0", "22023"),
        ("CREATE SEQUENCE s START WITH 0", "22023"),  # below MINVALUE 1
        ("ALTER SEQUENCE s INCREMENT BY 2", "0A000"),
        ("CREATE SEQUENCE s SOMETHING ELSE", "42601"),
    ],
)
def test_refused(sql: str, sqlstate: str) -> None:
    with pytest.raises(TranslationError) as raised:
        translate(sql)
    assert raised.value.sqlstate == sqlstate


def test_a_sequence_is_a_marked_table_with_postgresql_s_columns() -> None:
    conn = apsw.Connection(":memory:")
    created = translate(
        'CREATE SEQUENCE public."Odd" AS integer START WITH 5 INCREMENT BY -1 MAXVALUE 10'
    ).sql
    conn.execute(created.split("; SELECT")[0])  # the row is the writer's function's (changes/sequences.py)
    conn.execute('INSERT INTO "Odd" DEFAULT VALUES')
    row = conn.execute(
        'SELECT last_value, is_called, start_value, increment_by, min_value, max_value, data_type FROM "Odd"'
    ).fetchall()
    assert row == [(5, 0, 5, -1, -(2**31), 10, "integer")]
    assert "/*pg:sequence*/" in conn.execute("SELECT sql FROM sqlite_schema").fetchall()[0][0]


def test_drop_and_pg_dump_s_statements() -> None:
    assert (
        translate("DROP SEQUENCE IF EXISTS a, public.b").sql
        == 'DROP TABLE IF EXISTS "a"; DROP TABLE IF EXISTS "b"'
    )
    assert sequence_calls("SELECT pg_catalog.setval('public.t_id_seq', 3, true)") == (
        "SELECT setval('public.t_id_seq', 3, true)"
    )
    assert state_query("SELECT last_value, is_called FROM public.t_id_seq") == (
        "SELECT pg_sequence_last_value('t_id_seq') AS last_value, "
        "pg_sequence_is_called('t_id_seq') = 1 AS is_called"
    )
