"""jsonb's operators over JSON text (sqlite_ha.db.jsonb) and the translations that call them: the examples of
PostgreSQL's documentation (8.14.3 "jsonb Containment and Existence", 9.16 "JSON Functions and Operators"),
run on a SQLite connection with the node's functions. tests/e2e/test_django.py compares the same operators
with a real PostgreSQL."""

from __future__ import annotations

import functools

import apsw
import pytest

from sqlite_ha.db import functions, jsonb
from sqlite_ha.server.pgwire.sql.dialect import translate


@pytest.fixture(scope="module")
def conn() -> apsw.Connection:
    c = apsw.Connection(":memory:")
    functions.register(c)
    return c


def one(conn: apsw.Connection, pg_sql: str) -> object:
    sql = translate(pg_sql).sql
    return conn.execute(sql).fetchall()[0][0]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        # containment, from the documentation
        ("""'"foo"'::jsonb @> '"foo"'::jsonb""", 1),
        ("""'[1, 2, 3]'::jsonb @> '[1, 3]'::jsonb""", 1),
        ("""'[1, 2, 3]'::jsonb @> '[3, 1]'::jsonb""", 1),
        ("""'[1, 2, 3]'::jsonb @> '[1, 2, 2]'::jsonb""", 1),
        ("""'{"product": "PostgreSQL", "version": 9.4}'::jsonb @> '{"version": 9.4}'::jsonb""", 1),
        ("""'[1, 2, [1, 3]]'::jsonb @> '[1, 3]'::jsonb""", 0),
        ("""'[1, 2, [1, 3]]'::jsonb @> '[[1, 3]]'::jsonb""", 1),
        ("""'{"foo": {"bar": "baz"}}'::jsonb @> '{"bar": "baz"}'::jsonb""", 0),
        ("""'{"foo": {"bar": "baz"}}'::jsonb @> '{"foo": {}}'::jsonb""", 1),
        ("""'["foo", "bar"]'::jsonb @> '"foo"'::jsonb""", 1),
        ("""'"foo"'::jsonb @> '["foo"]'::jsonb""", 0),
        ("""'{"b":2}'::jsonb <@ '{"a":1, "b":2}'::jsonb""", 1),
        ("""'1'::jsonb @> '1.0'::jsonb""", 1),
        ("""'true'::jsonb @> '1'::jsonb""", 0),
        # existence
        ("""'["foo", "bar", "baz"]'::jsonb ? 'bar'""", 1),
        ("""'{"foo": "bar"}'::jsonb ? 'foo'""", 1),
        ("""'{"foo": "bar"}'::jsonb ? 'bar'""", 0),
        ("""'{"foo": {"bar": "baz"}}'::jsonb ? 'bar'""", 0),
        ("""'"foo"'::jsonb ? 'foo'""", 1),
        ("""'{"a":1, "b":2, "c":3}'::jsonb ?| array['b', 'd']""", 1),
        ("""'["a", "b", "c"]'::jsonb ?& array['a', 'b']""", 1),
        ("""'{"a":1, "b":2}'::jsonb ?& '{a,c}'""", 0),
        # paths and text
        ("""'{"a": {"b": ["foo","bar"]}}'::json #> '{a,b,1}'""", '"bar"'),
        ("""'{"a": {"b": ["foo","bar"]}}'::json #>> '{a,b,1}'""", "bar"),
        ("""'{"a": [1, 2]}'::jsonb #> '{a,-1}'""", "2"),
        ("""'{"a": [1, 2]}'::jsonb #> '{a,x}'""", None),
        ("""'{"a":1,"b":2}'::json ->> 'b'""", "2"),
        ("""'{"a":true}'::jsonb ->> 'a'""", "true"),
        ("""'{"a":null}'::jsonb ->> 'a'""", None),
        ("""'{"a":{"x":1, "b": [1,2]}}'::jsonb ->> 'a'""", '{"b": [1, 2], "x": 1}'),
        # jsonb's ordering: by kind, numbers as numbers, objects by size and then keys
        ("""'10'::jsonb > '9'::jsonb""", 1),
        ("""'"10"'::jsonb > '"9"'::jsonb""", 0),
        ("""'{"b": 1, "a": 2}'::jsonb = '{"a": 2, "b": 1}'::jsonb""", 1),
        ("""'{"aa": 1}'::jsonb > '{"b": 1}'::jsonb""", 1),
        ("""'[1, 2]'::jsonb < '{}'::jsonb""", 1),
        ("""'true'::jsonb > '1000'::jsonb""", 1),
        ("""'1.0'::jsonb = '1'::jsonb""", 1),
    ],
)
def test_operators_as_postgresql_documents_them(
    conn: apsw.Connection, expression: str, expected: object
) -> None:
    assert one(conn, f"SELECT {expression}") == expected


def test_unnest_of_array_literals_zips_them_in_order(conn: apsw.Connection) -> None:
    """Django's bulk_create: one array per column, NULLs and quoting as PostgreSQL's literals write them;
    a shorter array is padded with NULL."""
    sql = translate(
        """SELECT * FROM UNNEST(('{"a b",NULL,"c\\"d",x}')::varchar[], ('{3,1,2}'::int2[])::integer[],"""
        """ '{t,f}'::boolean[]) WITH ORDINALITY"""
    ).sql
    assert conn.execute(sql).fetchall() == [
        ("a b", 3, 1, 1),
        (None, 1, 0, 2),
        ('c"d', 2, None, 3),
        ("x", None, None, 4),
    ]


def test_at_time_zone() -> None:
    assert "AT TIME ZONE" not in translate("SELECT created AT TIME ZONE 'UTC' FROM t").sql
    with pytest.raises(Exception, match="only 'UTC'"):
        translate("SELECT created AT TIME ZONE 'Europe/Paris' FROM t")
    assert "PG_AT_UTC" in translate("SELECT created AT TIME ZONE $1 FROM t").sql.upper()


def test_collation_sorts_as_jsonb() -> None:
    docs = ['"b"', "null", "2", "10", "true", "[1]", '{"a":1}', "[]", '"a"', "false"]
    ordered = sorted(docs, key=functools.cmp_to_key(jsonb.collate))
    assert ordered == ["null", '"a"', '"b"', "2", "10", "false", "true", "[]", "[1]", '{"a":1}']


def test_a_schema_change_after_comments_is_still_one() -> None:
    """sqlmigrate prints ``--`` comments before each statement; the ALTER after them is rebuilt as without."""
    plain = 'ALTER TABLE "t" ALTER COLUMN "note" SET DEFAULT \'\''
    assert translate("--\n-- Alter field note\n--\n" + plain).sql == translate(plain).sql
    assert "sqlite_ha_rebuild" in translate("/* c */ " + plain).sql
