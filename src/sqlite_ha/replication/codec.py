"""The wire format of a change set: the CDC message of the ``ha`` command, versioned and made lossless.

A message is one JSON object (UTF-8). The fields of the ``ha`` format keep their names and meaning
(``node``, ``changes[{database, table, columns, operation, old_rowid, new_rowid, old_values, new_values,
command, args}]``, ``timestamp_ns``, ``process_id``, ``filename``); what convergence needs is added (``v``,
``hlc``, ``pk_columns``, ``key``, ``indirect``). Values use the typed JSON encoding of the HTTP API, so BLOBs,
64-bit integers and infinite floats survive. Readers ignore fields they do not know. ``docs/cdc.md`` documents
it with a JSON schema.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from sqlite_ha.changes.changeset import ChangeSet, Row, RowChange
from sqlite_ha.db.values import from_json, row_to_json
from sqlite_ha.errors import HAError

FORMAT_VERSION = 1
_PLAIN = frozenset({int, float, str, type(None)})  # JSON values that are SQLite values as they are
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
MAX_MESSAGE = 1_000_000_000  # SQLite's longest value: a change set is one value in the outbox and when parked


class DecodeError(HAError):
    """A message on the stream that is not a change set we can read."""

    code = "bad_change_set"


def encode(cs: ChangeSet) -> bytes:
    """Schema statements come first, except where ``ddl_positions`` puts one after some row changes (a
    table rebuild in the middle of a transaction): the list is in the order of the transaction. A reader
    from before such change sets refuses one ("SQL changes must come before row changes"), never misapplies
    it; every earlier change set reads as it did."""
    changes: list[dict[str, Any]] = []
    positions = cs.ddl_positions or (0,) * len(cs.ddl)
    next_ddl = 0
    for i, ch in enumerate(cs.changes):
        while next_ddl < len(cs.ddl) and positions[next_ddl] <= i:
            changes.append({"database": "main", "operation": "SQL", "command": cs.ddl[next_ddl], "args": []})
            next_ddl += 1
        item: dict[str, Any] = {
            "database": "main",
            "table": ch.table,
            "columns": list(ch.columns),
            "operation": ch.op,
            "pk_columns": list(ch.pk_columns),
            "key": row_to_json(ch.key),
        }
        if ch.old_rowid is not None:
            item["old_rowid"] = ch.old_rowid
        if ch.new_rowid is not None:
            item["new_rowid"] = ch.new_rowid
        if ch.old is not None:
            item["old_values"] = row_to_json(ch.old)
        if ch.new is not None:
            item["new_values"] = row_to_json(ch.new)
        if ch.indirect:
            item["indirect"] = True
        changes.append(item)
    for sql in cs.ddl[next_ddl:]:
        changes.append({"database": "main", "operation": "SQL", "command": sql, "args": []})
    return orjson.dumps(
        {
            "v": FORMAT_VERSION,
            "node": cs.node,
            "database": cs.database,
            "filename": cs.database,
            "process_id": cs.process_id,
            "hlc": cs.hlc,
            "timestamp_ns": cs.timestamp_ns,
            "changes": changes,
        }
    )


class _MayBeRounded(Exception):
    """A value orjson read as a float beyond 64-bit integers: it may have been an integer literal."""


def decode(payload: bytes) -> ChangeSet:
    """Parse and validate one message; every problem is a ``DecodeError`` saying what is wrong.

    orjson reads an integer literal beyond 64 bits as a float, which would apply a rounded number where the
    writer meant an integer SQLite cannot hold. So a message with such a float among its values is read again
    with the standard library, which keeps integers exact, and an out-of-range one is refused.
    """
    if len(payload) > MAX_MESSAGE:
        raise DecodeError(f"change set of {len(payload)} bytes is larger than {MAX_MESSAGE}")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        raise DecodeError(f"not JSON: {e}") from None
    try:
        return _change_set(doc, exact=False)
    except _MayBeRounded:
        pass
    try:
        doc = json.loads(payload)  # rare; orjson has checked the syntax already
    except (ValueError, RecursionError) as e:
        raise DecodeError(f"not JSON: {e}") from None
    return _change_set(doc, exact=True)


def _change_set(doc: Any, *, exact: bool) -> ChangeSet:
    if not isinstance(doc, dict):
        raise DecodeError("not a JSON object")
    version = doc.get("v")
    if type(version) is not int or version != FORMAT_VERSION:
        raise DecodeError(f"format version {version!r} is not supported (this node reads {FORMAT_VERSION})")
    node = _str(doc, "node")
    database = _str(doc, "database")
    hlc = doc.get("hlc")
    if not isinstance(hlc, int) or isinstance(hlc, bool) or hlc <= 0 or hlc >= 2**63:
        raise DecodeError("hlc must be a positive 64-bit integer")
    raw_changes = doc.get("changes")
    if not isinstance(raw_changes, list):
        raise DecodeError("changes must be a list")
    ddl: list[str] = []
    positions: list[int] = []
    changes: list[RowChange] = []
    for i, item in enumerate(raw_changes):
        if not isinstance(item, dict):
            raise DecodeError(f"change {i} is not an object")
        if item.get("operation") == "SQL":
            if item.get("args"):
                raise DecodeError(f"change {i}: SQL changes with args are not supported")
            ddl.append(_str(item, "command", f"change {i}"))
            positions.append(len(changes))
        else:
            changes.append(_row_change(item, f"change {i}", exact))
    return ChangeSet(
        database=database,
        node=node,
        hlc=hlc,
        ddl=tuple(ddl),
        ddl_positions=tuple(positions) if any(positions) else (),
        changes=tuple(changes),
        timestamp_ns=_int(doc, "timestamp_ns", 0),
        process_id=_int(doc, "process_id", 0),
    )


def _row_change(item: dict[str, Any], where: str, exact: bool) -> RowChange:
    op = item.get("operation")
    if op not in ("INSERT", "UPDATE", "DELETE"):
        raise DecodeError(f"{where}: unknown operation {op!r}")
    columns = _names(item, "columns", where)
    pk_columns = _names(item, "pk_columns", where)
    if any(c not in columns for c in pk_columns):
        raise DecodeError(f"{where}: pk_columns not among columns")
    key = _row(item.get("key"), where, "key", exact)
    if key is None or len(key) != (len(pk_columns) if pk_columns else 2):
        raise DecodeError(f"{where}: key does not match pk_columns")
    new = _row(item.get("new_values"), where, "new_values", exact)
    old = _row(item.get("old_values"), where, "old_values", exact)
    for name, row in (("new_values", new), ("old_values", old)):
        if row is not None and len(row) != len(columns):
            raise DecodeError(f"{where}: {name} has {len(row)} values for {len(columns)} columns")
    if op != "DELETE" and new is None:
        raise DecodeError(f"{where}: {op} without new_values")
    image = new if new is not None else old
    if pk_columns and image is not None and tuple(image[columns.index(c)] for c in pk_columns) != key:
        raise DecodeError(f"{where}: key does not match the primary key in the row")
    if not pk_columns and (not isinstance(key[0], str) or not isinstance(key[1], int)):
        raise DecodeError(f"{where}: key of a table without primary key must be [origin node, rowid]")
    table = item.get("table")
    if not isinstance(table, str):  # "" is a valid SQLite name
        raise DecodeError(f"{where}: table must be a string")
    return RowChange(
        table=table,
        op=op,
        columns=columns,
        pk_columns=pk_columns,
        key=key,
        new=new,
        old=old,
        old_rowid=_opt_int(item, "old_rowid", where),
        new_rowid=_opt_int(item, "new_rowid", where),
        indirect=bool(item.get("indirect", False)),
    )


def _str(doc: dict[str, Any], name: str, where: str = "change set") -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value:
        raise DecodeError(f"{where}: {name} must be a non-empty string")
    return value


def _int(doc: dict[str, Any], name: str, default: int) -> int:
    value = doc.get(name, default)
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _opt_int(doc: dict[str, Any], name: str, where: str) -> int | None:
    value = doc.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise DecodeError(f"{where}: {name} must be an integer")
    return value


def _names(doc: dict[str, Any], name: str, where: str) -> tuple[str, ...]:
    value = doc.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):  # "" is a valid name
        raise DecodeError(f"{where}: {name} must be a list of names")
    if len(set(value)) != len(value):
        raise DecodeError(f"{where}: {name} has a name twice")
    return tuple(value)


def _row(value: Any, where: str, name: str, exact: bool) -> Row | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise DecodeError(f"{where}: {name} must be a list")
    if all(
        type(v) in _PLAIN and (type(v) is str or v is None or _INT64_MIN < v <= _INT64_MAX) for v in value
    ):
        return tuple(value)  # the common case: no typed values, no booleans, numbers inside 64-bit integers
    if any(isinstance(v, bool) for v in value):
        raise DecodeError(f"{where}: {name} holds a boolean, which no SQLite value encodes to")
    if not exact and any(type(v) is float and not _INT64_MIN < v <= _INT64_MAX for v in value):
        raise _MayBeRounded
    try:
        return tuple(from_json(v, f"{where}: {name}") for v in value)
    except HAError as e:
        raise DecodeError(e.message) from None
