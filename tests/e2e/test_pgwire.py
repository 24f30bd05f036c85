"""Real PostgreSQL clients against a real node: psql, psycopg 3, asyncpg. Writes go through replication."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import enum
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from sqlalchemy import (
    CheckConstraint,
    Column,
    Connection,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    UniqueConstraint,
    create_engine,
    inspect,
    select,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload

from sqlite_ha.server.pgwire.catalog import catalog
from sqlite_ha.testing import NodeProcess, free_port
from tests.conftest import NodeFactory

PASSWORD = "s3cret pg"


@pytest.fixture
def pg(node_factory: NodeFactory) -> NodeProcess:
    port = free_port()
    node = node_factory(
        args=["app.db", "other.db", "--pg-port", str(port), "--pg-pass", PASSWORD], nats_port=None
    )
    node.pg_port = port  # type: ignore[attr-defined]
    return node


async def asyncpg_connect(node: NodeProcess) -> asyncpg.Connection:
    return await asyncpg.connect(
        host="127.0.0.1",
        port=node.pg_port,
        user="ha",
        password=PASSWORD,
        database="app",  # type: ignore[attr-defined]
    )


def dsn(node: NodeProcess, **extra: str) -> str:
    parts = {
        "host": "127.0.0.1",
        "port": str(node.pg_port),
        "user": "ha",
        "password": PASSWORD,
        "dbname": "app",
    }  # type: ignore[attr-defined]
    parts.update(extra)
    return " ".join(f"{k}='{v}'" for k, v in parts.items())


def psql(
    node: NodeProcess, *args: str, stdin: str | None = None, env_extra: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGPASSWORD": PASSWORD, "PGCONNECT_TIMEOUT": "10", **(env_extra or {})}
    return subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(node.pg_port),
            "-U",
            "ha",
            "-d",
            "app",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            *args,
        ],  # type: ignore[attr-defined]
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        input=stdin,
    )


def test_psql_queries_and_errors(pg: NodeProcess) -> None:
    made = psql(pg, "-c", "CREATE TABLE t(id SERIAL PRIMARY KEY, name TEXT NOT NULL, score DOUBLE PRECISION)")
    assert made.returncode == 0, made.stderr
    assert "CREATE TABLE" in made.stdout
    ins = psql(pg, "-c", "INSERT INTO t(name, score) VALUES ('a', 1.5), ('b', NULL) RETURNING id")
    assert ins.returncode == 0, ins.stderr
    assert "INSERT 0 2" in ins.stdout
    out = psql(pg, "-A", "-t", "-c", "SELECT id, name, score FROM t ORDER BY id")
    assert out.returncode == 0, out.stderr
    # keys the database chooses come from this node's rowid slot (1 of 16): 1, 17, … (docs/replication.md)
    assert out.stdout.splitlines() == ["1|a|1.5", "17|b|"]
    # several statements in one message, as psql -c sends them
    multi = psql(
        pg,
        "-A",
        "-t",
        "-c",
        "UPDATE t SET score = 2 WHERE id = 17; SELECT count(*) FROM t WHERE score IS NOT NULL",
    )
    assert multi.returncode == 0, multi.stderr
    assert multi.stdout.splitlines()[-1] == "2"
    # errors carry PostgreSQL's codes; the connection and the node go on
    dup = psql(pg, "-c", "INSERT INTO t(id, name) VALUES (1, 'again')")
    assert dup.returncode != 0
    assert "UNIQUE constraint failed" in dup.stderr
    missing = psql(pg, "-c", "SELECT * FROM nope")
    assert "no such table" in missing.stderr
    script = psql(
        pg,
        "-A",
        "-t",
        stdin="BEGIN;\nINSERT INTO t(name) VALUES ('in tx');\nSELECT count(*) FROM t;\n"
        "ROLLBACK;\nSELECT count(*) FROM t;\n",
    )
    assert script.returncode == 0, script.stderr
    assert script.stdout.split() == ["BEGIN", "INSERT", "0", "1", "3", "ROLLBACK", "2"]


def test_psycopg_sync_and_transactions(pg: NodeProcess) -> None:
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE items(id BIGSERIAL PRIMARY KEY, name VARCHAR(50), price NUMERIC, ok BOOLEAN, "
            "data BYTEA, at TIMESTAMPTZ)"
        )
        at = dt.datetime(2026, 11, 22, 12, 30, 0, tzinfo=dt.UTC)
        cur = conn.execute(
            "INSERT INTO items(name, price, ok, data, at) VALUES (%s, %s, %s, %s, %s) RETURNING id",
            ("widget", decimal.Decimal("9.50"), True, b"\x00\xff", at),
        )
        assert cur.fetchone() == (1,)
        row = conn.execute("SELECT name, ok, data, at FROM items WHERE id = %s", (1,)).fetchone()
        assert row == ("widget", True, b"\x00\xff", at)
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (1,)
        # prepared and binary
        for i in range(3):
            got = conn.execute(
                "SELECT name FROM items WHERE id = %s", (1,), prepare=True, binary=True
            ).fetchone()
            assert got == ("widget",), i
    # a transaction (psycopg's default): visible to itself, then committed for everyone
    with psycopg.connect(dsn(pg)) as conn:
        conn.execute("INSERT INTO items(name) VALUES ('second')")
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (2,)
        with psycopg.connect(dsn(pg), autocommit=True) as other:
            assert other.execute("SELECT count(*) FROM items").fetchone() == (1,)  # not yet committed
        conn.commit()
        seq = conn.execute("SHOW ha.seq").fetchone()
        assert seq is not None
        assert int(seq[0]) > 0
        # a failed statement aborts the transaction until ROLLBACK
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO items(id, name) VALUES (1, 'dup')")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (2,)
        # savepoints (SQLAlchemy's nested transactions)
        conn.execute("INSERT INTO items(name) VALUES ('kept')")
        with conn.transaction():
            conn.execute("INSERT INTO items(name) VALUES ('dropped')")
            conn.execute("SAVEPOINT s1")
            conn.execute("INSERT INTO items(name) VALUES ('dropped too')")
            conn.execute("ROLLBACK TO SAVEPOINT s1")
        conn.commit()
        names = [r[0] for r in conn.execute("SELECT name FROM items ORDER BY id").fetchall()]
        assert names == ["widget", "second", "kept", "dropped"]


def test_names_that_are_sqlite_keywords_work_bare(pg: NodeProcess) -> None:
    """A column ``index`` (pandas' ``to_sql`` makes one) is a bare name in PostgreSQL, a keyword in SQLite."""
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        conn.execute("CREATE TABLE kw (index BIGINT, set TEXT, v TEXT)")
        conn.execute("INSERT INTO kw (index, set, v) VALUES (%s, %s, %s)", (1, "a", "x"))
        conn.execute("INSERT INTO kw (index, set, v) VALUES (2, 'b', 'y')", prepare=False)
        conn.execute("UPDATE kw SET set = %s WHERE index = %s", ("c", 2))
        rows = conn.execute("SELECT kw.index, set FROM kw WHERE index >= %s ORDER BY index", (1,)).fetchall()
        assert rows == [(1, "a"), (2, "c")]
        cursor = conn.execute("SELECT index FROM kw WHERE index = 1")
        assert cursor.description is not None
        assert [c.name for c in cursor.description] == ["index"]
    done = psql(pg, "-A", "-t", "-c", "SELECT max(index) FROM kw")
    assert done.stdout.strip() == "2", done.stderr


def test_a_table_dropped_and_created_again_is_described_as_it_is_now(pg: NodeProcess) -> None:
    """The column types announced for a statement follow the table as it is now, not as a connection last
    prepared it: after DROP and CREATE with another type, ``1.5`` must not be announced as an integer."""
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        conn.execute("CREATE TABLE redo (x INTEGER)")
        conn.execute("INSERT INTO redo VALUES (1)")
        assert conn.execute("SELECT redo.x FROM redo").fetchall() == [(1,)]
        assert conn.execute("SELECT redo.x FROM redo WHERE redo.x > %s", (0,)).fetchall() == [(1,)]
        conn.execute("DROP TABLE redo")
        conn.execute("CREATE TABLE redo (x FLOAT)")
        conn.execute("INSERT INTO redo VALUES (1.5)")
        assert conn.execute("SELECT redo.x FROM redo").fetchall() == [(1.5,)]
        assert conn.execute("SELECT redo.x FROM redo WHERE redo.x > %s", (0,)).fetchall() == [(1.5,)]
        with conn.transaction():  # described on the writer, inside the transaction that changed it
            conn.execute("DROP TABLE redo")
            conn.execute("CREATE TABLE redo (x TEXT)")
            conn.execute("INSERT INTO redo VALUES ('a')")
            assert conn.execute("SELECT redo.x FROM redo").fetchall() == [("a",)]
        assert conn.execute("SELECT redo.x FROM redo").fetchall() == [("a",)]


def test_pipelined_reads_and_writes_answer_in_order(pg: NodeProcess) -> None:
    """Reads are answered as their bytes arrive and writes wait for the log: in a pipeline the two mix,
    and every answer must still come back in order, each read seeing the writes sent before it."""
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        conn.execute("CREATE TABLE p(id INTEGER PRIMARY KEY, v TEXT)")
        with conn.pipeline():
            cursors = []
            for i in range(1, 31):
                conn.execute("INSERT INTO p(id, v) VALUES (%s, %s)", (i, f"v{i}"))
                cursors.append(conn.execute("SELECT count(*), max(v) FROM p WHERE id <= %s", (i,)))
        assert [c.fetchone() for c in cursors] == [
            (i, max(f"v{j}" for j in range(1, i + 1))) for i in range(1, 31)
        ]

        # an error in the middle of a pipeline: what came before stands, the rest of that batch is skipped
        def failing_batch() -> None:
            with conn.pipeline():
                conn.execute("INSERT INTO p(id, v) VALUES (%s, %s)", (1, "dup"))
                conn.execute("INSERT INTO p(id, v) VALUES (%s, %s)", (99, "never"))

        with pytest.raises(psycopg.errors.UniqueViolation):
            failing_batch()
        assert conn.execute("SELECT v FROM p WHERE id = 1").fetchone() == ("v1",)
        assert conn.execute("SELECT count(*) FROM p WHERE id = 99").fetchone() == (0,)
        # psycopg prepares its statements again after DDL: the read answers in the table's new shape
        query = "SELECT * FROM p WHERE id = %s"
        assert conn.execute(query, (2,), prepare=True).fetchone() == (2, "v2")
        conn.execute("ALTER TABLE p ADD COLUMN extra TEXT DEFAULT 'x'")
        assert conn.execute(query, (2,), prepare=True).fetchone() == (2, "v2", "x")


def test_a_statement_prepared_before_its_table_changed_shape(pg: NodeProcess) -> None:
    """A statement prepared before another session changed its table's shape gets PostgreSQL's error once
    (asyncpg takes it as "prepare again"); prepared again, it answers in the new shape."""

    async def body() -> None:
        conn, other = await asyncpg_connect(pg), await asyncpg_connect(pg)
        try:
            await conn.execute("CREATE TABLE shape (id INTEGER PRIMARY KEY, v TEXT)")
            await conn.execute("INSERT INTO shape VALUES (1, 'a')")
            stmt = await conn.prepare("SELECT * FROM shape WHERE id = $1")
            assert [tuple(r) for r in await stmt.fetch(1)] == [(1, "a")]
            await other.execute("ALTER TABLE shape ADD COLUMN extra TEXT DEFAULT 'x'")
            with pytest.raises(asyncpg.exceptions.FeatureNotSupportedError, match="cached plan"):
                await stmt.fetch(1)
            again = await conn.prepare("SELECT * FROM shape WHERE id = $1")
            assert [tuple(r) for r in await again.fetch(1)] == [(1, "a", "x")]
        finally:
            await conn.close()
            await other.close()

    asyncio.run(body())


def test_psycopg_async(pg: NodeProcess) -> None:
    async def body() -> None:
        async with await psycopg.AsyncConnection.connect(dsn(pg), autocommit=True) as conn:
            await conn.execute("CREATE TABLE a(id INTEGER PRIMARY KEY, v TEXT)")
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO a(id, v) VALUES (%s, %s)", [(i, f"v{i}") for i in range(10)]
                )
                await cur.execute("SELECT v FROM a WHERE id >= %s ORDER BY id", (7,))
                assert await cur.fetchall() == [("v7",), ("v8",), ("v9",)]

    asyncio.run(body())


def test_asyncpg_types_both_ways(pg: NodeProcess) -> None:
    async def body() -> None:
        conn = await asyncpg_connect(pg)
        try:
            await conn.execute(
                "CREATE TABLE v(id BIGINT PRIMARY KEY, small SMALLINT, i INT, f DOUBLE PRECISION, r REAL, "
                "b BOOLEAN, t TEXT, vc VARCHAR(20), blob BYTEA, d DATE, ts TIMESTAMP, tz TIMESTAMPTZ, "
                "n NUMERIC, j JSONB, u UUID)"
            )
            values: tuple[Any, ...] = (
                2**62,
                -7,
                123456,
                1.25,
                0.5,
                True,
                "héllo",
                "short",
                b"\x00\x01\xfe",
                dt.date(2026, 11, 22),
                dt.datetime(2026, 11, 22, 1, 2, 3, 456789),
                dt.datetime(2026, 11, 22, 1, 2, 3, tzinfo=dt.UTC),
                decimal.Decimal("12.34"),
                '{"a": [1, 2]}',
                uuid.UUID("12345678-1234-5678-1234-567812345678"),
            )
            await conn.execute(
                "INSERT INTO v VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                *values,
            )
            row = await conn.fetchrow("SELECT * FROM v WHERE id = $1", 2**62)
            assert row is not None
            got = tuple(row)
            assert got[:9] == values[:9]
            assert got[9:12] == values[9:12]
            assert got[12] == decimal.Decimal("12.34")
            assert got[14] == values[14]
            nulls = await conn.fetchrow("SELECT NULL AS x, count(*) AS n FROM v")
            assert nulls is not None
            assert (nulls["x"], nulls["n"]) == (None, 1)
            await conn.executemany("INSERT INTO v(id, t) VALUES ($1, $2)", [(i, str(i)) for i in range(5)])
            assert await conn.fetchval("SELECT count(*) FROM v") == 6
            async with conn.transaction():
                await conn.execute("DELETE FROM v WHERE id < $1", 3)
                assert await conn.fetchval("SELECT count(*) FROM v") == 3
            assert await conn.fetchval("SELECT count(*) FROM v") == 3
        finally:
            await conn.close()

        pool = await asyncpg.create_pool(
            host="127.0.0.1",
            port=pg.pg_port,
            user="ha",
            password=PASSWORD,
            database="app",
            min_size=2,
            max_size=4,
        )  # type: ignore[attr-defined]
        try:
            results = await asyncio.gather(
                *(pool.fetchval("SELECT t FROM v WHERE id = $1", i) for i in (3, 4))
            )
            assert results == ["3", "4"]
        finally:
            await pool.close()

    asyncio.run(body())


def test_wrong_password_and_garbage(pg: NodeProcess) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn(pg, password="nope"))
    # protocol garbage closes that connection only
    with socket.create_connection(("127.0.0.1", pg.pg_port), timeout=10) as s:  # type: ignore[attr-defined]
        s.sendall(b"\x00\x00\x00\x08\xde\xad\xbe\xef" + b"garbage" * 100)
        answer = s.recv(4096)
        assert answer[:1] == b"E"
        assert b"08P01" in answer or b"0A000" in answer
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_databases_and_read_your_writes(pg: NodeProcess) -> None:
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        names = [r[0] for r in conn.execute("SHOW DATABASES").fetchall()]
        assert names == ["app.db", "other.db"]
        conn.execute("SET DATABASE TO other")
        conn.execute("CREATE TABLE o(x)")
        conn.execute("INSERT INTO o VALUES (1)")
        seq = int(conn.execute("SHOW ha.seq").fetchone()[0])  # type: ignore[index]
        conn.execute(f"SET ha.min_seq = {seq}")
        assert conn.execute("SELECT count(*) FROM o").fetchone() == (1,)
    with psycopg.connect(dsn(pg, dbname="other"), autocommit=True) as conn:
        assert conn.execute("SELECT x FROM o").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match='database "nope" does not exist'):
        psycopg.connect(dsn(pg, dbname="nope"))
    resp = pg.request("POST", "/databases/other.db", {"sql": "SELECT count(*) FROM o"})
    assert resp.json()["rows"] == [[1]]


def describe_table(node: NodeProcess, table: str, command: str = "\\d") -> list[str]:
    """psql's ``\\d table`` (or ``command``), one line per row with runs of spaces made one."""
    described = psql(node, "-c", f"{command} {table}")
    assert described.returncode == 0, described.stderr
    return [" ".join(line.split()) for line in described.stdout.splitlines()]


def test_psql_describes_tables_databases_and_schemas(pg: NodeProcess) -> None:
    assert psql(pg, "-c", "CREATE TABLE users(id SERIAL PRIMARY KEY, name TEXT)").returncode == 0
    tables = psql(pg, "-c", "\\dt")
    assert tables.returncode == 0, tables.stderr
    assert "public | users | table | ha" in tables.stdout
    dbs = psql(pg, "-c", "\\l")
    assert dbs.returncode == 0, dbs.stderr
    assert "app.db" in dbs.stdout
    schemas = psql(pg, "-c", "\\dn")
    assert schemas.returncode == 0, schemas.stderr
    assert "public | pg_database_owner" in schemas.stdout  # as PostgreSQL 15 makes it
    made = psql(
        pg,
        "-c",
        "CREATE TABLE people(id SERIAL PRIMARY KEY, name TEXT NOT NULL DEFAULT 'x', "
        "email VARCHAR(100) UNIQUE)",
        "-c",
        "CREATE INDEX people_name ON people(name)",
    )
    assert made.returncode == 0, made.stderr
    lines = describe_table(pg, "people")
    assert 'Table "public.people"' in lines[0]
    assert "id | integer | | not null | nextval('people_id_seq'::regclass)" in lines  # as PostgreSQL's
    assert "name | text | | not null | 'x'" in lines
    assert "email | character varying(100) | | |" in lines
    assert '"people_pkey" PRIMARY KEY, btree (id)' in lines
    assert '"people_email_key" UNIQUE CONSTRAINT, btree (email)' in lines
    assert '"people_name" btree (name)' in lines
    # constraints and indexes of another kind, and the foreign key seen from both of its tables
    made = psql(
        pg,
        "-c",
        "CREATE TABLE notes(id SERIAL PRIMARY KEY, person_id INTEGER NOT NULL REFERENCES people(id) "
        "ON DELETE CASCADE, body TEXT CHECK (length(body) > 0), UNIQUE (person_id, body))",
        "-c",
        "CREATE UNIQUE INDEX notes_recent ON notes(id DESC) WHERE id > 10",
    )
    assert made.returncode == 0, made.stderr
    lines = describe_table(pg, "notes")
    assert lines[lines.index("Indexes:") :] == [
        "Indexes:",
        '"notes_pkey" PRIMARY KEY, btree (id)',
        '"notes_person_id_body_key" UNIQUE CONSTRAINT, btree (person_id, body)',
        '"notes_recent" UNIQUE, btree (id DESC) WHERE id > 10',
        "Check constraints:",
        '"notes_body_check" CHECK (length(body) > 0)',
        "Foreign-key constraints:",
        '"notes_person_id_fkey" FOREIGN KEY (person_id) REFERENCES people(id) ON DELETE CASCADE',
        "",
    ]
    plus = describe_table(pg, "people", "\\d+")  # with storage, compression, stats target
    assert "id | integer | | not null | nextval('people_id_seq'::regclass) | plain | | |" in plus
    assert "name | text | | not null | 'x' | extended | | |" in plus
    roles = [" ".join(line.split()) for line in psql(pg, "-c", "\\du").stdout.splitlines()]
    assert any(line.startswith("ha | Superuser") for line in roles), roles
    for command in ("\\dt+", "\\l+", "\\di", "\\dv", "\\df"):
        listed = psql(pg, "-c", command)
        assert listed.returncode == 0, f"{command}: {listed.stderr}"
    databases = [" ".join(line.split()) for line in psql(pg, "-c", "\\l+").stdout.splitlines()]
    assert any(line.startswith("app.db | ha | UTF8") for line in databases), databases
    who = psql(pg, "-A", "-c", "SELECT current_user, session_user, current_database(), version()")
    assert who.returncode == 0, who.stderr
    assert who.stdout.splitlines()[:2] == [
        "current_user|session_user|current_database|version",
        f"ha|ha|app.db|{catalog.VERSION}",
    ]
    lines = describe_table(pg, "people")
    assert lines[lines.index("Referenced by:") :] == [
        "Referenced by:",
        'TABLE "notes" CONSTRAINT "notes_person_id_fkey" FOREIGN KEY (person_id) REFERENCES people(id) '
        "ON DELETE CASCADE",
        "",
    ]


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "authors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
    books: Mapped[list[Book]] = relationship(back_populates="author", order_by="Book.id")


class Book(Base):
    __tablename__ = "books"
    id: Mapped[int] = mapped_column(primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("authors.id"))
    title: Mapped[str] = mapped_column(String(100))
    author: Mapped[Author] = relationship(back_populates="books")


# Tables for reflection, next to the ORM's: named and unnamed keys, multi-column and unique indexes, a
# composite primary key, a foreign key with an action, CHECK constraints
Table(
    "shelves",
    Base.metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(10), nullable=False),
    Column("room", String(20)),
    Column("tier", Integer),
    UniqueConstraint("room", "tier", name="uq_shelves_room_tier"),
    UniqueConstraint("code", "room"),
    CheckConstraint("tier >= 0", name="ck_shelves_tier"),
    Index("ix_shelves_room_code", "room", "code"),
    Index("ux_shelves_code_tier", "code", "tier", unique=True),
)
Table(
    "placements",
    Base.metadata,
    Column("shelf_id", Integer, nullable=False),
    Column("book_id", Integer, ForeignKey("books.id"), nullable=False),
    Column("slot", Integer, CheckConstraint("slot > 0")),
    PrimaryKeyConstraint("shelf_id", "book_id", name="placements_pk"),
    ForeignKeyConstraint(["shelf_id"], ["shelves.id"], ondelete="CASCADE"),
)


def check_reflection(conn: Connection) -> None:
    """What SQLAlchemy reflects is what was created, as PostgreSQL would name it."""
    inspector = inspect(conn)
    assert inspector.get_pk_constraint("authors") == {
        "constrained_columns": ["id"],
        "name": "authors_pkey",
        "comment": None,
        "dialect_options": {"postgresql_include": []},
    }
    assert inspector.get_pk_constraint("placements")["constrained_columns"] == ["shelf_id", "book_id"]
    assert inspector.get_pk_constraint("placements")["name"] == "placements_pk"
    assert [(u["name"], u["column_names"]) for u in inspector.get_unique_constraints("authors")] == [
        ("authors_name_key", ["name"])
    ]
    assert [(u["name"], u["column_names"]) for u in inspector.get_unique_constraints("shelves")] == [
        ("shelves_code_room_key", ["code", "room"]),
        ("uq_shelves_room_tier", ["room", "tier"]),
    ]
    indexes = {i["name"]: i for i in inspector.get_indexes("shelves")}
    assert {name: (i["column_names"], i["unique"]) for name, i in indexes.items()} == {
        "ix_shelves_room_code": (["room", "code"], False),
        "ux_shelves_code_tier": (["code", "tier"], True),
        "shelves_code_room_key": (["code", "room"], True),
        "uq_shelves_room_tier": (["room", "tier"], True),
    }
    assert indexes["uq_shelves_room_tier"]["duplicates_constraint"] == "uq_shelves_room_tier"
    assert "duplicates_constraint" not in indexes["ux_shelves_code_tier"]
    assert inspector.get_indexes("placements") == []  # the primary key is not an index to SQLAlchemy
    assert sorted(
        (fk["name"], fk["constrained_columns"], fk["referred_table"], fk["referred_columns"], fk["options"])
        for fk in inspector.get_foreign_keys("placements")
    ) == [
        ("placements_book_id_fkey", ["book_id"], "books", ["id"], {}),
        ("placements_shelf_id_fkey", ["shelf_id"], "shelves", ["id"], {"ondelete": "CASCADE"}),
    ]
    assert [(c["name"], c["sqltext"]) for c in inspector.get_check_constraints("shelves")] == [
        ("ck_shelves_tier", "tier >= 0")
    ]
    assert [(c["name"], c["sqltext"]) for c in inspector.get_check_constraints("placements")] == [
        ("placements_slot_check", "slot > 0")
    ]
    columns = {c["name"]: c for c in inspector.get_columns("shelves")}
    assert list(columns) == ["id", "code", "room", "tier"]
    assert [columns[name]["nullable"] for name in columns] == [False, False, True, True]
    # a whole MetaData reflected compares equal to the one that made the tables
    reflected = MetaData()
    reflected.reflect(conn)
    for made in Base.metadata.sorted_tables:
        got = reflected.tables[made.name]
        assert [c.name for c in got.primary_key] == [c.name for c in made.primary_key], made.name
        assert {(i.name, tuple(c.name for c in i.columns), i.unique) for i in got.indexes} == {
            (i.name, tuple(c.name for c in i.columns), i.unique) for i in made.indexes
        }, made.name
        assert _uniques(got) == {
            (u.name or f"{made.name}_{'_'.join(u.columns.keys())}_key", tuple(u.columns.keys()))
            for u in made.constraints
            if isinstance(u, UniqueConstraint)
        } | {(f"{made.name}_{c.name}_key", (c.name,)) for c in made.columns if c.unique}, made.name
        assert {(fk.parent.name, fk.column.table.name, fk.column.name) for fk in got.foreign_keys} == {
            (fk.parent.name, fk.column.table.name, fk.column.name) for fk in made.foreign_keys
        }, made.name


def _uniques(table: Table) -> set[tuple[str | None, tuple[str, ...]]]:
    return {
        (str(u.name), tuple(u.columns.keys())) for u in table.constraints if isinstance(u, UniqueConstraint)
    }


def test_sqlalchemy_orm_on_psycopg(pg: NodeProcess) -> None:

    base, author_cls, book_cls = Base, Author, Book
    engine = create_engine(f"postgresql+psycopg://ha:{PASSWORD}@127.0.0.1:{pg.pg_port}/app")  # type: ignore[attr-defined]
    try:
        base.metadata.create_all(engine)
        base.metadata.create_all(engine)  # again: it asks the catalog and finds the tables
        with Session(engine) as s:
            s.add(author_cls(name="ann", books=[book_cls(title="one"), book_cls(title="two")]))
            s.commit()
            ann = s.scalars(select(author_cls).where(author_cls.name == "ann")).one()
            assert [b.title for b in ann.books] == ["one", "two"]
            ann.books[0].title = "uno"
            s.delete(ann.books[1])
            s.commit()
            assert [b.title for b in s.scalars(select(book_cls)).all()] == ["uno"]
            s.add(author_cls(name="ann"))
            with pytest.raises(IntegrityError):
                s.commit()
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) >= {"authors", "books"}
        columns = {c["name"]: c for c in inspector.get_columns("books")}
        assert list(columns) == ["id", "author_id", "title"]
        assert (columns["author_id"]["nullable"], str(columns["title"]["type"])) == (False, "VARCHAR(100)")
        (fk,) = inspector.get_foreign_keys("books")
        assert (fk["constrained_columns"], fk["referred_table"], fk["referred_columns"]) == (
            ["author_id"],
            "authors",
            ["id"],
        )
        with engine.connect() as conn:
            check_reflection(conn)
    finally:
        engine.dispose()


def test_sqlalchemy_orm_on_asyncpg(pg: NodeProcess) -> None:

    base, author_cls, book_cls = Base, Author, Book

    async def body() -> None:
        engine = create_async_engine(f"postgresql+asyncpg://ha:{PASSWORD}@127.0.0.1:{pg.pg_port}/app")  # type: ignore[attr-defined]
        try:
            async with engine.begin() as conn:
                await conn.run_sync(base.metadata.create_all)
            async with AsyncSession(engine) as s:
                s.add(author_cls(name="bo", books=[book_cls(title="x"), book_cls(title="y")]))
                await s.commit()
                query = select(author_cls).options(selectinload(author_cls.books))
                got = (await s.scalars(query)).all()
                assert [(a.name, [b.title for b in a.books]) for a in got] == [("bo", ["x", "y"])]
            async with engine.connect() as conn:
                await conn.run_sync(check_reflection)
        finally:
            await engine.dispose()

    asyncio.run(body())


@pytest.mark.parametrize("method", ["md5", "password"])
def test_md5_and_cleartext_authentication(node_factory: NodeFactory, method: str) -> None:
    port = free_port()
    cleartext = ["--pg-allow-cleartext"] if method == "password" else []  # no TLS in this test
    node = node_factory(
        args=["app.db", "--pg-port", str(port), "--pg-pass", PASSWORD, "--pg-auth", method, *cleartext],
        nats_port=None,
    )
    node.pg_port = port  # type: ignore[attr-defined]
    with psycopg.connect(dsn(node), autocommit=True) as conn:
        assert conn.execute("SELECT 41 + 1").fetchone() == (42,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn(node, password="wrong"))
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(dsn(node, user="someone"))


def test_tls(node_factory: NodeFactory, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
            ),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        capture_output=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    port = free_port()
    node = node_factory(
        args=[
            "app.db",
            "--pg-port",
            str(port),
            "--pg-pass",
            PASSWORD,
            "--pg-cert",
            str(cert),
            "--pg-key",
            str(key),
        ],
        nats_port=None,
    )
    node.pg_port = port  # type: ignore[attr-defined]
    with psycopg.connect(dsn(node, sslmode="require"), autocommit=True) as conn:
        assert conn.info.pgconn.ssl_in_use
        assert conn.execute("SELECT 'over tls'").fetchone() == ("over tls",)
    # a node without a certificate answers the SSL request with N: "require" fails, "prefer" falls back
    plain_port = free_port()
    plain = node_factory(args=["app.db", "--pg-port", str(plain_port), "--pg-pass", PASSWORD], nats_port=None)
    plain.pg_port = plain_port  # type: ignore[attr-defined]
    with pytest.raises(psycopg.OperationalError, match="SSL"):
        psycopg.connect(dsn(plain, sslmode="require"))
    with psycopg.connect(dsn(plain, sslmode="prefer"), autocommit=True) as conn:
        assert not conn.info.pgconn.ssl_in_use


def test_row_limits_suspend_the_portal(pg: NodeProcess) -> None:
    async def body() -> None:
        conn = await asyncpg_connect(pg)
        try:
            await conn.execute("CREATE TABLE n(i BIGINT PRIMARY KEY)")
            await conn.executemany("INSERT INTO n VALUES ($1)", [(i,) for i in range(95)])
            async with conn.transaction():
                seen = [r["i"] async for r in conn.cursor("SELECT i FROM n ORDER BY i", prefetch=10)]
                assert seen == list(range(95))
                cur = await conn.cursor("SELECT i FROM n WHERE i >= $1 ORDER BY i", 90)
                assert [r["i"] for r in await cur.fetch(3)] == [90, 91, 92]
                assert [r["i"] for r in await cur.fetch(5)] == [93, 94]
        finally:
            await conn.close()

    asyncio.run(body())


# Minutes of work for SQLite: it moves to a worker thread, and only a cancel or the query timeout ends it.
SLOW = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000000) "
    "SELECT count(*) FROM c"
)


def cancelled_after(conn: psycopg.Connection[Any], seconds: float, sql: str) -> float:
    """Run ``sql``, cancel it after ``seconds``; returns how long until the client heard 57014."""
    timer = threading.Timer(seconds, conn.cancel)
    timer.start()
    started = time.monotonic()
    with pytest.raises(psycopg.errors.QueryCanceled):
        conn.execute(sql)
    timer.join()
    return time.monotonic() - started


def test_cancel_a_running_read(pg: NodeProcess) -> None:
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        assert cancelled_after(conn, 1.0, SLOW) < 10
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the session goes on
        # Cancelled reads stop on their worker threads too: were they still running, these would hold both
        # of the node's workers until the query timeout, and the read below would wait for one.
        for _ in range(3):
            cancelled_after(conn, 0.3, SLOW)
        started = time.monotonic()
        count = SLOW.replace("2000000000", "300000")
        assert conn.execute(count).fetchone() == (300000,)
        assert time.monotonic() - started < 5


def test_cancel_inside_a_write_transaction(pg: NodeProcess) -> None:
    """A cancelled statement aborts the transaction, as in PostgreSQL; ROLLBACK ends it, and frees the
    writer."""
    with psycopg.connect(dsn(pg), autocommit=True) as setup:
        setup.execute("CREATE TABLE w(id INTEGER PRIMARY KEY, v TEXT)")
    with psycopg.connect(dsn(pg)) as conn:
        conn.execute("INSERT INTO w VALUES (1, 'lost')")
        assert cancelled_after(conn, 0.5, f"INSERT INTO w SELECT 9, 'never' FROM ({SLOW})") < 10
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        conn.execute("INSERT INTO w VALUES (2, 'kept')")
        conn.commit()
    with psycopg.connect(dsn(pg), autocommit=True) as other:
        other.execute("INSERT INTO w VALUES (3, 'other')")  # the writer is free
        assert other.execute("SELECT id, v FROM w ORDER BY id").fetchall() == [(2, "kept"), (3, "other")]


def test_timeout_inside_a_write_transaction(node_factory: NodeFactory) -> None:
    """Past --query-timeout a statement of a transaction block fails with 57014 (not a deadlock, which
    clients retry), and the aborted transaction takes only ROLLBACK."""
    port = free_port()
    node = node_factory(
        args=["app.db", "--pg-port", str(port), "--pg-pass", PASSWORD, "--query-timeout", "1s"],
        nats_port=None,
    )
    node.pg_port = port  # type: ignore[attr-defined]
    with psycopg.connect(dsn(node)) as conn:
        conn.execute("CREATE TABLE w(id INTEGER PRIMARY KEY)")
        conn.commit()
        conn.execute("INSERT INTO w VALUES (1)")
        with pytest.raises(psycopg.errors.QueryCanceled, match="1s"):
            conn.execute(f"INSERT INTO w SELECT 9 FROM ({SLOW})")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM w").fetchone() == (0,)


def test_like_is_case_sensitive_as_in_postgresql(pg: NodeProcess) -> None:
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        conn.execute("CREATE TABLE sku(code TEXT PRIMARY KEY CHECK (code LIKE 'A%'))")
        conn.execute("INSERT INTO sku VALUES ('A_1'), ('AB1'), ('Ax')")
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO sku VALUES ('a2')")
        found = conn.execute("SELECT code FROM sku WHERE code LIKE %s ORDER BY code", ("A\\_%",)).fetchall()
        assert found == [("A_1",)]
        assert conn.execute("SELECT count(*) FROM sku WHERE code LIKE 'a%'").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM sku WHERE code ILIKE 'a%'").fetchone() == (3,)
        with pytest.raises(psycopg.errors.InvalidTextRepresentation, match="escape character"):
            conn.execute("SELECT code FROM sku WHERE code LIKE %s", ("A\\",))


def test_generate_series_seeds_a_table(pg: NodeProcess) -> None:
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        conn.execute("CREATE TABLE seq(id INTEGER PRIMARY KEY, v TEXT)")
        cur = conn.execute("INSERT INTO seq SELECT g, 'v' || g FROM generate_series(1, %s) AS g", (5000,))
        assert cur.rowcount == 5000
        assert conn.execute("SELECT count(*), sum(id) FROM seq").fetchone() == (5000, 5000 * 5001 // 2)


def test_result_columns_are_named_as_postgresql_names_them(pg: NodeProcess) -> None:
    with psycopg.connect(dsn(pg), autocommit=True, row_factory=psycopg.rows.dict_row) as conn:
        conn.execute("CREATE TABLE cn(id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO cn VALUES (1, 'a'), (2, 'b')")
        row = conn.execute(
            "SELECT count(*), max(id), upper(name) AS up, id + 1, CASE WHEN id > 1 THEN 'x' END, name "
            "FROM cn WHERE id = 2"
        ).fetchone()
        assert row == {"count": 1, "max": 2, "up": "B", "?column?": 3, "case": "x", "name": "b"}
        prepared = conn.execute("SELECT count(*) FROM cn WHERE id > %s", (0,), prepare=True).fetchone()
        assert prepared == {"count": 2}

    async def with_asyncpg() -> None:
        conn = await asyncpg_connect(pg)
        try:
            record = await conn.fetchrow("SELECT count(*), sum(id) AS total FROM cn")
            assert record is not None
            assert (record["count"], record["total"]) == (2, 3)
            # aggregates of a typed column are announced with its type (asyncpg decodes by it): not text
            assert await conn.fetchrow("SELECT max(id), min(name), sum(id) + 1 FROM cn") == (2, "a", 4)
        finally:
            await conn.close()

    asyncio.run(with_asyncpg())


def test_asyncpg_array_parameters_and_expression_types(pg: NodeProcess) -> None:
    """asyncpg encodes arguments and decodes results strictly by the announced types: an uncast ``= ANY($1)``
    takes a list (an array of the column's type), and expressions come back typed, not as text."""

    async def body() -> None:
        conn = await asyncpg_connect(pg)
        try:
            await conn.execute("CREATE TABLE arr(id INTEGER PRIMARY KEY, name TEXT)")
            await conn.executemany("INSERT INTO arr VALUES ($1, $2)", [(1, "a"), (2, "b"), (3, "c")])
            assert await conn.fetch("SELECT name FROM arr WHERE id = ANY($1) ORDER BY id", [1, 3]) == [
                ("a",),
                ("c",),
            ]
            assert await conn.fetchval("SELECT count(*) FROM arr WHERE name <> ALL($1)", ["a"]) == 2
            assert await conn.fetchval("SELECT id = ANY($1::int[]) FROM arr WHERE id = 2", [2]) is True
            assert await conn.fetchval("SELECT $1::int + 1", 41) == 42
            now = await conn.fetchval("SELECT now()")
            assert isinstance(now, dt.datetime)
            assert now.tzinfo is not None
            await conn.execute("CREATE TABLE ev(id INTEGER PRIMARY KEY, at TIMESTAMP, doc JSONB)")
            await conn.execute("""INSERT INTO ev VALUES (1, '2024-01-02 03:04:05', '{"a": [1, 2]}')""")
            day, later, part = await conn.fetchrow(
                "SELECT date_trunc('day', at), at + interval '1 day', doc->'a' FROM ev"
            )
            assert (day, later) == (dt.datetime(2024, 1, 2), dt.datetime(2024, 1, 3, 3, 4, 5))
            assert json.loads(part) == [1, 2]  # jsonb (asyncpg hands JSON over as text)
        finally:
            await conn.close()

    asyncio.run(body())


def test_psycopg_lists_as_any_parameters(pg: NodeProcess) -> None:
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        conn.execute("CREATE TABLE lst(id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO lst VALUES (1, 'a'), (2, 'b c'), (3, '007')")
        assert conn.execute("SELECT name FROM lst WHERE id = ANY(%s) ORDER BY id", ([1, 3],)).fetchall() == [
            ("a",),
            ("007",),
        ]
        assert conn.execute("SELECT id FROM lst WHERE name = ANY(%s)", (["b c", "007"],)).fetchall() == [
            (2,),
            (3,),
        ]


class Mood(enum.Enum):
    happy = "happy"
    sad = "sad"


class Profile(Base):
    __tablename__ = "profiles"
    id: Mapped[int] = mapped_column(primary_key=True)
    mood: Mapped[Mood] = mapped_column(SAEnum(Mood), default=Mood.happy)
    meta: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


def test_sqlalchemy_enum_types_and_jsonb_subscripts(pg: NodeProcess) -> None:
    """SQLAlchemy creates a native enum type before its table, and reads jsonb with subscripts."""
    engine = create_engine(f"postgresql+psycopg://ha:{PASSWORD}@127.0.0.1:{pg.pg_port}/app")  # type: ignore[attr-defined]
    try:
        Profile.__table__.create(engine)  # CREATE TYPE mood AS ENUM (…), then CREATE TABLE
        with Session(engine) as s:
            s.add_all([Profile(mood=Mood.sad, meta={"k": [1, 2], "s": "x"}), Profile()])
            s.commit()
            assert s.scalars(select(Profile.mood).order_by(Profile.id)).all() == [Mood.sad, Mood.happy]
            assert s.scalar(select(Profile.meta["k"]).where(Profile.id == 1)) == [1, 2]
            assert s.scalar(select(Profile.meta["k"][1]).where(Profile.id == 1)) == 2  # jsonb: 0-based
        Profile.__table__.drop(engine)  # DROP TABLE, then DROP TYPE mood
    finally:
        engine.dispose()
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="only enum types"):
            conn.execute("CREATE TYPE pair AS (a int, b int)")
        conn.execute("CREATE TABLE arrs(id INTEGER PRIMARY KEY, tags TEXT)")
        with pytest.raises(psycopg.errors.SyntaxError, match="subscript"):
            conn.execute("SELECT tags[1] FROM arrs")  # not answered as a quoted name by SQLite


def test_catalog_inside_a_write_transaction_sees_its_own_schema(pg: NodeProcess) -> None:
    """A migration that drops and creates tables in one transaction asks the catalog in between (SQLAlchemy's
    create_all checks every table first): it sees its own changes, and no other session does before COMMIT."""
    exists = "SELECT count(*) FROM pg_catalog.pg_class WHERE relname = %s"
    with psycopg.connect(dsn(pg), autocommit=True) as other, psycopg.connect(dsn(pg)) as conn:
        other.execute("CREATE TABLE old_t(id INTEGER PRIMARY KEY)")
        conn.execute("DROP TABLE old_t")
        conn.execute("CREATE TABLE new_t(id INTEGER PRIMARY KEY)")
        assert conn.execute(exists, ("old_t",)).fetchone() == (0,)
        assert conn.execute(exists, ("new_t",)).fetchone() == (1,)
        assert other.execute(exists, ("old_t",)).fetchone() == (1,)  # not committed yet
        assert other.execute(exists, ("new_t",)).fetchone() == (0,)
        conn.commit()
        assert other.execute(exists, ("old_t",)).fetchone() == (0,)
        assert other.execute(exists, ("new_t",)).fetchone() == (1,)

    async def enum_parameter() -> None:  # SQLAlchemy on asyncpg casts enum parameters to the enum's type
        conn = await asyncpg_connect(pg)
        try:
            assert await conn.fetchval("SELECT $1::some_enum", "happy") == "happy"
        finally:
            await conn.close()

    asyncio.run(enum_parameter())


def test_explain_shows_the_query_plan(pg: NodeProcess) -> None:
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        conn.execute("CREATE TABLE ex(id INTEGER PRIMARY KEY, v TEXT)")
        cur = conn.execute("EXPLAIN SELECT v FROM ex WHERE id = %s", (1,))
        assert cur.description is not None
        assert [d.name for d in cur.description] == ["QUERY PLAN"]
        assert cur.fetchall() == [("SEARCH ex USING INTEGER PRIMARY KEY (rowid=?)",)]
        assert cur.statusmessage == "EXPLAIN"
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="would run the statement"):
            conn.execute("EXPLAIN ANALYZE DELETE FROM ex")
        conn.execute("EXPLAIN INSERT INTO ex VALUES (1, 'x')")
        assert conn.execute("SELECT count(*) FROM ex").fetchone() == (0,)  # explained, not run


def test_migration_statements(pg: NodeProcess) -> None:
    """What migration tools send: what SQLite can do runs, the rest is refused with what to do instead,
    and statements about things SQLite does not have (grants, built-in extensions, comments on other
    objects than tables and columns) are accepted with a notice; a table's comment is kept."""
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        notices: list[str] = []
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        conn.execute("CREATE TABLE m(id SERIAL PRIMARY KEY, name TEXT, n INTEGER)")
        assert conn.execute("ALTER TABLE m ALTER COLUMN name SET NOT NULL").statusmessage == "ALTER TABLE"
        with pytest.raises(psycopg.errors.NotNullViolation):
            conn.execute("INSERT INTO m(name) VALUES (NULL)")
        for statement in [  # a table rebuild (tests/e2e/test_pgwire_ddl.py)
            "ALTER TABLE m ALTER COLUMN n TYPE BIGINT",
            "ALTER TABLE m ALTER COLUMN n SET DEFAULT 5",
            "ALTER TABLE m ADD CONSTRAINT m_name UNIQUE (name)",
            "ALTER TABLE m ADD CONSTRAINT m_fk FOREIGN KEY (n) REFERENCES m(id)",
        ]:
            assert conn.execute(statement).statusmessage == "ALTER TABLE"
        for statement, words in [
            ("CREATE EXTENSION postgis", "not available"),
        ]:
            with pytest.raises(psycopg.errors.FeatureNotSupported) as refused:
                conn.execute(statement)
            assert words in f"{refused.value.diag.message_primary} {refused.value.diag.message_hint}"
        for statement, tag in [
            ("COMMENT ON TABLE m IS 'people'", "COMMENT"),
            ("COMMENT ON INDEX m_pkey IS 'the key'", "COMMENT"),
            ("GRANT SELECT ON m TO ha", "GRANT"),
            ('CREATE EXTENSION IF NOT EXISTS "uuid-ossp"', "CREATE EXTENSION"),
        ]:
            assert conn.execute(statement).statusmessage == tag
        assert len(notices) == 3
        assert conn.execute("SELECT obj_description('m'::regclass, 'pg_class')").fetchone() == ("people",)


def test_pgbench_custom_script(pg: NodeProcess, tmp_path: Path) -> None:
    assert psql(pg, "-c", "CREATE TABLE kv(id BIGINT PRIMARY KEY, v TEXT)").returncode == 0
    script = tmp_path / "bench.sql"
    script.write_text(
        "\\set id random(1, 1000000000)\n"
        "INSERT INTO kv(id, v) VALUES (:id, 'x') ON CONFLICT (id) DO NOTHING;\n"
        "SELECT v FROM kv WHERE id = :id;\n"
    )
    env = {**os.environ, "PGPASSWORD": PASSWORD}
    target = ("-h", "127.0.0.1", "-p", str(pg.pg_port), "-U", "ha", "app")  # type: ignore[attr-defined]
    for mode in ("simple", "extended", "prepared"):
        run = subprocess.run(
            [*("pgbench", "-n", "-f", str(script), "-t", "30", "-c", "2", "-M", mode), *target],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert run.returncode == 0, run.stderr + run.stdout
        assert "number of transactions actually processed: 60/60" in run.stdout, run.stdout
        assert "number of failed transactions: 0" in run.stdout, run.stdout


def test_sqlstates_session_commands_and_describe(pg: NodeProcess) -> None:
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        conn.execute("CREATE TABLE s(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE)")
        conn.execute("INSERT INTO s VALUES (1, 'a')")
        for sql, error in [
            ("INSERT INTO s VALUES (1, 'b')", psycopg.errors.UniqueViolation),
            ("INSERT INTO s VALUES (2, 'a')", psycopg.errors.UniqueViolation),
            ("INSERT INTO s(id) VALUES (3)", psycopg.errors.NotNullViolation),
            ("SELECT * FROM missing", psycopg.errors.UndefinedTable),
            ("SELECT nope FROM s", psycopg.errors.UndefinedColumn),
            ("SELEKT 1", psycopg.errors.SyntaxError),
            ("SHOW no_such_setting", psycopg.errors.UndefinedObject),
        ]:
            with pytest.raises(error):
                conn.execute(sql)
        version = conn.execute("SELECT version()").fetchone()
        assert version is not None
        assert str(version[0]).startswith("PostgreSQL 15.0 (sqlite-ha")
        assert conn.execute("SELECT current_schema()").fetchone() == ("public",)
        assert conn.execute("SHOW server_version").fetchone() == ("15.0",)
        conn.execute("SET application_name = 'tests'")
        assert conn.execute("SHOW application_name").fetchone() == ("tests",)
        # the reset a pool sends, in one simple query
        conn.execute("SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL; DISCARD ALL")

    async def describe_only() -> None:
        conn = await asyncpg_connect(pg)
        try:
            stmt = await conn.prepare("INSERT INTO s VALUES ($1, $2) RETURNING id")  # Parse + Describe only
            assert [a.name for a in stmt.get_parameters()] == ["int8", "text"]
            assert [a.name for a in stmt.get_attributes()] == ["id"]
            assert await conn.fetchval("SELECT count(*) FROM s") == 1  # nothing ran
            assert await stmt.fetchval(5, "five") == 5
        finally:
            await conn.close()

    asyncio.run(describe_only())


def test_read_your_writes_on_another_node(node_factory: NodeFactory) -> None:
    ports = free_port(), free_port()
    n1 = node_factory(args=["app.db", "--pg-port", str(ports[0]), "--pg-pass", PASSWORD], nats_port=None)
    n2 = node_factory(
        args=[
            *("app.db", "--replication-url", f"nats://127.0.0.1:{n1.nats_port}"),
            *("--pg-port", str(ports[1]), "--pg-pass", PASSWORD),
        ]
    )
    n1.pg_port, n2.pg_port = ports  # type: ignore[attr-defined]
    with psycopg.connect(dsn(n1)) as conn:
        conn.execute("CREATE TABLE r(id INTEGER PRIMARY KEY, v TEXT)")
        conn.execute("INSERT INTO r VALUES (1, 'written on node1')")
        conn.commit()
        seq = int(conn.execute("SHOW ha.seq").fetchone()[0])  # type: ignore[index]
    with psycopg.connect(dsn(n2), autocommit=True) as other:
        other.execute(f"SET ha.min_seq = {seq}")
        assert other.execute("SELECT v FROM r WHERE id = 1").fetchone() == ("written on node1",)
