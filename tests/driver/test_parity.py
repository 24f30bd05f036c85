"""The driver against CPython's ``sqlite3``: the same operations on both, the same observations (results,
``description``, ``rowcount``, ``lastrowid``, ``in_transaction``, ``total_changes``, exception classes,
SQLite error codes and messages)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import sqlite_ha

Script = Callable[[Any, list[Any]], None]


def observe(conn: Any, seen: list[Any], sql: str, params: Any = (), *, many: bool = False) -> Any:
    """Run one statement on a fresh cursor and record what a program can see of it."""
    cur = conn.cursor()
    try:
        if many:
            cur.executemany(sql, params)
        else:
            cur.execute(sql, params)
    except Exception as e:
        seen.append(
            (
                sql,
                "error",
                type(e).__name__,
                getattr(e, "sqlite_errorname", None),
                getattr(e, "sqlite_errorcode", None),
                str(e) if getattr(e, "sqlite_errorname", None) else None,
                conn.in_transaction,
            )
        )
        return None
    rows = cur.fetchall()
    seen.append(
        (sql, cur.description, [tuple(r) for r in rows], cur.rowcount, cur.lastrowid, conn.in_transaction)
    )
    return rows


def both(tmp_path: Path, script: Script, **kwargs: Any) -> None:
    """Run ``script`` against sqlite3 and the driver, each on a new file, and compare what both saw."""
    ref: list[Any] = []
    ours: list[Any] = []
    a = sqlite3.connect(str(tmp_path / "ref.db"), **kwargs)
    try:
        script(a, ref)
        ref.append(("total_changes", a.total_changes))
    finally:
        a.close()
    b = sqlite_ha.connect(str(tmp_path / "ha.db"), **kwargs)
    try:
        script(b, ours)
        ours.append(("total_changes", b.total_changes))
    finally:
        b.close()
    assert ours == ref


def basics(conn: Any, seen: list[Any]) -> None:
    observe(conn, seen, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n REAL)")
    observe(conn, seen, "INSERT INTO t (name, n) VALUES (?, ?)", ("a", 1.5))
    observe(conn, seen, "INSERT INTO t (name, n) VALUES (:name, :n)", {"name": "b", "n": None})
    observe(conn, seen, "INSERT INTO t (name) VALUES (?)", [("c",), ("d",), ("e",)], many=True)
    observe(conn, seen, "SELECT id, name, n AS number FROM t ORDER BY id")
    observe(conn, seen, "SELECT * FROM t WHERE id > 100")
    observe(conn, seen, "UPDATE t SET n = 2 WHERE id <= 3")
    observe(conn, seen, "UPDATE t SET n = 2 WHERE id > 100")
    observe(conn, seen, "DELETE FROM t WHERE id = 5")
    observe(conn, seen, "REPLACE INTO t (id, name) VALUES (2, 'bb')")
    conn.commit()
    observe(conn, seen, "SELECT count(*), sum(n) FROM t")
    observe(conn, seen, "INSERT OR IGNORE INTO t (name) VALUES ('a')")
    observe(conn, seen, "WITH x AS (SELECT 1) INSERT INTO t (name) SELECT 'w' FROM x")
    observe(conn, seen, "VALUES (1, 'x'), (2, 'y')")
    observe(conn, seen, "PRAGMA table_info(t)")
    conn.rollback()
    observe(conn, seen, "SELECT name FROM t ORDER BY id")


def errors(conn: Any, seen: list[Any]) -> None:
    observe(
        conn, seen, "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE CHECK (name != 'x'))"
    )
    observe(conn, seen, "INSERT INTO t (name) VALUES ('a')")
    observe(conn, seen, "INSERT INTO t (name) VALUES ('a')")  # UNIQUE
    observe(conn, seen, "INSERT INTO t (name) VALUES (NULL)")  # NOT NULL
    observe(conn, seen, "INSERT INTO t (name) VALUES ('x')")  # CHECK
    observe(conn, seen, "INSERT INTO t (id, name) VALUES (1, 'z')")  # PRIMARY KEY
    observe(conn, seen, "SELEC 1")  # syntax
    observe(conn, seen, "SELECT nope FROM t")
    observe(conn, seen, "SELECT * FROM missing")
    observe(conn, seen, "INSERT INTO t (name) VALUES (?)", ("a", "b"))  # too many bindings
    observe(conn, seen, "SELECT 1; SELECT 2")
    observe(conn, seen, "SELECT * FROM t", [(1,)], many=True)
    observe(conn, seen, "COMMIT")
    observe(conn, seen, "SELECT name FROM t")
    conn.commit()
    observe(conn, seen, "COMMIT")
    observe(conn, seen, "ROLLBACK")
    observe(conn, seen, "RELEASE nosuch")


def explicit_transactions(conn: Any, seen: list[Any]) -> None:
    observe(conn, seen, "CREATE TABLE t (x)")
    observe(conn, seen, "BEGIN")
    observe(conn, seen, "BEGIN")
    observe(conn, seen, "INSERT INTO t VALUES (1)")
    observe(conn, seen, "SAVEPOINT s1")
    observe(conn, seen, "INSERT INTO t VALUES (2)")
    observe(conn, seen, "ROLLBACK TO s1")
    observe(conn, seen, "INSERT INTO t VALUES (3)")
    observe(conn, seen, "RELEASE SAVEPOINT s1")
    observe(conn, seen, "COMMIT")
    observe(conn, seen, "SELECT x FROM t ORDER BY x")
    observe(conn, seen, "SAVEPOINT outer")  # opens a transaction
    observe(conn, seen, "INSERT INTO t VALUES (4)")
    observe(conn, seen, "RELEASE outer")  # and commits it
    observe(conn, seen, "BEGIN IMMEDIATE TRANSACTION")
    observe(conn, seen, "DELETE FROM t")
    observe(conn, seen, "ROLLBACK TRANSACTION")
    observe(conn, seen, "SELECT x FROM t ORDER BY x")


def implicit_legacy(conn: Any, seen: list[Any]) -> None:
    observe(conn, seen, "CREATE TABLE t (x)")  # DDL opens no transaction (Python 3.6+)
    observe(conn, seen, "SELECT * FROM t")
    observe(conn, seen, "INSERT INTO t VALUES (1)")  # opens one
    observe(conn, seen, "CREATE TABLE u (y)")  # runs inside it
    conn.rollback()
    # the node's own tables (_ha_*: change capture, outbox, positions) live in the file too
    observe(
        conn, seen, "SELECT name FROM sqlite_schema WHERE name NOT LIKE '!_ha!_%' ESCAPE '!' ORDER BY name"
    )
    observe(conn, seen, "INSERT INTO t VALUES (2)")
    conn.executescript("INSERT INTO t VALUES (3); CREATE TABLE v (z); INSERT INTO v VALUES (9);")
    seen.append(("after script", conn.in_transaction))
    conn.rollback()
    observe(conn, seen, "SELECT x FROM t ORDER BY x")
    observe(conn, seen, "SELECT z FROM v")


@pytest.mark.parametrize("script", [basics, errors, explicit_transactions, implicit_legacy])
def test_same_as_sqlite3(tmp_path: Path, script: Script) -> None:
    both(tmp_path, script)


@pytest.mark.parametrize("script", [basics, explicit_transactions])
def test_same_as_sqlite3_in_autocommit(tmp_path: Path, script: Script) -> None:
    both(tmp_path, script, isolation_level=None)


def test_lastrowid_kept_by_statements_that_insert_nothing(tmp_path: Path) -> None:
    def script(conn: Any, seen: list[Any]) -> None:
        cur = conn.cursor()
        seen.append(cur.lastrowid)
        cur.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v UNIQUE)")
        seen.append(cur.lastrowid)
        cur.execute("INSERT INTO t (v) VALUES (10)")
        cur.execute("INSERT INTO t (v) VALUES (20)")
        seen.append(cur.lastrowid)
        cur.execute("UPDATE t SET v = v + 1")
        seen.append(cur.lastrowid)
        cur.execute("SELECT * FROM t")
        seen.append(cur.lastrowid)
        cur.executemany("INSERT INTO t (v) VALUES (?)", [(1,), (2,)])
        seen.append(cur.lastrowid)
        cur.execute("INSERT OR IGNORE INTO t (v) VALUES (1)")
        seen.append(cur.lastrowid)

    both(tmp_path, script)


def test_row_factory_same_as_sqlite3_row(tmp_path: Path) -> None:
    def script(conn: Any, seen: list[Any]) -> None:
        conn.row_factory = sqlite3.Row
        row = conn.execute("SELECT 1 AS a, 'x' AS B").fetchone()
        seen.append((row.keys(), row["a"], row["b"], row[1], tuple(row), len(row)))
        with pytest.raises(IndexError):
            row["nope"]

    both(tmp_path, script)
