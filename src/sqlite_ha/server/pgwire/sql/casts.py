"""PostgreSQL casts (``x::type``, ``CAST(x AS type)``) as SQLite expressions.

Each PostgreSQL type has a strategy: SQLite's own CAST where it means the same (integers, text, floats,
blobs), a check at translation time for a literal (JSON, booleans), and for dates, times and numerics a
function that every connection of a node has (``sqlite_ha.db.functions``: ``pg_timestamp``,
``pg_timestamptz``, ``pg_date``, ``pg_time``, ``pg_numeric``), which turns a value into its storage form
(``types/datetimes.py``, ``types/numeric.py``) or refuses it with PostgreSQL's SQLSTATE. A literal is
converted at once, so ``'garbage'::timestamp`` fails before anything runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlglot import exp

from sqlite_ha.server.pgwire.sql.translation import TranslationError
from sqlite_ha.server.pgwire.sql.trees import RewriteContext, call, is_call, param_number
from sqlite_ha.server.pgwire.types import arrays, datetimes, timetz
from sqlite_ha.server.pgwire.types.interval import interval_text
from sqlite_ha.server.pgwire.types.scalars import bool_in

DType = exp.DataType.Type

# (PostgreSQL type name, how SQLite casts to it)
_CASTS: dict[Any, tuple[str, str]] = {
    DType.INT: ("int4", "INTEGER"),
    DType.BIGINT: ("int8", "INTEGER"),
    DType.SMALLINT: ("int2", "INTEGER"),
    DType.TEXT: ("text", "TEXT"),
    DType.VARCHAR: ("varchar", "TEXT"),
    DType.CHAR: ("bpchar", "TEXT"),
    DType.BPCHAR: ("bpchar", "TEXT"),
    DType.NAME: ("name", "TEXT"),
    DType.UUID: ("uuid", "TEXT"),
    DType.DOUBLE: ("float8", "REAL"),
    DType.FLOAT: ("float4", "REAL"),
    DType.DECIMAL: ("numeric", "NUMERIC"),
    DType.VARBINARY: ("bytea", "BLOB"),
    DType.BOOLEAN: ("bool", "boolean"),
    DType.JSON: ("json", "json"),
    DType.JSONB: ("jsonb", "json"),
    DType.DATE: ("date", "date"),
    DType.TIMESTAMP: ("timestamp", "timestamp"),
    DType.TIMESTAMPTZ: ("timestamptz", "timestamptz"),
    DType.TIME: ("time", "time"),
    DType.TIMETZ: ("timetz", "timetz"),
    DType.DATETIME: ("timestamp", "timestamp"),
    DType.INTERVAL: ("interval", "interval"),
}


_OID_TYPES = {"oid", "regconfig"}  # the reg* casts that name objects are catalog_query's


_SEQUENCE_FUNCTIONS = frozenset({"nextval", "setval", "currval"})


def _names_a_sequence(node: exp.Cast, to: exp.DataType) -> bool:
    """``'s'::regclass`` (or a parameter) as the first argument of nextval/setval/currval."""
    if to.sql(dialect="postgres").lower() != "regclass":
        return False
    parent = node.parent
    return isinstance(parent, exp.Anonymous) and parent.name.lower() in _SEQUENCE_FUNCTIONS


def rewrite_cast(node: exp.Cast, ctx: RewriteContext) -> exp.Expr:
    to: exp.DataType = node.to
    value: exp.Expr = node.this
    if ctx.catalog and to.this == DType.USERDEFINED and to.text("kind").lower() in arrays.BY_NAME:
        if (n := param_number(value)) is not None:  # $1::_oid: an array parameter of that type
            ctx.param_types[n] = to.text("kind").lower()
        return value  # arrays are JSON text already
    if ctx.catalog and isinstance(to.this, str):
        name = to.this.lower()
        if name in _OID_TYPES:
            if (n := param_number(value)) is not None and name == "oid":
                ctx.param_types[n] = "oid"
            return exp.Cast(this=value, to=exp.DataType(this=DType.USERDEFINED, kind="INTEGER"))
    if to.this == DType.USERDEFINED and not ctx.catalog:
        # A type the client created (an enum: SQLAlchemy casts enum parameters to it) or an extension's: its
        # values are text here, as the columns of that type hold them
        if (n := param_number(value)) is not None:
            ctx.param_types[n] = "text"
        return (
            value
            if isinstance(value, exp.Literal)
            else exp.Cast(this=value, to=exp.DataType(this=DType.USERDEFINED, kind="TEXT"))
        )
    is_array = to.this == DType.ARRAY
    element = to.expressions[0] if is_array and to.expressions else to
    pg_name, strategy = _CASTS.get(element.this, (None, None))
    n = param_number(value)
    if n is not None and pg_name is not None:
        ctx.param_types[n] = f"_{pg_name}" if is_array else pg_name
    if is_array:
        return value  # arrays are JSON text already
    literal = value.name if isinstance(value, exp.Literal) and value.is_string else None
    if strategy is None and _names_a_sequence(node, to):
        return value  # nextval('s'::regclass): the functions (changes/sequences.py) take the name
    if strategy is None:
        raise TranslationError(f"a cast to {to.sql(dialect='postgres').lower()} has no SQLite equivalent")
    if strategy == "NUMERIC":
        return _numeric_cast(value, to)
    if strategy in ("INTEGER", "TEXT", "REAL", "BLOB"):
        if strategy == "TEXT" and literal is not None:
            return value
        if strategy == "BLOB" and literal is not None and literal.startswith("\\x"):
            return exp.HexString(this=literal[2:])
        return exp.Cast(this=value, to=exp.DataType(this=DType.USERDEFINED, kind=strategy))
    if strategy == "json":
        if literal is None:
            return call("json", value)
        try:
            json.loads(literal)
        except ValueError as e:
            raise TranslationError(f"{literal!r} is not valid JSON: {e}") from e
        return value
    if strategy == "boolean":
        # pg_bool (sqlite_ha.db.functions): a text that is no boolean is 22P02, as in PostgreSQL, not NULL
        return call("pg_bool", value) if literal is None else _boolean_literal(literal)
    if strategy == "interval":
        if literal is None:
            raise TranslationError("only a literal string can be cast to interval")
        return exp.Interval(this=value)
    return _datetime_cast(value, literal, strategy)


_DATETIME_PARSERS: dict[str, Callable[[str], str]] = {
    "timestamp": lambda text: datetimes.parse_timestamp(text, False),
    "timestamptz": lambda text: datetimes.parse_timestamp(text, True),
    "date": datetimes.parse_date,
    "time": datetimes.parse_time,
    "timetz": timetz.parse_timetz,
}


def _datetime_cast(value: exp.Expr, literal: str | None, kind: str) -> exp.Expr:
    """A cast to a date/time type: a literal becomes its storage form now ('garbage' is PostgreSQL's 22007
    at once); anything else goes through ``pg_<type>`` (``sqlite_ha.db.functions``) when it runs. A
    datetime(…) that SQLite computes (now(), interval arithmetic) is in the storage form already."""
    if literal is not None and literal.strip().lower() not in ("now", "today", "tomorrow", "yesterday"):
        try:  # (still a call: the result column keeps its type)
            return call(f"pg_{kind}", _DATETIME_PARSERS[kind](literal))
        except datetimes.DatetimeError as e:
            raise TranslationError(str(e), sqlstate=e.sqlstate) from None
    if kind not in ("date", "timetz") and is_call(value, "datetime"):
        return value
    return call(f"pg_{kind}", value)


def _numeric_cast(value: exp.Expr, to: exp.DataType) -> exp.Expr:
    """A numeric is a float here, as numeric columns hold them (types/numeric.py): CAST(7 AS numeric) / 2
    is 3.5, not SQLite's integer 3; ``numeric(p, s)`` rounds to its scale. ``pg_numeric(x[, p, s])``
    (``sqlite_ha.db.functions``) refuses what is no number, or has more digits than a float keeps."""
    params = [p.name for p in to.expressions if isinstance(p, exp.DataTypeParam)]
    if len(params) == 2 and all(p.isdigit() for p in params):
        return call("pg_numeric", value, *(exp.Literal.number(int(p)) for p in params))
    return call("pg_numeric", value)


def _boolean_literal(text: str) -> exp.Boolean:
    try:
        return exp.true() if bool_in(text.encode()) else exp.false()
    except ValueError:
        raise TranslationError(f'invalid input syntax for type boolean: "{text}"', sqlstate="22P02") from None


def interval_value(interval: exp.Interval) -> exp.Expr:
    unit = interval.text("unit")
    text = f"{interval.this.name} {unit}" if unit else interval.this.name
    try:
        return exp.Literal.string(interval_text(text))
    except ValueError as e:
        raise TranslationError(str(e), sqlstate="22007") from None


_MAKE_INTERVAL_UNITS = ("year", "month", "week", "day", "hour", "minute", "second")


def rewrite_make_interval(node: exp.MakeInterval, ctx: RewriteContext) -> exp.Expr:
    """``make_interval(years, months, weeks, days, hours, mins, secs)`` (positional or ``secs => 1.5``) of
    constants: the interval's stored text, as a literal ``'…'::interval`` gives it (SQLAlchemy renders an
    interval literal so). Of anything else: 0A000, as intervals are computed only from constants here."""
    parts = []
    for unit in _MAKE_INTERVAL_UNITS:
        arg = node.args.get(unit)
        if arg is None:
            continue
        value = arg.expression if isinstance(arg, exp.Kwarg) else arg
        negative = isinstance(value, exp.Neg)
        literal = value.this if negative else value
        if not isinstance(literal, exp.Literal) or literal.is_string:
            raise TranslationError(
                "make_interval() of non-constant arguments is not supported", sqlstate="0A000"
            )
        parts.append(f"{'-' if negative else ''}{literal.name} {unit}s")
    try:
        return exp.Literal.string(interval_text(" ".join(parts) or "0 seconds"))
    except ValueError as e:
        raise TranslationError(str(e), sqlstate="22007") from None
