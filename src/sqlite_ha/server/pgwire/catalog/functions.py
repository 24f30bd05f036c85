"""PostgreSQL's functions for catalog queries, as SQLite functions of the catalog database.

The ones that need the catalog's contents (``pg_get_indexdef``, ``to_regclass``, …) are methods of
``Catalog``; these need only their arguments. Arrays come in any form ``arrays.items`` reads (the catalog
stores PostgreSQL literals and vectors, queries build JSON); the ``pg_*`` helpers below are what
``catalog_query`` rewrites array syntax into.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import apsw

from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.server.pgwire.catalog.keywords import QUOTED
from sqlite_ha.server.pgwire.types import arrays, scalars
from sqlite_ha.server.pgwire.types import values as t


class FunctionError(Exception):
    """A catalog function refuses, with PostgreSQL's SQLSTATE (SQLite passes the exception through)."""

    def __init__(self, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


def export_snapshot() -> str:
    """``pg_export_snapshot()`` (``pg_dump -j``): a snapshot cannot be shared between connections here."""
    raise FunctionError(
        "0A000",
        "exporting a snapshot to other sessions is not supported",
        hint="run pg_dump without -j, or with --no-synchronized-snapshots on a database that takes no writes",
    )


def register(conn: apsw.Connection) -> None:
    functions: dict[str, tuple[Callable[..., Any], int]] = {
        "pg_table_is_visible": (lambda oid: 1, 1),
        "pg_function_is_visible": (lambda oid: 1, 1),
        "pg_get_function_result": (lambda oid: None, 1),  # no user functions: pg_proc is empty
        "pg_get_function_arguments": (lambda oid: None, 1),
        "pg_type_is_visible": (lambda oid: 1, 1),
        "pg_collation_is_visible": (lambda oid: 1, 1),
        "current_schema": (lambda: "public", 0),
        # the search path: pg_catalog first, implicitly (pgbench looks its tables up in it)
        "current_schemas": (lambda implicit: '["pg_catalog", "public"]' if implicit else '["public"]', 1),
        "array_position": (array_position, -1),
        "to_regtype": (to_regtype, 1),
        "format_type": (format_type, 2),
        "pg_encoding_to_char": (lambda n: "UTF8", 1),
        "pg_export_snapshot": (export_snapshot, 0),
        "pg_tablespace_location": (lambda oid: "", 1),  # the built-in tablespaces: no location
        "obj_description": (lambda *a: None, -1),
        "col_description": (lambda *a: None, 2),
        "shobj_description": (lambda *a: None, 2),
        "has_table_privilege": (lambda *a: 1, -1),
        "has_schema_privilege": (lambda *a: 1, -1),
        "has_database_privilege": (lambda *a: 1, -1),
        "pg_get_expr": (lambda expr, *a: expr, -1),
        "pg_relation_is_publishable": (lambda oid: 0, 1),
        "pg_get_serial_sequence": (lambda *a: None, -1),
        "pg_get_statisticsobjdef_columns": (lambda oid: None, 1),
        "pg_partition_ancestors": (lambda oid: oid, 1),  # no partitions: a relation is its only ancestor
        # sizes: not known to the catalog (NULL, which psql shows as empty), rather than a made-up number
        "pg_table_size": (lambda oid: None, 1),
        "pg_relation_size": (lambda *a: None, -1),
        "pg_total_relation_size": (lambda oid: None, 1),
        "pg_indexes_size": (lambda oid: None, 1),
        "pg_database_size": (lambda db: None, 1),
        "pg_size_pretty": (size_pretty, 1),
        "regexp": (regexp, 2),
        "json_build_object": (json_build_object, -1),
        "acldefault": (lambda kind, owner: "{}", 2),  # no privileges are kept: every ACL is NULL (default)
        "quote_ident": (quote_ident, 1),
        "quote_literal": (quote_literal, 1),
        # arrays
        "array_remove": (array_remove, 2),
        "array_to_string": (array_to_string, -1),
        "array_length": (array_length, -1),
        "array_upper": (array_upper, 2),
        "array_lower": (array_lower, 2),
        "cardinality": (lambda a: len(arrays.items(a)) if a is not None else None, 1),
        "pg_json": (lambda a: None if a is None else arrays.to_json(a), 1),
        "pg_positions": (pg_positions, -1),
        "pg_nth": (pg_nth, 2),
        "pg_expand": (pg_expand, 2),
        "pg_subscript": (pg_subscript, -1),
        "pg_element": (pg_element, 2),
        "pg_series": (pg_series, -1),
        "pg_bool": (scalars.bool_cast, 1),  # what a cast to boolean becomes
    }
    for name, (fn, nargs) in functions.items():
        conn.create_scalar_function(name, fn, nargs, deterministic=True)


def to_regtype(name: SQLiteValue) -> int | None:
    if not isinstance(name, str):
        return None
    wanted = name.strip().lower().removeprefix("pg_catalog.")
    if wanted.endswith("[]"):
        element = t.REGISTRY.named(wanted[:-2])
        return element.array or None if element is not None else None
    found = t.REGISTRY.named(wanted)
    return found.oid if found is not None else None


_PRECISION_TYPES = {t.TIME, t.TIMESTAMP, t.TIMESTAMPTZ}


def format_type(oid: SQLiteValue, typmod: SQLiteValue = None) -> str | None:
    if not isinstance(oid, int):
        return None
    if oid == 0:
        return "-"
    array = arrays.ARRAY_TYPES.get(oid)
    if array is not None and not array.vector:
        element = format_type(array.element, typmod)
        return f"{element}[]" if element else None
    found = t.REGISTRY.get(oid)
    if found is None:
        return "???"
    scale = typmod - 4 if isinstance(typmod, int) and typmod >= 4 else None
    if scale is not None and oid == t.NUMERIC:
        return f"numeric({scale >> 16},{scale & 0x7FF})"
    if scale is not None and oid in (t.VARCHAR, t.BPCHAR):
        return f"{found.sql_name}({scale})"
    if isinstance(typmod, int) and typmod >= 0 and oid in _PRECISION_TYPES:
        head, _, zone = found.sql_name.partition(" ")  # "timestamp(3) with time zone"
        return f"{head}({typmod}) {zone}".strip()
    return found.sql_name


_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*")


def quote_ident(name: SQLiteValue) -> str | None:
    """``quote_ident``: bare when a plain lower-case name that is no keyword needing quotes (``select``
    is quoted, ``name`` is not), else double-quoted."""
    if name is None:
        return None
    text = str(name)
    if _PLAIN_NAME.fullmatch(text) and text not in QUOTED:
        return text
    return '"' + text.replace('"', '""') + '"'


def quote_literal(value: SQLiteValue) -> str | None:
    if value is None:
        return None
    text = str(value)
    quoted = "'" + text.replace("'", "''") + "'"
    return "E" + quoted.replace("\\", "\\\\") if "\\" in text else quoted


def array_remove(array: SQLiteValue, element: SQLiteValue) -> str | None:
    if array is None:
        return None
    return json.dumps([v for v in arrays.items(array) if v != element])


def regexp(pattern: SQLiteValue, value: SQLiteValue) -> int | None:
    if pattern is None or value is None:
        return None
    return 1 if re.search(str(pattern), str(value)) else 0


def json_build_object(*args: SQLiteValue) -> str:
    return json.dumps({str(args[i]): args[i + 1] for i in range(0, len(args) - 1, 2)})


def _lower(array: SQLiteValue) -> int:
    """The subscript of an array's first element: 0 for the catalog's vectors (``1 2``), else 1."""
    text = array.lstrip() if isinstance(array, str) else ""
    return 1 if text.startswith(("[", "{")) else 0


def array_to_string(array: SQLiteValue, separator: SQLiteValue, null: SQLiteValue = None) -> str | None:
    if array is None or separator is None:
        return None
    texts = (str(v) if v is not None else null for v in arrays.items(array))
    return str(separator).join(str(v) for v in texts if v is not None)


def array_position(array: SQLiteValue, element: SQLiteValue, start: SQLiteValue = 1) -> int | None:
    """The subscript of the first element equal to ``element`` (from ``start``), NULL if none."""
    if array is None:
        return None
    first = _lower(array)
    for i, value in enumerate(arrays.items(array)):
        if i + first >= (start if isinstance(start, int) else 1) and value == element and value is not None:
            return i + first
    return None


def array_length(array: SQLiteValue, dimension: SQLiteValue = 1) -> int | None:
    n = len(arrays.items(array)) if array is not None else 0
    return n if n and dimension == 1 else None


def array_upper(array: SQLiteValue, dimension: SQLiteValue) -> int | None:
    n = array_length(array, dimension)
    return None if n is None else _lower(array) + n - 1


def array_lower(array: SQLiteValue, dimension: SQLiteValue) -> int | None:
    return None if array_length(array, dimension) is None else _lower(array)


def pg_positions(*array_list: SQLiteValue) -> str:
    """``[0, 1, …]`` as long as the longest array: the rows of set-returning functions run in lockstep."""
    longest = max((len(arrays.items(a)) for a in array_list if a is not None), default=0)
    return json.dumps(list(range(longest)))


def pg_nth(array: SQLiteValue, position: SQLiteValue) -> SQLiteValue:
    """The element at a 0-based position (``unnest`` in a select list), NULL past the end."""
    values = arrays.items(array) if array is not None else []
    return values[position] if isinstance(position, int) and 0 <= position < len(values) else None


def pg_expand(array: SQLiteValue, position: SQLiteValue) -> str | None:
    """``information_schema._pg_expandarray(a)`` at a 0-based position: the record (x: the element,
    n: its 1-based index) as a JSON object, NULL past the end."""
    values = arrays.items(array) if array is not None else []
    if not isinstance(position, int) or not 0 <= position < len(values):
        return None
    return json.dumps({"x": values[position], "n": position + 1})


def pg_subscript(array: SQLiteValue, position: SQLiteValue, dimension: SQLiteValue = 1) -> int | None:
    """The subscript of the element at a 0-based position (``generate_subscripts``), NULL past the end."""
    values = arrays.items(array) if array is not None and dimension in (1, "1") else []
    return _lower(array) + position if isinstance(position, int) and 0 <= position < len(values) else None


def pg_element(array: SQLiteValue, subscript: SQLiteValue) -> SQLiteValue:
    """``array[subscript]``, with the array's own first subscript."""
    if array is None or subscript is None:
        return None
    return pg_nth(array, int(subscript) - _lower(array))


def pg_series(start: SQLiteValue, stop: SQLiteValue, step: SQLiteValue = 1) -> str:
    """``generate_series(start, stop[, step])`` of integers, as a JSON array."""
    if not all(isinstance(v, int) for v in (start, stop, step)) or step == 0:
        return "[]"
    return json.dumps(list(range(start, stop + (1 if step > 0 else -1), step)))  # type: ignore[arg-type, operator]


def size_pretty(size: SQLiteValue) -> str | None:
    """``pg_size_pretty``: bytes, kB, MB, … (units of 1024, rounded, as PostgreSQL prints them)."""
    if not isinstance(size, int | float):
        return None
    value = int(size)
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(value) < 10 * 1024 or unit == "TB":
            return f"{value} {unit}"
        value = (value + 512) // 1024
    return None  # unreachable: TB is the last unit
