"""Dates and times: every input form PostgreSQL accepts, one storage form, PostgreSQL's output.

The storage form is text that sorts as the values do and that SQLite's date functions read:
``date`` 'YYYY-MM-DD'; ``time`` 'HH:MM:SS[.ffffff]'; ``timestamp`` 'YYYY-MM-DD HH:MM:SS[.ffffff]';
``timestamptz`` converted to UTC and stored in the timestamp form without an offset (the column's type says
it is UTC), as SQLite's own ``CURRENT_TIMESTAMP`` and ``datetime('now')`` write it. Fractions keep
microseconds, trailing zeros stripped (as PostgreSQL prints them); 'infinity' and '-infinity' stay words.
Years outside 1-9999 cannot be stored (SQLite's date functions and Python's datetime stop there).

Input follows PostgreSQL's ISO reading (its datetime input rules, datetime.c): 'T' or spaces between date
and time, 'Z', '+02', '+02:00', '+0200', ' +02', zone names zoneinfo knows ('Europe/Paris'), a date alone
for a timestamp, and the special words 'epoch', 'now', 'today', 'tomorrow', 'yesterday', 'allballs'. An
offset given to a ``timestamp`` (without time zone) is ignored, as PostgreSQL ignores it. A text that is
no date is SQLSTATE 22007, a field out of range 22008, both in PostgreSQL's message shape.

Values stored before in other forms (ISO with 'T' or an offset, epoch numbers) are still read on output.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import struct
import zoneinfo

from sqlite_ha.db.values import SQLiteValue


class DatetimeError(ValueError):
    """A date/time text PostgreSQL would refuse, with the SQLSTATE it refuses it with."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


_UTC = dt.UTC
_EPOCH = dt.datetime(2000, 1, 1)
_EPOCH_DATE = dt.date(2000, 1, 1)
_EPOCH_ORDINAL = _EPOCH_DATE.toordinal()
_I4, _I8 = struct.Struct(">i"), struct.Struct(">q")
# PostgreSQL's binary ±infinity: the extreme int64 (timestamps) and int32 (dates)
_PINF8, _NINF8 = 2**63 - 1, -(2**63)
_PINF4, _NINF4 = 2**31 - 1, -(2**31)
_INFINITIES = {"infinity": "infinity", "+infinity": "infinity", "-infinity": "-infinity"}

_DATE = r"(?P<y>\d{4,})-(?P<mo>\d{1,2})-(?P<d>\d{1,2})"
_CLOCK = r"(?P<h>\d{1,2}):(?P<mi>\d{1,2})(?::(?P<s>\d{1,2})(?:\.(?P<f>\d*))?)?"
_ZONE = r"(?P<z>[zZ]|(?i:utc|gmt)|[+-]\d{1,2}(?::?\d{2}(?::?\d{2})?)?|[A-Za-z][A-Za-z0-9_/+-]*)"
_STAMP = re.compile(rf"\s*{_DATE}(?:(?:[Tt]|\s+){_CLOCK})?\s*{_ZONE}?\s*")
_TIME = re.compile(rf"\s*{_CLOCK}\s*{_ZONE}?\s*")
_COMPACT_DATE = re.compile(r"\s*(?P<y>\d{4})(?P<mo>\d{2})(?P<d>\d{2})\s*")


_FAST_FRACTION = re.compile(r"\.\d{7}")  # more than microseconds: PostgreSQL rounds, fromisoformat cuts


def _displacement(text: str) -> DatetimeError:
    return DatetimeError("22009", f'time zone displacement out of range: "{text}"')


# PostgreSQL's default abbreviations that zoneinfo does not know as names (its Default timezone_abbreviations)
_ABBREVIATIONS = {
    name: dt.timezone(dt.timedelta(hours=hours), name)
    for name, hours in (
        ("PST", -8), ("PDT", -7), ("MST", -7), ("MDT", -6), ("CST", -6), ("CDT", -5), ("EST", -5),
        ("EDT", -4), ("AKST", -9), ("AKDT", -8), ("HST", -10), ("BST", 1), ("CET", 1), ("CEST", 2),
        ("EET", 2), ("EEST", 3), ("WET", 0), ("WEST", 1), ("MSK", 3), ("IST", 2), ("JST", 9), ("KST", 9),
        ("AEST", 10), ("AEDT", 11), ("ACST", 9.5), ("AWST", 8), ("NZST", 12), ("NZDT", 13),
    )
}  # fmt: skip


def _bad(kind: str, text: str) -> DatetimeError:
    return DatetimeError("22007", f'invalid input syntax for type {kind}: "{text}"')


def _range(text: str) -> DatetimeError:
    return DatetimeError("22008", f'date/time field value out of range: "{text}"')


def _zone(name: str, text: str, kind: str) -> dt.tzinfo:
    if name in ("z", "Z") or name.lower() in ("utc", "gmt"):
        return _UTC
    if name[0] in "+-":
        digits = name[1:].replace(":", "")
        if len(digits) <= 2:
            hours, minutes, seconds = int(digits), 0, 0
        else:
            hours, minutes = int(digits[:-2] if len(digits) in (3, 4) else digits[:-4]), 0
            rest = digits[-2:] if len(digits) in (3, 4) else digits[-4:]
            minutes, seconds = int(rest[:2]), int(rest[2:] or 0)
        if hours > 15 or minutes > 59 or seconds > 59:
            raise _displacement(text)
        offset = dt.timedelta(hours=hours, minutes=minutes, seconds=seconds)
        return dt.timezone(-offset if name[0] == "-" else offset)
    abbreviation = _ABBREVIATIONS.get(name.upper())
    if abbreviation is not None:
        return abbreviation
    try:
        return _named_zone(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        if name.lower() in ("bc", "ad"):
            if name.lower() == "ad":
                return _UTC
            raise DatetimeError(
                "22008",
                f'dates before the year 1 are not supported: "{text}" (sqlite-ha stores years 1-9999)',
            ) from None
        if "/" in name:
            raise DatetimeError("22023", f'time zone "{name}" not recognized') from None
        raise _bad(kind, text) from None


@functools.lru_cache(maxsize=256)
def _named_zone(name: str) -> dt.tzinfo:
    return zoneinfo.ZoneInfo(name)


def _fraction(digits: str | None) -> int:
    """Microseconds of a fraction's digits, rounded half up to 6 digits as PostgreSQL rounds."""
    if not digits:
        return 0
    if len(digits) <= 6:
        return int(digits.ljust(6, "0"))
    return int(digits[:6]) + (digits[6] >= "5")


def _fields(m: re.Match[str], text: str, kind: str) -> dt.datetime:
    """The naive datetime of a matched timestamp text (24:00:00 is the next midnight)."""
    year, month, day = int(m["y"]), int(m["mo"]), int(m["d"])
    if not 1 <= year <= 9999:
        raise DatetimeError(
            "22008", f'date/time field value out of range: "{text}" (sqlite-ha stores years 1-9999)'
        )
    fields = m.groupdict()
    hour = int(fields.get("h") or 0)
    minute, second = int(fields.get("mi") or 0), int(fields.get("s") or 0)
    micro = _fraction(fields.get("f"))
    if minute > 59 or second > 60 or hour > 24 or (hour == 24 and (minute or second or micro)):
        raise _range(text)
    try:
        base = dt.datetime(year, month, day)
    except ValueError:
        raise _range(text) from None
    # 23:59:60 (a leap second) is the next minute, as PostgreSQL reads it; micro may round up to 1 s
    return base + dt.timedelta(hours=hour, minutes=minute, seconds=second, microseconds=micro)


def _special(word: str, now: dt.datetime) -> dt.datetime | None:
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return {
        "epoch": dt.datetime(1970, 1, 1),
        "now": now,
        "today": today,
        "tomorrow": today + dt.timedelta(days=1),
        "yesterday": today - dt.timedelta(days=1),
    }.get(word)


def _now() -> dt.datetime:
    return dt.datetime.now(_UTC).replace(tzinfo=None)


def parse_timestamp(text: str, tz: bool) -> str:
    """A timestamp (``tz``: timestamptz) in any form PostgreSQL reads, as its storage form."""
    if len(text) >= 19 and text[4] == "-" and text[10] in " T" and _FAST_FRACTION.search(text) is None:
        try:  # the common forms, parsed in C; anything it does not read takes the long way
            stamp = dt.datetime.fromisoformat(text)
        except ValueError:
            pass
        else:
            if stamp.tzinfo is not None:
                offset = stamp.utcoffset()
                if offset is not None and abs(offset) >= dt.timedelta(hours=16):
                    raise _displacement(text)
                if tz:
                    stamp = stamp.astimezone(_UTC)
                stamp = stamp.replace(tzinfo=None)
            return format_stamp(stamp)
    kind = "timestamp with time zone" if tz else "timestamp without time zone"
    head = text.lstrip()[:2]
    if head[:1].isalpha() or head[1:2].isalpha():
        word = text.strip().lower()
        if word in _INFINITIES:
            return _INFINITIES[word]
        special = _special(word, _now())
        if special is not None:
            return format_stamp(special)
    m = _STAMP.fullmatch(text) or _COMPACT_DATE.fullmatch(text)
    if m is None:
        raise _bad(kind, text)
    stamp = _fields(m, text, kind)
    zone_name = m.groupdict().get("z")
    if zone_name:
        zone = _zone(zone_name, text, kind)  # checked for a timestamp too, though then ignored
        if tz and zone is not _UTC:
            try:
                stamp = stamp.replace(tzinfo=zone).astimezone(_UTC).replace(tzinfo=None)
            except OverflowError:
                raise _range(text) from None
    return format_stamp(stamp)


def parse_date(text: str) -> str:
    word = text.strip().lower()
    if word in _INFINITIES:
        return _INFINITIES[word]
    special = _special(word, _now())
    if special is not None:
        return special.date().isoformat()
    m = _STAMP.fullmatch(text) or _COMPACT_DATE.fullmatch(text)
    if m is None:
        raise _bad("date", text)
    zone_name = m.groupdict().get("z")
    if zone_name:
        _zone(zone_name, text, "date")
    year, month, day = int(m["y"]), int(m["mo"]), int(m["d"])
    if not 1 <= year <= 9999:
        raise DatetimeError(
            "22008", f'date/time field value out of range: "{text}" (sqlite-ha stores years 1-9999)'
        )
    try:
        return dt.date(year, month, day).isoformat()
    except ValueError:
        raise _range(text) from None


def parse_time(text: str) -> str:
    """A time of day (an offset or a date before it is ignored, as for PostgreSQL's ``time``)."""
    word = text.strip().lower()
    if word == "allballs":
        return "00:00:00"
    if word == "now":
        return format_stamp(_now())[11:]
    m = _TIME.fullmatch(text)
    if m is None:
        stamped = _STAMP.fullmatch(text)
        if stamped is None or stamped["h"] is None:
            raise _bad("time without time zone", text)
        m = stamped
    hour, minute, second = int(m["h"]), int(m["mi"]), int(m["s"] or 0)
    micro = _fraction(m["f"])
    if minute > 59 or second > 60 or hour > 24 or (hour == 24 and (minute or second or micro)):
        raise _range(text)
    total = ((hour * 60 + minute) * 60 + second) * 1_000_000 + micro
    if total > 86_400_000_000:
        raise _range(text)
    return _clock(total)


def _clock(micros: int) -> str:
    seconds, micro = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    text = f"{hour:02d}:{minute:02d}:{second:02d}"
    return text + f".{micro:06d}".rstrip("0") if micro else text


def format_stamp(stamp: dt.datetime) -> str:
    """The storage form (and PostgreSQL's output, without offset) of a naive datetime."""
    text = (
        f"{stamp.year:04d}-{stamp.month:02d}-{stamp.day:02d} "
        f"{stamp.hour:02d}:{stamp.minute:02d}:{stamp.second:02d}"
    )
    return text + f".{stamp.microsecond:06d}".rstrip("0") if stamp.microsecond else text


# ---------------------------------------------------------------------------------------- stored values
def stored_stamp(value: SQLiteValue, tz: bool) -> str:
    """A stored timestamp in the storage form: already (the common case, returned as is), or an older form
    (ISO with 'T' or an offset, an epoch number), converted; what cannot be read raises ValueError."""
    if type(value) is str:
        n = len(value)
        if (
            (n == 19 or (20 < n < 27 and value[19] == "." and value[20:].isdigit() and value[-1] != "0"))
            and value[10] == " "
            and value[4] == "-"
        ):
            return value
        return parse_timestamp(value, tz)
    if isinstance(value, bytes):
        return stored_stamp(value.decode(), tz)
    if isinstance(value, int | float):
        try:
            return format_stamp(dt.datetime(1970, 1, 1) + dt.timedelta(seconds=value))
        except OverflowError:
            raise DatetimeError("22008", f"timestamp out of range: {value!r}") from None
    raise TypeError(f"not a timestamp: {value!r}")


def stored_date(value: SQLiteValue) -> str:
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        return value
    if isinstance(value, int | float):
        return stored_stamp(value, False)[:10]
    text = value.decode() if isinstance(value, bytes) else str(value)
    return parse_date(text)


def stored_time(value: SQLiteValue) -> str:
    if isinstance(value, str) and len(value) >= 8 and value[2] == ":" and _TIME.fullmatch(value):
        return parse_time(value) if len(value) > 8 else value
    text = value.decode() if isinstance(value, bytes) else str(value)
    return parse_time(text)


# ---------------------------------------------------------------------------------------- output
def timestamp_text(value: SQLiteValue) -> bytes:
    return stored_stamp(value, False).encode()


def timestamptz_text(value: SQLiteValue) -> bytes:
    """PostgreSQL's output with the session's TimeZone, which is always UTC here."""
    text = stored_stamp(value, True)
    return text.encode() if text[0] in "i-" else (text + "+00").encode()


def date_text(value: SQLiteValue) -> bytes:
    return stored_date(value).encode()


def time_text(value: SQLiteValue) -> bytes:
    return stored_time(value).encode()


def _stamp_micros(text: str) -> int:
    if text == "infinity":
        return _PINF8
    if text == "-infinity":
        return _NINF8
    days = dt.date(int(text[0:4]), int(text[5:7]), int(text[8:10])).toordinal() - _EPOCH_ORDINAL
    seconds = ((days * 24 + int(text[11:13])) * 60 + int(text[14:16])) * 60 + int(text[17:19])
    return seconds * 1_000_000 + (int(text[20:].ljust(6, "0")) if len(text) > 20 else 0)


def timestamp_binary(value: SQLiteValue) -> bytes:
    return _I8.pack(_stamp_micros(stored_stamp(value, False)))


def timestamptz_binary(value: SQLiteValue) -> bytes:
    return _I8.pack(_stamp_micros(stored_stamp(value, True)))


def date_binary(value: SQLiteValue) -> bytes:
    text = stored_date(value)
    if text in _INFINITIES:
        return _I4.pack(_PINF4 if text == "infinity" else _NINF4)
    return _I4.pack((dt.date.fromisoformat(text) - _EPOCH_DATE).days)


def time_micros(text: str) -> int:
    """Microseconds of the day of a time in the storage form (``HH:MM:SS[.ffffff]``)."""
    micro = int(text[9:].ljust(6, "0")) if len(text) > 9 else 0
    return ((int(text[0:2]) * 60 + int(text[3:5])) * 60 + int(text[6:8])) * 1_000_000 + micro


def time_binary(value: SQLiteValue) -> bytes:
    return _I8.pack(time_micros(stored_time(value)))


# ---------------------------------------------------------------------------------------- parameters
def timestamp_recv(data: bytes) -> str:
    micros = _I8.unpack(data)[0]
    if micros == _PINF8:
        return "infinity"
    if micros == _NINF8:
        return "-infinity"
    try:
        stamp = _EPOCH + dt.timedelta(microseconds=micros)
    except OverflowError:
        raise DatetimeError("22008", "timestamp out of range") from None
    return format_stamp(stamp)


def date_recv(data: bytes) -> str:
    days = _I4.unpack(data)[0]
    if days == _PINF4:
        return "infinity"
    if days == _NINF4:
        return "-infinity"
    try:
        return (_EPOCH_DATE + dt.timedelta(days=days)).isoformat()
    except OverflowError:
        raise DatetimeError("22008", "date out of range (sqlite-ha stores years 1-9999)") from None


def time_recv(data: bytes) -> str:
    micros = _I8.unpack(data)[0]
    if not 0 <= micros <= 86_400_000_000:
        raise DatetimeError("22008", "time out of range")
    return _clock(micros)


# what ``timetz`` reads a time with its zone by
TIME_PATTERN, STAMP_PATTERN = _TIME, _STAMP
zone = _zone
clock_text = _clock


def parse_stamp(text: str) -> dt.datetime:
    """A stored date or timestamp (storage form, or any form ``parse_timestamp`` reads) as a datetime."""
    stored = parse_timestamp(text, False) if len(text) != 10 else text + " 00:00:00"
    return dt.datetime.fromisoformat(stored)
