"""A real Django project (tests/django_project: the stock ``django.db.backends.postgresql`` backend,
psycopg 3) against a node and against a real PostgreSQL 15: the same management commands in subprocesses,
the printed results compared line by line. Also SQL cursors (DECLARE/FETCH/MOVE/CLOSE, what ``.iterator()``
sends), statement by statement against PostgreSQL.
"""

from __future__ import annotations

import decimal
import os
import re
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from sqlite_ha.testing import NodeProcess, free_port
from sqlite_ha.testing_pg import PostgresServer
from tests.conftest import NodeFactory

pytest.importorskip("django")

PROJECT = Path(__file__).resolve().parent.parent / "django_project"
PASSWORD = "s3cret dj"

# Lines with an Avg of a DecimalField: PostgreSQL shows the quotient with at least 16 significant digits
# (Decimal('74.5640000000000000')), a node with the digits it has (Decimal('74.564')); the same number, the
# documented difference of numeric division (docs/pg.md, "Types"). Compared as numbers.
AVG_SCALE = {"sum_avg", "order_sum"}
_DECIMAL = re.compile(r"Decimal\('([-0-9.E+]+)'\)")


def _as_numbers(line: str) -> str:
    """The line with each Decimal('…') written in its shortest form: equal numbers print alike."""
    return _DECIMAL.sub(lambda m: f"Decimal('{decimal.Decimal(m.group(1)).normalize()}')", line)


@pytest.fixture
def pg_node(node_factory: NodeFactory) -> NodeProcess:
    port = free_port()
    node = node_factory(args=["app.db", "--pg-port", str(port), "--pg-pass", PASSWORD])
    node.pg_port = port  # type: ignore[attr-defined]
    return node


def _node_env(node: NodeProcess) -> dict[str, str]:
    return {
        "DJ_PG_HOST": "127.0.0.1",
        "DJ_PG_PORT": str(node.pg_port),  # type: ignore[attr-defined]
        "DJ_PG_NAME": "app",
        "DJ_PG_USER": "ha",
        "DJ_PG_PASSWORD": PASSWORD,
    }


def _node_conninfo(node: NodeProcess) -> str:
    port = node.pg_port  # type: ignore[attr-defined]
    return f"host=127.0.0.1 port={port} user=ha password='{PASSWORD}' dbname=app sslmode=disable"


def _postgres_env(postgres: PostgresServer) -> dict[str, str]:
    name = f"dj_{uuid.uuid4().hex[:10]}"
    postgres.psql(f"CREATE DATABASE {name}")
    return {
        "DJ_PG_HOST": "127.0.0.1",
        "DJ_PG_PORT": str(postgres.port),
        "DJ_PG_NAME": name,
        "DJ_PG_USER": postgres.user,
        "DJ_PG_PASSWORD": postgres.password,
    }


def manage(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``manage.py args`` of the project, against the database ``env`` names."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("PG")} | env
    full["PYTHONPATH"] = os.pathsep.join([str(PROJECT), full.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(PROJECT / "manage.py"), *args],
        cwd=PROJECT,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"manage.py {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def _lines(output: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in output.splitlines():
        label, sep, value = line.partition(": ")
        if sep:
            out[label] = value
    return out


@pytest.mark.parametrize("binding", ["client", "server"])
def test_orm_answers_as_postgresql(pg_node: NodeProcess, postgres: PostgresServer, binding: str) -> None:
    """ormcheck (CRUD, select/prefetch_related, aggregates, date lookups and truncation, JSON lookups,
    bulk_create, .iterator(), select_for_update, atomic and savepoints, get_or_create, update with F, Q,
    ILIKE/LIKE escapes, distinct, nulls first/last, Count(filter=), Window) prints the same on both; with
    Django's default client-side binding (values in the SQL text, the simple protocol) and with
    ``server_side_binding`` (parameters apart: ``unnest(%s::type[])``, ``AT TIME ZONE %s``,
    ``date_trunc(%s, …)``)."""
    mode = {"DJ_SERVER_SIDE_BINDING": "1" if binding == "server" else "0"}
    node_env, pg_env = _node_env(pg_node) | mode, _postgres_env(postgres) | mode
    for env in (pg_env, node_env):
        manage(env, "migrate", "-v", "0")
    for env in (pg_env, node_env):
        done = manage(
            env | {"DJANGO_SUPERUSER_PASSWORD": "pw-123-xyz"},
            "createsuperuser",
            "--noinput",
            "--username",
            "admin",
            "--email",
            "admin@example.com",
        )
        assert "Superuser created successfully" in done.stdout
    expected = _lines(manage(pg_env, "ormcheck").stdout)
    got = _lines(manage(node_env, "ormcheck").stdout)
    assert len(expected) > 90, expected
    assert set(got) == set(expected)
    for k in AVG_SCALE:
        assert expected[k] != _as_numbers(expected[k]), f"{k} has no Avg to compare as numbers"
        expected[k], got[k] = _as_numbers(expected[k]), _as_numbers(got[k])
    differ = {k: (expected[k], got[k]) for k in expected if expected[k] != got[k]}
    assert not differ, "\n".join(f"{k}:\n  postgres: {a}\n  node:     {b}" for k, (a, b) in differ.items())
    # the lines that had to work for the comparison to mean anything
    assert expected["setup"] == "'ok'"
    assert got["iterator_while_writing"].count("SKU-") == 12
    check = (
        "from django.contrib.auth.models import User; print(User.objects.get(username='admin').is_superuser)"
    )
    assert manage(node_env, "shell", "-c", check).stdout.strip().splitlines()[-1] == "True"


SHOP_TABLES = ("shop_category", "shop_tag", "shop_product", "shop_product_tags", "shop_order")


def test_migrate_back_and_forth(pg_node: NodeProcess, postgres: PostgresServer) -> None:
    """migrate (built-in apps; shop's 0001, and 0002 altering max_length, null, default and type and adding
    indexes), shop back to zero (its tables gone) and forward again: the schema inspectdb then reads is
    PostgreSQL's (foreign keys, unique_together, UniqueConstraint, indexes, nullability)."""
    node_env, pg_env = _node_env(pg_node), _postgres_env(postgres)
    for env in (pg_env, node_env):
        manage(env, "migrate", "-v", "0")
        manage(env, "migrate", "shop", "zero", "-v", "0")
        assert "class ShopProduct" not in manage(env, "inspectdb", *SHOP_TABLES).stdout
        manage(env, "migrate", "shop", "-v", "0")
        assert "[X] 0002_alter_fields" in manage(env, "showmigrations", "shop").stdout
    got = _inspected(node_env, *SHOP_TABLES)
    assert "category = models.ForeignKey(ShopCategory, models.DO_NOTHING)" in got
    assert "unique_together = (('category', 'sku'),)" in got
    assert got == _inspected(pg_env, *SHOP_TABLES)


def test_sqlmigrate_output_runs(pg_node: NodeProcess, postgres: PostgresServer) -> None:
    """sqlmigrate's SQL of 0002, run by hand (one simple query, comments and all) on 0001, then recorded
    with --fake: the same schema as migrate makes."""
    node_env, pg_env = _node_env(pg_node), _postgres_env(postgres)
    conninfo = {id(node_env): _node_conninfo(pg_node), id(pg_env): postgres.dsn(pg_env["DJ_PG_NAME"])}
    for env in (pg_env, node_env):
        manage(env, "migrate", "shop", "0001", "-v", "0")
        sql = manage(env, "sqlmigrate", "shop", "0002").stdout
        assert "ALTER TABLE" in sql
        with psycopg.connect(conninfo[id(env)], autocommit=True) as conn:
            conn.execute(sql.encode())
        manage(env, "migrate", "shop", "0002", "--fake", "-v", "0")
    assert _inspected(node_env, *SHOP_TABLES) == _inspected(pg_env, *SHOP_TABLES)


# --- SQL cursors, statement by statement ---------------------------------------------------------------


CURSOR_SCRIPT: list[tuple[str, str]] = [
    # (step, SQL); "autocommit"/"block" switch the connection's mode
    ("setup", "CREATE TABLE cur_t (id INTEGER PRIMARY KEY, v TEXT)"),
    ("fill", "INSERT INTO cur_t (id, v) VALUES (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd'), (5, 'e')"),
    ("no hold outside a block", "DECLARE c0 CURSOR FOR SELECT v FROM cur_t ORDER BY id"),
    ("hold", 'DECLARE "Held" NO SCROLL CURSOR WITH HOLD FOR SELECT id, v FROM cur_t ORDER BY id'),
    ("exists", "SELECT 1 FROM pg_catalog.pg_cursors WHERE name = 'Held'"),
    ("fetch 2", 'FETCH FORWARD 2 FROM "Held"'),
    ("fetch next", 'FETCH NEXT FROM "Held"'),
    ("move", 'MOVE FORWARD 1 IN "Held"'),
    ("fetch all", 'FETCH ALL FROM "Held"'),
    ("fetch past end", 'FETCH FORWARD 3 FROM "Held"'),
    ("backward", 'FETCH BACKWARD 1 FROM "Held"'),
    ("close", 'CLOSE "Held"'),
    ("gone", 'FETCH 1 FROM "Held"'),
    ("not exists", "SELECT 1 FROM pg_catalog.pg_cursors WHERE name = 'Held'"),
    ("begin", "BEGIN"),
    ("in block", "DECLARE c1 CURSOR FOR SELECT v FROM cur_t WHERE id > 2 ORDER BY id"),
    ("held in block", "DECLARE c2 CURSOR WITH HOLD FOR SELECT v FROM cur_t ORDER BY id DESC"),
    ("duplicate", "DECLARE c1 CURSOR FOR SELECT 1"),
    ("rollback", "ROLLBACK"),
    ("c2 rolled back", "FETCH 1 FROM c2"),
    ("begin 2", "BEGIN"),
    ("in block 2", "DECLARE c1 CURSOR FOR SELECT v FROM cur_t WHERE id > 2 ORDER BY id"),
    ("held 2", "DECLARE c2 CURSOR WITH HOLD FOR SELECT v FROM cur_t ORDER BY id DESC"),
    ("write after declare", "UPDATE cur_t SET v = 'changed' WHERE id = 5"),
    ("snapshot of declare", "FETCH 2 FROM c2"),
    ("fetch c1", "FETCH 1 FROM c1"),
    ("commit", "COMMIT"),
    ("c1 ended", "FETCH 1 FROM c1"),
    ("c2 survives", "FETCH ALL FROM c2"),
    ("close all", "CLOSE ALL"),
    ("c2 closed", "CLOSE c2"),
    ("not a query", "DECLARE c3 CURSOR WITH HOLD FOR DELETE FROM cur_t"),
]


def _run_cursor_script(conninfo: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS cur_t")
        for step, sql in CURSOR_SCRIPT:
            try:
                cur = conn.execute(sql)
                rows = cur.fetchall() if cur.description is not None else None
                out.append((step, (cur.statusmessage, rows)))
            except psycopg.Error as e:
                out.append((step, e.sqlstate))
                if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                    conn.execute("ROLLBACK")
                    out.append((step, "rolled back"))
    return out


def test_sql_cursors_as_postgresql(pg_node: NodeProcess, postgres: PostgresServer) -> None:
    """DECLARE (WITH/WITHOUT HOLD), FETCH, MOVE, CLOSE, pg_cursors: same rows, tags and SQLSTATEs, except
    that backward fetches are refused (0A000) where PostgreSQL's NO SCROLL refuses them with 55000."""
    pg_env = _postgres_env(postgres)
    pg_conninfo = postgres.dsn(pg_env["DJ_PG_NAME"])
    expected, got = _run_cursor_script(pg_conninfo), _run_cursor_script(_node_conninfo(pg_node))
    assert dict(expected)["backward"] == "55000"
    assert dict(got)["backward"] == "0A000"
    drop = {"backward"}
    assert [s for s in got if s[0] not in drop] == [s for s in expected if s[0] not in drop]
    assert dict(got)["snapshot of declare"] == ("FETCH 2", [("e",), ("d",)])


# --- inspectdb --------------------------------------------------------------------------------------------

INSPECT_SCHEMA = """
CREATE TABLE insp_parent (id BIGSERIAL PRIMARY KEY, code VARCHAR(20) NOT NULL UNIQUE, name TEXT NOT NULL,
                          UNIQUE (code, name));
CREATE TABLE insp_child (id SERIAL PRIMARY KEY, parent_id BIGINT NOT NULL REFERENCES insp_parent (id),
                         price NUMERIC(10, 2) NOT NULL, doc JSONB, at TIMESTAMPTZ NOT NULL, day DATE,
                         ok BOOLEAN NOT NULL, ratio DOUBLE PRECISION, n INTEGER NOT NULL, big BIGINT,
                         small SMALLINT, uid UUID, blob BYTEA);
CREATE INDEX insp_child_at ON insp_child (at);
"""


def _inspected(env: dict[str, str], *tables: str) -> str:
    return manage(env, "inspectdb", *tables).stdout


def test_inspectdb_as_postgresql(pg_node: NodeProcess, postgres: PostgresServer) -> None:
    """Django's introspection queries (tables, columns, constraints with unnest(indkey, indoption) WITH
    ORDINALITY, relations): inspectdb prints the same models: field types, nullability, unique, the
    unique_together, the foreign key and the index."""
    node_env, pg_env = _node_env(pg_node), _postgres_env(postgres)
    with psycopg.connect(postgres.dsn(pg_env["DJ_PG_NAME"]), autocommit=True) as conn:
        conn.execute(INSPECT_SCHEMA)
    with psycopg.connect(_node_conninfo(pg_node), autocommit=True) as conn:
        conn.execute(INSPECT_SCHEMA)
    expected, got = (
        _inspected(pg_env, "insp_parent", "insp_child"),
        _inspected(node_env, "insp_parent", "insp_child"),
    )
    assert "Unable to inspect" not in got
    assert "models.ForeignKey(InspParent, models.DO_NOTHING)" in got
    assert "unique_together = (('code', 'name'),)" in got
    assert got == expected


def test_cursor_reads_lazily_from_its_snapshot(node_factory: NodeFactory) -> None:
    """A WITH HOLD cursor (what ``.iterator()`` declares in autocommit) is read a FETCH at a time from its
    own snapshot: it goes through more rows than one result may hold (``--max-result-rows 50``, which a
    plain SELECT of them passes with 54000), and rows written by another session after DECLARE, even
    committed, are not in it. DECLARE inside a block that holds the writer sees the block's own writes up to
    the DECLARE, and not those after it; in a REPEATABLE READ block, the block's snapshot."""
    port = free_port()
    node = node_factory(
        args=["app.db", "--pg-port", str(port), "--pg-pass", PASSWORD, "--max-result-rows", "50"]
    )
    node.pg_port = port  # type: ignore[attr-defined]
    with (
        psycopg.connect(_node_conninfo(node), autocommit=True) as a,
        psycopg.connect(_node_conninfo(node), autocommit=True) as b,
    ):
        a.execute("CREATE TABLE big (id INTEGER PRIMARY KEY, v TEXT)")
        with a.cursor() as cur:
            cur.executemany("INSERT INTO big (id, v) VALUES (%s, %s)", [(i, f"v{i}") for i in range(1, 201)])
        with pytest.raises(psycopg.Error) as refused:
            a.execute("SELECT id FROM big").fetchall()
        assert refused.value.sqlstate == "54000"
        a.execute("DECLARE big_c NO SCROLL CURSOR WITH HOLD FOR SELECT id, v FROM big ORDER BY id")
        first = a.execute("FETCH FORWARD 40 FROM big_c").fetchall()
        b.execute("DELETE FROM big WHERE id > 100")  # committed by another session, after DECLARE
        b.execute("INSERT INTO big (id, v) VALUES (1000, 'late')")
        rest: list[tuple[Any, ...]] = []
        while batch := a.execute("FETCH FORWARD 40 FROM big_c").fetchall():
            rest += batch
        assert [r[0] for r in first + rest] == list(range(1, 201))
        a.execute("DECLARE all_c CURSOR WITH HOLD FOR SELECT id FROM big ORDER BY id")
        with pytest.raises(psycopg.Error) as too_many:
            a.execute("FETCH ALL FROM all_c")
        assert too_many.value.sqlstate == "54000"  # one FETCH is one result: bounded as any
        a.execute("CLOSE ALL")
        # psycopg's own named cursor, as Django's .iterator() uses it
        with a.cursor(name="named", withhold=True) as named:
            named.itersize = 30
            named.execute("SELECT id FROM big ORDER BY id")
            assert [r[0] for r in named] == [*range(1, 101), 1000]
        with a.transaction():
            a.execute("INSERT INTO big (id, v) VALUES (2000, 'mine')")
            a.execute("DECLARE w CURSOR FOR SELECT id FROM big WHERE id >= 1000 ORDER BY id")
            a.execute("DELETE FROM big WHERE id = 2000")
            assert a.execute("FETCH ALL FROM w").fetchall() == [(1000,), (2000,)]
        # REPEATABLE READ: a cursor sees the block's snapshot, taken at its first read, not its DECLARE's
        a.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        assert a.execute("SELECT count(*) FROM big").fetchone() == (101,)
        b.execute("INSERT INTO big (id, v) VALUES (3000, 'after the snapshot')")
        a.execute("DECLARE rr CURSOR FOR SELECT id FROM big WHERE id >= 1000 ORDER BY id")
        assert a.execute("FETCH ALL FROM rr").fetchall() == [(1000,)]
        a.execute("COMMIT")


# --- jsonb operators, against PostgreSQL ---------------------------------------------------------------

JSON_DOCS = [
    '{"a": 1, "b": [1, 2, {"c": "x"}], "k": "v"}',
    '{"a": 10, "b": [2], "n": null, "t": true}',
    '{"a": 8.5, "aa": {"z": 1, "y": [1, 2]}}',
    '{"a": "8", "b": [], "k": "V"}',
    '["a", "b", 1, {"k": 1}]',
    "[1, 2, 3]",
    '"a"',
    "7",
    "true",
    "null",
    "{}",
]
JSON_QUERIES = [
    "SELECT id FROM j WHERE doc @> '{\"a\": 1}'::jsonb ORDER BY id",
    'SELECT id FROM j WHERE doc @> \'{"b": [{"c": "x"}]}\' ORDER BY id',
    "SELECT id FROM j WHERE doc @> '[1]'::jsonb ORDER BY id",
    "SELECT id FROM j WHERE doc @> '\"a\"'::jsonb ORDER BY id",
    'SELECT id FROM j WHERE doc <@ \'{"a": 10, "b": [2, 3], "n": null, "t": true, "x": 1}\' ORDER BY id',
    "SELECT id FROM j WHERE doc ? 'a' ORDER BY id",
    "SELECT id FROM j WHERE doc ?| '{k,t}' ORDER BY id",
    "SELECT id FROM j WHERE doc ?& ARRAY['a', 'b'] ORDER BY id",
    "SELECT id, doc -> 'a', doc ->> 'a', doc ->> 't', doc -> 'b' -> 1 FROM j ORDER BY id",
    "SELECT id, doc #> '{b,2}', doc #>> '{b,2,c}', doc #>> '{aa,y,-1}', doc #> '{}' FROM j ORDER BY id",
    "SELECT id FROM j WHERE (doc -> 'a') > '5'::jsonb ORDER BY id",
    "SELECT id FROM j WHERE (doc -> 'a') = '8.5'::jsonb ORDER BY id",
    "SELECT id FROM j WHERE doc -> 'aa' = '{\"y\": [1, 2], \"z\": 1}'::jsonb ORDER BY id",
    "SELECT id FROM j ORDER BY doc -> 'a', id",
    # (ORDER BY a jsonb column itself sorts its text: the translation does not know a column's type)
    "SELECT id FROM j WHERE (doc -> 'a') IN ('1'::jsonb, '\"8\"'::jsonb) ORDER BY id",
]


def _json_answers(conninfo: str) -> list[Any]:
    out: list[Any] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS j")
        conn.execute("CREATE TABLE j (id INTEGER PRIMARY KEY, doc JSONB)")
        for i, doc in enumerate(JSON_DOCS, start=1):
            conn.execute(f"INSERT INTO j (id, doc) VALUES ({i}, '{doc}')")
        for sql in JSON_QUERIES:
            try:
                out.append((sql, conn.execute(sql).fetchall()))
            except psycopg.Error as e:
                out.append((sql, e.sqlstate))
    return out


def test_jsonb_operators_as_postgresql(pg_node: NodeProcess, postgres: PostgresServer) -> None:
    """@>, <@, ?, ?|, ?&, ->, ->>, #>, #>> and jsonb's ordering (comparisons, IN, ORDER BY) over documents
    of every JSON kind: the same rows as PostgreSQL's."""
    pg_env = _postgres_env(postgres)
    expected = _json_answers(postgres.dsn(pg_env["DJ_PG_NAME"]))
    got = _json_answers(_node_conninfo(pg_node))
    differ = [(e[0], e[1], g[1]) for e, g in zip(expected, got, strict=True) if e != g]
    assert not differ, "\n".join(f"{sql}\n  postgres: {a}\n  node:     {b}" for sql, a, b in differ)


def _no_lost_update(conninfo: str) -> tuple[int, bool]:
    """Session A reads a counter FOR UPDATE in a block; session B's increment must wait until A commits its
    own increment, so both count. Returns the final counter and whether B still waited 1 s into A's block
    (a slow B passes that too; the counter is what fails without the lock)."""
    with psycopg.connect(conninfo, autocommit=True) as setup:
        setup.execute("DROP TABLE IF EXISTS fu")
        setup.execute("CREATE TABLE fu (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        setup.execute("INSERT INTO fu (id, n) VALUES (1, 0)")
    b_done = threading.Event()

    def b_increments() -> None:
        with psycopg.connect(conninfo, autocommit=True) as b:
            b.execute("UPDATE fu SET n = n + 1 WHERE id = 1")
        b_done.set()

    with psycopg.connect(conninfo) as a:  # psycopg opens the block with the first statement
        (n,) = a.execute("SELECT n FROM fu WHERE id = 1 FOR UPDATE").fetchone()  # type: ignore[misc]
        writer = threading.Thread(target=b_increments)
        writer.start()
        waited = not b_done.wait(1.0)  # B blocks on A's lock (the row's, or here the database's writer)
        a.execute("UPDATE fu SET n = %s WHERE id = 1", (n + 1,))
        a.commit()
    writer.join(30)
    with psycopg.connect(conninfo, autocommit=True) as check:
        (final,) = check.execute("SELECT n FROM fu WHERE id = 1").fetchone()  # type: ignore[misc]
    return final, waited


def test_select_for_update_holds_off_other_writers(pg_node: NodeProcess, postgres: PostgresServer) -> None:
    """``select_for_update()``: SELECT … FOR UPDATE in a block takes the database's writer (SQLite has no row
    locks), so a concurrent write waits for the block as PostgreSQL makes it wait for the row: no lost
    update."""
    pg_env = _postgres_env(postgres)
    assert _no_lost_update(postgres.dsn(pg_env["DJ_PG_NAME"])) == (2, True)
    assert _no_lost_update(_node_conninfo(pg_node)) == (2, True)
