"""Schema changes ORMs emit, over the PG wire: the ALTER TABLE forms SQLite lacks run as a table rebuild
inside the client's transaction, keeping indexes, triggers, views and data; what cannot be done is refused
with PostgreSQL's SQLSTATE."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import psycopg
import pytest

from sqlite_ha.testing import NodeProcess, free_port
from tests.conftest import NodeFactory
from tests.e2e.test_pgwire import PASSWORD, asyncpg_connect, dsn, pg  # noqa: F401  (the fixture)


def _schema(conn: psycopg.Connection[Any], table: str) -> str:
    row = conn.execute("SELECT sql FROM sqlite_schema WHERE name = %s", (table,)).fetchone()
    assert row is not None
    return str(row[0])


def test_django_style_alter_table_keeps_data_indexes_triggers_and_views(pg: NodeProcess) -> None:  # noqa: F811
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        conn.execute("CREATE TABLE author (id serial PRIMARY KEY, name varchar(50) NOT NULL)")
        conn.execute(
            "CREATE TABLE book (id serial PRIMARY KEY, title varchar(100) NOT NULL, author_id integer, "
            "pages integer, isbn varchar(20)) WITH (fillfactor=90)"
        )
        conn.execute('CREATE INDEX "book_title_like" ON "book" ("title" varchar_pattern_ops)')
        conn.execute("CREATE INDEX CONCURRENTLY book_pages ON book (pages)")
        conn.execute("CREATE TABLE log (msg text)")
        conn.execute("CREATE VIEW long_books AS SELECT title FROM book WHERE pages > 100")
        conn.execute("INSERT INTO author (name) VALUES ('Ann'), ('Bob')")
        conn.execute(
            "INSERT INTO book (title, author_id, pages, isbn) VALUES ('a', 1, 50, 'x1'), ('b', 2, 500, 'x2')"
        )
        with conn.transaction():
            conn.execute(
                'ALTER TABLE "book" ADD CONSTRAINT "book_author_id_fk_author_id" FOREIGN KEY ("author_id") '
                'REFERENCES "author" ("id") DEFERRABLE INITIALLY DEFERRED'
            )
            conn.execute('ALTER TABLE "book" ADD CONSTRAINT "book_isbn_uniq" UNIQUE ("isbn")')
            conn.execute('ALTER TABLE "book" ALTER COLUMN "pages" TYPE bigint USING "pages"::bigint')
            conn.execute('ALTER TABLE "book" ALTER COLUMN "pages" SET DEFAULT 0')
            conn.execute('ALTER TABLE "book" ALTER COLUMN "isbn" SET NOT NULL')
        sql = _schema(conn, "book")
        assert "book_author_id_fk_author_id" in sql
        assert "DEFERRABLE INITIALLY DEFERRED" in sql
        assert "book_isbn_uniq" in sql
        assert '"pages" bigint' in sql.replace("BIGINT", "bigint")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO book (title, author_id, isbn) VALUES ('c', 1, 'x1')")
        conn.execute("INSERT INTO book (title, author_id, isbn) VALUES ('c', 1, 'x3')")
        assert conn.execute("SELECT pages FROM book WHERE title = 'c'").fetchone() == (0,)
        # the indexes and the view are still there, and work (triggers: tests/unit/test_rebuild.py)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE tbl_name = 'book'")}
        assert {"book_title_like", "book_pages"} <= names
        assert conn.execute("SELECT title FROM long_books").fetchall() == [("b",)]
        # Django's rollback of a field: default dropped, constraint dropped, column dropped with its index
        conn.execute('ALTER TABLE "book" ALTER COLUMN "pages" DROP DEFAULT')
        conn.execute('ALTER TABLE "book" DROP CONSTRAINT "book_isbn_uniq"')
        conn.execute("INSERT INTO book (title, author_id, isbn) VALUES ('d', 1, 'x1')")
        conn.execute('ALTER TABLE "book" DROP COLUMN "pages" CASCADE')
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE tbl_name = 'book'")}
        assert "book_pages" not in names
        assert "book_title_like" in names
        assert conn.execute("SELECT title, isbn FROM book ORDER BY id").fetchall() == [
            ("a", "x1"),
            ("b", "x2"),
            ("c", "x3"),
            ("d", "x1"),
        ]
        # several actions in one statement, ONLY, IF EXISTS, RENAME CONSTRAINT
        conn.execute("ALTER TABLE ONLY book ADD COLUMN stars int DEFAULT 3, DROP COLUMN isbn")
        assert conn.execute("SELECT title, stars FROM book WHERE id = 1").fetchone() == ("a", 3)
        conn.execute("ALTER TABLE book RENAME CONSTRAINT book_author_id_fk_author_id TO book_author_fk")
        assert "book_author_fk" in _schema(conn, "book")
        conn.execute("ALTER TABLE IF EXISTS nothing_here ADD CONSTRAINT u UNIQUE (x)")
        # refusals carry PostgreSQL's SQLSTATE
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("ALTER TABLE nothing_here ADD CONSTRAINT u UNIQUE (x)")
        with pytest.raises(psycopg.errors.UndefinedObject):
            conn.execute("ALTER TABLE book DROP CONSTRAINT no_such_constraint")
        with pytest.raises(psycopg.errors.InvalidTableDefinition):
            conn.execute("ALTER TABLE book ADD PRIMARY KEY (title)")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("ALTER TABLE book ADD CONSTRAINT t_uq UNIQUE (author_id)")
        assert conn.execute("SELECT count(*) FROM book").fetchone() == (4,)
        # DROP TABLE of several, VACUUM and ANALYZE with table names
        conn.execute("VACUUM ANALYZE book")
        conn.execute("VACUUM book, author")
        conn.execute("ANALYZE VERBOSE book")
        conn.execute("DROP TABLE log, book CASCADE")
        left = conn.execute("SELECT count(*) FROM sqlite_schema WHERE name IN ('log', 'book')").fetchone()
        assert left == (0,)


def test_a_failed_rebuild_leaves_the_transaction_usable(pg: NodeProcess) -> None:  # noqa: F811
    with psycopg.connect(dsn(pg)) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, v int)")
        conn.execute("INSERT INTO t VALUES (1, 1), (2, 1)")
        conn.commit()
        conn.execute("INSERT INTO t VALUES (3, 3)")
        conn.execute("SAVEPOINT s")
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("ALTER TABLE t ADD CONSTRAINT t_v UNIQUE (v)")
        conn.execute("ROLLBACK TO SAVEPOINT s")
        conn.execute("UPDATE t SET v = 2 WHERE id = 2")
        conn.execute("ALTER TABLE t ADD CONSTRAINT t_v UNIQUE (v)")
        conn.execute("INSERT INTO t VALUES (4, 4)")
        conn.commit()
        assert conn.execute("SELECT id, v FROM t ORDER BY id").fetchall() == [(1, 1), (2, 2), (3, 3), (4, 4)]
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute("INSERT INTO t VALUES (5, 4)")


def test_foreign_keys_added_by_rebuild_are_enforced_and_set_constraints(node_factory: NodeFactory) -> None:
    port = free_port()
    node = node_factory(
        args=["file:app.db?_fk=1", "--pg-port", str(port), "--pg-pass", PASSWORD], nats_port=None
    )
    node.pg_port = port  # type: ignore[attr-defined]
    with psycopg.connect(dsn(node)) as conn:
        conn.execute("CREATE TABLE parent (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE child (id int PRIMARY KEY, parent_id int)")
        conn.execute("INSERT INTO parent VALUES (1)")
        conn.execute("INSERT INTO child VALUES (1, 1), (2, 2)")
        conn.commit()
        add_fk = (
            "ALTER TABLE child ADD CONSTRAINT child_parent_fk FOREIGN KEY (parent_id) REFERENCES parent (id) "
            "DEFERRABLE INITIALLY DEFERRED"
        )
        with pytest.raises(psycopg.errors.ForeignKeyViolation):  # the existing rows are checked
            conn.execute(add_fk)
        conn.rollback()
        conn.execute("DELETE FROM child WHERE id = 2")
        conn.execute(add_fk)
        conn.commit()
        # deferred: a missing parent may come later in the transaction; IMMEDIATE checks what is pending
        conn.execute("SET CONSTRAINTS ALL DEFERRED")
        conn.execute("INSERT INTO child VALUES (3, 3)")
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        conn.rollback()
        conn.execute("INSERT INTO child VALUES (3, 3)")
        conn.execute("INSERT INTO parent VALUES (3)")
        conn.execute("SET CONSTRAINTS ALL IMMEDIATE")
        conn.commit()
        conn.execute("INSERT INTO child VALUES (4, 4)")
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.commit()


def test_rebuilds_through_the_extended_protocol(pg: NodeProcess) -> None:  # noqa: F811
    """asyncpg prepares every statement (Parse, Describe) before it runs it, as JDBC does."""

    async def body() -> None:
        conn = await asyncpg_connect(pg)
        try:
            await conn.execute("CREATE TABLE e (id int PRIMARY KEY, v int)")
            await conn.executemany("INSERT INTO e VALUES ($1, $2)", [(1, 10), (2, 20)])
            statement = await conn.prepare("ALTER TABLE e ADD CONSTRAINT e_v UNIQUE (v)")
            await statement.fetch()
            await conn.execute("ALTER TABLE e ALTER COLUMN v SET DEFAULT 5", timeout=10)
            async with conn.transaction():
                await conn.execute("INSERT INTO e (id) VALUES ($1)", 3)
                await conn.execute("ALTER TABLE e ALTER COLUMN v DROP DEFAULT")
            with pytest.raises(asyncpg.UniqueViolationError):
                await conn.execute("INSERT INTO e VALUES ($1, $2)", 4, 10)
            assert await conn.fetch("SELECT id, v FROM e ORDER BY id") == [(1, 10), (2, 20), (3, 5)]
        finally:
            await conn.close()

    asyncio.run(body())
