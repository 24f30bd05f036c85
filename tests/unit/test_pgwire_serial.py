"""SERIAL columns: the rowid alias SQLite numbers, with the PostgreSQL type they were kept for the catalog,
also under a named PRIMARY KEY constraint; and the catalog reads constraint names of tables with JSON."""

from __future__ import annotations

import apsw
import pytest

from sqlite_ha.db import rebuild
from sqlite_ha.server.pgwire.catalog.tables import Table, _Declared
from sqlite_ha.server.pgwire.sql.dialect import TranslationError, translate


@pytest.mark.parametrize(
    ("pg", "declared"),
    [
        ("CREATE TABLE t (id SERIAL NOT NULL, x INT, CONSTRAINT t_pk PRIMARY KEY (id))", "int4"),
        ("CREATE TABLE t (id SERIAL NOT NULL, x INT, PRIMARY KEY (id))", "int4"),
        ("CREATE TABLE t (id SMALLSERIAL PRIMARY KEY, x INT)", "int2"),
        ("CREATE TABLE t (id INTEGER GENERATED ALWAYS AS IDENTITY, x INT, PRIMARY KEY (id))", "int4"),
        ("CREATE TABLE t (id BIGSERIAL PRIMARY KEY, x INT)", "int8"),
    ],
)
def test_serial_is_the_rowid_alias_and_keeps_its_type(pg: str, declared: str) -> None:
    conn = apsw.Connection(":memory:")
    conn.execute(translate(pg).sql)
    conn.execute("INSERT INTO t (x) VALUES (7)")
    assert conn.execute("SELECT rowid, id, x FROM t").fetchall() == [(1, 1, 7)]  # numbered: the rowid alias
    table = Table.read(conn, "table", "t")
    assert table.columns[0].declared == declared
    # no nextval default: no sequence is behind it (a dump naming one would restore nowhere)
    assert table.columns[0].default is None
    assert [i.name for i in table.indexes if i.primary] == ["t_pk" if "t_pk" in pg else "t_pkey"]


def test_two_serial_columns_are_refused() -> None:
    with pytest.raises(TranslationError, match="only primary key"):
        translate("CREATE TABLE t (id SERIAL PRIMARY KEY, n SERIAL)")


def test_constraint_names_of_a_table_with_a_json_column() -> None:
    declared = _Declared.parse("t", "CREATE TABLE t (a INT, doc JSON TEXT, CONSTRAINT t_uq UNIQUE (a, doc))")
    assert declared.uniques == {("a", "doc"): "t_uq"}


def test_a_widened_serial_stays_the_rowid_alias_and_shows_its_new_type() -> None:
    """Django widens an AutoField to bigint (ALTER … TYPE bigint, a table rebuild): still numbered by SQLite,
    and the catalog shows bigint, as PostgreSQL does."""
    conn = apsw.Connection(":memory:")
    for pg in (
        'CREATE TABLE "a" ("id" serial NOT NULL PRIMARY KEY, "v" text)',
        'ALTER TABLE "a" ALTER COLUMN "id" TYPE bigint USING "id"::bigint',
    ):
        for piece in rebuild.split(translate(pg).sql):
            conn.execute(piece) if isinstance(piece, str) else rebuild.run(conn, piece)
    conn.execute("INSERT INTO a (v) VALUES ('y')")
    assert conn.execute("SELECT id, v FROM a").fetchall() == [(1, "y")]
    column = Table.read(conn, "table", "a").columns[0]
    assert column.declared == "int8"
    assert column.numbering == "serial"  # still shown with its implicit sequence (catalog/sequences.py)
