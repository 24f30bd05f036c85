"""PostgreSQL type OIDs and encodings of SQLite values, and parameter type inference."""

from __future__ import annotations

import datetime as dt
import decimal
import struct
import uuid

import pytest

from sqlite_ha.server.pgwire.sql.infer import infer
from sqlite_ha.server.pgwire.types import values as t


@pytest.mark.parametrize(
    ("declared", "oid"),
    [
        ("INTEGER", t.INT8),
        ("int", t.INT4),
        ("BIGINT", t.INT8),
        ("smallint", t.INT2),
        ("VARCHAR(50)", t.VARCHAR),
        ("character varying(10)", t.VARCHAR),
        ("TEXT", t.TEXT),
        ("BOOLEAN", t.BOOL),
        ("DOUBLE PRECISION", t.FLOAT8),
        ("REAL", t.FLOAT8),
        ("NUMERIC(10,2)", t.NUMERIC),
        ("BLOB", t.BYTEA),
        ("BYTEA", t.BYTEA),
        ("TIMESTAMP", t.TIMESTAMP),
        ("TIMESTAMP WITH TIME ZONE", t.TIMESTAMPTZ),
        ("timestamptz", t.TIMESTAMPTZ),
        ("DATE", t.DATE),
        ("JSONB", t.JSONB),
        ("JSONB TEXT", t.JSONB),
        ("json text", t.JSON),
        ("UUID", t.UUID),
        ("UNSIGNED BIG INT", t.INT8),
        ("NCHAR(55)", t.TEXT),
        ("anything", t.TEXT),
    ],
)
def test_declared_types(declared: str, oid: int) -> None:
    assert t.oid_for_declared(declared) == oid


def test_undeclared_columns_take_their_values_type() -> None:
    rows = [(None,), (3,)]
    assert t.column_oid(None, rows, 0) == t.INT8
    assert t.column_oid(None, [(1.5,)], 0) == t.FLOAT8
    assert t.column_oid(None, [(b"x",)], 0) == t.BYTEA
    assert t.column_oid(None, [(None,)], 0) == t.TEXT


@pytest.mark.parametrize(
    ("value", "oid", "text"),
    [
        (1, t.BOOL, b"t"),
        (0, t.BOOL, b"f"),
        (2**63 - 1, t.INT8, b"9223372036854775807"),
        (float("nan"), t.FLOAT8, b"NaN"),
        (float("-inf"), t.FLOAT8, b"-Infinity"),
        (0.1, t.FLOAT8, b"0.1"),
        (b"\x00\xff", t.BYTEA, b"\\x00ff"),
        (b"\xff", t.TEXT, b"\\xff"),  # a BLOB in a TEXT column stays faithful
        ("2026-11-22 10:00:00", t.TIMESTAMPTZ, b"2026-11-22 10:00:00+00"),
        ("2026-11-22 10:00:00+02:00", t.TIMESTAMPTZ, b"2026-11-22 08:00:00+00"),  # an older stored form
    ],
)
def test_text_format(value: object, oid: int, text: bytes) -> None:
    assert t.to_text(value, oid) == text  # type: ignore[arg-type]


def test_binary_format_round_trips_through_parameters() -> None:
    for value, oid in [
        (-5, t.INT2),
        (70000, t.INT4),
        (-(2**63), t.INT8),
        (2.5, t.FLOAT8),
        (b"\x01\x02", t.BYTEA),
        ("2026-11-22", t.DATE),
        ("2026-11-22 01:02:03.456789", t.TIMESTAMP),
        ("12345678-1234-5678-1234-567812345678", t.UUID),
    ]:
        assert t.decode_param(t.to_binary(value, oid), oid, True) == value, (value, oid)
    assert t.to_binary(1, t.BOOL) == b"\x01"
    assert t.decode_param(b"\x00", t.BOOL, True) == 0
    stamp = t.to_binary("2000-01-01 00:00:01", t.TIMESTAMPTZ)
    assert struct.unpack(">q", stamp)[0] == 1_000_000


@pytest.mark.parametrize("text", ["0", "12.34", "-0.0001", "123456789.987654321", "1000000", "NaN"])
def test_numeric_binary(text: str) -> None:
    d = decimal.Decimal(text)
    back = t.numeric_recv(t.numeric_send(d))
    assert (back.is_nan() and d.is_nan()) or back == d


def test_text_parameters() -> None:
    assert t.decode_param(b"42", t.INT4, False) == 42
    assert t.decode_param(b"true", t.BOOL, False) == 1
    assert t.decode_param(b"\\x00ff", t.BYTEA, False) == b"\x00\xff"
    assert t.decode_param(None, t.INT8, False) is None
    with pytest.raises(t.BadParameter, match="bigint"):
        t.decode_param(b"forty", t.INT8, False)
    with pytest.raises(t.BadParameter):
        t.decode_param(b"\x00\x01", t.INT8, True)
    assert t.decode_param(uuid.UUID(int=1).bytes, t.UUID, True) == str(uuid.UUID(int=1))
    assert t.decode_param(t.to_binary(dt.date(2024, 2, 29).isoformat(), t.DATE), t.DATE, True) == "2024-02-29"


def test_array_literals_become_json_as_the_elements_type_says() -> None:
    """psycopg sends a list as an array literal in text; SQLite's json_each reads arrays as JSON."""
    assert t.decode_param(b"{1,3}", 1016, False) == "[1,3]"  # int8[]
    assert t.decode_param(b'{007,"b c",NULL}', 1009, False) == '["007","b c",null]'  # text[] stays text
    assert t.decode_param(b"{t,f}", 1000, False) == "[1,0]"  # bool[]
    with pytest.raises(t.BadParameter):
        t.decode_param(b"{1,x}", 1016, False)


def test_binary_refuses_a_value_the_type_cannot_carry() -> None:
    with pytest.raises(t.NotEncodable, match="int8"):
        t.to_binary("not a number", t.INT8)


def test_parameter_types_are_read_off_the_statement() -> None:
    tables = {"users": {"id": "INTEGER", "name": "TEXT", "born": "DATE"}, "posts": {"user_id": "BIGINT"}}

    def types(table: str) -> dict[str, str]:
        return tables.get(table, {})

    assert infer("SELECT * FROM users WHERE id = ?1", 1, types) == ["INTEGER"]
    assert infer("INSERT INTO users(id, name, born) VALUES (?1, ?2, ?3)", 3, types) == [
        "INTEGER",
        "TEXT",
        "DATE",
    ]
    assert infer('UPDATE "users" SET name = ?2 WHERE id = ?1', 2, types) == ["INTEGER", "TEXT"]
    assert infer(
        "SELECT * FROM users u JOIN posts p ON p.user_id = u.id WHERE ?1 < p.user_id LIMIT ?2", 2, types
    ) == [
        "BIGINT",
        "BIGINT",
    ]
    assert infer("SELECT ?1", 1, types) == [None]
    assert infer("SELECT * FROM users WHERE id IN (?1, ?2)", 2, types) == ["INTEGER", "INTEGER"]
