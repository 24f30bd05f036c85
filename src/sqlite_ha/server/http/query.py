"""Request bodies of ``POST /query`` into statements, and results into response bodies.

Shapes follow the ``ha`` command: one object ``{"sql", "params"}`` answers ``{"columns", "rows"}``; a list
answers ``{"results": [...]}`` and runs as one transaction. Statements that do not return rows answer the
columns ``rows_affected`` and ``last_insert_id``.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from sqlite_ha.db.authorizer import Permission
from sqlite_ha.db.params import bindings_from_json
from sqlite_ha.db.statement import Result, Statement
from sqlite_ha.db.values import row_to_json
from sqlite_ha.errors import BadRequest, InvalidJSON, InvalidParams

MAX_STATEMENTS = 10_000
_ALLOWED_KEYS = frozenset({"sql", "params"})
_EXEC_COLUMNS = ["rows_affected", "last_insert_id"]
_EXEC_TYPES = ["INTEGER", "INTEGER"]


def parse_body(body: bytes, grant: Permission | None = None) -> tuple[list[Statement], bool]:
    """Return the statements and whether the client sent a list (which decides the response shape);
    ``grant``: the permissions they run with (None: unrestricted)."""
    if not body.strip():
        raise InvalidJSON('the request body is empty; send {"sql": "..."} or a list of them')
    doc = load_json(body)
    if isinstance(doc, dict):
        return [_statement(doc, None, grant)], False
    if isinstance(doc, list):
        if not doc:
            raise BadRequest("the list of statements is empty")
        if len(doc) > MAX_STATEMENTS:
            raise BadRequest(f"too many statements in one request ({len(doc)} > {MAX_STATEMENTS})")
        return [_statement(item, i, grant) for i, item in enumerate(doc)], True
    raise BadRequest('the request body must be an object {"sql": …, "params": …} or a list of them')


def _refuse_constant(name: str) -> Any:
    raise ValueError(f'{name} is not JSON; send {{"$float": "{name}"}}')


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


def load_json(body: bytes) -> Any:
    """Parse a request body with the standard library, not orjson: orjson silently turns integers beyond
    64 bits into floats, and a client must hear that its integer does not fit rather than lose digits."""
    try:
        return _DECODER.decode(body.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidJSON(f"the request body is not valid JSON: {e}") from None


def _statement(item: Any, index: int | None, grant: Permission | None) -> Statement:
    where = f"statement {index + 1}: " if index is not None else ""
    if isinstance(item, str):  # a bare SQL string in a list is convenient and unambiguous
        return Statement(sql=item, grant=grant)
    if not isinstance(item, dict):
        raise BadRequest(f'{where}expected an object {{"sql": …}}, got {type(item).__name__}')
    unknown = item.keys() - _ALLOWED_KEYS
    if unknown:
        raise BadRequest(f"{where}unknown field {sorted(unknown)[0]!r} (expected sql and params)")
    sql = item.get("sql")
    if not isinstance(sql, str):
        raise BadRequest(f'{where}"sql" must be a string')
    try:
        bindings = bindings_from_json(item.get("params"))
    except InvalidParams as e:
        raise InvalidParams(f"{where}{e.message}", hint=e.hint) from None
    return Statement(sql=sql, bindings=bindings, grant=grant)


def result_to_json(result: Result) -> dict[str, Any]:
    if result.columns:
        return {
            "columns": result.columns,
            "types": result.types,
            "rows": [row_to_json(r) for r in result.rows],
        }
    return {
        "columns": _EXEC_COLUMNS,
        "types": _EXEC_TYPES,
        "rows": [[result.rows_affected, result.last_insert_id]],
    }


def encode_results(
    results: list[Result], as_list: bool, seq: int | None = None, replication: dict[str, Any] | None = None
) -> bytes:
    """The response body; a write that was replicated also carries ``seq``, its position in the log."""
    body: dict[str, Any] = (
        {"results": [result_to_json(r) for r in results]} if as_list else result_to_json(results[0])
    )
    if seq is not None:
        body["seq"] = seq
    if replication is not None:
        body["replication"] = replication
    return orjson.dumps(body)
