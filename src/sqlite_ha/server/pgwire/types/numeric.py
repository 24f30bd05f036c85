"""NUMERIC: what SQLite can keep of a decimal, and PostgreSQL's text and binary forms of it.

A numeric column is declared ``NUMERIC REAL(p, s)`` by the dialect: REAL affinity, so every value is an
8-byte float (7 stays 7.0, and 7 / 2 is 3.5 as in PostgreSQL, not SQLite's integer 3). A double holds any
decimal of at most 15 significant digits exactly (by the shortest text that reads back), so that is the
limit: a parameter with more is refused with 22003 and a hint, never rounded silently. On the way out a
float is read at 15 significant digits, which gives back every stored value exactly and drops the binary
drift of arithmetic on them (70.4 - 0.1 is 70.3, not 70.30000000000001); a column declared ``numeric(p, s)``
prints with its scale, as PostgreSQL does (``70.40``). Integers that SQLite keeps as integers (an older
NUMERIC column, an integer expression) are exact in full.
"""

from __future__ import annotations

import decimal
import math
import struct
from collections.abc import Callable
from decimal import Decimal

from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.server.pgwire.types.registry import BadParameter

_HEADER = struct.Struct(">hhHH")
_NAN, _PINF, _NINF = 0xC000, 0xD000, 0xF000
_EXACT = decimal.Context(prec=1000)
DIGITS = 15  # significant digits a double holds exactly, whatever the decimal (DBL_DIG)
HINT = "sqlite-ha stores a numeric as a double: up to 15 significant digits are exact"


def typmod_of(precision: int, scale: int) -> int:
    """The type modifier of ``numeric(precision, scale)``, as pg_attribute.atttypmod holds it."""
    return ((precision << 16) | (scale & 0x7FF)) + 4


def scale_of(typmod: int) -> int | None:
    return None if typmod < 4 else (typmod - 4) & 0x7FF


def to_decimal(value: SQLiteValue) -> Decimal:
    """A stored value as the decimal it stands for (a float by its shortest repr)."""
    if type(value) is int:
        return Decimal(value)
    if isinstance(value, float):
        if math.isnan(value):
            return Decimal("NaN")
        if math.isinf(value):
            return Decimal("Infinity" if value > 0 else "-Infinity")
        return Decimal(f"{value:.15g}")
    text = value.decode() if isinstance(value, bytes) else str(value)
    return Decimal(text.strip())


def decimal_text(d: Decimal, scale: int | None = None) -> str:
    if d.is_nan():
        return "NaN"
    if d.is_infinite():
        return "Infinity" if d > 0 else "-Infinity"
    if scale is not None:
        d = d.quantize(Decimal(1).scaleb(-scale), rounding=decimal.ROUND_HALF_UP, context=_EXACT)
    text = format(d, "f")
    return "0" if text == "-0" else text


def text_out(value: SQLiteValue) -> bytes:
    if type(value) is int:
        return str(value).encode()
    try:
        return decimal_text(to_decimal(value)).encode()
    except decimal.InvalidOperation:
        return value.encode() if isinstance(value, str) else str(value).encode()  # what is stored


def binary_out(value: SQLiteValue) -> bytes:
    return numeric_send(to_decimal(value))


def scaled(scale: int) -> tuple[Callable[[SQLiteValue], bytes], Callable[[SQLiteValue], bytes]]:
    """(text, binary) encoders of a ``numeric(p, scale)`` column."""
    quantum = Decimal(1).scaleb(-scale)

    def text(value: SQLiteValue) -> bytes:
        try:
            return decimal_text(to_decimal(value), scale).encode()
        except decimal.InvalidOperation:
            return value.encode() if isinstance(value, str) else str(value).encode()

    def binary(value: SQLiteValue) -> bytes:
        d = to_decimal(value)
        if d.is_finite():
            d = d.quantize(quantum, rounding=decimal.ROUND_HALF_UP, context=_EXACT)
        return numeric_send(d)

    return text, binary


def constrained(d: Decimal, precision: int, scale: int) -> Decimal:
    """``d`` as a ``numeric(precision, scale)`` holds it: rounded half away from zero to the scale, and
    PostgreSQL's 22003 "numeric field overflow" when more integer digits remain than the type allows."""
    if not d.is_finite():
        if d.is_infinite():
            raise BadParameter("numeric field overflow", "22003")
        return d
    d = d.quantize(Decimal(1).scaleb(-scale), rounding=decimal.ROUND_HALF_UP, context=_EXACT)
    if d and d.adjusted() >= precision - scale:
        raise BadParameter(
            f"numeric field overflow: a field with precision {precision}, scale {scale} must round to an"
            f" absolute value less than 10^{precision - scale}",
            "22003",
        )
    return d


def storable(d: Decimal, text: str) -> SQLiteValue:
    """What SQLite stores for the decimal ``d``: an int, a float that reads back as ``d``, or a 22003."""
    if d.is_nan():
        return "NaN"  # SQLite would store a float NaN as NULL
    if d.is_infinite():
        return math.inf if d > 0 else -math.inf
    if len(d.normalize(context=_EXACT).as_tuple().digits) <= DIGITS:
        return int(d) if d == d.to_integral_value() and abs(d) < 2**63 else float(d)
    raise BadParameter(
        f'numeric value "{text[:60]}" cannot be stored exactly ({HINT}; beyond that, store it as text)',
        "22003",
    )


def text_in(data: bytes) -> SQLiteValue:
    text = data.decode()
    try:
        d = Decimal(text.strip())
    except decimal.InvalidOperation:
        raise BadParameter(f'invalid input syntax for type numeric: "{text}"') from None
    if text.strip().lower() in ("inf", "+inf", "-inf"):
        raise BadParameter(f'invalid input syntax for type numeric: "{text}"')
    return storable(d, text)


def binary_in(data: bytes) -> SQLiteValue:
    d = numeric_recv(data)
    return storable(d, str(d))


def numeric_send(d: Decimal) -> bytes:
    """PostgreSQL's numeric binary format: base-10000 digits, weight, sign and display scale."""
    if d.is_nan():
        return _HEADER.pack(0, 0, _NAN, 0)
    if d.is_infinite():
        return _HEADER.pack(0, 0, _PINF if d > 0 else _NINF, 0)
    sign, digits, exponent = d.as_tuple()
    assert isinstance(exponent, int)
    dscale = max(0, -exponent)
    text = "".join(map(str, digits))
    if exponent >= 0:
        int_part, frac_part = text + "0" * exponent, ""
    else:
        cut = len(text) + exponent
        int_part, frac_part = (text[:cut] if cut > 0 else ""), (text[cut:] if cut >= 0 else "0" * -cut + text)
    int_part = int_part.lstrip("0")
    int_groups = []
    if int_part:
        padded = "0" * ((-len(int_part)) % 4) + int_part
        int_groups = [int(padded[i : i + 4]) for i in range(0, len(padded), 4)]
    frac_groups = []
    if frac_part:
        padded = frac_part + "0" * ((-len(frac_part)) % 4)
        frac_groups = [int(padded[i : i + 4]) for i in range(0, len(padded), 4)]
    groups = int_groups + frac_groups
    weight = len(int_groups) - 1
    while groups and groups[-1] == 0:
        groups.pop()
    while groups and groups[0] == 0:
        groups.pop(0)
        weight -= 1
    if not groups:
        weight = 0
    flag = 0x4000 if sign and groups else 0
    return struct.pack(f">hhHH{len(groups)}H", len(groups), weight, flag, dscale, *groups)


def numeric_recv(data: bytes) -> Decimal:
    ndigits, weight, sign, dscale = _HEADER.unpack_from(data)
    if sign == _NAN:
        return Decimal("NaN")
    if sign in (_PINF, _NINF):
        return Decimal("Infinity" if sign == _PINF else "-Infinity")
    groups = struct.unpack_from(f">{ndigits}H", data, _HEADER.size)
    digits = "".join(f"{g:04d}" for g in groups) or "0"
    value = Decimal(int(digits)).scaleb(4 * (weight - ndigits + 1), context=_EXACT)
    if sign == 0x4000:
        value = -value
    return value.quantize(Decimal(1).scaleb(-dscale), context=_EXACT)
