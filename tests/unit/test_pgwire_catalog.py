"""The PostgreSQL catalog over a real SQLite schema: what clients' catalog queries answer, in which types."""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from sqlite_ha.db.statement import Result
from sqlite_ha.server.pgwire.catalog.catalog import Catalog, empty_answer, is_catalog_query, prepare
from sqlite_ha.server.pgwire.sql.dialect import split_statements, translate, translate_catalog
from sqlite_ha.server.pgwire.types import arrays
from sqlite_ha.server.pgwire.types import values as t

SCHEMA = [
    "CREATE TABLE authors (id SERIAL NOT NULL, name VARCHAR(50), PRIMARY KEY (id), UNIQUE (name))",
    "CREATE TABLE books (id SERIAL NOT NULL, author_id INTEGER NOT NULL, title VARCHAR(100), "
    "isbn VARCHAR(20), year INTEGER, PRIMARY KEY (id), CONSTRAINT uq_title_year UNIQUE (title, year), "
    "CONSTRAINT ck_year CHECK (year > 0), FOREIGN KEY(author_id) REFERENCES authors (id))",
    "CREATE UNIQUE INDEX ux_books_isbn ON books (isbn)",
    "CREATE INDEX ix_books_title_year ON books (title, year DESC)",
    "CREATE INDEX ix_books_lower_title ON books (lower(title)) WHERE year > 2000",
    "CREATE TABLE tags (a INTEGER NOT NULL, b VARCHAR(10) NOT NULL, note VARCHAR, "
    "CONSTRAINT tags_pk PRIMARY KEY (a, b), UNIQUE (b, a), "
    "FOREIGN KEY(a) REFERENCES books (id) ON DELETE CASCADE, CHECK (length(b) < 5))",
]

DATA = Path(__file__).parent.parent / "data"
ENTRY = re.compile(r"^\[(?P<client>[^\]]+)\] (?P<kind>LOG|DETAIL):  (?P<text>.*)$")
PARAMETER = re.compile(r"\$(\d+) = (NULL|'(?:[^']|'')*')")


@pytest.fixture(scope="module")
def catalog() -> Iterator[Catalog]:
    db = apsw.Connection(":memory:")
    for ddl in SCHEMA:
        for statement in split_statements(translate(ddl).sql):
            db.execute(statement)
    cat = Catalog("app")
    cat.sync(db)
    yield cat
    db.close()


def query(cat: Catalog, sql: str, *params: Any) -> Result:
    translation = translate_catalog(prepare(sql))
    return cat.run(translation.sql, params)


def described(cat: Catalog, sql: str) -> list[tuple[str, str | None]]:
    translation = translate_catalog(prepare(sql))
    return cat.describe(translation.sql, translation.param_count)


def oid(cat: Catalog, table: str) -> int:
    (row,) = query(cat, "SELECT oid FROM pg_catalog.pg_class WHERE relname = $1", table).rows
    return int(row[0])  # type: ignore[arg-type]


def client_statements() -> list[Any]:
    """The catalog queries of both captures, with the parameters PostgreSQL logged for them."""
    found: list[tuple[str, list[str], tuple[str | None, ...]]] = []
    for name in ("pg-client-statements.log", "pg-catalog-statements.log"):
        for line in (DATA / name).read_text().splitlines():
            if (m := ENTRY.match(line)) and m["kind"] == "LOG":
                sql = re.sub(r"^(?:statement|execute [^:]+): ", "", m["text"])
                found.append((m["client"], [sql], ()))
            elif m and m["kind"] == "DETAIL" and found and m["text"].startswith("parameters:"):
                values = [
                    None if v == "NULL" else v[1:-1].replace("''", "'")
                    for _, v in PARAMETER.findall(m["text"])
                ]
                found[-1] = (found[-1][0], found[-1][1], tuple(values))
            elif line.startswith("\t") and found:
                found[-1][1].append(line[1:])
    params = []
    for i, (client, lines, values) in enumerate(found):
        for sql in split_statements("\n".join(lines)):
            if is_catalog_query(sql):
                params.append(pytest.param(sql, values, id=f"{i:02d}-{client}-{' '.join(sql.split())[:40]}"))
    return params


@pytest.mark.parametrize(("sql", "params"), client_statements())
def test_client_catalog_queries_run(catalog: Catalog, sql: str, params: tuple[str | None, ...]) -> None:
    """Every catalog query real clients sent translates and runs: none falls back to an empty answer."""
    translation = translate_catalog(prepare(sql))
    catalog.describe(translation.sql, translation.param_count)
    padded = (params + (None,) * translation.param_count)[: translation.param_count]
    catalog.run(translation.sql, padded)


def test_array_columns_are_announced_as_arrays(catalog: Catalog) -> None:
    sql = (
        "SELECT i.indkey, i.indoption, c.conkey, c.confkey FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_constraint c ON c.conindid = i.indexrelid WHERE c.conname = 'uq_title_year'"
    )
    assert [decl for _, decl in described(catalog, sql)] == ["int2vector", "int2vector", "_int2", "_int2"]
    assert query(catalog, sql).rows == [("3 5", "0 0", "{3,5}", None)]
    descending = (
        "SELECT indoption FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = indexrelid "
    )
    assert query(catalog, descending + "WHERE relname = 'ix_books_title_year'").rows == [("0 3",)]


def test_set_returning_functions_run_in_lockstep(catalog: Catalog) -> None:
    rows = query(
        catalog,
        "SELECT unnest(ARRAY[1, 2, 3]) AS a, unnest(ARRAY['x']) AS b, generate_subscripts(ARRAY[5, 6, 7], 1)",
    ).rows
    assert rows == [(1, "x", 1), (2, None, 2), (3, None, 3)]
    # int2vector subscripts start at 0, arrays' at 1
    vector = query(
        catalog,
        "SELECT unnest(i.indkey) AS attnum, generate_subscripts(i.indkey, 1) AS ord, i.indkey[0], "
        "i.indkey[1] FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
        "WHERE c.relname = 'uq_title_year' ORDER BY 2",
    ).rows
    assert vector == [(3, 0, 3, 5), (5, 1, 3, 5)]
    assert query(
        catalog, "SELECT conkey[1], conkey[2] FROM pg_constraint WHERE conname = 'uq_title_year'"
    ).rows == [(3, 5)]


def test_functions_in_from(catalog: Catalog) -> None:
    sql = (
        "SELECT k.attnum, k.n, a.attname FROM pg_catalog.pg_constraint c, "
        "unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) "
        "JOIN pg_catalog.pg_attribute a ON a.attnum = k.attnum "
        "WHERE c.conname = 'tags_b_a_key' AND a.attrelid = c.conrelid ORDER BY k.n"
    )
    assert query(catalog, sql).rows == [(2, 1, "b"), (1, 2, "a")]
    assert query(catalog, "SELECT s FROM generate_series(2, 6, 2) s").rows == [(2,), (4,), (6,)]
    assert query(catalog, "SELECT x FROM pg_catalog.pg_partition_ancestors(42) AS a(x)").rows == [(42,)]


def test_array_agg_orders_and_prints_like_postgresql(catalog: Catalog) -> None:
    sql = (
        "SELECT array_agg(attname::text ORDER BY attnum DESC) AS names, "
        "array_agg(attnotnull ORDER BY attnum) AS required, array_agg(attnum ORDER BY attnum) AS numbers "
        "FROM pg_catalog.pg_attribute WHERE attrelid = 'tags'::regclass"
    )
    assert described(catalog, sql) == [("names", "_text"), ("required", "_bool"), ("numbers", "_int8")]
    assert query(catalog, sql).rows == [("{note,b,a}", "{t,t,f}", "{1,2,3}")]
    # through a subquery the types follow, and `= ANY` reads the stored arrays
    nested = (
        "SELECT x.names, x.n > 0 AS some FROM (SELECT array_agg(attname::text) AS names, count(*) AS n "
        "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_constraint c ON c.conrelid = a.attrelid "
        "WHERE c.conname = 'tags_pk' AND a.attnum = ANY(c.conkey)) x"
    )
    assert described(catalog, nested) == [("names", "_text"), ("some", "bool")]
    assert query(catalog, nested).rows == [("{a,b}", 1)]
    referencing = (
        "SELECT relname FROM pg_catalog.pg_class WHERE oid = ANY(ARRAY(SELECT conrelid "
        "FROM pg_catalog.pg_constraint WHERE contype = 'f')) ORDER BY 1"
    )
    assert query(catalog, referencing).rows == [("books",), ("tags",)]


def test_reg_casts_name_when_shown_and_number_when_compared(catalog: Catalog) -> None:
    books = oid(catalog, "books")
    sql = (
        "SELECT c.oid::regclass AS name, c.oid::regclass::text AS text, 23::regtype::text AS type "
        "FROM pg_catalog.pg_class c WHERE c.oid = 'books'::regclass AND c.oid = $1::regclass"
    )
    assert query(catalog, sql, str(books)).rows == [("books", "books", "integer")]


def test_definitions(catalog: Catalog) -> None:
    sql = (
        "SELECT conname, contype, pg_get_constraintdef(oid, true) FROM pg_catalog.pg_constraint "
        "WHERE conrelid = $1 ORDER BY conname"
    )
    assert query(catalog, sql, oid(catalog, "tags")).rows == [
        ("tags_a_fkey", "f", "FOREIGN KEY (a) REFERENCES books(id) ON DELETE CASCADE"),
        ("tags_b_a_key", "u", "UNIQUE (b, a)"),
        ("tags_b_check", "c", "CHECK (length(b) < 5)"),
        ("tags_pk", "p", "PRIMARY KEY (a, b)"),
    ]
    indexes = (
        "SELECT c.relname, pg_get_indexdef(i.indexrelid, 0, true), pg_get_indexdef(i.indexrelid, 1, true) "
        "FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = $1 ORDER BY 1"
    )
    assert query(catalog, indexes, oid(catalog, "books")).rows == [
        ("books_pkey", "CREATE UNIQUE INDEX books_pkey ON public.books USING btree (id)", "id"),
        (
            "ix_books_lower_title",
            "CREATE INDEX ix_books_lower_title ON public.books USING btree (lower(title)) WHERE year > 2000",
            "lower(title)",
        ),
        (
            "ix_books_title_year",
            "CREATE INDEX ix_books_title_year ON public.books USING btree (title, year DESC)",
            "title",
        ),
        (
            "uq_title_year",
            "CREATE UNIQUE INDEX uq_title_year ON public.books USING btree (title, year)",
            "title",
        ),
        ("ux_books_isbn", "CREATE UNIQUE INDEX ux_books_isbn ON public.books USING btree (isbn)", "isbn"),
    ]
    triggers = (
        "SELECT relname, relhastriggers, relchecks FROM pg_catalog.pg_class WHERE relkind = 'r' ORDER BY 1"
    )
    assert query(catalog, triggers).rows == [("authors", 1, 0), ("books", 1, 1), ("tags", 1, 1)]


def test_queries_over_empty_catalogs_need_no_fallback() -> None:
    assert empty_answer("SELECT a, b FROM pg_catalog.pg_trigger") == 2
    assert empty_answer("SELECT a FROM pg_catalog.pg_class") is None


@pytest.mark.parametrize(
    ("text", "oid", "decoded", "lower"),
    [
        ('{a,NULL,"b c","","x\\"y"}', t.TEXT_ARRAY, '["a",null,"b c","","x\\"y"]', 1),
        ("{t,f}", 1000, "[1,0]", 1),
        ("{1,-2,3}", 1016, "[1,-2,3]", 1),
        ("1 2 3", 22, "[1,2,3]", 0),
    ],
)
def test_arrays_on_the_wire(text: str, oid: int, decoded: str, lower: int) -> None:
    """Printed as PostgreSQL prints them, sent in its binary format, received as the JSON SQLite reads."""
    array = arrays.ARRAY_TYPES[oid]
    assert t.oid_for_declared(array.name) == oid
    assert arrays.literal(arrays.items(text), array) == text
    binary = t.to_binary(text, oid)
    assert struct.unpack_from(">iiIii", binary) == (
        1,
        int("NULL" in text),
        array.element,
        len(arrays.items(text)),
        lower,
    )
    assert t.decode_param(binary, oid, True) == decoded
    assert t.to_binary("{}", 1028) == struct.pack(">iiI", 0, 0, 26)
