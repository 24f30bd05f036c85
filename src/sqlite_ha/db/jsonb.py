"""PostgreSQL's jsonb operators as SQL functions and a collation, over JSON stored as text.

SQLite's own ``->`` extracts as PostgreSQL's does, but the rest has no SQLite equivalent with the same
meaning: containment (``@>``, ``<@``), key existence (``?``, ``?|``, ``?&``), paths given as a text array
(``#>``, ``#>>``), ``->>`` that answers text (SQLite's answers ``1`` for ``true`` and a number for a number,
which then compares unequal to ``'1'``), and jsonb's ordering (``'10'::jsonb > '8'::jsonb``; as text,
``'10' < '8'``). The dialect translates the operators to these functions and puts comparisons and ORDER BY
of jsonb values under the ``pg_jsonb`` collation. Like ``functions.py``, they are on every connection.

The rules are PostgreSQL's (``jsonb_contains``, ``compareJsonbContainers`` in ``jsonb_util.c``): an object
contains another when every key of the other is there with a contained value; an array contains another
when every element of the other is contained in some element; a top-level array contains a scalar it holds.
Ordering: object > array > boolean > number > string > null; objects by pair count, then by keys in jsonb's
storage order (shorter keys first) and values; arrays by length, then element by element.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from sqlite_ha.db.values import SQLiteValue

_MISSING = object()


@functools.lru_cache(maxsize=256)
def _parse(text: str) -> Any:
    return json.loads(text)


def _load(value: SQLiteValue) -> Any:
    """The JSON value of a stored jsonb (text), or of a number SQLite produced; _MISSING for NULL."""
    if value is None:
        return _MISSING
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, str):
        return _parse(value) if len(value) < 4096 else json.loads(value)
    return value  # an integer or a real: a JSON number already


def _dump(value: Any) -> str:
    """As PostgreSQL prints a jsonb: ``{"a": 1, "bb": [1, 2]}``, keys in jsonb's order (shorter first)."""
    return json.dumps(_ordered(value), separators=(", ", ": "), ensure_ascii=False)


def _ordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _ordered(value[k]) for k in sorted(value, key=_storage_order)}
    if isinstance(value, list):
        return [_ordered(v) for v in value]
    return value


def _contains(a: Any, b: Any, top: bool = True) -> bool:
    if isinstance(b, dict):
        return isinstance(a, dict) and all(k in a and _contains(a[k], v, False) for k, v in b.items())
    if isinstance(b, list):
        if not isinstance(a, list):
            return False
        return all(any(_contains(x, y, False) for x in a) for y in b)
    if isinstance(a, list) and top:
        return any(not isinstance(x, dict | list) and _equal_scalar(x, b) for x in a)
    return not isinstance(a, dict | list) and _equal_scalar(a, b)


def _equal_scalar(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    numbers = isinstance(a, int | float) and isinstance(b, int | float)
    return (type(a) is type(b) or numbers) and a == b


def contains(a: SQLiteValue, b: SQLiteValue) -> int | None:
    """``a @> b``."""
    left, right = _load(a), _load(b)
    if left is _MISSING or right is _MISSING:
        return None
    return int(_contains(left, right))


def _keys(value: SQLiteValue) -> list[str] | None:
    """The text array of ``?|``/``?&``: JSON text (``ARRAY[…]``) or a PostgreSQL literal ``{a,b}``."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    stripped = text.strip()
    if stripped.startswith("["):
        return [_as_text(v) or "" for v in json.loads(stripped) if v is not None]
    if not (stripped.startswith("{") and stripped.endswith("}")):
        raise ValueError(f"malformed array literal: {text[:60]!r}")
    return [k for k in literal_items(stripped[1:-1]) if k is not None]


def literal_items(body: str) -> list[str | None]:
    """The elements of a one-dimensional PostgreSQL array literal's body: ``a,"b c",NULL``."""
    out: list[str | None] = []
    i, n = 0, len(body)
    while i < n:
        while i < n and body[i].isspace():
            i += 1
        chars: list[str] = []
        quoted = i < n and body[i] == '"'
        i += quoted
        while i < n and (body[i] != '"' if quoted else body[i] != ","):
            if body[i] == "\\" and i + 1 < n:
                i += 1
            chars.append(body[i])
            i += 1
        word = "".join(chars) if quoted else "".join(chars).strip()
        out.append(None if not quoted and word.upper() == "NULL" else word)
        while i < n and body[i] != ",":
            i += 1
        i += 1
    return out


def _has(doc: Any, key: str) -> bool:
    if isinstance(doc, dict):
        return key in doc
    if isinstance(doc, list):
        return any(isinstance(x, str) and x == key for x in doc)
    return isinstance(doc, str) and doc == key


def exists(a: SQLiteValue, key: SQLiteValue) -> int | None:
    """``a ? key``: a top-level key, or a string element of a top-level array."""
    doc = _load(a)
    if doc is _MISSING or key is None:
        return None
    return int(_has(doc, str(key)))


def exists_any(a: SQLiteValue, keys: SQLiteValue) -> int | None:
    doc, wanted = _load(a), _keys(keys)
    if doc is _MISSING or wanted is None:
        return None
    return int(any(_has(doc, k) for k in wanted))


def exists_all(a: SQLiteValue, keys: SQLiteValue) -> int | None:
    doc, wanted = _load(a), _keys(keys)
    if doc is _MISSING or wanted is None:
        return None
    return int(all(_has(doc, k) for k in wanted))


def _walk(a: SQLiteValue, path: SQLiteValue) -> Any:
    doc, steps = _load(a), _keys(path)
    if doc is _MISSING or steps is None:
        return _MISSING
    for step in steps:
        if isinstance(doc, dict):
            doc = doc.get(step, _MISSING)
        elif isinstance(doc, list):
            try:
                i = int(step)
            except ValueError:
                return _MISSING
            if not -len(doc) <= i < len(doc):
                return _MISSING
            doc = doc[i]
        else:
            return _MISSING
        if doc is _MISSING:
            return _MISSING
    return doc


def path(a: SQLiteValue, steps: SQLiteValue) -> str | None:
    """``a #> '{k1,k2,…}'``: jsonb (text); NULL where the path leads nowhere."""
    found = _walk(a, steps)
    return None if found is _MISSING else _dump(found)


def _as_text(value: Any) -> str | None:
    if value is _MISSING or value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return _dump(value)


def path_text(a: SQLiteValue, steps: SQLiteValue) -> str | None:
    """``a #>> '{k1,k2,…}'``: text; a JSON null is NULL, as in PostgreSQL."""
    return _as_text(_walk(a, steps))


def text(fragment: SQLiteValue) -> str | None:
    """``->>``: the text of what SQLite's ``->`` extracted (JSON text): strings unquoted, ``true``, numbers
    as written, objects and arrays as JSON."""
    return _as_text(_load(fragment))


_RANK = {dict: 5, list: 4, bool: 3, int: 2, float: 2, str: 1, type(None): 0}


def _storage_order(key: str) -> tuple[int, bytes]:
    raw = key.encode()
    return len(raw), raw


def compare_values(a: Any, b: Any) -> int:
    ra, rb = _RANK[type(a)], _RANK[type(b)]
    if ra != rb:
        return -1 if ra < rb else 1
    if isinstance(a, dict):
        if len(a) != len(b):
            return -1 if len(a) < len(b) else 1
        ka, kb = sorted(a, key=_storage_order), sorted(b, key=_storage_order)
        for x, y in zip(ka, kb, strict=True):
            if x != y:
                return -1 if _storage_order(x) < _storage_order(y) else 1
        for k in ka:
            c = compare_values(a[k], b[k])
            if c:
                return c
        return 0
    if isinstance(a, list):
        if len(a) != len(b):
            return -1 if len(a) < len(b) else 1
        for x, y in zip(a, b, strict=True):
            c = compare_values(x, y)
            if c:
                return c
        return 0
    if isinstance(a, str):
        ea, eb = a.encode(), b.encode()
        return int(ea > eb) - int(ea < eb)
    return int(a > b) - int(a < b)


def collate(a: str, b: str) -> int:
    """The ``pg_jsonb`` collation: two jsonb texts compared as PostgreSQL compares jsonb. Text that is not
    JSON (a plain string compared with a jsonb) sorts as text after every JSON value."""
    try:
        left = _parse(a)
    except ValueError:
        left = _MISSING
    try:
        right = _parse(b)
    except ValueError:
        right = _MISSING
    if left is _MISSING or right is _MISSING:
        if left is _MISSING and right is _MISSING:
            return (a > b) - (a < b)
        return 1 if left is _MISSING else -1
    return compare_values(left, right)
