"""Keys SQLite would choose, chosen from the node's slot: every form of INSERT, on real SQLite.

Each test runs statements through ``Database.execute`` (the path of HTTP, PostgreSQL and the driver) on a
database whose node holds residue 3 of stride 16, and checks what SQLite stored: a key chosen for the client
is ≡ 3 (mod 16), above every key the table had, and it is the key the client is told (``last_insert_id``
and ``RETURNING``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sqlite_ha.changes.rowids import NoRowidSlot, Rowids, RowidSlot
from sqlite_ha.db.database import Database, DatabaseOptions
from sqlite_ha.db.dsn import parse_dsn
from sqlite_ha.db.statement import Result, Statement
from sqlite_ha.errors import HAError, StatementNotAllowed

STRIDE, RESIDUE = 16, 3


class Db:
    def __init__(self, path: Path, rowids: Rowids) -> None:
        self.rowids = rowids
        self.db = Database(parse_dsn(str(path), memory=True), DatabaseOptions(rowids=rowids))

    def run(self, sql: str, *params: Any) -> Result:
        return self.batch((sql, params))[-1]

    def batch(self, *statements: tuple[str, tuple[Any, ...]]) -> list[Result]:
        stmts = [Statement(sql=sql, bindings=params or None) for sql, params in statements]
        return asyncio.run(self.db.execute(stmts)).results

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.run(sql).rows


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Db]:
    rowids = Rowids(STRIDE)
    rowids.assign(RowidSlot(STRIDE, RESIDUE))
    d = Db(tmp_path / "app.db", rowids)
    d.run("CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, x TEXT)")
    d.run("CREATE TABLE p(id INTEGER PRIMARY KEY, x TEXT)")
    yield d
    d.db.close()


def ours(key: object) -> bool:
    return isinstance(key, int) and key > 0 and key % STRIDE == RESIDUE


def test_the_slot_rule() -> None:
    slot = RowidSlot(16, 3)
    assert [slot.next_after(b) for b in (0, 2, 3, 4, 18, 19, -50)] == [3, 3, 19, 19, 19, 35, 3]
    assert RowidSlot(1, 1).next_after(41) == 42  # stride 1: SQLite's max + 1
    assert RowidSlot(16, 16).next_after(0) == 16
    with pytest.raises(ValueError, match="invalid rowid slot"):
        RowidSlot(16, 0)


@pytest.mark.parametrize("table", ["t", "p"])
def test_a_key_left_to_the_database_is_ours_and_is_the_one_the_client_is_told(db: Db, table: str) -> None:
    db.run(f"INSERT INTO {table}(id, x) VALUES (40, 'explicit')")
    told = []
    for sql, params in [
        (f"INSERT INTO {table}(x) VALUES (?)", ("column list without the key",)),
        (f"INSERT INTO {table}(id, x) VALUES (NULL, ?)", ("explicit NULL",)),
        (f"INSERT INTO {table}(id, x) VALUES (?, ?)", (None, "parameter bound to NULL")),
        (f"INSERT INTO {table} VALUES (NULL, ?)", ("no column list",)),
        (f"INSERT INTO {table}(rowid, x) VALUES (NULL, ?)", ("the key named rowid",)),
        (f"INSERT OR REPLACE INTO {table}(x) VALUES (?)", ("insert or replace",)),
        (f"REPLACE INTO {table}(x) VALUES (?)", ("replace",)),
        (f"INSERT OR IGNORE INTO {table}(x) VALUES (?)", ("insert or ignore",)),
        (f"WITH v(a) AS (SELECT ?) INSERT INTO {table}(x) SELECT a FROM v", ("leading WITH",)),
    ]:
        result = db.run(sql, *params)
        assert result.rows_affected == 1
        told.append((result.last_insert_id, params[-1]))
    assert all(ours(key) for key, _ in told), told
    keys = [key for key, _ in told]
    assert keys == sorted(keys)
    assert keys[0] > 40  # above every key the table had
    assert db.rows(f"SELECT id, x FROM {table} WHERE id <> 40 ORDER BY id") == told


def test_explicit_keys_are_kept(db: Db) -> None:
    assert db.run("INSERT INTO t(id, x) VALUES (?, ?)", 7, "seven").last_insert_id == 7
    assert db.run("INSERT INTO t VALUES (8, 'eight')").last_insert_id == 8
    assert db.rows("SELECT id FROM t ORDER BY id") == [(7,), (8,)]


def test_multi_row_values_and_returning(db: Db) -> None:
    result = db.run("INSERT INTO t(x) VALUES (?), (?), ('c') RETURNING id, x", "a", "b")
    assert [x for _, x in result.rows] == ["a", "b", "c"]
    assert all(ours(k) for k, _ in result.rows)
    assert db.rows("SELECT id, x FROM t ORDER BY id") == result.rows
    mixed = db.run("INSERT INTO p(id, x) VALUES (NULL, 'a'), (100, 'b'), (NULL, 'c') RETURNING id")
    keys = [k for (k,) in mixed.rows]
    assert keys[1] == 100
    assert ours(keys[0])
    assert ours(keys[2])
    assert keys[0] != keys[2]


def test_insert_select_also_from_the_table_itself(db: Db) -> None:
    db.run("INSERT INTO p(x) VALUES ('a'), ('b')")
    result = db.run("INSERT INTO p(x) SELECT x || '2' FROM p ORDER BY x RETURNING id, x")
    assert sorted(x for _, x in result.rows) == ["a2", "b2"]
    rows = db.rows("SELECT id, x FROM p ORDER BY id")
    assert len(rows) == 4
    assert all(ours(k) for k, _ in rows)
    assert len({k for k, _ in rows}) == 4


def test_default_values(db: Db) -> None:
    first = db.run("INSERT INTO t DEFAULT VALUES")
    second = db.run("INSERT INTO t DEFAULT VALUES RETURNING id, x")
    assert ours(first.last_insert_id)
    assert ours(second.rows[0][0])
    assert second.rows[0][0] > first.last_insert_id
    assert db.rows("SELECT x FROM t") == [(None,), (None,)]


def test_upsert(db: Db) -> None:
    db.run("CREATE TABLE u(id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER)")
    sql = (
        "INSERT INTO u AS cur(name, n) VALUES (?, 1) "
        "ON CONFLICT(name) DO UPDATE SET n = cur.n + 1 RETURNING id"
    )
    first = db.run(sql, "a").rows[0][0]
    again = db.run(sql, "a").rows[0][0]
    other = db.run(sql, "b").rows[0][0]
    assert first == again
    assert ours(first)
    assert ours(other)
    assert other > first
    assert db.rows("SELECT name, n FROM u ORDER BY id") == [("a", 2), ("b", 1)]
    # an upsert after INSERT … SELECT (SQLite needs WHERE true there, which the rewrite adds)
    db.run("INSERT INTO u(name, n) SELECT 'c', 5 WHERE true ON CONFLICT DO NOTHING")
    assert ours(db.rows("SELECT id FROM u WHERE name = 'c'")[0][0])


def test_quoted_and_schema_qualified_names(db: Db) -> None:
    db.run('CREATE TABLE "odd ""name"""("Key Id" INTEGER PRIMARY KEY, [x y] TEXT)')
    for sql in [
        'INSERT INTO "odd ""name"""([x y]) VALUES (\'a\')',
        'INSERT INTO main."odd ""name"""(`x y`) VALUES (\'b\')',
        'INSERT INTO "main"."ODD ""NAME"""("Key Id", "x y") VALUES (NULL, \'c\')',
        "INSERT INTO 'odd \"name\"' VALUES (NULL, 'd')",
    ]:
        assert ours(db.run(sql).last_insert_id), sql
    assert db.rows('SELECT "x y" FROM "odd ""name""" ORDER BY 1') == [("a",), ("b",), ("c",), ("d",)]


def test_autoincrement_never_reuses_and_follows_other_nodes_keys(db: Db) -> None:
    top = db.run("INSERT INTO t(x) VALUES ('a')").last_insert_id
    db.run("DELETE FROM t")
    again = db.run("INSERT INTO t(x) VALUES ('b')").last_insert_id
    assert again > top
    assert ours(again)
    db.run("INSERT INTO t(id, x) VALUES (1000, 'from another node')")  # as applying would
    assert db.run("INSERT INTO t(x) VALUES ('c')").last_insert_id == 1000 + 1 + (RESIDUE - 1001) % STRIDE


def test_other_tables_are_left_to_sqlite(db: Db) -> None:
    db.run("CREATE TABLE nopk(a, b)")
    db.run("CREATE TABLE textpk(k TEXT PRIMARY KEY, v)")
    db.run("CREATE TABLE wr(k INTEGER PRIMARY KEY, v) WITHOUT ROWID")
    db.run("CREATE TABLE bigpk(k BIGINT PRIMARY KEY, v)")  # not INTEGER: not a rowid alias
    db.run("CREATE TABLE descpk(k INTEGER PRIMARY KEY DESC, v)")  # a quirk: not a rowid alias either
    assert db.run("INSERT INTO nopk VALUES (1, 2)").last_insert_id == 1
    assert db.run("INSERT INTO textpk VALUES ('a', 2)").last_insert_id == 1
    db.run("INSERT INTO wr VALUES (5, 2)")
    assert db.run("INSERT INTO bigpk(v) VALUES (1)").rows_affected == 1
    assert db.rows("SELECT k FROM bigpk") == [(None,)]
    assert db.run("INSERT INTO descpk(v) VALUES (1)").rows_affected == 1
    assert db.db.keys is not None
    assert db.db.keys.rewritten == 0


def test_a_text_of_several_statements(db: Db) -> None:
    db.run("INSERT INTO t(x) VALUES ('a'); INSERT INTO p(x) VALUES ('b'); SELECT 1")
    assert ours(db.rows("SELECT id FROM t")[0][0])
    assert ours(db.rows("SELECT id FROM p")[0][0])
    # a trigger body is one statement with the CREATE, and is not cut at its semicolons
    db.run(
        "CREATE TRIGGER tr AFTER INSERT ON t BEGIN SELECT CASE WHEN new.x = '' THEN 1 END; "
        "UPDATE p SET x = new.x; END; INSERT INTO p(x) VALUES ('after the trigger')"
    )
    assert ours(db.rows("SELECT max(id) FROM p")[0][0])


def test_schema_change_then_insert_in_one_text_is_refused_but_works_as_a_list(db: Db) -> None:
    with pytest.raises(StatementNotAllowed) as refused:
        db.run("CREATE TABLE n(id INTEGER PRIMARY KEY, x); INSERT INTO n(x) VALUES (1)")
    assert refused.value.hint is not None
    assert "separate statements" in refused.value.hint
    db.batch(("CREATE TABLE n(id INTEGER PRIMARY KEY, x)", ()), ("INSERT INTO n(x) VALUES (1)", ()))
    assert ours(db.rows("SELECT id FROM n")[0][0])


def test_a_table_recreated_with_a_key_is_rewritten(db: Db) -> None:
    db.run("CREATE TABLE r(a, b)")
    sql = "INSERT INTO r(b) VALUES (1)"
    db.run(sql)
    db.batch(("DROP TABLE r", ()), ("CREATE TABLE r(a INTEGER PRIMARY KEY, b)", ()))
    assert ours(db.run(sql).last_insert_id)


def test_without_a_slot_only_inserts_that_need_a_key_are_refused(tmp_path: Path) -> None:
    d = Db(tmp_path / "x.db", Rowids(STRIDE))
    d.run("CREATE TABLE t(id INTEGER PRIMARY KEY, x)")
    with pytest.raises(NoRowidSlot) as refused:
        d.run("INSERT INTO t(x) VALUES (1)")
    assert "rowid slot" in refused.value.message
    assert d.run("INSERT INTO t(id, x) VALUES (5, 1)").last_insert_id == 5
    assert d.rows("SELECT id FROM t") == [(5,)]
    d.rowids.assign(RowidSlot(STRIDE, RESIDUE))
    assert d.run("INSERT INTO t(x) VALUES (1)").last_insert_id == 19
    d.db.close()


def test_stride_one_is_sqlite_itself(tmp_path: Path) -> None:
    d = Db(tmp_path / "x.db", Rowids.plain())
    d.run("CREATE TABLE t(id INTEGER PRIMARY KEY, x)")
    assert [d.run("INSERT INTO t(x) VALUES (1)").last_insert_id for _ in range(3)] == [1, 2, 3]
    assert d.db.keys is not None
    assert d.db.keys.rewritten == 0
    d.db.close()


def test_two_nodes_never_choose_the_same_key(tmp_path: Path) -> None:
    """Two databases with the same rows, each inserting without seeing the other's inserts."""
    nodes = []
    for residue in (1, 2):
        rowids = Rowids(STRIDE)
        rowids.assign(RowidSlot(STRIDE, residue))
        d = Db(tmp_path / f"n{residue}.db", rowids)
        d.run("CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, x)")
        d.run("INSERT INTO t(id, x) VALUES (1, 'shared')")
        nodes.append(d)
    keys = [
        {d.run("INSERT INTO t(x) VALUES (?), (?)", i, i).last_insert_id for i in range(20)} for d in nodes
    ]
    assert not keys[0] & keys[1]
    for d in nodes:
        d.db.close()


def test_errors_still_name_the_problem(db: Db) -> None:
    with pytest.raises(HAError, match="2 values for 1 columns"):
        db.run("INSERT INTO t(x) VALUES (1, 2)")
    with pytest.raises(HAError, match="table t has 2 columns but 1 values were supplied"):
        db.run("INSERT INTO t VALUES (1)")
    with pytest.raises(HAError, match="no such table"):
        db.run("INSERT INTO nothere(x) VALUES (1)")


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO p(x) VALUES ('a') -- a comment at the end",
        "INSERT /* here */ INTO p(x) /* there */ VALUES ('a' /* inside */)   \n  ",
        "INSERT INTO p(x) VALUES ('it''s; -- not a comment')",
        "INSERT INTO p(x) VALUES ('a');  ",
        "insert into P(X) values ('a') returning ID",
        "INSERT INTO p(x) VALUES ('returning conflict')",
    ],
)
def test_comments_strings_and_case(db: Db, sql: str) -> None:
    result = db.run(sql)
    key = result.rows[0][0] if result.rows else result.last_insert_id
    assert ours(key)
    assert db.rows("SELECT count(*) FROM p") == [(1,)]


def test_text_sqlite_cannot_parse_is_left_to_sqlite(db: Db) -> None:
    with pytest.raises(HAError, match="unrecognized token"):
        db.run("INSERT INTO p(x) VALUES ('unterminated)")


def test_a_long_values_list(db: Db) -> None:
    """Too long to be tokenized: the rows go through the common-table-expression form."""
    values = ", ".join(f"('row {i}')" for i in range(600))
    assert len(values) > 4096
    db.run(f"INSERT INTO t(x) VALUES {values}")
    keys = [k for (k,) in db.rows("SELECT id FROM t ORDER BY id")]
    assert len(keys) == 600
    assert all(ours(k) for k in keys)
    assert db.rows("SELECT x FROM t ORDER BY id LIMIT 1") == [("row 0",)]


def test_a_column_named_rowid_is_not_the_key(db: Db) -> None:
    db.run("CREATE TABLE r(id INTEGER PRIMARY KEY, rowid INTEGER, x)")
    db.run("INSERT INTO r(id, rowid, x) VALUES (100, 999999, 'explicit')")
    assert db.run("INSERT INTO r(rowid, x) VALUES (5, 'chosen')").last_insert_id == 115
