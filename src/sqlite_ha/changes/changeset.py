"""The change set: everything one committed write transaction changed, as the replication log carries it.

Row changes carry *full* row images (not SQLite's sparse update records), so that applying the newest version
of a row gives the same row whatever happened before: last-writer-wins per row needs states, not diffs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson

from sqlite_ha.db.values import SQLiteValue, to_json

Operation = Literal["INSERT", "UPDATE", "DELETE"]
Row = tuple[SQLiteValue, ...]

# How a row is identified across nodes.
#   "pk":    by its PRIMARY KEY values (tables with a declared primary key, WITHOUT ROWID tables included);
#   "rowid": tables without a declared primary key, by (origin node, rowid at the origin): rowids are chosen
#            by each node on its own and would collide between nodes, so a row keeps the identity of the node
#            that inserted it. Rows that predate replication have the origin "".
KeyKind = Literal["pk", "rowid"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RowChange:
    table: str
    op: Operation
    columns: tuple[str, ...]  # every stored column, in table order
    pk_columns: tuple[str, ...]  # () for rowid-identified tables
    key: Row  # the row's identity: PK values, or (origin node, origin rowid)
    new: Row | None = None  # full row after the change (INSERT, UPDATE)
    old: Row | None = None  # full row before the change (UPDATE, DELETE)
    old_rowid: int | None = None  # rowids at the origin, for CDC consumers of the ``ha`` format
    new_rowid: int | None = None
    indirect: bool = False  # made by a trigger at the origin

    @property
    def key_kind(self) -> KeyKind:
        return "pk" if self.pk_columns else "rowid"


@dataclass(frozen=True, slots=True, kw_only=True)
class ChangeSet:
    database: str  # the database's id (file name)
    node: str  # the node that committed the transaction
    hlc: int  # the transaction's version: every row it changed gets (hlc, node)
    ddl: tuple[str, ...] = ()  # schema statements, in order, applied before the row changes
    changes: tuple[RowChange, ...] = ()
    # Per schema statement, how many row changes come before it (a table rebuild in the middle of the
    # transaction, see ``db.rebuild``); () when all of them come first, as in every older change set.
    ddl_positions: tuple[int, ...] = ()
    timestamp_ns: int = 0
    process_id: int = 0

    @property
    def version(self) -> tuple[int, str]:
        return (self.hlc, self.node)

    @property
    def msg_id(self) -> str:
        """Unique per change set (a node's clock never repeats): the log's deduplication key."""
        return f"{self.node}.{self.database}.{self.hlc}"


def encode_key(key: Row) -> bytes:
    """The canonical bytes of a row identity, as stored in ``_ha_rows``: equal keys, equal bytes."""
    return orjson.dumps([to_json(v) for v in key])
