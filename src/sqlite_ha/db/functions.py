"""SQL functions every connection of a node has.

SQL translated from PostgreSQL calls them, and such SQL can end up in the schema (a view, a CHECK
constraint, a trigger) that every node reads, the connections that apply change sets included: so they are
on every connection, not only on those serving PostgreSQL clients. They are deterministic and innocuous
(no side effects), so SQLite allows them in the schema even with ``trusted_schema`` off.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable

import apsw

from sqlite_ha.db.values import SQLiteValue

# PostgreSQL's date/time input and storage forms: plain functions of a value, no part of the PG front end
from sqlite_ha.server.pgwire.types import datetimes, numeric
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
    if len(args) == 3 and d.is_finite() and isinstance(args[2], int):
        d = d.quantize(decimal.Decimal(1).scaleb(-args[2]), rounding=decimal.ROUND_HALF_UP)
    stored = numeric.storable(d, str(d))
    return float(stored) if isinstance(stored, int) else stored


def register(conn: apsw.Connection) -> None:
    conn.create_scalar_function(
        "pg_like_glob", _pg_like_glob, 2, deterministic=True, flags=apsw.SQLITE_INNOCUOUS
    )
    # casts to date/time types (types/datetimes.py holds the storage forms); 'now' makes them
    # non-deterministic, so they are not flagged deterministic
    casts: dict[str, tuple[Callable[[str], str], str]] = {
        "pg_timestamp": (lambda text: datetimes.parse_timestamp(text, False), "timestamp without time zone"),
        "pg_timestamptz": (lambda text: datetimes.parse_timestamp(text, True), "timestamp with time zone"),
        "pg_date": (datetimes.parse_date, "date"),
        "pg_time": (datetimes.parse_time, "time without time zone"),
    }
    conn.create_scalar_function(
        "pg_numeric", _pg_numeric, -1, deterministic=True, flags=apsw.SQLITE_INNOCUOUS
    )
    for name, (parse, type_name) in casts.items():
        conn.create_scalar_function(name, _cast(parse, type_name), 1, flags=apsw.SQLITE_INNOCUOUS)
