"""The catalog's answers to what pg_dump and the JDBC driver ask (beyond psql and SQLAlchemy), on a real
SQLite schema: views and their dependencies, type modifiers, reg* names, records, session functions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import apsw
import pytest

from sqlite_ha.db.statement import Result
from sqlite_ha.server.pgwire import isolation
from sqlite_ha.server.pgwire.catalog.activity import SessionContext, SessionView
from sqlite_ha.server.pgwire.catalog.catalog import Catalog, prepare
from sqlite_ha.server.pgwire.catalog.functions import FunctionError, format_type, quote_ident, quote_literal
from sqlite_ha.server.pgwire.errors import PgError
from sqlite_ha.server.pgwire.sql.dialect import split_statements, translate, translate_catalog
from sqlite_ha.server.pgwire.types import values as t

SCHEMA = [
    "CREATE TABLE authors (id BIGINT PRIMARY KEY, name VARCHAR(100) NOT NULL UNIQUE, "
    "active BOOLEAN DEFAULT true)",
    "CREATE TABLE books (id BIGINT PRIMARY KEY, author_id BIGINT REFERENCES authors(id), "
    "price NUMERIC(10,2), meta JSON TEXT, CONSTRAINT price_positive CHECK (price >= 0))",
    "CREATE VIEW a_view AS SELECT b.id, a.name FROM books b JOIN authors a ON a.id = b.author_id",
]


@pytest.fixture(scope="module")
def catalog() -> Iterator[Catalog]:
    db = apsw.Connection(":memory:")
    for ddl in SCHEMA:
        for statement in split_statements(translate(ddl).sql):
            db.execute(statement)
    cat = Catalog("app.db")
    cat.sync(db)
    yield cat
    db.close()


def context(**settings: str) -> SessionContext:
    me = SessionView(
        pid=42,
        user="ha",
        database="app.db",
        application_name="t",
        backend_start=0.0,
        state="active",
        query="q",
    )
    return SessionContext(me=me, settings=dict(settings), databases=["app.db", "other.db"])


def query(cat: Catalog, sql: str, ctx: SessionContext | None = None, *params: Any) -> Result:
    return cat.run(translate_catalog(prepare(sql)).sql, params, ctx)


def test_type_modifiers_are_kept_and_printed() -> None:
    assert t.declared_type("VARCHAR(100)") == (t.VARCHAR, 104)
    assert t.declared_type("NUMERIC(10, 2)") == (t.NUMERIC, (10 << 16 | 2) + 4)
    assert t.declared_type("TEXT") == (t.TEXT, -1)
    assert format_type(t.VARCHAR, 104) == "character varying(100)"
    assert format_type(t.NUMERIC, (10 << 16 | 2) + 4) == "numeric(10,2)"
    assert format_type(t.TIMESTAMPTZ, 3) == "timestamp(3) with time zone"
    assert format_type(t.VARCHAR, -1) == "character varying"
    assert (quote_ident("ok_name"), quote_ident("Mixed"), quote_ident('a"b')) == (
        "ok_name",
        '"Mixed"',
        '"a""b"',
    )
    assert (quote_literal("it's"), quote_literal("a\\b")) == ("'it''s'", "E'a\\\\b'")


def test_columns_carry_their_modifiers(catalog: Catalog) -> None:
    rows = query(
        catalog,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid WHERE c.relname = 'authors' ORDER BY a.attnum",
    ).rows
    assert rows == [("id", "bigint"), ("name", "character varying(100)"), ("active", "boolean")]
    default = query(catalog, "SELECT pg_get_expr(adbin, adrelid) FROM pg_attrdef").rows
    assert default == [("true",)]  # as PostgreSQL prints it


def test_constraints_of_a_table_with_a_json_column(catalog: Catalog) -> None:
    """The node declares json columns ``JSON TEXT`` (text affinity), which sqlglot does not read: the
    named constraints and the CHECKs must not be lost on the way."""
    rows = query(catalog, "SELECT conname, contype FROM pg_constraint ORDER BY conname").rows
    assert rows == [
        ("authors_name_key", "u"),
        ("authors_pkey", "p"),
        ("books_author_id_fkey", "f"),
        ("books_pkey", "p"),
        ("price_positive", "c"),
    ]


def test_views_depend_on_what_they_read(catalog: Catalog) -> None:
    rows = query(
        catalog,
        "SELECT d.refobjid::regclass::text, d.deptype FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
        "WHERE d.classid = 'pg_rewrite'::regclass AND r.ev_class = 'a_view'::regclass ORDER BY 1",
    ).rows
    assert rows == [("a_view", "i"), ("authors", "n"), ("books", "n")]
    viewdef = query(catalog, "SELECT pg_get_viewdef('a_view'::regclass)", context(search_path="")).rows
    assert viewdef == [
        (" SELECT b.id, a.name FROM public.books AS b JOIN public.authors AS a ON a.id = b.author_id;",)
    ]


def test_foreign_keys_name_their_schema_when_the_search_path_lacks_it(catalog: Catalog) -> None:
    sql = "SELECT pg_get_constraintdef(oid), conindid::regclass::text FROM pg_constraint WHERE contype = 'f'"
    assert query(catalog, sql, context()).rows == [
        ("FOREIGN KEY (author_id) REFERENCES authors(id)", "authors_pkey")
    ]
    assert query(catalog, sql, context(search_path="")).rows[0][0] == (
        "FOREIGN KEY (author_id) REFERENCES public.authors(id)"
    )


def test_records_of_expandarray_and_tableoid(catalog: Catalog) -> None:
    result = query(
        catalog,
        "SELECT r.name, (r.keys).x, (r.keys).n FROM (SELECT c.relname AS name, "
        "information_schema._pg_expandarray(i.indkey) AS keys FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'authors_pkey') r",
    )
    assert result.rows == [("authors_pkey", 1, 1)]
    found = query(catalog, "SELECT n.tableoid, c.tableoid AS t FROM pg_namespace n, pg_class c LIMIT 1")
    assert (found.columns, found.rows) == (["tableoid", "t"], [(2615, 1259)])


def test_session_functions_answer_for_the_session(catalog: Catalog) -> None:
    ctx = context()
    assert query(catalog, "SELECT pg_backend_pid(), pg_is_in_recovery()", ctx).rows == [(42, 0)]
    assert query(catalog, "SELECT current_schemas(true)", ctx).rows == [("{pg_catalog,public}",)]
    assert query(catalog, "SELECT set_config('search_path', '', false)", ctx).rows == [("",)]
    assert ctx.settings == {"search_path": ""}
    assert query(catalog, "SELECT current_schemas(false), current_setting('search_path')", ctx).rows == [
        ("{}", "")
    ]
    with pytest.raises(FunctionError, match="unrecognized configuration parameter") as e:
        query(catalog, "SELECT current_setting('no_such')", ctx)
    assert e.value.code == "42704"
    assert query(catalog, "SELECT current_setting('no_such', true)", ctx).rows == [(None,)]
    settings = query(catalog, "SELECT name, setting, source FROM pg_settings WHERE name = 'search_path'", ctx)
    assert settings.rows == [("search_path", "", "session")]
    databases = query(catalog, "SELECT oid, datname FROM pg_database ORDER BY oid", ctx).rows
    assert databases == [(16384, "app.db"), (16385, "other.db")]
    owner = query(
        catalog, "SELECT pg_get_userbyid(nspowner), nspacl FROM pg_namespace WHERE nspname = 'public'"
    )
    assert owner.rows == [
        ("pg_database_owner", "{pg_database_owner=UC/pg_database_owner,=U/pg_database_owner}")
    ]


def test_transaction_modes_parse_as_postgresql_reads_them() -> None:
    base = isolation.Mode()
    assert isolation.parse_modes("ISOLATION LEVEL REPEATABLE READ, READ ONLY", base) == isolation.Mode(
        "repeatable read", True
    )
    assert isolation.parse_modes("read write  isolation level serializable not deferrable", base).snapshot
    assert not isolation.parse_modes("", base).snapshot
    with pytest.raises(PgError) as e:
        isolation.parse_modes("ISOLATION LEVEL SOMETIMES", base)
    assert e.value.code == "42601"
