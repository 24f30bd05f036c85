"""PostgreSQL interval text (``'1 day 02:30'``, ``'3 hours ago'``) as SQLite ``datetime()`` modifiers.

SQLite has no interval type: ``timestamp ± interval`` is rewritten into ``datetime(x, 'subsec', '+1 days',
…)``, which needs the interval in SQLite's modifier units. The same reading normalises interval literals
before sqlglot parses them, because sqlglot keeps only one ``N unit`` of an interval string.
"""

from __future__ import annotations

import re

from sqlglot import exp

from sqlite_ha.server.pgwire.sql.translation import TranslationError

# PostgreSQL interval units → (SQLite modifier unit, factor), in the order SQLite must apply them
_INTERVAL_UNITS: dict[str, tuple[str, float]] = {}
for _names, _unit, _factor in (
    ("year years yr yrs y", "years", 1.0),
    ("month months mon mons", "months", 1.0),
    ("week weeks w", "days", 7.0),
    ("day days d", "days", 1.0),
    ("hour hours hr hrs h", "hours", 1.0),
    ("minute minutes min mins m", "minutes", 1.0),
    ("second seconds sec secs s", "seconds", 1.0),
    ("millisecond milliseconds ms msec msecs", "seconds", 1e-3),
    ("microsecond microseconds us usec usecs", "seconds", 1e-6),
):
    _INTERVAL_UNITS.update(dict.fromkeys(_names.split(), (_unit, _factor)))
_MODIFIER_ORDER = ("years", "months", "days", "hours", "minutes", "seconds")
_INTERVAL_PART = re.compile(
    r"\s*(?:(?P<n>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?P<unit>[a-z]+)"
    r"|(?P<sign>[+-])?(?P<h>\d+):(?P<m>\d+)(?::(?P<s>\d+(?:\.\d*)?))?)",
    re.I,
)


def _interval_totals(text: str) -> dict[str, float]:
    """``'1 day 02:00 ago'`` → ``{"days": -1, "hours": -2, …}``, in SQLite's modifier units."""
    body, sign = text.strip().removeprefix("@").strip(), 1.0
    if body.lower().endswith(" ago"):
        body, sign = body[:-4], -1.0
    totals = dict.fromkeys(_MODIFIER_ORDER, 0.0)
    pos = 0
    while pos < len(body.rstrip()):
        m = _INTERVAL_PART.match(body, pos)
        if m is None or (m["unit"] is not None and m["unit"].lower() not in _INTERVAL_UNITS):
            raise TranslationError(f"interval {text!r} is not understood")
        if m["unit"] is not None:
            target, factor = _INTERVAL_UNITS[m["unit"].lower()]
            totals[target] += sign * float(m["n"]) * factor
        else:
            clock_sign = -sign if m["sign"] == "-" else sign
            totals["hours"] += clock_sign * float(m["h"])
            totals["minutes"] += clock_sign * float(m["m"])
            totals["seconds"] += clock_sign * float(m["s"] or 0)
        pos = m.end()
    return totals


def normalized_interval(text: str) -> str | None:
    """The interval in ``N unit`` parts only, or None if it does not parse.

    sqlglot keeps a single ``N unit`` of an interval string and drops the rest (``'1 day 02:30'`` becomes
    ``'1' DAY``), so interval literals are rewritten into a form it keeps whole before it reads them.
    """
    try:
        totals = _interval_totals(text)
    except TranslationError:
        return None
    return " ".join(f"{_number(v)} {unit}" for unit, v in totals.items() if v) or "0 seconds"


def interval_modifiers(interval: exp.Interval, sign: int) -> list[str]:
    """``'1 day 02:00'`` → ``['+1 days', '+2 hours']`` for SQLite's date functions."""
    if not isinstance(interval.this, exp.Literal):
        raise TranslationError(f"interval {interval.sql(dialect='postgres')} is not a literal")
    unit = interval.text("unit")
    text = f"{interval.this.name} {unit}" if unit else interval.this.name
    return [f"{_signed(sign * v)} {unit}" for unit, v in _interval_totals(text).items() if v]


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.6f}".rstrip("0")


def _signed(value: float) -> str:
    text = _number(value)
    return text if text.startswith("-") else "+" + text


def interval_parts(text: str) -> dict[str, float]:
    """An interval's text as totals per unit (years, months, days, hours, minutes, seconds); ValueError if
    it does not parse. The type's codecs (``types/interval.py``) read parameters and stored values with it."""
    try:
        return _interval_totals(text)
    except TranslationError as e:
        raise ValueError(str(e)) from None
