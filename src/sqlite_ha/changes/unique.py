"""Deterministic resolution of clashes on UNIQUE constraints other than the primary key.

Two nodes can insert different rows with the same unique value at the same time; each commits locally, and
neither row can be applied on the other node. The rule every node follows, whatever order change sets come
in: among the live rows that claim a unique value, the one with the newest version ``(hlc, node)`` holds it;
a row that loses any of its values to a newer row is *hidden* (kept in ``_ha_shadow``, live but invisible),
and is shown again as soon as nothing newer claims its values. Formally, the visible rows are chosen greedily
in descending version order: a row is visible if none of its unique values is held by a visible row with a
newer version. That is a function of the set of latest row states alone, so every node ends with the same
visible rows, and no write is lost: a hidden row comes back when the clash goes away.

Only rows connected to a change through shared unique values can change visibility, so each resolution looks
at that small component, not the table.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import apsw
import orjson

from sqlite_ha.changes import meta
from sqlite_ha.changes.changeset import Row, encode_key
from sqlite_ha.db.schema import SchemaCache, TableInfo, UniqueIndex, quote
from sqlite_ha.db.values import SQLiteValue, from_json, row_to_json

Version = tuple[int, str]
Claim = tuple[str, tuple[object, ...]]  # (index name, normalized values)
RawClaim = tuple[Claim, tuple[SQLiteValue, ...]]  # with the values as stored, to query the table with


@dataclass(slots=True)
class Candidate:
    key: Row
    key_bytes: bytes
    version: Version
    values: dict[str, SQLiteValue]
    visible: bool  # in the table now (else hidden in _ha_shadow, or new)
    shadowed: bool = False  # in _ha_shadow now
    rowid: int | None = None  # where it is in a table without primary key, when visible


def _norm(value: SQLiteValue, collation: str) -> object:
    if isinstance(value, str):
        if collation == "NOCASE":
            return "".join(c.lower() if c < "\x80" else c for c in value)
        if collation == "RTRIM":
            return value.rstrip(" ")
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)  # SQLite compares 1 and 1.0 as equal
    return value


def raw_claims(info: TableInfo, values: dict[str, SQLiteValue]) -> list[RawClaim]:
    """The unique values a row holds (a NULL in any column of an index claims nothing)."""
    out: list[RawClaim] = []
    for index in info.unique:
        vals = tuple(values.get(c) for c in index.columns)
        if any(v is None for v in vals):
            continue
        norm = tuple(_norm(v, coll) for v, coll in zip(vals, index.collations, strict=True))
        out.append(((index.name, norm), vals))
    return out


def claims(info: TableInfo, values: dict[str, SQLiteValue]) -> list[Claim]:
    return [claim for claim, _ in raw_claims(info, values)]


class UniqueResolver:
    def __init__(self, schema: SchemaCache) -> None:
        self.schema = schema

    def settle(
        self,
        conn: apsw.Connection,
        info: TableInfo,
        *,
        seeds: list[Candidate],
        freed: list[dict[str, SQLiteValue]],
    ) -> None:
        """Make the visible rows of the component around ``seeds`` and ``freed`` values the greedy choice.

        ``seeds`` are rows not in the table yet (a change being applied); ``freed`` are values a removed or
        changed row no longer holds, which hidden rows may now get.
        """
        shadows = self._shadows(conn, info)
        members: dict[bytes, Candidate] = {c.key_bytes: c for c in seeds}
        frontier: list[RawClaim] = [rc for c in seeds for rc in raw_claims(info, c.values)]
        frontier += [rc for values in freed for rc in raw_claims(info, values)]
        seen: set[Claim] = set()
        indexes = {ix.name: ix for ix in info.unique}
        while frontier:
            claim, raw = frontier.pop()
            if claim in seen:
                continue
            seen.add(claim)
            found = self._visible_holders(conn, info, indexes[claim[0]], raw, members)
            found += [s for s in shadows if s.key_bytes not in members and claim in claims(info, s.values)]
            for cand in found:
                members[cand.key_bytes] = cand
                frontier.extend(raw_claims(info, cand.values))
        chosen: set[bytes] = set()
        taken: set[Claim] = set()
        for cand in sorted(members.values(), key=lambda c: c.version, reverse=True):
            mine = claims(info, cand.values)
            if not any(cl in taken for cl in mine):
                chosen.add(cand.key_bytes)
                taken.update(mine)
        for cand in members.values():  # hide first, so that showing never meets a unique violation
            if cand.key_bytes not in chosen:
                if cand.visible:
                    self._delete_visible(conn, info, cand)
                if not cand.shadowed:
                    self._shadow(conn, info, cand)
        for cand in members.values():
            if cand.key_bytes in chosen and not cand.visible:
                if cand.shadowed:
                    conn.execute(
                        "DELETE FROM _ha_shadow WHERE tbl = ? AND key = ?", (info.name, cand.key_bytes)
                    )
                self._insert(conn, info, cand)
        self._refresh_shadowed(conn, info.name)

    # ------------------------------------------------------------------------------------ reading
    def _visible_holders(
        self,
        conn: apsw.Connection,
        info: TableInfo,
        index: UniqueIndex,
        raw: tuple[SQLiteValue, ...],
        members: dict[bytes, Candidate],
    ) -> list[Candidate]:
        # "column = ?" compares with the column's own collation, as the unique index does.
        where = " AND ".join(f"{quote(c)} = ?" for c in index.columns)
        cols = ", ".join(quote(c) for c in info.columns)
        rowid_col = "NULL" if info.without_rowid else "rowid"
        rows = conn.execute(
            f"SELECT {rowid_col}, {cols} FROM {quote(info.name)} WHERE {where}", raw
        ).fetchall()
        out: list[Candidate] = []
        for row in rows:
            values = dict(zip(info.columns, row[1:], strict=True))
            rowid = int(row[0]) if row[0] is not None else None
            key = self._identity(conn, info, values, rowid)
            key_bytes = encode_key(key)
            if key_bytes in members:
                continue
            out.append(
                Candidate(
                    key=key,
                    key_bytes=key_bytes,
                    version=self._version(conn, info, key_bytes),
                    values=values,
                    visible=True,
                    rowid=rowid,
                )
            )
        return out

    def _shadows(self, conn: apsw.Connection, info: TableInfo) -> list[Candidate]:
        if not self.schema.has_shadows(conn, info.name):
            return []
        out = []
        for key_bytes, columns, vals in conn.execute(
            "SELECT key, columns, vals FROM _ha_shadow WHERE tbl = ?", (info.name,)
        ).fetchall():
            kb = bytes(key_bytes)  # type: ignore[arg-type]
            key = tuple(from_json(v, "shadow key") for v in orjson.loads(kb))
            stored = orjson.loads(bytes(vals))  # type: ignore[arg-type]
            values = dict(
                zip(json.loads(str(columns)), (from_json(v, "shadow") for v in stored), strict=True)
            )
            out.append(
                Candidate(
                    key=key,
                    key_bytes=kb,
                    version=self._version(conn, info, kb),
                    values=values,
                    visible=False,
                    shadowed=True,
                )
            )
        return out

    @staticmethod
    def _version(conn: apsw.Connection, info: TableInfo, key_bytes: bytes) -> Version:
        found = conn.execute(
            "SELECT hlc, node FROM _ha_rows WHERE tbl = ? AND key = ?", (info.name, key_bytes)
        ).fetchall()
        return (int(found[0][0]), str(found[0][1])) if found else (0, "")  # type: ignore[arg-type]

    @staticmethod
    def _identity(
        conn: apsw.Connection, info: TableInfo, values: dict[str, SQLiteValue], rowid: int | None
    ) -> Row:
        if not info.by_rowid:
            return tuple(values[c] for c in info.pk_columns)
        found = conn.execute(
            "SELECT origin, origin_rowid FROM _ha_rowids WHERE tbl = ? AND local_rowid = ?",
            (info.name, rowid),
        ).fetchall()
        return tuple(found[0]) if found else ("", rowid)

    # ------------------------------------------------------------------------------------ writing
    def _delete_visible(self, conn: apsw.Connection, info: TableInfo, cand: Candidate) -> None:
        if info.without_rowid:
            conn.execute(f"DELETE FROM {quote(info.name)} WHERE {info.pk_where()}", cand.key)
            return
        conn.execute(f"DELETE FROM {quote(info.name)} WHERE rowid = ?", (cand.rowid,))
        if info.by_rowid:
            conn.execute("DELETE FROM _ha_rowids WHERE tbl = ? AND local_rowid = ?", (info.name, cand.rowid))

    def _shadow(self, conn: apsw.Connection, info: TableInfo, cand: Candidate) -> None:
        columns = list(cand.values)
        conn.execute(
            "INSERT OR REPLACE INTO _ha_shadow(tbl, key, columns, vals) VALUES (?, ?, ?, ?)",
            (
                info.name,
                cand.key_bytes,
                json.dumps(columns),
                orjson.dumps(row_to_json(tuple(cand.values[c] for c in columns))),
            ),
        )

    def _insert(self, conn: apsw.Connection, info: TableInfo, cand: Candidate) -> None:
        columns = [c for c in cand.values if c in info.columns]
        cols = ", ".join(quote(c) for c in columns)
        marks = ", ".join("?" * len(columns))
        conn.execute(
            f"INSERT INTO {quote(info.name)}({cols}) VALUES ({marks})", tuple(cand.values[c] for c in columns)
        )
        if info.by_rowid:
            origin, origin_rowid = cand.key
            meta.map_rowid(conn, info.name, conn.last_insert_rowid(), origin, origin_rowid)

    def _refresh_shadowed(self, conn: apsw.Connection, table: str) -> None:
        has = bool(conn.execute("SELECT 1 FROM _ha_shadow WHERE tbl = ? LIMIT 1", (table,)).fetchall())
        if self.schema.shadowed is not None:
            if has:
                self.schema.shadowed.add(table)
            else:
                self.schema.shadowed.discard(table)
