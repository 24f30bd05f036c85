"""TEMP tables and views over the PostgreSQL wire: a session's own, invisible to others, gone at its end,
never replicated; listed in the catalog as PostgreSQL lists them (``pg_temp_N``, ``relpersistence 't'``).

Each scenario runs the same statements on a node and on a real PostgreSQL 15 and compares what clients see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from sqlite_ha.testing import NodeProcess, free_port
from sqlite_ha.testing_pg import PostgresServer
from tests.conftest import NodeFactory

PASSWORD = "temp-secret"
Connect = Callable[[], psycopg.Connection[Any]]


@pytest.fixture
def node(node_factory: NodeFactory) -> NodeProcess:
    port = free_port()
    node = node_factory(args=["app.db", "--pg-port", str(port), "--pg-pass", PASSWORD], nats_port=None)
    node.pg_port = port  # type: ignore[attr-defined]
    return node


def node_dsn(node: NodeProcess) -> str:
    port = node.pg_port  # type: ignore[attr-defined]
    return f"host=127.0.0.1 port={port} user=ha password={PASSWORD} dbname=app sslmode=disable"


def both(node: NodeProcess, postgres: PostgresServer) -> dict[str, str]:
    return {"node": node_dsn(node), "postgres": postgres.dsn()}


def scenario(dsn: str) -> list[Any]:
    """What two sessions see of one session's TEMP objects; the answers PostgreSQL gives are the spec."""
    seen: list[Any] = []
    with psycopg.connect(dsn, autocommit=True) as a, psycopg.connect(dsn, autocommit=True) as b:
        a.execute("DROP TABLE IF EXISTS tt_base")
        a.execute("CREATE TABLE tt_base (id INT PRIMARY KEY, v TEXT)")
        a.execute("INSERT INTO tt_base VALUES (1, 'one'), (2, 'two')")
        a.execute(
            "CREATE TEMPORARY TABLE tt_tmp (id INTEGER NOT NULL, name VARCHAR(50), foo INTEGER, "
            "PRIMARY KEY (id), CONSTRAINT tt_tmp_uq UNIQUE (name))"
        )
        a.execute("CREATE INDEX tt_tmp_ix ON tt_tmp (foo)")
        a.execute("CREATE TEMP VIEW tt_tmp_v AS SELECT id, name FROM tt_tmp")
        a.execute("INSERT INTO tt_tmp (id, name, foo) VALUES (%s, %s, %s)", (1, "x", 10))
        a.execute("INSERT INTO tt_tmp (id, name, foo) SELECT id + 10, v, 20 FROM tt_base")
        seen.append(a.execute("SELECT id, name FROM tt_tmp_v ORDER BY id").fetchall())
        seen.append(
            a.execute(
                "SELECT t.id, b.v FROM tt_tmp t JOIN tt_base b ON b.id = t.id - 10 ORDER BY t.id"
            ).fetchall()
        )
        with pytest.raises(psycopg.errors.UniqueViolation):
            a.execute("INSERT INTO tt_tmp (id, name) VALUES (%s, %s)", (5, "x"))
        listed = (
            "SELECT c.relname, c.relkind, c.relpersistence, n.nspname LIKE 'pg_temp%%' "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relpersistence = 't' AND pg_table_is_visible(c.oid) AND c.relkind IN ('r', 'v') "
            "ORDER BY c.relname"
        )
        seen.append(a.execute(listed).fetchall())
        seen.append(b.execute(listed).fetchall())  # another session: none of them
        with pytest.raises(psycopg.errors.UndefinedTable):
            b.execute("SELECT * FROM tt_tmp")
        a.execute("DROP VIEW tt_tmp_v")
        seen.append(a.execute(listed).fetchall())
        seen.append(b.execute("SELECT count(*) FROM tt_base").fetchall())
    with psycopg.connect(dsn, autocommit=True) as c:  # the session ended: its TEMP table went with it
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("SELECT * FROM tt_tmp")
        c.execute("CREATE TEMP TABLE tt_tmp (z TEXT)")  # the name is free again
        seen.append(c.execute("SELECT count(*) FROM tt_tmp").fetchall())
    return seen


def test_temp_tables_are_the_sessions_own_as_in_postgresql(
    node: NodeProcess, postgres: PostgresServer
) -> None:
    answers = {system: scenario(dsn) for system, dsn in both(node, postgres).items()}
    assert answers["node"] == answers["postgres"]
    assert answers["node"][2] == [("tt_tmp", "r", "t", True), ("tt_tmp_v", "v", "t", True)]


def test_sqlalchemy_reflects_a_sessions_temp_table(node: NodeProcess, postgres: PostgresServer) -> None:
    """What SQLAlchemy's reflection suite asks: the temp table's names, columns, keys and indexes, on the one
    connection that made it (a StaticPool), and nothing of it through another."""
    reflected = {}
    port = node.pg_port  # type: ignore[attr-defined]
    urls = {
        "node": f"postgresql+psycopg://ha:{PASSWORD}@127.0.0.1:{port}/app",
        "postgres": postgres.url(driver="postgresql+psycopg"),
    }
    for system, url in urls.items():
        engine = sa.create_engine(url, poolclass=sa.pool.StaticPool)
        meta = sa.MetaData()
        sa.Table(
            "user_tmp",
            meta,
            sa.Column("id", sa.INT, primary_key=True),
            sa.Column("name", sa.VARCHAR(50)),
            sa.Column("foo", sa.INT),
            sa.UniqueConstraint("name", name="user_tmp_uq"),
            sa.Index("user_tmp_ix", "foo"),
            prefixes=["TEMPORARY"],
        )
        with engine.begin() as conn:
            meta.create_all(conn)
        with engine.connect() as conn:
            insp = sa.inspect(conn)
            reflected[system] = (
                insp.get_temp_table_names(),
                insp.has_table("user_tmp"),
                # names and nullability: how declared types are announced is the type registry's (docs/pg.md)
                [(c["name"], c["nullable"]) for c in insp.get_columns("user_tmp")],
                insp.get_pk_constraint("user_tmp")["constrained_columns"],
                [(u["name"], u["column_names"]) for u in insp.get_unique_constraints("user_tmp")],
                sorted(i["name"] for i in insp.get_indexes("user_tmp")),
                "user_tmp" in insp.get_table_names(),
            )
        with sa.create_engine(url).connect() as other:
            assert not sa.inspect(other).has_table("user_tmp")
        engine.dispose()
    assert reflected["node"] == reflected["postgres"]
    assert reflected["node"][0] == ["user_tmp"]


def test_temp_rows_never_change_replicated_tables(node: NodeProcess) -> None:
    """A statement naming a TEMP table runs on the session's own connection, which cannot write the
    replicated tables: copying TEMP rows into a real table in one statement is refused, nothing written;
    and no TEMP object reaches the database file that replicates."""
    with psycopg.connect(node_dsn(node), autocommit=True) as conn:
        conn.execute("CREATE TABLE real_t (id INT PRIMARY KEY)")
        conn.execute("CREATE TEMP TABLE staging (id INT)")
        conn.execute("INSERT INTO staging VALUES (1), (2)")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="TEMP"):
            conn.execute("INSERT INTO real_t SELECT id FROM staging")
        # the supported way: read them out, write them in a statement of its own
        ids = [row[0] for row in conn.execute("SELECT id FROM staging ORDER BY id")]
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO real_t VALUES (%s)", [(i,) for i in ids])
        assert conn.execute("SELECT count(*) FROM real_t").fetchone() == (2,)
        schema = node.query({"sql": "SELECT name FROM sqlite_master ORDER BY name"})["rows"]
        assert ["staging"] not in schema
        assert ["real_t"] in schema
