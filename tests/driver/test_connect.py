"""The first thing an app does: connect, create, write, commit, read back."""

from __future__ import annotations

import sqlite_ha


def test_connect_write_commit_read(dsn: str) -> None:
    conn = sqlite_ha.connect(dsn)
    conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
    cur = conn.execute("INSERT INTO t (name) VALUES (?)", ("ada",))
    assert (cur.lastrowid, cur.rowcount, conn.in_transaction) == (1, 1, True)
    conn.commit()
    assert not conn.in_transaction
    cur = conn.execute("SELECT id, name FROM t")
    assert [d[0] for d in cur.description] == ["id", "name"]
    assert cur.fetchall() == [(1, "ada")]
    conn.close()


def test_two_connections_share_one_node(dsn: str) -> None:
    a = sqlite_ha.connect(dsn)
    b = sqlite_ha.connect(dsn)
    assert a.connector is b.connector
    a.execute("CREATE TABLE t (x)")
    with a:
        a.execute("INSERT INTO t VALUES (1)")
    assert b.execute("SELECT x FROM t").fetchall() == [(1,)]
