"""SQL functions every connection of a node has.

SQL translated from PostgreSQL calls them, and such SQL can end up in the schema (a view, a CHECK
constraint, a trigger) that every node reads, the connections that apply change sets included: so they are
on every connection, not only on those serving PostgreSQL clients. They are deterministic and innocuous
(no side effects), so SQLite allows them in the schema even with ``trusted_schema`` off.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Callable

import apsw

from sqlite_ha.changes import sequences
from sqlite_ha.db import jsonb, regex
from sqlite_ha.db.values import SQLiteValue

# PostgreSQL's date/time input and storage forms: plain functions of a value, no part of the PG front end
from sqlite_ha.server.pgwire.types import datetimes, interval, numeric, scalars, timetz
from sqlite_ha.server.pgwire.types.datetimes import DatetimeError
from sqlite_ha.server.pgwire.types.registry import BadParameter

_GLOB_LITERAL = {"*": "[*]", "?": "[?]", "[": "[[]"}


class PatternError(ValueError):
    """A LIKE pattern PostgreSQL refuses (SQLSTATE 22025)."""


def like_to_glob(pattern: object, escape: object = "\\") -> str | None:
    """PostgreSQL's ``LIKE`` pattern as a ``GLOB`` pattern.

    PostgreSQL's LIKE is case-sensitive and ``\\`` escapes by default; SQLite's LIKE ignores case (ASCII) and
    has no default escape. GLOB is SQLite's case-sensitive match (and it can use an index for a prefix), so
    ``x LIKE p`` runs as ``x GLOB like_to_glob(p)``. NULL in, NULL out; an empty ``escape`` escapes nothing.
    """
    if pattern is None or escape is None:
        return None
    text, esc = str(pattern), str(escape)
    if len(esc) > 1:
        raise PatternError(f"invalid escape string {esc!r}: it must be empty or one character")
    out: list[str] = []
    chars = iter(text)
    for ch in chars:
        if ch == esc:
            literal = next(chars, None)
            if literal is None:
                raise PatternError("LIKE pattern must not end with escape character")
            out.append(_GLOB_LITERAL.get(literal, literal))
        elif ch == "%":
            out.append("*")
        elif ch == "_":
            out.append("?")
        else:
            out.append(_GLOB_LITERAL.get(ch, ch))
    return "".join(out)


def _pg_like_glob(*args: SQLiteValue) -> str | None:
    return like_to_glob(*args)


UTC_NAMES = frozenset({"utc", "etc/utc", "gmt", "etc/gmt", "z", "zulu", "uct", "+00", "+00:00", "00:00"})


def _at_utc(value: SQLiteValue, zone: SQLiteValue) -> SQLiteValue:
    """``x AT TIME ZONE $1`` (Django binds the zone as a parameter): timestamps are stored in UTC, so for UTC
    the value is itself; any other zone is refused (the dialect refuses a literal one when translating)."""
    if value is None or zone is None:
        return None
    if str(zone).strip().lower() not in UTC_NAMES:
        raise apsw.SQLError(f"AT TIME ZONE {str(zone)[:40]!r} is not supported, only 'UTC'")
    return value


_TIME_UNITS = ("day", "hour", "minute", "second")  # truncating to one zeroes what comes after it


def _date_trunc(unit: SQLiteValue, value: SQLiteValue) -> SQLiteValue:
    """``date_trunc($1, x)`` with the unit as a parameter (Django with server-side binding); the dialect
    translates a literal unit to SQLite's date functions, with the same output: ``YYYY-MM-DD HH:MM:SS``."""
    if unit is None or value is None:
        return None
    field = str(unit).strip().lower()
    try:
        stamp = dt.datetime.fromisoformat(str(value))
    except ValueError as e:
        raise apsw.SQLError(f"invalid input syntax for type timestamp: {str(value)[:40]!r}") from e
    if field in ("microseconds", "milliseconds"):
        micro = stamp.microsecond if field == "microseconds" else stamp.microsecond // 1000 * 1000
        text = stamp.replace(microsecond=micro, tzinfo=None).isoformat(sep=" ")
        return text
    if field in _TIME_UNITS:
        keep = _TIME_UNITS.index(field)
        stamp = stamp.replace(
            hour=stamp.hour if keep >= 1 else 0,
            minute=stamp.minute if keep >= 2 else 0,
            second=stamp.second if keep >= 3 else 0,
            microsecond=0,
        )
    elif field in ("week", "month", "quarter", "year", "decade", "century", "millennium"):
        day = stamp.replace(hour=0, minute=0, second=0, microsecond=0)
        if field == "week":
            stamp = day - dt.timedelta(days=day.weekday())
        elif field == "month":
            stamp = day.replace(day=1)
        elif field == "quarter":
            stamp = day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1)
        else:
            span = {"year": 1, "decade": 10, "century": 100, "millennium": 1000}[field]
            if span == 1:
                year = day.year
            elif span == 10:
                year = day.year // 10 * 10
            else:  # centuries and millennia start at year 1: 2001 for 2024
                year = (day.year - 1) // span * span + 1
            stamp = day.replace(year=year, month=1, day=1)
    else:
        raise apsw.SQLError(f'unit "{field}" not recognized for type timestamp')
    return stamp.replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S")


_PG_FUNCTIONS: dict[str, tuple[Callable[..., SQLiteValue], int]] = {
    "pg_jsonb_contains": (jsonb.contains, 2),
    "pg_jsonb_exists": (jsonb.exists, 2),
    "pg_jsonb_exists_any": (jsonb.exists_any, 2),
    "pg_jsonb_exists_all": (jsonb.exists_all, 2),
    "pg_jsonb_path": (jsonb.path, 2),
    "pg_jsonb_path_text": (jsonb.path_text, 2),
    "pg_jsonb_text": (jsonb.text, 1),
    "pg_at_utc": (_at_utc, 2),
    "pg_date_trunc": (_date_trunc, 2),
    "pg_interval_add": (interval.add, -1),
    "pg_bool": (scalars.bool_cast, 1),
}


def _cast(parse: Callable[[str], str], type_name: str) -> Callable[..., SQLiteValue]:
    """A cast to a date/time type of what is not a literal (a column, an expression): the value in the
    storage form, or PostgreSQL's error (22007) for a text that is no date."""

    def cast(*args: SQLiteValue) -> SQLiteValue:
        value = args[0]
        if value is None:
            return None
        if isinstance(value, int | float):
            raise DatetimeError("42846", f"cannot cast type numeric to {type_name}")
        return parse(value.decode() if isinstance(value, bytes) else value)

    return cast


def _pg_numeric(*args: SQLiteValue) -> SQLiteValue:
    """A cast to numeric (``pg_numeric(x[, precision, scale])``): a float, as numeric columns hold them."""
    value = args[0]
    if value is None:
        return None
    try:
        d = numeric.to_decimal(value)
    except (decimal.InvalidOperation, ValueError):
        shown = value.decode(errors="replace") if isinstance(value, bytes) else value
        raise BadParameter(f'invalid input syntax for type numeric: "{shown}"') from None
    if len(args) == 3 and isinstance(args[1], int) and isinstance(args[2], int):
        d = numeric.constrained(d, args[1], args[2])
    stored = numeric.storable(d, str(d))
    return float(stored) if isinstance(stored, int) else stored


def _code_point_order(a: str, b: str) -> int:
    return (a > b) - (a < b)


def _writer_only(name: str) -> Callable[..., SQLiteValue]:
    def refuse(*args: SQLiteValue) -> SQLiteValue:
        raise apsw.SQLError(f"{name}() runs on the database's writer only")

    return refuse


def register(conn: apsw.Connection) -> None:
    conn.create_scalar_function(
        "pg_like_glob", _pg_like_glob, 2, deterministic=True, flags=apsw.SQLITE_INNOCUOUS
    )
    innocuous = apsw.SQLITE_INNOCUOUS
    conn.create_scalar_function("regexp", regex.regexp, 2, deterministic=True, flags=innocuous)
    conn.create_scalar_function("regexp_i_like", regex.regexp_i_like, 2, deterministic=True, flags=innocuous)
    conn.create_scalar_function(
        "regexp_replace", regex.regexp_replace, -1, deterministic=True, flags=innocuous
    )
    # casts to date/time types (types/datetimes.py holds the storage forms); 'now' makes them
    # non-deterministic, so they are not flagged deterministic
    casts: dict[str, tuple[Callable[[str], str], str]] = {
        "pg_timestamp": (lambda text: datetimes.parse_timestamp(text, False), "timestamp without time zone"),
        "pg_timestamptz": (lambda text: datetimes.parse_timestamp(text, True), "timestamp with time zone"),
        "pg_date": (datetimes.parse_date, "date"),
        "pg_time": (datetimes.parse_time, "time without time zone"),
        "pg_timetz": (timetz.parse_timetz, "time with time zone"),
    }
    conn.create_scalar_function(
        "pg_numeric", _pg_numeric, -1, deterministic=True, flags=apsw.SQLITE_INNOCUOUS
    )
    for name, (parse, type_name) in casts.items():
        conn.create_scalar_function(name, _cast(parse, type_name), 1, flags=apsw.SQLITE_INNOCUOUS)
    for name, (fn, arity) in _PG_FUNCTIONS.items():
        conn.create_scalar_function(name, fn, arity, deterministic=True, flags=apsw.SQLITE_INNOCUOUS)
    conn.create_collation("pg_jsonb", jsonb.collate)
    # PostgreSQL's byte-order collations, for columns declared with them (an expression's COLLATE "C" is
    # translated to BINARY): UTF-8 byte order is code point order, which is how Python compares strings
    for name in ("C", "POSIX", "ucs_basic"):
        conn.create_collation(name, _code_point_order)

    # a sequence's state (pg_dump's SELECT last_value, is_called FROM s; sql/sequences.py): reads only
    def last_value(*args: SQLiteValue) -> int:
        return sequences.state(conn, args[0])[0]

    def is_called(*args: SQLiteValue) -> int:
        return int(sequences.state(conn, args[0])[1])

    # the sequence functions proper run on the writer, which registers them over these (changes/sequences.py);
    # here they let other connections prepare a statement naming one (an INSERT whose DEFAULT calls nextval)
    for name in ("nextval", "setval", "currval", "lastval"):
        conn.create_scalar_function(name, _writer_only(name), -1, flags=apsw.SQLITE_INNOCUOUS)
    conn.create_scalar_function("pg_sequence_last_value", last_value, 1)
    conn.create_scalar_function("pg_sequence_is_called", is_called, 1)
