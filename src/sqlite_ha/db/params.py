"""Turn a request's ``params`` into apsw bindings, deterministically.

An array binds by position. An object binds by name, keys stripped of one leading ``$ : @ ?`` as in the ``ha``
command; an object whose keys are all numbers (``{"$1": …, "$2": …}``) binds by position. An object mixing
both kinds is refused: which value lands where would otherwise depend on the statement's text in ways a
client cannot see.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlite_ha.db.values import SQLiteValue, from_json
from sqlite_ha.errors import InvalidParams

Bindings = tuple[SQLiteValue, ...] | dict[str, SQLiteValue] | None

MAX_PARAMS = 32766  # SQLITE_MAX_VARIABLE_NUMBER of current builds


def bindings_from_json(params: Any) -> Bindings:
    if params is None:
        return None
    if isinstance(params, list):
        if len(params) > MAX_PARAMS:
            raise InvalidParams(f"too many parameters ({len(params)} > {MAX_PARAMS})")
        return tuple(from_json(v, f"parameter {i + 1}") for i, v in enumerate(params))
    if isinstance(params, Mapping):
        return _bindings_from_object(params)
    raise InvalidParams(f"params must be an object or an array, not {type(params).__name__}")


def _bindings_from_object(params: Mapping[str, Any]) -> Bindings:
    named: dict[str, SQLiteValue] = {}
    positional: dict[int, SQLiteValue] = {}
    for key, value in params.items():
        name = key[1:] if key[:1] in ("$", ":", "@", "?") else key
        if not name:
            raise InvalidParams(f"parameter name {key!r} is empty")
        if name.isdigit():
            positional[int(name)] = from_json(value, f"parameter {key}")
        else:
            if name in named:
                raise InvalidParams(f"parameter {name!r} is given twice")
            named[name] = from_json(value, f"parameter {key}")
    if named and positional:
        raise InvalidParams(
            f"params mixes positional and named keys ({sorted(positional)[0]} and {next(iter(named))!r})",
            hint="use only names, or only numbers ($1, $2, …), in one statement",
        )
    if positional:
        n = max(positional)
        if n > MAX_PARAMS:
            raise InvalidParams(f"parameter number {n} is too large")
        missing = [i for i in range(1, n + 1) if i not in positional]
        if missing:
            raise InvalidParams(f"positional parameter ${missing[0]} is missing")
        return tuple(positional[i] for i in range(1, n + 1))
    return named
