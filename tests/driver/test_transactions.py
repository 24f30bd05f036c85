"""Transactions: sqlite3's implicit ones, explicit ones, the context manager, autocommit, and what an open
transaction does to other connections (it holds the database's one writer)."""

from __future__ import annotations

import gc
import threading
import time

import pytest

import sqlite_ha
from sqlite_ha.testing import wait_for


def setup(dsn: str, **kwargs: object) -> sqlite_ha.Connection:
    conn = sqlite_ha.connect(dsn, **kwargs)  # type: ignore[arg-type]
    conn.execute("CREATE TABLE IF NOT EXISTS t (x)")
    return conn


def count(conn: sqlite_ha.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])


def test_commit_publishes_to_other_connections_and_rollback_discards(dsn: str) -> None:
    a, b = setup(dsn), setup(dsn)
    a.execute("INSERT INTO t VALUES (1)")
    assert a.in_transaction
    assert count(a) == 1
    assert count(b) == 0  # not committed: other connections read the last committed state
    a.commit()
    assert count(b) == 1
    a.execute("INSERT INTO t VALUES (2)")
    a.rollback()
    assert not a.in_transaction
    assert count(a) == 1 == count(b)


def test_context_manager_commits_or_rolls_back(dsn: str) -> None:
    conn = setup(dsn)
    with conn:
        conn.execute("INSERT INTO t VALUES (1)")
    assert not conn.in_transaction
    assert count(conn) == 1

    def fail_inside() -> None:
        with conn:
            conn.execute("INSERT INTO t VALUES (2)")
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_inside()
    assert not conn.in_transaction
    assert count(conn) == 1
    with conn:  # the connection stays usable after the block, as sqlite3's
        conn.execute("INSERT INTO t VALUES (3)")
    assert count(conn) == 2


def test_isolation_level_none_is_autocommit(dsn: str) -> None:
    conn = setup(dsn, isolation_level=None)
    other = setup(dsn)
    conn.execute("INSERT INTO t VALUES (1)")
    assert not conn.in_transaction
    assert count(other) == 1
    conn.execute("BEGIN")
    conn.execute("INSERT INTO t VALUES (2)")
    assert conn.in_transaction
    assert count(other) == 1
    conn.execute("COMMIT")
    assert count(other) == 2


def test_setting_isolation_level_none_commits_pending(dsn: str) -> None:
    conn, other = setup(dsn), setup(dsn)
    conn.execute("INSERT INTO t VALUES (1)")
    conn.isolation_level = None
    assert not conn.in_transaction
    assert count(other) == 1
    with pytest.raises(ValueError, match="isolation_level string must be"):
        conn.isolation_level = "SOMETIMES"


def test_autocommit_attribute(dsn: str) -> None:
    conn, other = setup(dsn, autocommit=True), setup(dsn)
    conn.execute("INSERT INTO t VALUES (1)")
    assert not conn.in_transaction
    assert count(other) == 1
    conn.autocommit = False  # PEP 249 mode: a transaction is open whenever something was written
    conn.execute("SELECT 1")
    assert not conn.in_transaction  # reads do not hold the writer
    conn.execute("INSERT INTO t VALUES (2)")
    assert conn.in_transaction
    assert count(other) == 1
    conn.commit()
    assert count(other) == 2
    conn.execute("DELETE FROM t")
    conn.autocommit = True  # commits what is pending
    assert count(other) == 0
    with pytest.raises(ValueError, match="autocommit must be"):
        conn.autocommit = 5  # type: ignore[assignment]


def test_a_transaction_holds_the_writer_others_get_database_is_locked(dsn: str) -> None:
    a, b = setup(dsn), setup(dsn, timeout=0.2)
    a.execute("INSERT INTO t VALUES (1)")
    started = time.monotonic()
    with pytest.raises(sqlite_ha.OperationalError, match="database is locked") as e:
        b.execute("INSERT INTO t VALUES (2)")
    assert time.monotonic() - started >= 0.2
    assert e.value.sqlite_errorname == "SQLITE_BUSY"
    a.commit()
    b.execute("INSERT INTO t VALUES (2)")
    b.commit()
    assert count(a) == 2


def test_an_autocommit_write_waits_for_the_open_transaction(dsn: str) -> None:
    a, b = setup(dsn), setup(dsn, isolation_level=None)
    a.execute("INSERT INTO t VALUES (1)")
    done = threading.Event()

    def write() -> None:
        b.execute("INSERT INTO t VALUES (2)")
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    assert not done.wait(0.2)  # queued behind a's transaction
    a.commit()
    thread.join(10)
    assert done.is_set()
    assert count(a) == 2


def test_idle_transaction_is_rolled_back_and_says_so(dsn: str) -> None:
    a = setup(dsn, transaction_idle_timeout=0.2)
    b = setup(dsn, timeout=10)
    a.execute("INSERT INTO t VALUES (1)")
    wait_for(lambda: not a.in_transaction, 10, "the idle transaction to be rolled back")
    b.execute("INSERT INTO t VALUES (2)")  # the writer is free again
    b.commit()
    with pytest.raises(sqlite_ha.OperationalError, match=r"rolled back after 0\.2s idle") as e:
        a.commit()
    assert getattr(e.value, "code", None) == "transaction_idle_timeout"
    a.commit()  # said once; the connection goes on
    assert [r[0] for r in a.execute("SELECT x FROM t")] == [2]


def test_busy_transaction_is_not_rolled_back_while_it_runs(dsn: str) -> None:
    conn = setup(dsn, transaction_idle_timeout=0.3)
    conn.execute("INSERT INTO t VALUES (0)")
    # a statement running longer than the idle timeout is not idleness
    conn.execute(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 3000000) "
        "SELECT count(*) FROM c"
    )
    conn.commit()
    assert count(conn) == 1


def test_close_rolls_back(dsn: str) -> None:
    a, b = setup(dsn), setup(dsn, timeout=5)
    a.execute("INSERT INTO t VALUES (1)")
    a.close()
    b.execute("INSERT INTO t VALUES (2)")
    b.commit()
    assert [r[0] for r in b.execute("SELECT x FROM t")] == [2]


def test_a_dropped_connection_gives_the_writer_back(dsn: str) -> None:
    a, b = setup(dsn), setup(dsn, timeout=10)
    a.execute("INSERT INTO t VALUES (1)")
    del a
    gc.collect()
    b.execute("INSERT INTO t VALUES (2)")  # would wait 60s (the idle timeout) if nothing gave it back
    b.commit()
    assert count(b) == 1


def test_executescript_commits_first_and_runs_its_own_transactions(dsn: str) -> None:
    conn, other = setup(dsn), setup(dsn)
    conn.execute("INSERT INTO t VALUES (1)")
    conn.executescript(
        """
        BEGIN;
        INSERT INTO t VALUES (2);
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN
            INSERT INTO t2 VALUES (CASE WHEN new.x > 2 THEN 'big' ELSE 'small' END);
        END;
        CREATE TABLE t2 (v);
        INSERT INTO t VALUES (3);
        COMMIT;
        """
    )
    assert not conn.in_transaction
    assert count(other) == 3
    assert other.execute("SELECT v FROM t2").fetchall() == [("big",)]


def test_executescript_error_leaves_earlier_statements(dsn: str) -> None:
    conn = setup(dsn, isolation_level=None)
    with pytest.raises(sqlite_ha.OperationalError):
        conn.executescript("INSERT INTO t VALUES (1); INSERT INTO nope VALUES (2); INSERT INTO t VALUES (3);")
    assert count(conn) == 1


def test_seq_is_the_log_position_of_the_last_commit(dsn: str) -> None:
    """Without NATS the node keeps a log of its own: commits have positions there too."""
    conn = setup(dsn)  # CREATE TABLE: its own change set
    first = conn.seq
    assert first is not None
    conn.execute("SELECT 1")
    assert conn.seq == first  # reads move nothing
    conn.execute("INSERT INTO t VALUES (1)")
    conn.commit()
    assert conn.seq is not None
    assert conn.seq > first
    assert conn.connector.latest_seq >= conn.seq
