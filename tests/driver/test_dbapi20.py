"""PEP 249 compliance, after the checks of Stuart Bishop's classic ``dbapi20.py`` suite (written afresh for
pytest). Where ``sqlite3`` departs from that suite (fetch before execute returns None instead of raising, a
second ``close`` is allowed, ``description`` has no type codes, no ``callproc``/``nextset``), the driver
follows ``sqlite3``, whose drop-in replacement it is."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import sqlite_ha
from sqlite_ha import Connection

DDL1 = "CREATE TABLE booze (name VARCHAR(20))"
DDL2 = "CREATE TABLE barflys (name VARCHAR(20), drink VARCHAR(30))"
SAMPLES = ["Carlton Cold", "Carlton Draft", "Mountain Goat", "Redback", "Victoria Bitter", "XXXX"]


@pytest.fixture
def con(dsn: str) -> Iterator[Connection]:
    conn = sqlite_ha.connect(dsn)
    yield conn
    conn.close()


def populate(con: Connection) -> None:
    cur = con.cursor()
    cur.execute(DDL1)
    for s in SAMPLES:
        cur.execute("INSERT INTO booze VALUES (?)", (s,))


def test_module_globals() -> None:
    assert sqlite_ha.apilevel == "2.0"
    assert sqlite_ha.threadsafety in (0, 1, 2, 3)
    assert sqlite_ha.paramstyle in ("qmark", "numeric", "named", "format", "pyformat")


def test_exception_hierarchy() -> None:
    d = sqlite_ha
    assert issubclass(d.Warning, Exception)
    assert issubclass(d.Error, Exception)
    for cls in (d.InterfaceError, d.DatabaseError):
        assert issubclass(cls, d.Error)
    for cls in (d.DataError, d.OperationalError, d.IntegrityError, d.InternalError, d.ProgrammingError):
        assert issubclass(cls, d.DatabaseError)
    assert issubclass(d.NotSupportedError, d.DatabaseError)
    assert not issubclass(d.Warning, d.Error)


def test_exceptions_as_connection_attributes(con: Connection) -> None:
    assert con.Warning is sqlite_ha.Warning
    assert con.Error is sqlite_ha.Error
    assert con.InterfaceError is sqlite_ha.InterfaceError
    assert con.DatabaseError is sqlite_ha.DatabaseError
    assert con.DataError is sqlite_ha.DataError
    assert con.OperationalError is sqlite_ha.OperationalError
    assert con.IntegrityError is sqlite_ha.IntegrityError
    assert con.InternalError is sqlite_ha.InternalError
    assert con.ProgrammingError is sqlite_ha.ProgrammingError
    assert con.NotSupportedError is sqlite_ha.NotSupportedError


def test_commit_and_rollback_without_transaction(con: Connection) -> None:
    con.commit()
    con.rollback()


def test_cursor_isolation(con: Connection) -> None:
    """Two cursors of one connection see each other's changes (same transaction)."""
    cur1, cur2 = con.cursor(), con.cursor()
    cur1.execute(DDL1)
    cur1.execute("INSERT INTO booze VALUES ('Victoria Bitter')")
    cur2.execute("SELECT name FROM booze")
    assert cur2.fetchall() == [("Victoria Bitter",)]


def test_description(con: Connection) -> None:
    cur = con.cursor()
    cur.execute(DDL1)
    assert cur.description is None
    cur.execute("SELECT name FROM booze")
    assert cur.description is not None
    assert len(cur.description) == 1
    assert len(cur.description[0]) == 7
    assert cur.description[0][0].lower() == "name"
    cur.execute(DDL2)
    assert cur.description is None  # reset by a statement without result


def test_rowcount(con: Connection) -> None:
    cur = con.cursor()
    cur.execute(DDL1)
    assert cur.rowcount == -1
    cur.execute("INSERT INTO booze VALUES ('Victoria Bitter')")
    assert cur.rowcount == 1
    cur.execute("SELECT name FROM booze")
    assert cur.rowcount == -1  # sqlite3: not known for a SELECT
    cur.execute(DDL2)
    assert cur.rowcount == -1


def test_close(con: Connection) -> None:
    cur = con.cursor()
    con.close()
    with pytest.raises(sqlite_ha.Error):
        cur.execute(DDL1)
    with pytest.raises(sqlite_ha.Error):
        con.commit()
    with pytest.raises(sqlite_ha.Error):
        con.cursor()
    con.close()  # a second close is allowed, as sqlite3's


def test_closed_cursor(con: Connection) -> None:
    cur = con.cursor()
    cur.close()
    with pytest.raises(sqlite_ha.ProgrammingError):
        cur.execute("SELECT 1")
    with pytest.raises(sqlite_ha.ProgrammingError):
        cur.fetchone()


def test_execute_qmark_and_named(con: Connection) -> None:
    cur = con.cursor()
    cur.execute(DDL1)
    cur.execute("INSERT INTO booze VALUES ('Victoria Bitter')")
    cur.execute("INSERT INTO booze VALUES (?)", ("Cooper's",))
    cur.execute("INSERT INTO booze VALUES (:beer)", {"beer": "Boag's"})
    assert cur.rowcount == 1
    cur.execute("SELECT name FROM booze ORDER BY name")
    assert [r[0] for r in cur.fetchall()] == ["Boag's", "Cooper's", "Victoria Bitter"]


def test_executemany(con: Connection) -> None:
    cur = con.cursor()
    cur.execute(DDL1)
    cur.executemany("INSERT INTO booze VALUES (?)", [("Cooper's",), ("Boag's",)])
    assert cur.rowcount == 2
    cur.executemany("INSERT INTO booze VALUES (:beer)", ({"beer": n} for n in ("A", "B")))
    assert cur.rowcount == 2
    cur.execute("SELECT name FROM booze ORDER BY name")
    assert [r[0] for r in cur.fetchall()] == ["A", "B", "Boag's", "Cooper's"]


def test_fetchone(con: Connection) -> None:
    cur = con.cursor()
    assert cur.fetchone() is None  # sqlite3: before any execute
    cur.execute(DDL1)
    assert cur.fetchone() is None  # no result set
    cur.execute("SELECT name FROM booze")
    assert cur.fetchone() is None  # empty
    cur.execute("INSERT INTO booze VALUES ('Victoria Bitter')")
    assert cur.fetchone() is None
    cur.execute("SELECT name FROM booze")
    assert cur.fetchone() == ("Victoria Bitter",)
    assert cur.fetchone() is None


def test_fetchmany(con: Connection) -> None:
    cur = con.cursor()
    populate(con)
    cur.arraysize = 10
    cur.execute("SELECT name FROM booze")
    assert len(cur.fetchmany(4)) == 4
    assert len(cur.fetchmany(4)) == 2
    assert cur.fetchmany(4) == []
    cur.execute("SELECT name FROM booze")
    assert len(cur.fetchmany(size=4)) == 4
    assert len(cur.fetchmany(size=1)) == 1
    assert len(cur.fetchmany(size=4)) == 1
    assert cur.fetchmany(size=4) == []
    cur.arraysize = 4
    cur.execute("SELECT name FROM booze")
    assert len(cur.fetchmany()) == 4
    assert len(cur.fetchmany()) == 2
    assert cur.fetchmany() == []
    cur.arraysize = 6
    cur.execute("SELECT name FROM booze")
    assert sorted(r[0] for r in cur.fetchmany()) == SAMPLES
    cur.execute(DDL2)
    cur.execute("SELECT name FROM barflys")
    assert cur.fetchmany() == []


def test_fetchall(con: Connection) -> None:
    cur = con.cursor()
    populate(con)
    cur.execute("SELECT name FROM booze")
    assert sorted(r[0] for r in cur.fetchall()) == SAMPLES
    assert cur.fetchall() == []
    cur.execute(DDL2)
    cur.execute("SELECT name FROM barflys")
    assert cur.fetchall() == []


def test_mixedfetch(con: Connection) -> None:
    cur = con.cursor()
    populate(con)
    cur.execute("SELECT name FROM booze")
    one = cur.fetchone()
    two_three = cur.fetchmany(2)
    four = cur.fetchone()
    rest = cur.fetchall()
    assert one is not None
    assert four is not None
    names = [one[0], two_three[0][0], two_three[1][0], four[0], rest[0][0], rest[1][0]]
    assert sorted(names) == SAMPLES


def test_iteration(con: Connection) -> None:
    populate(con)
    assert sorted(r[0] for r in con.execute("SELECT name FROM booze")) == SAMPLES


def test_arraysize_and_size_hints(con: Connection) -> None:
    cur = con.cursor()
    assert cur.arraysize == 1
    cur.setinputsizes((25,))
    cur.setoutputsize(1000)
    cur.setoutputsize(1000, 0)
    cur.execute("SELECT 1")
    assert cur.fetchall() == [(1,)]


def test_none_round_trip(con: Connection) -> None:
    con.execute(DDL2)
    con.execute("INSERT INTO barflys VALUES ('a', NULL)")
    con.execute("INSERT INTO barflys VALUES (?, ?)", ("b", None))
    assert con.execute("SELECT drink FROM barflys").fetchall() == [(None,), (None,)]


def test_type_constructors() -> None:
    d = sqlite_ha
    ticks = time.mktime((2002, 12, 25, 13, 45, 30, 0, 0, -1))
    assert d.Date(2002, 12, 25) == d.DateFromTicks(ticks)
    assert d.Time(13, 45, 30) == d.TimeFromTicks(ticks)
    assert d.Timestamp(2002, 12, 25, 13, 45, 30) == d.TimestampFromTicks(ticks)
    assert d.Binary(b"Something") == b"Something"
    assert d.Binary(b"") == b""


def test_type_objects() -> None:
    d = sqlite_ha
    assert d.STRING == "TEXT"
    assert d.STRING == "varchar"
    assert d.STRING != "BLOB"
    assert d.BINARY == "BLOB"
    assert d.NUMBER == "INTEGER"
    assert d.NUMBER == "REAL"
    assert d.DATETIME == "TIMESTAMP"
    assert d.ROWID == "ROWID"


def test_date_constructors_bind_as_sqlite3_adapts_them(con: Connection) -> None:
    row = con.execute(
        "SELECT ?, ?", (sqlite_ha.Date(2002, 12, 25), sqlite_ha.Timestamp(2002, 12, 25, 13, 45, 30))
    ).fetchone()
    assert row == ("2002-12-25", "2002-12-25 13:45:30")
