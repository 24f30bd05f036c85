"""The type registry and its codecs without a server: date/time input forms and storage forms, numeric
exactness and scale, float output as PostgreSQL prints it, integer ranges, and the registry's records."""

from __future__ import annotations

import datetime as dt
import math
import struct
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sqlite_ha.server.pgwire.types import datetimes, numeric, scalars
from sqlite_ha.server.pgwire.types import values as t
from sqlite_ha.server.pgwire.types.datetimes import DatetimeError


@pytest.mark.parametrize(
    ("text", "tz", "stored"),
    [
        ("2024-01-02 03:04:05", False, "2024-01-02 03:04:05"),
        ("2024-01-02T03:04:05.123456Z", True, "2024-01-02 03:04:05.123456"),
        ("2024-01-02 03:04:05+02", True, "2024-01-02 01:04:05"),
        ("2024-01-02 03:04:05+02", False, "2024-01-02 03:04:05"),  # ignored by timestamp
        ("2024-01-02 03:04:05 +05:30", True, "2024-01-01 21:34:05"),
        ("2024-01-02 03:04:05-0800", True, "2024-01-02 11:04:05"),
        ("2024-06-01 12:00:00 Europe/Paris", True, "2024-06-01 10:00:00"),
        ("2024-01-02", True, "2024-01-02 00:00:00"),
        ("20240102", False, "2024-01-02 00:00:00"),
        ("2024-02-29 24:00:00", False, "2024-03-01 00:00:00"),
        ("2024-01-02 03:04:05.1234567", False, "2024-01-02 03:04:05.123457"),  # rounded, as PostgreSQL does
        ("2024-01-02 03:04:05.500000", False, "2024-01-02 03:04:05.5"),
        ("epoch", True, "1970-01-01 00:00:00"),
        (" Infinity ", True, "infinity"),
        ("-infinity", False, "-infinity"),
    ],
)
def test_timestamp_input_forms(text: str, tz: bool, stored: str) -> None:
    assert datetimes.parse_timestamp(text, tz) == stored
    assert t.decode_param(text.encode(), t.TIMESTAMPTZ if tz else t.TIMESTAMP, False) == stored


@pytest.mark.parametrize(
    ("text", "sqlstate"),
    [
        ("garbage", "22007"),
        ("2024-13-01", "22008"),
        ("2023-02-29 10:00", "22008"),
        ("2024-01-02 25:00", "22008"),
        ("10000-01-01", "22008"),  # beyond what sqlite-ha stores
        ("0044-03-15 BC", "22008"),
        ("2024-01-02 03:04:05 Mars/Olympus", "22023"),
        ("2024-01-02 03:04:05+16", "22009"),
    ],
)
def test_timestamp_refusals(text: str, sqlstate: str) -> None:
    with pytest.raises(DatetimeError) as info:
        datetimes.parse_timestamp(text, True)
    assert info.value.sqlstate == sqlstate
    with pytest.raises(t.BadParameter) as bad:
        t.decode_param(text.encode(), t.TIMESTAMPTZ, False)
    assert bad.value.sqlstate == sqlstate


def test_dates_and_times() -> None:
    assert datetimes.parse_date("2024-02-29") == "2024-02-29"
    assert datetimes.parse_date("2024-01-02 10:00") == "2024-01-02"
    assert datetimes.parse_time("03:04:05.120") == "03:04:05.12"
    assert datetimes.parse_time("allballs") == "00:00:00"
    assert datetimes.parse_time("24:00:00") == "24:00:00"
    for bad in ("25:00", "x", "12:60"):
        with pytest.raises(DatetimeError):
            datetimes.parse_time(bad)


def test_output_of_stored_forms() -> None:
    """The storage form prints as it is; older forms (an offset, a T, an epoch number) are converted."""
    text = t.Column("c", t.TIMESTAMPTZ, False).encode
    assert text("2024-01-02 03:04:05.5") == b"2024-01-02 03:04:05.5+00"
    assert text("2024-01-02T03:04:05+02:00") == b"2024-01-02 01:04:05+00"
    assert text("2024-01-02 03:04:05.120") == b"2024-01-02 03:04:05.12+00"  # datetime('now', 'subsec')
    assert text(0) == b"1970-01-01 00:00:00+00"
    assert text("infinity") == b"infinity"
    assert t.Column("c", t.TIMESTAMP, False).encode("garbage") == b"garbage"  # text: what is stored
    with pytest.raises(t.NotEncodable):
        t.Column("c", t.TIMESTAMP, True).encode("garbage")  # binary: no value to send


@given(st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59)))
def test_timestamps_round_trip_in_binary(stamp: dt.datetime) -> None:
    stored = datetimes.format_stamp(stamp)
    binary = t.to_binary(stored, t.TIMESTAMP)
    micros = struct.unpack(">q", binary)[0]
    assert dt.datetime(2000, 1, 1) + dt.timedelta(microseconds=micros) == stamp
    assert t.decode_param(binary, t.TIMESTAMPTZ, True) == stored
    assert datetimes.parse_timestamp(stamp.isoformat(), False) == stored


def test_infinity_in_binary_is_what_postgresql_sends() -> None:
    assert t.to_binary("infinity", t.TIMESTAMP) == struct.pack(">q", 2**63 - 1)
    assert t.to_binary("-infinity", t.DATE) == struct.pack(">i", -(2**31))
    assert t.decode_param(struct.pack(">q", -(2**63)), t.TIMESTAMPTZ, True) == "-infinity"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (100.0, "100"),
        (1e15, "1e+15"),
        (0.1 + 0.2, "0.30000000000000004"),
        (-0.0, "-0"),
        (1e-5, "1e-05"),
        (123456.789, "123456.789"),
        (math.inf, "Infinity"),
    ],
)
def test_float8_text_as_postgresql_prints_it(value: float, text: str) -> None:
    assert scalars.float_text(value) == text


def test_float4_text_and_binary() -> None:
    assert scalars.float4_text(1.1) == "1.1"
    assert scalars.float4_text(1234567.0) == "1.234567e+06"
    assert t.decode_param(struct.pack(">f", 1.1), t.FLOAT4, True) == 1.1
    assert t.decode_param(b"NaN", t.FLOAT8, False) == "NaN"  # SQLite would store a float NaN as NULL
    assert t.to_text("NaN", t.FLOAT8) == b"NaN"
    assert math.isnan(struct.unpack(">d", t.to_binary("NaN", t.FLOAT8))[0])


def test_integer_ranges() -> None:
    assert t.to_text(2**31 - 1, t.INT4) == b"2147483647"
    for binary in (False, True):
        with pytest.raises(t.NotEncodable) as info:
            t.Column("c", t.INT4, binary).encode(2**31)
        assert info.value.sqlstate == "22003"
    with pytest.raises(t.BadParameter) as bad:
        t.decode_param(b"40000", t.INT2, False)
    assert bad.value.sqlstate == "22003"
    assert t.to_text(2**63 - 1, t.INT8) == b"9223372036854775807"


def test_numeric_exact_to_fifteen_digits() -> None:
    assert t.decode_param(b"70.40", t.NUMERIC, False) == 70.4
    assert t.decode_param(b"123456789012345", t.NUMERIC, False) == 123456789012345
    assert t.decode_param(b"NaN", t.NUMERIC, False) == "NaN"
    with pytest.raises(t.BadParameter) as info:
        t.decode_param(b"1234567890.123456", t.NUMERIC, False)
    assert info.value.sqlstate == "22003"
    assert "15 significant digits" in str(info.value)
    with pytest.raises(t.BadParameter) as syntax:
        t.decode_param(b"abc", t.NUMERIC, False)
    assert syntax.value.sqlstate == "22P02"


def test_numeric_output_with_scale_and_without_drift() -> None:
    scaled = t.declared_column("n", "NUMERIC REAL(10, 2)")
    assert scaled.typmod == numeric.typmod_of(10, 2)
    assert scaled.encode(70.4) == b"70.40"
    assert scaled.encode(7) == b"7.00"
    binary = t.Column("n", t.NUMERIC, True, scaled.typmod).encode(70.4)
    assert binary is not None
    assert numeric.numeric_recv(binary) == Decimal("70.40")
    plain = t.Column("n", t.NUMERIC, False)
    assert plain.encode(70.4 - 0.1) == b"70.3"  # the float arithmetic's drift is not shown
    assert plain.encode(17.009999999999998) == b"17.01"
    assert plain.encode(1e20) == b"100000000000000000000"
    assert plain.encode(2**62) == str(2**62).encode()  # an integer SQLite keeps is exact in full


@given(st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**10), max_value=10**10))
def test_numeric_binary_round_trip(d: Decimal) -> None:
    assert numeric.numeric_recv(numeric.numeric_send(d)) == d


@pytest.mark.parametrize(
    ("declared", "oid", "typmod"),
    [
        ("INT", t.INT4, -1),
        ("INTEGER", t.INT8, -1),  # SQLite's 64-bit integer
        ("FLOAT4", t.FLOAT4, -1),
        ("NUMERIC REAL(10, 2)", t.NUMERIC, numeric.typmod_of(10, 2)),
        ("numeric(5)", t.NUMERIC, numeric.typmod_of(5, 0)),
        ("JSONB TEXT", t.JSONB, -1),
        ("VARCHAR(20)", t.VARCHAR, 24),
        ("timestamp(3) with time zone", t.TIMESTAMPTZ, -1),
        ("int4", t.INT4, -1),
        ("serial", t.INT4, -1),
        ("bigserial", t.INT8, -1),
    ],
)
def test_declared_types(declared: str, oid: int, typmod: int) -> None:
    assert t.declared_type(declared) == (oid, typmod)


def test_one_record_per_type() -> None:
    for pg_type in t.REGISTRY:
        assert t.REGISTRY.get(pg_type.oid) is pg_type
        assert t.REGISTRY.named(pg_type.name) is pg_type or pg_type.name in ("char",)
        if pg_type.array:
            array = t.REGISTRY.get(pg_type.array)
            assert array is None or array.element == pg_type.oid
    assert t.REGISTRY.named("timestamp with time zone") is t.REGISTRY.get(t.TIMESTAMPTZ)
    assert t.REGISTRY.named("integer") is t.REGISTRY.get(t.INT4)  # PostgreSQL's name, as to_regtype reads it


def test_jsonb_is_kept_as_postgresql_keeps_it() -> None:
    assert t.decode_param(b'{"bb": 1, "a": [1.50, 1e2], "a": true}', t.JSONB, False) == '{"a": true, "bb": 1}'
    assert t.decode_param(b"3.0", t.JSONB, False) == "3.0"
    with pytest.raises(t.BadParameter):
        t.decode_param(b"{nope", t.JSON, False)


def test_serial_types_kept_in_comments() -> None:
    sql = 'CREATE TABLE t (id INTEGER /*pg:int4*/ PRIMARY KEY, "Other Id" INTEGER /*pg:int8*/, x INT)'
    assert t.pg_type_comments(sql) == {"id": "int4", "other id": "int8"}
    assert t.pg_type_comments("CREATE TABLE t (id INTEGER PRIMARY KEY)") == {}
