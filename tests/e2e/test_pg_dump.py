"""pg_dump and pg_dumpall (PostgreSQL 15's own binaries) against a node; the dumps restore into a real
PostgreSQL 15 and into a fresh node with ``psql -f``, and the data read back is the same, table by table."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from sqlite_ha.testing import NodeProcess, free_port, running_node
from sqlite_ha.testing_pg import DEFAULT_BINDIR, PostgresServer

PASSWORD = "dump pass"
TABLES = ("authors", "books", "tags", '"Odd Name"')

# Every kind of object pg_dump writes for a sqlite-ha database, and values that are easy to get wrong in
# a dump: quotes, tabs, newlines, backslashes, NULL and empty strings, bytes, 64-bit integers, microseconds.
SCHEMA = r"""
CREATE TABLE authors (
  id INTEGER PRIMARY KEY,
  name VARCHAR(100) NOT NULL UNIQUE,
  born DATE,
  active BOOLEAN NOT NULL DEFAULT true
);
CREATE TABLE books (
  id BIGINT PRIMARY KEY,
  author_id INTEGER NOT NULL REFERENCES authors(id) ON DELETE CASCADE,
  title TEXT NOT NULL,
  price NUMERIC(10,2) CHECK (price >= 0),
  cover BYTEA,
  published TIMESTAMP,
  updated TIMESTAMPTZ,
  meta JSON,
  uid UUID,
  CONSTRAINT books_title_author UNIQUE (author_id, title)
);
CREATE INDEX books_published_idx ON books (published);
CREATE TABLE tags (book_id BIGINT REFERENCES books(id), tag TEXT, PRIMARY KEY (book_id, tag));
CREATE TABLE "Odd Name" (id INT PRIMARY KEY, "select" TEXT, "Mixed" INT UNIQUE);
CREATE INDEX "odd idx" ON "Odd Name" ("select");
INSERT INTO "Odd Name" VALUES (1, 'keyword column', 7);
CREATE VIEW cheap_books AS SELECT id, title FROM books WHERE price < 10;
CREATE VIEW a_titles AS SELECT b.title, a.name FROM books b JOIN authors a ON a.id = b.author_id;
INSERT INTO authors (id, name, born, active) VALUES (1, 'Ann', '1970-01-02', true),
  (2, 'Bob''s "best"', NULL, false), (3, 'Zoë \ back', '2000-02-29', true);
INSERT INTO books VALUES
  (1, 1, 'First', 9.99, '\x0102ff', '2024-01-02 03:04:05.123456', '2024-01-02 01:04:05+00', '{"a": [1, 2]}',
   'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
  (4611686018427387904, 2, E'Tab\tand\nnewline', NULL, '\x', NULL, NULL, NULL, NULL),
  (3, 3, '', 2.25, NULL, '1999-12-31 23:59:59', NULL, '[]', NULL);
INSERT INTO tags VALUES (1, 'x'), (1, 'y'), (3, 'q''uote');
"""


def _tool(
    name: str, *args: str, port: int, password: str, check: bool = True, stdin: str | None = None
) -> str:
    env = {**os.environ, "PGPASSWORD": password, "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "10"}
    cmd = [str(DEFAULT_BINDIR / name), "-h", "127.0.0.1", "-p", str(port), "-U", "ha", *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout + proc.stderr if not check else proc.stdout


def _node_tool(node: NodeProcess, name: str, *args: str, check: bool = True, stdin: str | None = None) -> str:
    port: int = node.pg_port  # type: ignore[attr-defined]
    return _tool(name, *args, port=port, password=PASSWORD, check=check, stdin=stdin)


def _pg_tool(
    server: PostgresServer, name: str, *args: str, check: bool = True, stdin: str | None = None
) -> str:
    return _tool(name, *args, port=server.port, password=server.password, check=check, stdin=stdin)


def _restore(server: PostgresServer, dump: str, dbname: str) -> None:
    """``psql -f`` of a dump (from stdin: COPY's rows follow their statement in the script)."""
    _pg_tool(server, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dbname, "-f", "-", stdin=dump)


def _data(port: int, password: str, dbname: str) -> dict[str, str]:
    """Each table's rows as COPY text, ordered by every column: comparable byte for byte."""
    found = {}
    for table in TABLES:
        found[table] = _tool(
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            dbname,
            "-c",
            f"COPY (SELECT * FROM {table} ORDER BY 1, 2) TO STDOUT",
            port=port,
            password=password,
        )
    return found


def _pg_database(server: PostgresServer) -> str:
    name = f"dump_{uuid.uuid4().hex[:10]}"
    server.psql(f"CREATE DATABASE {name}")
    return name


@contextlib.contextmanager
def _fresh_node(tmp: Path, name: str) -> Iterator[NodeProcess]:
    port = free_port()
    with running_node(tmp / name, args=["app.db", "--pg-port", str(port), "--pg-pass", PASSWORD]) as node:
        node.pg_port = port  # type: ignore[attr-defined]
        yield node


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node holding the schema and rows above, made through psql as a user would."""
    with _fresh_node(tmp_path_factory.mktemp("dump"), "source") as node:
        _node_tool(node, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "app", "-c", SCHEMA)
        yield node


def test_pg_dump_restores_into_postgres_with_the_same_data(
    source: NodeProcess, postgres: PostgresServer
) -> None:
    dump = _node_tool(source, "pg_dump", "app")
    assert "CREATE VIEW public.cheap_books" in dump
    assert "price numeric(10,2)" in dump
    assert "name character varying(100) NOT NULL" in dump
    assert "REFERENCES public.authors(id) ON DELETE CASCADE" in dump  # stands alone: search_path is empty
    assert "OWNER TO ha" in dump
    assert "SCHEMA public" not in dump
    target = _pg_database(postgres)
    _restore(postgres, dump, target)
    assert _data(postgres.port, postgres.password, target) == _data(source.pg_port, PASSWORD, "app")  # type: ignore[attr-defined]
    with psycopg.connect(postgres.dsn(target)) as conn:
        constraints = {
            (table, name, kind)
            for table, name, kind in conn.execute(
                "SELECT conrelid::regclass::text, conname, contype FROM pg_constraint "
                "WHERE connamespace = 'public'::regnamespace"
            ).fetchall()
        }
        assert constraints == {
            ("authors", "authors_pkey", "p"),
            ("authors", "authors_name_key", "u"),
            ("books", "books_pkey", "p"),
            ("books", "books_title_author", "u"),
            ("books", "books_author_id_fkey", "f"),
            ("books", "books_price_check", "c"),
            ("tags", "tags_pkey", "p"),
            ("tags", "tags_book_id_fkey", "f"),
            ('"Odd Name"', "Odd Name_pkey", "p"),
            ('"Odd Name"', "Odd Name_Mixed_key", "u"),
        }
        indexdef = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'books_published_idx'")
        odd = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'odd idx'").fetchone()
        assert odd == ('CREATE INDEX "odd idx" ON public."Odd Name" USING btree ("select")',)
        assert indexdef.fetchone() == (
            "CREATE INDEX books_published_idx ON public.books USING btree (published)",
        )
        assert conn.execute("SELECT title FROM cheap_books ORDER BY id").fetchall() == [("First",), ("",)]
        # a view named before the tables it reads comes after them (pg_depend)
        assert conn.execute("SELECT count(*) FROM a_titles").fetchone() == (3,)
        # the restored constraints act: the foreign key's ON DELETE CASCADE, the CHECK
        conn.execute("DELETE FROM authors WHERE id = 2")
        assert conn.execute("SELECT count(*) FROM books WHERE author_id = 2").fetchone() == (0,)
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE books SET price = -1 WHERE id = 1")


def test_pg_dump_options(source: NodeProcess, postgres: PostgresServer, tmp_path: Path) -> None:
    expected = _data(source.pg_port, PASSWORD, "app")  # type: ignore[attr-defined]
    schema = _node_tool(source, "pg_dump", "--schema-only", "app")
    assert "CREATE TABLE public.books" in schema
    assert "COPY " not in schema
    assert "INSERT " not in schema
    target = _pg_database(postgres)
    _restore(postgres, schema, target)
    assert all(not text for text in _data(postgres.port, postgres.password, target).values())

    data = _node_tool(source, "pg_dump", "--data-only", "app")
    assert "CREATE TABLE" not in data
    assert "COPY public.books" in data
    _restore(postgres, data, target)
    assert _data(postgres.port, postgres.password, target) == expected

    custom = tmp_path / "app.dump"  # the custom format, restored by pg_restore
    _node_tool(source, "pg_dump", "-Fc", "-f", str(custom), "app")
    target = _pg_database(postgres)
    _pg_tool(postgres, "pg_restore", "--exit-on-error", "-d", target, str(custom))
    assert _data(postgres.port, postgres.password, target) == expected
    # a parallel dump needs a snapshot shared between connections: refused, saying what to do instead
    parallel = _node_tool(
        source, "pg_dump", "-Fd", "-j", "2", "-f", str(tmp_path / "dir"), "app", check=False
    )
    assert "exporting a snapshot to other sessions is not supported" in parallel
    assert "--no-synchronized-snapshots" in parallel

    one = _node_tool(source, "pg_dump", "-t", "authors", "app")
    assert "CREATE TABLE public.authors" in one
    assert "public.books" not in one
    assert re.search(
        r"COPY public\.authors \(id, name, born, active\) FROM stdin;\n1\tAnn\t1970-01-02\tt\n", one
    )


def test_pg_dump_inserts(source: NodeProcess, postgres: PostgresServer) -> None:
    """``--inserts`` reads each table through a cursor (DECLARE, FETCH 100) inside its snapshot."""
    expected = _data(source.pg_port, PASSWORD, "app")  # type: ignore[attr-defined]
    try:
        inserts = _node_tool(source, "pg_dump", "--inserts", "app")
    except AssertionError as e:
        if "cannot execute DECLARE" not in str(e):
            raise
        pytest.xfail(
            "server-side cursors (DECLARE, FETCH: the Django work of issue 16) are not in this build"
        )
    assert "INSERT INTO public.books VALUES" in inserts
    assert "COPY " not in inserts
    target = _pg_database(postgres)
    _restore(postgres, inserts, target)
    assert _data(postgres.port, postgres.password, target) == expected


def test_pg_dumpall_dumps_the_role_and_every_database(source: NodeProcess, postgres: PostgresServer) -> None:
    dump = _node_tool(source, "pg_dumpall")
    assert "CREATE ROLE ha;" in dump
    assert "ALTER ROLE ha WITH SUPERUSER" in dump
    assert "PASSWORD" not in dump
    assert 'CREATE DATABASE "app.db"' in dump
    assert '\\connect "app.db"' in dump
    postgres.psql('DROP DATABASE IF EXISTS "app.db"')
    out = _pg_tool(postgres, "psql", "-X", "-q", "-d", "postgres", "-f", "-", check=False, stdin=dump)
    errors = [line.split("ERROR:")[1].strip() for line in out.splitlines() if "ERROR:" in line]
    assert errors == ['role "ha" already exists'], out  # the restoring user: as with PostgreSQL's
    assert _data(postgres.port, postgres.password, "app.db") == _data(source.pg_port, PASSWORD, "app")  # type: ignore[attr-defined]


def test_pg_dump_restores_into_a_fresh_node(
    source: NodeProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    dump = _node_tool(source, "pg_dump", "app")
    with _fresh_node(tmp_path_factory.mktemp("restore"), "target") as target:
        probe = _node_tool(
            target,
            "psql",
            *("-X", "-q", "-d", "app", "-c", "CREATE TABLE probe (id INT NOT NULL)"),
            *("-c", "ALTER TABLE ONLY public.probe ADD CONSTRAINT probe_pkey PRIMARY KEY (id)"),
            *("-c", "DROP TABLE probe"),
            check=False,
        )
        if "SQLite cannot add a UNIQUE or PRIMARY KEY constraint" in probe:
            pytest.xfail("ALTER TABLE … ADD CONSTRAINT (the table rebuilds of issue 16) is not in this build")
        _node_tool(target, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "app", "-f", "-", stdin=dump)
        assert _data(target.pg_port, PASSWORD, "app") == _data(source.pg_port, PASSWORD, "app")  # type: ignore[attr-defined]
        assert _schema(target) == _schema(source)


def _schema(node: NodeProcess) -> list[str]:
    """A node's schema as pg_dump writes it, without the random key of its \\restrict lines."""
    dump = _node_tool(node, "pg_dump", "--schema-only", "app")
    return [line for line in dump.splitlines() if not line.startswith(("\\restrict", "\\unrestrict"))]


def test_what_postgresql_cannot_express_fails_to_restore_loudly(
    tmp_path_factory: pytest.TempPathFactory, postgres: PostgresServer
) -> None:
    """A SQLite trigger (made over HTTP, in SQLite's syntax) is dumped as SQLite keeps it: restoring into
    PostgreSQL stops at it with PostgreSQL's syntax error, instead of a dump that silently lacks it."""
    with _fresh_node(tmp_path_factory.mktemp("trigger"), "trigger") as node:
        _node_tool(node, "psql", "-X", "-q", "-d", "app", "-c", "CREATE TABLE t (id INT PRIMARY KEY, n INT)")
        trigger = "CREATE TRIGGER t_touch AFTER INSERT ON t BEGIN UPDATE t SET n = 1 WHERE id = NEW.id; END"
        node.query({"sql": trigger})
        dump = _node_tool(node, "pg_dump", "app")
        assert "CREATE TRIGGER t_touch AFTER INSERT ON t BEGIN" in dump
        with pytest.raises(AssertionError, match='syntax error at or near "BEGIN"'):
            _restore(postgres, dump, _pg_database(postgres))
