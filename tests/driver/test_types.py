"""Values come back as SQLite stores them: 64-bit integers exact, floats (infinities too), text, bytes,
NULL; parameters of any other type are refused by name, never turned into text silently."""

from __future__ import annotations

import enum
import math
import sqlite3
from typing import Any

import pytest

import sqlite_ha

VALUES: list[Any] = [
    0,
    1,
    -1,
    2**63 - 1,
    -(2**63),
    2**53 + 1,  # not exact as a double
    1.5,
    -0.0,
    1e308,
    math.inf,
    -math.inf,
    "",
    "plain",
    "ünïcødé ✓ 𝄞 \x00 inside",
    b"",
    b"\x00\xff binary",
    None,
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_round_trip_as_parameter_and_stored(dsn: str, value: Any) -> None:
    conn = sqlite_ha.connect(dsn)
    conn.execute("CREATE TABLE v (x)")
    conn.execute("INSERT INTO v VALUES (?)", (value,))
    conn.commit()
    (got,) = conn.execute("SELECT x FROM v").fetchone()
    assert type(got) is type(value)
    assert got == value or got is value
    if isinstance(value, float):
        assert math.copysign(1, got) == math.copysign(1, value)
    (echo,) = conn.execute("SELECT ?", (value,)).fetchone()
    assert type(echo) is type(value)


def test_same_values_as_sqlite3(dsn: str, tmp_path: Any) -> None:
    ref = sqlite3.connect(str(tmp_path / "ref.db"))
    conn = sqlite_ha.connect(dsn)
    sql = (
        "SELECT 1, 1.0, 'a', x'00ff', NULL, 9223372036854775807, 1e999, -1e999, typeof(1e999), "
        "CAST('12' AS INTEGER), '12' + 1, 7 / 2, 7 / 2.0, zeroblob(3)"
    )
    assert conn.execute(sql).fetchall() == ref.execute(sql).fetchall()


def test_nan_is_stored_as_null_as_sqlite_does(dsn: str) -> None:
    conn = sqlite_ha.connect(dsn)
    assert conn.execute("SELECT ?", (math.nan,)).fetchone() == (None,)


def test_bool_bytearray_memoryview_and_int_subclasses(dsn: str) -> None:
    class Color(enum.IntEnum):
        RED = 3

    conn = sqlite_ha.connect(dsn)
    row = conn.execute(
        "SELECT ?, ?, ?, ?, ?", (True, False, bytearray(b"ab"), memoryview(b"cd"), Color.RED)
    ).fetchone()
    assert row == (1, 0, b"ab", b"cd", 3)
    assert [type(v) for v in row] == [int, int, bytes, bytes, int]


@pytest.mark.parametrize("value", [[1], {"a": 1}, object(), 1 + 2j, {1}], ids=repr)
def test_unsupported_parameter_is_refused_by_name(dsn: str, value: Any) -> None:
    conn = sqlite_ha.connect(dsn)
    with pytest.raises(sqlite_ha.ProgrammingError, match=r"parameter 2: type '\w+' is not supported"):
        conn.execute("SELECT ?, ?", (1, value))
    with pytest.raises(sqlite3.ProgrammingError, match=r"parameter 2: type '\w+' is not supported"):
        sqlite3.connect(":memory:").execute("SELECT ?, ?", (1, value))


def test_integer_out_of_64_bits_is_an_overflow_as_in_sqlite3(dsn: str) -> None:
    conn = sqlite_ha.connect(dsn)
    for big in (2**63, -(2**63) - 1):
        with pytest.raises(OverflowError):
            conn.execute("SELECT ?", (big,))
        with pytest.raises(OverflowError):
            sqlite3.connect(":memory:").execute("SELECT ?", (big,))


def test_parameters_must_be_a_sequence_or_mapping(dsn: str) -> None:
    conn = sqlite_ha.connect(dsn)
    with pytest.raises(sqlite_ha.ProgrammingError):
        conn.execute("SELECT ?", "a")
    with pytest.raises(sqlite_ha.ProgrammingError):
        conn.execute("SELECT ?", 1)
    with pytest.raises(sqlite_ha.ProgrammingError):
        conn.execute("SELECT :a", {"b": 1})
    with pytest.raises(sqlite_ha.ProgrammingError):
        conn.execute("SELECT ?")


def test_text_factory_bytes(dsn: str) -> None:
    conn = sqlite_ha.connect(dsn)
    conn.text_factory = bytes
    assert conn.execute("SELECT 'é', 1").fetchone() == ("é".encode(), 1)
