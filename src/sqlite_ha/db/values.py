"""Lossless mapping between SQLite values and JSON.

JSON has no bytes and no NaN/Infinity, and many JSON readers turn large integers into doubles. SQLite values
therefore travel as plain JSON where that is exact (integers, finite floats, text, null) and as a one-key
typed object otherwise:

- ``{"$blob": "<base64>"}`` for a BLOB, so bytes never read back as text;
- ``{"$float": "NaN" | "Infinity" | "-Infinity"}`` for non-finite REALs;
- ``{"$int": "<decimal>"}`` accepted on input, for clients whose JSON cannot carry 64-bit integers.

The same encoding is used for request parameters and result rows, so any value read can be written back.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

from sqlite_ha.errors import InvalidParams

SQLiteValue = int | float | str | bytes | None

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_NONFINITE_OUT = {math.inf: "Infinity", -math.inf: "-Infinity"}
_NONFINITE_IN = {
    "nan": math.nan,
    "infinity": math.inf,
    "+infinity": math.inf,
    "-infinity": -math.inf,
    "inf": math.inf,
    "+inf": math.inf,
    "-inf": -math.inf,
}


def to_json(value: SQLiteValue) -> Any:
    """Encode one SQLite value for a JSON response."""
    if isinstance(value, bytes):
        return {"$blob": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": "NaN" if math.isnan(value) else _NONFINITE_OUT[value]}
    return value


def row_to_json(row: tuple[SQLiteValue, ...]) -> list[Any]:
    """Encode a row; the common all-plain case costs one scan and no copies of values."""
    for v in row:
        if isinstance(v, bytes) or (isinstance(v, float) and not math.isfinite(v)):
            return [to_json(x) for x in row]
    return list(row)


def from_json(value: Any, where: str) -> SQLiteValue:
    """Decode one JSON parameter into an SQLite value; ``where`` names it in errors."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidParams(f"{where}: integer {value} does not fit in 64 bits")
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((tag, payload),) = value.items()
        if tag == "$blob" and isinstance(payload, str):
            try:
                return base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                raise InvalidParams(f"{where}: $blob is not valid base64") from None
        if tag == "$float" and isinstance(payload, str) and payload.lower() in _NONFINITE_IN:
            return _NONFINITE_IN[payload.lower()]
        if tag == "$int" and isinstance(payload, str):
            try:
                return from_json(int(payload), where)
            except ValueError:
                raise InvalidParams(f"{where}: $int is not a decimal integer") from None
    raise InvalidParams(
        f"{where}: unsupported value {type(value).__name__}",
        hint='use a number, string, null, {"$blob": base64}, {"$float": "NaN"} or {"$int": "123"}; '
        "send JSON documents as strings",
    )
