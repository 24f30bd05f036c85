"""``time with time zone`` (timetz): a time of day with its UTC offset, kept as PostgreSQL prints it.

Stored as text ``HH:MM:SS[.ffffff]+HH[:MM[:SS]]`` (``12:57:18+00``, ``09:30:00.5-04:30``), the offset the
value was given with, as PostgreSQL keeps it (it does not convert a timetz to UTC). Input without an offset
takes the session's zone, which is always UTC here. A zone name (``Europe/Paris``) takes that zone's
offset today, as PostgreSQL does for a time without a date. The binary form is PostgreSQL's: microseconds
of the day (int8), then the offset in seconds west of UTC (int4).

Comparisons of stored values are textual in SQLite: equal values are equal, but order is by the local time,
not the UTC instant, where offsets differ.
"""

from __future__ import annotations

import datetime as dt
import struct

from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.server.pgwire.types import datetimes
from sqlite_ha.server.pgwire.types.datetimes import DatetimeError

_BINARY = struct.Struct(">qi")
_KIND = "time with time zone"


def _offset_text(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    hours, rest = divmod(abs(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{sign}{hours:02d}"
    if minutes or secs:
        text += f":{minutes:02d}"
    if secs:
        text += f":{secs:02d}"
    return text


def _split(text: str) -> tuple[str, str | None]:
    """(clock part, zone part or None) of a time's text, as ``datetimes``' patterns read it."""
    m = datetimes.TIME_PATTERN.fullmatch(text)
    if m is None:
        m = datetimes.STAMP_PATTERN.fullmatch(text)
        if m is None or m["h"] is None:
            raise DatetimeError("22007", f'invalid input syntax for type {_KIND}: "{text}"')
    zone = m["z"]
    return text[m.start("h") : m.start("z") if zone else len(text)], zone


def parse_timetz(text: str) -> str:
    """A timetz in any form PostgreSQL reads (``12:57:18+02``, ``12:57:18 Z``, ``2024-01-01 12:00-05``), as
    its storage form; 22007 / 22008 / 22009 as PostgreSQL refuses it."""
    word = text.strip().lower()
    if word in ("allballs", "now"):
        return datetimes.parse_time(word) + "+00"
    clock, zone = _split(text)
    try:
        time_part = datetimes.parse_time(clock)
    except DatetimeError as e:  # the message names the whole input, as PostgreSQL's does
        raise DatetimeError(e.sqlstate, str(e).replace(f'"{clock}"', f'"{text}"')) from None
    if zone is None:
        return time_part + "+00"
    tzinfo = datetimes.zone(zone, text, _KIND)
    offset = tzinfo.utcoffset(dt.datetime.now(dt.UTC).replace(tzinfo=None))
    seconds = int(offset.total_seconds()) if offset is not None else 0
    if abs(seconds) > 15 * 3600 + 59 * 60:
        raise DatetimeError("22009", f'time zone displacement out of range: "{text}"')
    return time_part + _offset_text(seconds)


def _stored(value: SQLiteValue) -> tuple[str, int]:
    """(the clock's storage text, offset seconds east of UTC) of a stored value, any form it may be in."""
    text = value.decode() if isinstance(value, bytes) else str(value)
    stored = parse_timetz(text)
    cut = max(stored.rfind("+"), stored.rfind("-"))
    sign = -1 if stored[cut] == "-" else 1
    parts = [int(p) for p in stored[cut + 1 :].split(":")] + [0, 0]
    return stored[:cut], sign * (parts[0] * 3600 + parts[1] * 60 + parts[2])


def text_out(value: SQLiteValue) -> bytes:
    clock, offset = _stored(value)
    return (clock + _offset_text(offset)).encode()


def binary_out(value: SQLiteValue) -> bytes:
    clock, offset = _stored(value)
    micros = datetimes.time_micros(clock)
    return _BINARY.pack(micros, -offset)


def text_in(data: bytes) -> SQLiteValue:
    return parse_timetz(data.decode())


def binary_in(data: bytes) -> SQLiteValue:
    micros, west = _BINARY.unpack(data)
    if not 0 <= micros <= 86_400_000_000:
        raise DatetimeError("22008", "time out of range")
    return datetimes.clock_text(micros) + _offset_text(-west)
