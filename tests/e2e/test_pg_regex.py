"""PostgreSQL's regular-expression operators and regexp_replace over the PG wire, answered as PostgreSQL 15
answers them (SQLAlchemy's ``regexp_match`` and ``regexp_replace`` compile to these)."""

from __future__ import annotations

import psycopg
import pytest

from sqlite_ha.testing import NodeProcess, free_port
from sqlite_ha.testing_pg import PostgresServer
from tests.conftest import NodeFactory

PASSWORD = "regex-secret"
EXPRESSIONS = [
    "v ~ 'b.'",
    "v ~* 'B'",
    "v !~ '^a'",
    "v !~* 'X'",
    "v ~ '^[[:digit:]]+$'",
    "v ~ '[[:alpha:]][[:space:]][[:alpha:]]'",
    r"v ~ '\mfoo\M'",
    "v ~ %s",
    "regexp_replace(v, 'b', 'X')",
    "regexp_replace(v, 'b', 'X', 'g')",
    "regexp_replace(v, '(o+)', '<\\1>', 'g')",
    "regexp_replace(v, 'B', '[\\&]', 'gi')",
    "regexp_replace(v, %s, %s)",
]
VALUES = ["abcb", "Abc", "123", "a b", "the foo bar", "afoob", "line\nbreak", None]


@pytest.fixture
def node(node_factory: NodeFactory) -> NodeProcess:
    port = free_port()
    node = node_factory(args=["app.db", "--pg-port", str(port), "--pg-pass", PASSWORD], nats_port=None)
    node.pg_port = port  # type: ignore[attr-defined]
    return node


def answers(dsn: str) -> list[object]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS rx")
        conn.execute("CREATE TABLE rx (id INT PRIMARY KEY, v TEXT)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO rx VALUES (%s, %s)", list(enumerate(VALUES)))
        out = []
        for expression in EXPRESSIONS:
            params = {1: ("o",), 2: ("[ab]", "-")}.get(expression.count("%s"), ())
            out.append(conn.execute(f"SELECT id, {expression} FROM rx ORDER BY id", params).fetchall())
        with pytest.raises(psycopg.errors.InvalidRegularExpression):
            conn.execute("SELECT 'a' ~ '('")
        return out


def test_regex_operators_and_replace_as_postgresql(node: NodeProcess, postgres: PostgresServer) -> None:
    port = node.pg_port  # type: ignore[attr-defined]
    ours = answers(f"host=127.0.0.1 port={port} user=ha password={PASSWORD} dbname=app sslmode=disable")
    reference = answers(postgres.dsn())
    for expression, mine, theirs in zip(EXPRESSIONS, ours, reference, strict=True):
        assert mine == theirs, expression
