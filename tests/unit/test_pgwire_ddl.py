"""The schema statements SQLite lacks, as Django and pgbench send them, run on a real SQLite through the
translation and the table rebuild: the table ends as PostgreSQL would have it, with its rows, indexes,
triggers and views."""

from __future__ import annotations

from collections.abc import Iterator

import apsw
import pytest

from sqlite_ha.db import functions, rebuild
from sqlite_ha.db.rebuild import Rebuild
from sqlite_ha.db.tabledef import TableDef, TableDefError
from sqlite_ha.server.pgwire.sql.dialect import translate
from sqlite_ha.server.pgwire.sql.translation import TranslationError


@pytest.fixture
def conn() -> Iterator[apsw.Connection]:
    c = apsw.Connection(":memory:")
    c.config(apsw.SQLITE_DBCONFIG_ENABLE_FKEY, 1)
    functions.register(c)  # pg_numeric() and the others that every node's connections have
    yield c
    c.close()


def run(conn: apsw.Connection, pg_sql: str) -> None:
    """As the writer runs it: SQL pieces as they are, rebuilds by the procedure."""
    for piece in rebuild.split(translate(pg_sql).sql):
        if isinstance(piece, str):
            conn.execute(piece)
        else:
            rebuild.run(conn, piece)


def table_sql(conn: apsw.Connection, name: str) -> str:
    return str(conn.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (name,)).fetchall()[0][0])


def test_django_migration_statements(conn: apsw.Connection) -> None:
    run(conn, 'CREATE TABLE "app_author" ("id" bigint NOT NULL PRIMARY KEY, "name" varchar(50) NOT NULL)')
    run(
        conn,
        'CREATE TABLE "app_book" ("id" bigint NOT NULL PRIMARY KEY, "title" varchar(100) NOT NULL, '
        '"author_id" bigint NOT NULL, "price" numeric(8, 2) NULL)',
    )
    run(conn, 'CREATE INDEX "app_book_title_3d8f_like" ON "app_book" ("title" varchar_pattern_ops)')
    conn.execute("CREATE TABLE audit (msg TEXT)")
    conn.execute(
        "CREATE TRIGGER book_audit AFTER UPDATE ON app_book BEGIN INSERT INTO audit VALUES (new.title); END"
    )
    conn.execute("CREATE VIEW cheap AS SELECT title FROM app_book WHERE price < 10")
    conn.execute("INSERT INTO app_author VALUES (1, 'Ann')")
    conn.execute("INSERT INTO app_book VALUES (1, 'a', 1, 5), (2, 'b', 1, 50)")
    for statement in (
        'ALTER TABLE "app_book" ADD CONSTRAINT "app_book_author_id_fk_app_author_id" FOREIGN KEY '
        '("author_id") REFERENCES "app_author" ("id") DEFERRABLE INITIALLY DEFERRED',
        'SET CONSTRAINTS "app_book_author_id_fk_app_author_id" IMMEDIATE; ALTER TABLE "app_book" DROP '
        'CONSTRAINT "app_book_author_id_fk_app_author_id"',
        'ALTER TABLE "app_book" ADD CONSTRAINT "app_book_title_uniq" UNIQUE ("title")',
        'ALTER TABLE "app_book" ALTER COLUMN "price" TYPE numeric(10, 2) USING "price"::numeric(10, 2)',
        'ALTER TABLE "app_book" ADD COLUMN "pages" integer DEFAULT 0 NOT NULL',
        'ALTER TABLE "app_book" ALTER COLUMN "pages" DROP DEFAULT',
        'ALTER TABLE "app_book" ALTER COLUMN "price" SET DEFAULT 1.5',
        'ALTER TABLE "app_book" RENAME CONSTRAINT "app_book_title_uniq" TO "app_book_title_key"',
    ):
        for piece in statement.split("; "):
            if piece.upper().startswith("SET CONSTRAINTS"):
                continue  # a session command (commands.py)
            run(conn, piece)
    sql = table_sql(conn, "app_book").lower()
    assert "app_book_author_id_fk" not in sql
    assert 'constraint "app_book_title_key" unique ("title")' in sql
    assert '"price" numeric(10, 2) null default (1.5)' in sql
    assert '"pages" int not null,' in sql
    conn.execute("INSERT INTO app_book (id, title, author_id, pages) VALUES (3, 'c', 1, 10)")
    assert conn.execute("SELECT price, pages FROM app_book WHERE id = 3").fetchall() == [(1.5, 10)]
    with pytest.raises(apsw.ConstraintError):
        conn.execute("INSERT INTO app_book (id, title, author_id, pages) VALUES (4, 'c', 1, 1)")
    names = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_schema")}
    assert {"app_book_title_3d8f_like", "book_audit", "cheap"} <= names
    conn.execute("UPDATE app_book SET title = 'a2' WHERE id = 1")  # the trigger still fires
    assert conn.execute("SELECT msg FROM audit").fetchall() == [("a2",)]
    assert conn.execute("SELECT title FROM cheap ORDER BY title").fetchall() == [("a2",), ("c",)]
    run(conn, 'ALTER TABLE "app_book" DROP COLUMN "title" CASCADE')
    names = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_schema")}
    assert "app_book_title_3d8f_like" not in names  # the index on it went with it


def test_pgbench_initialization_statements(conn: apsw.Connection) -> None:
    run(conn, "drop table if exists pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers")
    run(
        conn,
        "create table pgbench_branches(bid int not null,bbalance int,filler char(88)) with (fillfactor=100)",
    )
    run(conn, "create table pgbench_accounts(aid int not null,bid int,abalance int,filler char(84))")
    conn.execute("INSERT INTO pgbench_accounts VALUES (1, 1, 0, ''), (2, 1, 0, '')")
    run(conn, "vacuum analyze pgbench_branches")
    run(conn, "alter table pgbench_branches add primary key (bid)")
    run(conn, "alter table pgbench_accounts add primary key (aid)")
    assert "primary key (aid)" in table_sql(conn, "pgbench_accounts")
    assert conn.execute("SELECT count(*) FROM pgbench_accounts").fetchall() == [(2,)]
    with pytest.raises(TableDefError) as twice:
        run(conn, "alter table pgbench_accounts add primary key (bid)")
    assert twice.value.fields["sqlstate"] == "42P16"


@pytest.mark.parametrize(
    ("sql", "sqlstate"),
    [
        ("ALTER TABLE nope ADD CONSTRAINT u UNIQUE (x)", "42P01"),
        ("ALTER TABLE t DROP CONSTRAINT nope", "42704"),
        ("ALTER TABLE t ALTER COLUMN nope SET DEFAULT 1", "42703"),
        ("ALTER TABLE t DROP CONSTRAINT t_pkey", "0A000"),
        ("ALTER TABLE t DROP COLUMN id, DROP COLUMN v", "0A000"),
    ],
)
def test_refusals_carry_postgresql_sqlstates(conn: apsw.Connection, sql: str, sqlstate: str) -> None:
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)")
    with pytest.raises(TableDefError) as refused:
        run(conn, sql)
    assert refused.value.fields["sqlstate"] == sqlstate


def test_what_cannot_be_translated_is_refused() -> None:
    for sql in (
        "ALTER TABLE t ADD CONSTRAINT x EXCLUDE USING gist (c WITH &&)",
        "ALTER TABLE t ADD CONSTRAINT u UNIQUE NULLS NOT DISTINCT (a)",
        "ALTER TABLE other.t ADD CONSTRAINT u UNIQUE (a)",
    ):
        with pytest.raises(TranslationError):
            translate(sql)


def test_a_rebuild_statement_round_trips_and_quotes() -> None:
    spec = Rebuild(table="it's", edits=(("set_default", "c", "'x''y'"),), if_exists=True)
    (parsed,) = rebuild.split(spec.sql())
    assert parsed == spec
    assert rebuild.split(f"CREATE TABLE a(x); {spec.sql()}; DROP TABLE b") == [
        "CREATE TABLE a(x)",
        spec,
        "DROP TABLE b",
    ]


def test_table_definitions_keep_what_is_not_edited() -> None:
    sql = (
        'CREATE TABLE "t" (id INTEGER PRIMARY KEY AUTOINCREMENT, "a b" TEXT COLLATE NOCASE DEFAULT \'x, y\' '
        'CHECK (length("a b") < 9), c REFERENCES p(id) ON DELETE CASCADE, CONSTRAINT two UNIQUE (c, "a b")) '
        "WITHOUT ROWID"
    )
    d = TableDef.parse("t", sql)
    assert [c.name for c in d.columns] == ["id", "a b", "c"]
    assert d.columns[1].constraints == ["COLLATE NOCASE", "DEFAULT 'x, y'", 'CHECK (length("a b") < 9)']
    assert d.without_rowid
    assert d.find_constraint("t_c_fkey") == (d.columns[2], 0)
    assert d.find_constraint("two") == (None, 0)
    d.drop_column("c")
    assert d.constraints == []  # the UNIQUE on it went too
    assert d.sql("t").endswith("WITHOUT ROWID")


def test_widening_an_integer_primary_key_keeps_it_numbering_new_rows(conn: apsw.Connection) -> None:
    run(conn, 'CREATE TABLE "a" ("id" serial NOT NULL PRIMARY KEY, "v" text)')
    conn.execute("INSERT INTO a (v) VALUES ('x')")
    run(conn, 'ALTER TABLE "a" ALTER COLUMN "id" TYPE bigint USING "id"::bigint')
    conn.execute("INSERT INTO a (v) VALUES ('y')")
    assert conn.execute("SELECT id, v FROM a ORDER BY id").fetchall() == [(1, "x"), (2, "y")]


def test_views_on_a_dropped_column_stop_it_or_go_with_cascade(conn: apsw.Connection) -> None:
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a INTEGER, b INTEGER)")
    conn.execute("CREATE VIEW va AS SELECT a FROM t")
    conn.execute("CREATE VIEW vva AS SELECT * FROM va")
    conn.execute("CREATE VIEW vb AS SELECT b FROM t")
    with pytest.raises(TableDefError) as refused:
        run(conn, "ALTER TABLE t DROP COLUMN a")
    assert refused.value.fields["sqlstate"] == "2BP01"
    assert "a" in [str(r[1]) for r in conn.execute("PRAGMA table_info(t)")]
    run(conn, "ALTER TABLE t DROP COLUMN a CASCADE")
    views = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'view'")}
    assert views == {"vb"}


def test_a_quoted_constraint_name_with_a_space_is_a_rebuild() -> None:
    """pg_dump writes the constraints of a table "Odd Name" as ``ADD CONSTRAINT "Odd Name_pkey" …``."""
    sql = translate(
        'ALTER TABLE ONLY public."Odd Name" ADD CONSTRAINT "Odd Name_Mixed_key" UNIQUE ("Mixed")'
    ).sql
    assert sql.startswith("SELECT sqlite_ha_rebuild(")
    assert '"table":"Odd Name"' in sql
