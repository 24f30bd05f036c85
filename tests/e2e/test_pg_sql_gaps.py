"""Numeric, time-with-time-zone and small SQL gaps that SQLAlchemy's compliance suite found, compared with
PostgreSQL 15: each statement gives the node what it gives PostgreSQL (rows and result types, in text and
binary format), or the SQLSTATE PostgreSQL gives; where sqlite-ha refuses on purpose (docs/pg.md), the clear
error is asserted instead.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from sqlite_ha.testing import NodeProcess, free_port
from sqlite_ha.testing_pg import PostgresServer
from tests.conftest import NodeFactory

PASSWORD = "gaps pass"
DELTA = dt.timedelta(days=1, seconds=4, microseconds=5)  # psycopg sends it as an interval parameter

SETUP = [
    'CREATE TABLE tt (id int PRIMARY KEY, x int, y int, s text COLLATE "C")',
    "INSERT INTO tt VALUES (1, 1, 2, 'a'), (2, 2, 3, 'B'), (3, 3, 4, 'b'), (4, 4, 5, 'A'), (5, 4, 6, 'c')",
    "CREATE TABLE tz (id int PRIMARY KEY, a time with time zone, b timetz)",
    "INSERT INTO tz VALUES (1, '12:57:18+02', '01:02:03.000004-05:30'), (2, '23:59:59 Z', NULL)",
    "CREATE INDEX tt_x ON tt (x) INCLUDE (y)",
    "CREATE VIEW tv AS SELECT s FROM tt",
    "CREATE TABLE itv (id int PRIMARY KEY, iv interval(6), ts timestamp, d date, tm time)",
    "INSERT INTO itv VALUES (1, '2 days 00:00:05', '2024-03-31 12:00:00.000123', '2024-01-31', '23:00:00')",
    "INSERT INTO itv VALUES (2, make_interval(secs => 86404.5), '2024-02-29 00:00:00', NULL, '00:30:00')",
    "CREATE UNIQUE INDEX tt_y ON tt (y) INCLUDE (x)",
]
# (statement, parameters): same rows, same result types, or the same SQLSTATE
STATEMENTS: list[tuple[str, tuple[Any, ...]]] = [
    ("SELECT id, x, y FROM tt ORDER BY x FETCH FIRST 3 ROWS WITH TIES", ()),
    ("SELECT id, x, y FROM tt ORDER BY x OFFSET 2 ROWS FETCH FIRST 2 ROWS WITH TIES", ()),
    ("SELECT x AS k, id FROM tt ORDER BY k DESC, id FETCH FIRST 1 ROWS WITH TIES", ()),
    ("SELECT x, count(*) FROM tt GROUP BY x ORDER BY 2 DESC FETCH FIRST 1 ROW WITH TIES", ()),
    ("SELECT id FROM tt WHERE x > %s ORDER BY x FETCH FIRST %s ROWS WITH TIES", (1, 2)),
    ("SELECT id FROM tt FETCH FIRST 2 ROWS WITH TIES", ()),
    ("(SELECT id FROM tt WHERE x = 4 ORDER BY id LIMIT 1) UNION ALL"
     " (SELECT id FROM tt ORDER BY id DESC LIMIT 1) ORDER BY id", ()),
    ("(SELECT id FROM tt WHERE id < 3) UNION (SELECT id FROM tt WHERE id > 4) ORDER BY id", ()),
    ("SELECT * FROM ((SELECT s FROM tt ORDER BY id LIMIT 2) EXCEPT (SELECT 'a')) AS u ORDER BY u.s", ()),
    ("CREATE OR REPLACE VIEW tv AS SELECT s, x FROM tt WHERE x > 2", ()),
    ("SELECT * FROM tv ORDER BY x, s", ()),
    ("SELECT s FROM tt ORDER BY s COLLATE \"C\"", ()),
    ("SELECT s FROM tt ORDER BY s COLLATE \"POSIX\" DESC", ()),
    ("SELECT 'a' < 'B' COLLATE \"C\", 'a' < 'B' COLLATE \"POSIX\"", ()),
    ("SELECT s FROM tt ORDER BY s", ()),
    ("INSERT INTO tt VALUES (6, 1, 2, 'd')", ()),  # the UNIQUE index is on y alone
    ("SELECT a, b FROM tz ORDER BY id", ()),
    ("SELECT '12:57:18+02'::timetz, CAST('10:00' AS time with time zone)", ()),
    ("SELECT '2024-01-02 03:04:05-08'::timetz", ()),
    ("SELECT %s::timetz", (dt.time(1, 2, 3, 4, tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),)),
    ("SELECT id FROM tz WHERE a = %s", (dt.time(12, 57, 18, tzinfo=dt.timezone(dt.timedelta(hours=2))),)),
    ("SELECT 'garbage'::timetz", ()),
    ("SELECT iv, iv - %s, ts - %s, %s + ts, d + %s, tm + %s FROM itv ORDER BY id", (DELTA,) * 5),
    ("SELECT ts + %s, iv + %s FROM itv ORDER BY id", (-DELTA * 40, DELTA)),
    ("SELECT id FROM itv WHERE ts - %s < '2024-03-01' ORDER BY id", (DELTA,)),
    ("SELECT %s::timestamp - %s", (dt.datetime(2024, 3, 31, 12, 0, 0, 123), DELTA)),
    ("SELECT s::boolean FROM tt WHERE id = 1", ()),  # 'a' is no boolean: 22P02, not NULL
    ("SELECT v::boolean FROM (VALUES ('yes'), (' off '), ('t'), (NULL)) AS b (v)", ()),
    ("SELECT %s::text::boolean", ("maybe",)),
    ("SELECT 'maybe'::boolean", ()),
    ("SELECT 123.456::numeric(4,2)", ()),
    ("SELECT 99.999::numeric(4,2)", ()),
    ("SELECT 0.001::numeric(2,2), -0.005::numeric(3,2)", ()),
    ("SELECT 'Infinity'::numeric(4,2)", ()),
    ("SELECT CAST(30000000000000000000000000000000000000 AS NUMERIC(38, 0))"
     " / CAST(10000000000000000000000000000000000000 AS NUMERIC(38, 0))", ()),
]  # fmt: skip


@pytest.fixture
def pg_node(node_factory: NodeFactory) -> NodeProcess:
    port = free_port()
    node = node_factory(args=["app.db", "--pg-port", str(port), "--pg-pass", PASSWORD], nats_port=None)
    node.pg_port = port  # type: ignore[attr-defined]
    return node


def node_dsn(node: NodeProcess) -> str:
    return f"postgresql://ha:{quote(PASSWORD)}@127.0.0.1:{node.pg_port}/app"  # type: ignore[attr-defined]


def answer(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...], binary: bool) -> Any:
    try:
        with conn.cursor(binary=binary) as cur:
            cur.execute(sql, params)
            if cur.description is None:
                return "done"
            return [d.type_code for d in cur.description], cur.fetchall()
    except psycopg.Error as e:
        return e.sqlstate


def test_statements_answer_as_in_postgresql(pg_node: NodeProcess, postgres: PostgresServer) -> None:
    name = "gaps"
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")
    with (
        psycopg.connect(postgres.dsn(name), autocommit=True) as real,
        psycopg.connect(node_dsn(pg_node), autocommit=True) as ours,
    ):
        real.execute("SET TIME ZONE 'UTC'")
        for sql in SETUP:
            real.execute(sql)  # type: ignore[arg-type]
            ours.execute(sql)  # type: ignore[arg-type]
        differences = []
        for binary in (False, True):
            for sql, params in STATEMENTS:
                got, want = answer(ours, sql, params, binary), answer(real, sql, params, binary)
                if got != want:
                    differences.append(f"{sql} {params} binary={binary}:\n  node {got}\n  pg   {want}")
            ours.execute("DELETE FROM tt WHERE id = 6")
            real.execute("DELETE FROM tt WHERE id = 6")
        assert not differences, "\n".join(differences)
        # a second row with the UNIQUE index's key is refused by both
        assert answer(ours, "INSERT INTO tt VALUES (7, 1, 2, 'e')", (), False) == "23505"


def test_write_block_sees_its_own_tables_types(pg_node: NodeProcess) -> None:
    """A table created in the transaction block: expressions over its columns are typed from it (an
    untyped numeric parameter added to a numeric column is a numeric, not a float printed as text)."""
    with psycopg.connect(node_dsn(pg_node)) as c:
        c.execute("CREATE TABLE blk (x numeric(8, 4), f float)")
        c.execute("INSERT INTO blk VALUES (%s, %s)", (Decimal("2.9"), 2.9))
        cur = c.execute("SELECT x + %s AS a, f + %s AS b FROM blk", (Decimal("37.12"), 37.12))
        assert [d.type_code for d in cur.description] == [1700, 701]
        a, b = cur.fetchone()  # type: ignore[misc]
        assert a == Decimal("40.02")
        assert b == pytest.approx(40.02)
        c.rollback()


def test_deliberate_refusals(pg_node: NodeProcess) -> None:
    """A table without columns (PostgreSQL has them, SQLite cannot): 0A000 with the reason."""
    with psycopg.connect(node_dsn(pg_node), autocommit=True) as c:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as info:
            c.execute("CREATE TABLE empty ()")
        assert "without columns" in str(info.value)
        # more digits than a double holds, written in the SQL: refused, not rounded (7.00000000000001)
        with pytest.raises(psycopg.errors.NumericValueOutOfRange):
            c.execute("SELECT CAST(5.02797279921331664759 AS NUMERIC(22, 20)) / CAST(0.7182818 AS NUMERIC)")
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            c.execute("SELECT DISTINCT x FROM (VALUES (1)) AS v (x) ORDER BY x FETCH FIRST 1 ROW WITH TIES")
