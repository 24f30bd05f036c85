"""Schemas (CREATE SCHEMA, schema-qualified names) and materialized views over the PG wire, compared with
PostgreSQL 15; and both replicate to another node as ordinary tables and DDL."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from sqlite_ha.testing import NodeProcess, free_port, wait_for
from sqlite_ha.testing_pg import PostgresServer
from tests.conftest import NodeFactory

PASSWORD = "schema-secret"


def node_dsn(node: NodeProcess) -> str:
    port = node.pg_port  # type: ignore[attr-defined]
    return f"host=127.0.0.1 port={port} user=ha password={PASSWORD} dbname=app sslmode=disable"


def node_url(node: NodeProcess) -> str:
    port = node.pg_port  # type: ignore[attr-defined]
    return f"postgresql+psycopg://ha:{PASSWORD}@127.0.0.1:{port}/app"


@pytest.fixture
def node(node_factory: NodeFactory) -> NodeProcess:
    port = free_port()
    node = node_factory(args=["app.db", "--pg-port", str(port), "--pg-pass", PASSWORD], nats_port=None)
    node.pg_port = port  # type: ignore[attr-defined]
    return node


def scenario(dsn: str) -> list[Any]:
    seen: list[Any] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS sales CASCADE")
        conn.execute("DROP TABLE IF EXISTS orders")
        conn.execute("CREATE SCHEMA sales")
        conn.execute("CREATE SCHEMA IF NOT EXISTS sales")
        with pytest.raises(psycopg.errors.DuplicateSchema):
            conn.execute("CREATE SCHEMA public")
        with pytest.raises(psycopg.errors.ReservedName):
            conn.execute("CREATE SCHEMA pg_mine")
        conn.execute("CREATE TABLE orders (id INT PRIMARY KEY, total INT)")  # public.orders: another table
        conn.execute(
            "CREATE TABLE sales.orders (id SERIAL PRIMARY KEY, customer VARCHAR(20) NOT NULL, total INT)"
        )
        conn.execute(
            "CREATE TABLE sales.lines (id SERIAL PRIMARY KEY, "
            "order_id INT NOT NULL REFERENCES sales.orders (id), qty INT)"
        )
        conn.execute("CREATE INDEX ix_customer ON sales.orders (customer)")
        conn.execute("CREATE INDEX ix_customer ON orders (total)")  # the same index name in public
        conn.execute("INSERT INTO orders VALUES (1, 5)")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO sales.orders (customer, total) VALUES (%s, %s)", [("ann", 10), ("bob", 20)]
            )
        # (SERIAL values of a node are strided to never collide with another node's: look them up)
        for customer, qty in (("ann", 3), ("bob", 4), ("bob", 1)):
            conn.execute(
                "INSERT INTO sales.lines (order_id, qty) SELECT id, %s FROM sales.orders WHERE customer = %s",
                (qty, customer),
            )
        seen.append(
            conn.execute(
                "SELECT sales.orders.customer, sum(l.qty) FROM sales.orders "
                "JOIN sales.lines l ON l.order_id = sales.orders.id GROUP BY sales.orders.customer ORDER BY 1"
            ).fetchall()
        )
        seen.append(conn.execute("SELECT id, total FROM orders").fetchall())
        seen.append(conn.execute("SELECT id, total FROM public.orders").fetchall())
        conn.execute(
            "CREATE MATERIALIZED VIEW sales.totals AS "
            "SELECT customer, total FROM sales.orders ORDER BY customer"
        )
        conn.execute("UPDATE sales.orders SET total = total + 1")
        seen.append(conn.execute("SELECT * FROM sales.totals ORDER BY 1").fetchall())  # the snapshot
        conn.execute("REFRESH MATERIALIZED VIEW sales.totals")
        seen.append(conn.execute("SELECT * FROM sales.totals ORDER BY 1").fetchall())
        seen.append(conn.execute("SELECT pg_get_viewdef('sales.totals'::regclass) IS NOT NULL").fetchall())
        seen.append(
            conn.execute(
                "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n "
                "ON n.oid = c.relnamespace WHERE n.nspname = 'sales' AND c.relkind IN ('r', 'm', 'i') "
                "ORDER BY 2"
            ).fetchall()
        )
    return seen


def reflection(url: str) -> Any:
    engine = sa.create_engine(url)
    try:
        insp = sa.inspect(engine)
        return (
            "sales" in insp.get_schema_names(),
            sorted(insp.get_table_names(schema="sales")),
            "orders" in insp.get_table_names(),
            "lines" in insp.get_table_names(),
            insp.get_materialized_view_names(schema="sales"),
            [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns("orders", schema="sales")],
            [(i["name"], i["column_names"]) for i in insp.get_indexes("orders", schema="sales")],
            [
                (f["referred_schema"], f["referred_table"], f["referred_columns"])
                for f in insp.get_foreign_keys("lines", schema="sales")
            ],
            sa.Table("orders", sa.MetaData(), autoload_with=engine, schema="sales").c.keys(),
        )
    finally:
        engine.dispose()


def test_schemas_and_materialized_views_as_in_postgresql(node: NodeProcess, postgres: PostgresServer) -> None:
    postgres.psql("DROP DATABASE IF EXISTS schemas_ref")
    postgres.psql("CREATE DATABASE schemas_ref")
    reference = scenario(postgres.dsn("schemas_ref"))
    assert scenario(node_dsn(node)) == reference
    assert reflection(node_url(node)) == reflection(postgres.url("schemas_ref", driver="postgresql+psycopg"))
    assert drop_schema(node_dsn(node)) == drop_schema(postgres.dsn("schemas_ref"))


def drop_schema(dsn: str) -> list[Any]:
    seen: list[Any] = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.DependentObjectsStillExist):
            conn.execute("DROP SCHEMA sales")
        with pytest.raises(psycopg.errors.InvalidSchemaName):
            conn.execute("DROP SCHEMA nowhere")
        conn.execute("DROP SCHEMA IF EXISTS nowhere")
        conn.execute("DROP SCHEMA sales CASCADE")
        listed = "SELECT count(*) FROM pg_namespace WHERE nspname = 'sales'"
        seen.append(conn.execute(listed).fetchall())
        seen.append(conn.execute("SELECT id, total FROM orders").fetchall())  # public's is still there
        conn.execute("CREATE SCHEMA sales")
        conn.execute("CREATE TABLE sales.orders (id INT PRIMARY KEY)")  # made anew: empty
        seen.append(conn.execute("SELECT count(*) FROM sales.orders").fetchall())
    return seen


def test_a_schema_replicates(node_factory: NodeFactory) -> None:
    """A schema and its tables are ordinary DDL and rows: another node serves them once it applied them."""
    ports = [free_port(), free_port()]
    first = node_factory(args=["app.db", "--pg-port", str(ports[0]), "--pg-pass", PASSWORD], nats_port=None)
    first.pg_port = ports[0]  # type: ignore[attr-defined]
    nats = f"nats://127.0.0.1:{first.nats_port}"
    second = node_factory(
        args=["app.db", "--pg-port", str(ports[1]), "--pg-pass", PASSWORD, "--replication-url", nats],
        nats_port=0,
    )
    second.pg_port = ports[1]  # type: ignore[attr-defined]
    with psycopg.connect(node_dsn(first), autocommit=True) as conn:
        conn.execute("CREATE SCHEMA inv")
        conn.execute("CREATE TABLE inv.items (id SERIAL PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO inv.items (name) VALUES ('bolt'), ('nut')")

    def replicated() -> bool:
        try:
            with psycopg.connect(node_dsn(second), autocommit=True) as conn:
                return conn.execute("SELECT name FROM inv.items ORDER BY id").fetchall() == [
                    ("bolt",),
                    ("nut",),
                ]
        except psycopg.Error:
            return False

    wait_for(replicated, 30, "the second node to serve inv.items")
    engine = sa.create_engine(node_url(second))
    try:
        insp = sa.inspect(engine)
        assert "inv" in insp.get_schema_names()
        assert insp.get_table_names(schema="inv") == ["items"]
        assert "items" not in insp.get_table_names()
    finally:
        engine.dispose()
