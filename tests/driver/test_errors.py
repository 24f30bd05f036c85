"""Errors carry SQLite's code like sqlite3's, and the node's own conditions map to PEP 249 classes with
sqlite-ha's code and hint besides."""

from __future__ import annotations

import pytest

import sqlite_ha
from sqlite_ha.driver.exceptions import to_dbapi
from sqlite_ha.errors import Busy, ConfigError, InvalidParams, NotReady, SQLError, StatementNotAllowed
from sqlite_ha.replication.replicated_database import ReplicationPending


def test_constraint_error_carries_extended_code(dsn: str) -> None:
    conn = sqlite_ha.connect(dsn)
    conn.execute("CREATE TABLE t (a UNIQUE, b NOT NULL DEFAULT 0)")
    conn.execute("INSERT INTO t (a) VALUES (1)")
    with pytest.raises(sqlite_ha.IntegrityError) as e:
        conn.execute("INSERT INTO t (a) VALUES (1)")
    assert (e.value.sqlite_errorcode, e.value.sqlite_errorname) == (2067, "SQLITE_CONSTRAINT_UNIQUE")
    assert str(e.value) == "UNIQUE constraint failed: t.a"
    assert conn.in_transaction  # a failed statement leaves the transaction open, as in sqlite3
    with pytest.raises(sqlite_ha.IntegrityError) as e:
        conn.execute("INSERT INTO t (a, b) VALUES (2, NULL)")
    assert e.value.sqlite_errorname == "SQLITE_CONSTRAINT_NOTNULL"
    conn.commit()
    assert conn.execute("SELECT a FROM t").fetchall() == [(1,)]


def test_syntax_error_is_operational(dsn: str) -> None:
    conn = sqlite_ha.connect(dsn)
    with pytest.raises(sqlite_ha.OperationalError, match='near "SELEKT": syntax error') as e:
        conn.execute("SELEKT 1")
    assert (e.value.sqlite_errorcode, e.value.sqlite_errorname) == (1, "SQLITE_ERROR")


def test_statements_the_node_refuses_are_not_supported(dsn: str, tmp_path: object) -> None:
    conn = sqlite_ha.connect(dsn)
    with pytest.raises(sqlite_ha.NotSupportedError) as e:
        conn.execute("ATTACH DATABASE ':memory:' AS other")
    assert e.value.sqlite_errorname == "SQLITE_AUTH"
    assert e.value.code == "statement_not_allowed"


def test_bad_option_is_an_interface_error_naming_it(dsn: str) -> None:
    with pytest.raises(sqlite_ha.InterfaceError, match="bogusOption") as e:
        sqlite_ha.connect(dsn, bogusOption="1")
    assert e.value.code == "config_error"
    assert isinstance(e.value.__cause__, ConfigError)


@pytest.mark.parametrize(
    ("error", "cls", "name"),
    [
        (SQLError("x", sqlite_code="SQLITE_CONSTRAINT_FOREIGNKEY"), sqlite_ha.IntegrityError, 787),
        (SQLError("x", sqlite_code="SQLITE_TOOBIG"), sqlite_ha.DataError, 18),
        (SQLError("x", sqlite_code="SQLITE_CORRUPT"), sqlite_ha.DatabaseError, 11),
        (SQLError("x", sqlite_code="SQLITE_INTERNAL"), sqlite_ha.InternalError, 2),
        (SQLError("x", sqlite_code="SQLITE_READONLY_DBMOVED"), sqlite_ha.OperationalError, 1032),
        (Busy("locked"), sqlite_ha.OperationalError, 5),
        (InvalidParams("statement 1: bad"), sqlite_ha.ProgrammingError, None),
        (StatementNotAllowed("no"), sqlite_ha.NotSupportedError, 23),
        (NotReady("not joined"), sqlite_ha.OperationalError, None),
    ],
)
def test_mapping(error: Exception, cls: type[Exception], name: int | None) -> None:
    mapped = to_dbapi(error)
    assert type(mapped) is cls
    assert getattr(mapped, "sqlite_errorcode", None) == name
    assert mapped.__cause__ is error


def test_replication_pending_is_operational_and_says_committed() -> None:
    from sqlite_ha.db.database import Execution

    pending = ReplicationPending(
        "committed on this node but not yet in the replication log (timeout); it stays in the outbox",
        execution=Execution([]),
        hint="do not retry a non-idempotent write: it is not lost",
    )
    mapped = to_dbapi(pending)
    assert isinstance(mapped, sqlite_ha.OperationalError)
    assert mapped.code == "replication_pending"  # type: ignore[attr-defined]
    assert "committed on this node" in str(mapped)
    assert mapped.hint
    assert "do not retry" in mapped.hint
