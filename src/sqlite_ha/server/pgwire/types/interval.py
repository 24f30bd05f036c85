"""``interval``: stored as PostgreSQL prints it (``1 year 2 mons 3 days 04:05:06.5``), read in any form
the dialect's interval reading understands (``'26 hours'``, ``'1 day 02:30'``, ``'3 days ago'``), and
sent in binary as PostgreSQL sends it (microseconds, days, months).

PostgreSQL keeps an interval as three fields, months, days and microseconds, which never carry into each
other (a month is not 30 days, a day not 24 hours): the text here is normalised the same way, so that it
reads back as PostgreSQL's output would. Fractional years and months become days, fractional days hours,
as PostgreSQL converts them (a month of 30 days for that).
"""

from __future__ import annotations

import calendar
import datetime as dt
import struct

from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.server.pgwire.sql.intervals import interval_parts
from sqlite_ha.server.pgwire.types import datetimes
from sqlite_ha.server.pgwire.types.registry import BadParameter, NotEncodable

_BINARY = struct.Struct(">qii")
_DAY_MICROS = 86_400_000_000


def _fields(text: str) -> tuple[int, int, int]:
    """(months, days, microseconds) of an interval's text."""
    try:
        parts = interval_parts(text)
    except ValueError:
        raise BadParameter(f'invalid input syntax for type interval: "{text}"', "22007") from None
    months_total = parts["years"] * 12 + parts["months"]
    months = int(months_total)
    days_total = parts["days"] + (months_total - months) * 30
    days = int(days_total)
    seconds = parts["hours"] * 3600 + parts["minutes"] * 60 + parts["seconds"] + (days_total - days) * 86400
    return months, days, round(seconds * 1_000_000)


def _text(months: int, days: int, micros: int) -> str:
    """PostgreSQL's output (IntervalStyle postgres) of the three fields."""
    out: list[str] = []
    before = False  # a negative field came before: later positive ones get a +
    years, mons = int(months / 12), months - int(months / 12) * 12
    for value, unit in ((years, "year"), (mons, "mon"), (days, "day")):
        if value:
            sign = "+" if before and value > 0 else ""
            out.append(f"{sign}{value} {unit}{'' if value == 1 else 's'}")
            before = before or value < 0
    if micros or not out:
        sign = "-" if micros < 0 else ("+" if before else "")
        seconds, micro = divmod(abs(micros), 1_000_000)
        minutes, second = divmod(seconds, 60)
        hours, minute = divmod(minutes, 60)
        clock = f"{sign}{hours:02d}:{minute:02d}:{second:02d}"
        out.append(clock + (f".{micro:06d}".rstrip("0") if micro else ""))
    return " ".join(out)


def interval_text(text: str) -> str:
    """An interval's text as stored (PostgreSQL's output); BadParameter (a ValueError) if it is none."""
    return _text(*_fields(text))


def text_in(data: bytes) -> SQLiteValue:
    return interval_text(data.decode())


def binary_in(data: bytes) -> SQLiteValue:
    micros, days, months = _BINARY.unpack(data)
    return _text(months, days, micros)


def _stored(value: SQLiteValue) -> tuple[int, int, int]:
    text = value.decode() if isinstance(value, bytes) else str(value)
    return _fields(text)


def text_out(value: SQLiteValue) -> bytes:
    if isinstance(value, int | float):  # seconds, as SQLite computes a difference
        return _text(0, 0, round(value * 1_000_000)).encode()
    return _text(*_stored(value)).encode()


def binary_out(value: SQLiteValue) -> bytes:
    if isinstance(value, int | float):
        return _BINARY.pack(round(value * 1_000_000), 0, 0)
    months, days, micros = _stored(value)
    return _BINARY.pack(micros, days, months)


def _add_months(stamp: dt.datetime, months: int) -> dt.datetime:
    """PostgreSQL's month arithmetic: the same day of the month, or the month's last day if it has fewer."""
    total = stamp.year * 12 + stamp.month - 1 + months
    year, month = divmod(total, 12)
    last = calendar.monthrange(year, month + 1)[1]
    return stamp.replace(year=year, month=month + 1, day=min(stamp.day, last))


def add(base: SQLiteValue, value: SQLiteValue, sign: int, kind: str = "") -> SQLiteValue:
    """``base ± interval`` as PostgreSQL computes it, for what the dialect cannot type when it translates
    (``col - $1`` with an interval parameter): a timestamp (or date) gives a timestamp, to the microsecond,
    months first then days then time; a time of day (``kind`` "time": its text looks like an interval's)
    wraps around midnight; an interval adds field by field. Anything else is PostgreSQL's 42883."""
    if base is None or value is None:
        return None
    months, days, micros = _stored(value)
    months, days, micros = sign * months, sign * days, sign * micros
    text = base.decode() if isinstance(base, bytes) else base
    if isinstance(text, str):
        if kind != "time" and len(text) >= 10 and text[4] == "-" and text[7] == "-":  # a date or timestamp
            stamp = datetimes.parse_stamp(text)
            try:
                stamp = _add_months(stamp, months) + dt.timedelta(days=days, microseconds=micros)
            except (OverflowError, ValueError):
                raise NotEncodable("timestamp out of range", "22008") from None
            return datetimes.format_stamp(stamp)
        if kind == "time":
            clock = datetimes.time_micros(datetimes.parse_time(text))
            return datetimes.clock_text((clock + micros) % _DAY_MICROS)
        try:
            m, d, us = _fields(text)
        except BadParameter:
            pass
        else:
            return _text(m + months, d + days, us + micros)
    raise NotEncodable(f"operator does not exist: {type(base).__name__} + interval", "42883")
