"""Keys SQLite would choose, chosen so that two nodes never choose the same one.

In leaderless mode every node inserts at once. Left to SQLite, two nodes inserting into the same table both
take ``max(rowid) + 1``, both tell their client that id, and last-writer-wins keeps one of the two rows. So a
node's keys are *strided*, as MySQL's ``auto_increment_increment``/``auto_increment_offset`` are in
multi-primary setups: the cluster shares one stride S and each node holds its own residue r (1 ≤ r ≤ S,
claimed in the replication log, unique in the cluster). A key the client leaves to the database becomes

    the smallest k > max(largest key in the table, sqlite_sequence for AUTOINCREMENT, last k this node gave
    in the table) with k ≡ r (mod S)

Two nodes can then never pick the same key, whatever they have seen of each other; keys stay increasing, and
an AUTOINCREMENT table still never reuses one. With S = 1 this is SQLite's own rule, and nothing is rewritten.

``Rowids`` is the node's policy (its stride and, once claimed, its slot), shared by its databases;
``RowidAllocator`` applies it to one database: it rewrites the inserts (``autokeys``) and registers
``_ha_next_rowid`` on the writer connection.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import apsw

from sqlite_ha.changes import autokeys
from sqlite_ha.changes.autokeys import KeyedTable
from sqlite_ha.changes.sequences import Sequences
from sqlite_ha.db.authorizer import Authorizer
from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.errors import Conflict, NotReady, StatementNotAllowed

MAX_KEY = 2**63 - 1
_CACHE_MAX = 4096
_AUTOINCREMENT = re.compile(r"\bAUTOINCREMENT\b", re.IGNORECASE)


class NoRowidSlot(NotReady):
    """This node holds no residue yet (or none was left): it cannot choose keys that no other node chooses.
    A 503: nothing was written."""

    code = "no_rowid_slot"


class KeysExhausted(Conflict):
    """No key of this node's residue is left below 2^63 in the table."""

    code = "keys_exhausted"


@dataclass(frozen=True, slots=True)
class RowidSlot:
    """A node's share of the keys: the integers ≡ ``residue`` (mod ``stride``)."""

    stride: int
    residue: int  # 1 … stride

    def __post_init__(self) -> None:
        if self.stride < 1 or not 1 <= self.residue <= self.stride:
            raise ValueError(f"invalid rowid slot {self.residue} of {self.stride}")

    def next_after(self, base: int) -> int:
        """The smallest key > ``base`` (and > 0) that is this node's."""
        base = max(base, 0)
        return base + 1 + (self.residue - base - 1) % self.stride


PLAIN = RowidSlot(1, 1)  # SQLite's own choice


class Rowids:
    """The node's rule for keys SQLite would choose.

    A node alone (``plain``) uses SQLite's own keys. A node of a cluster must first be given its slot
    (``assign``, by the replication layer once it claimed one); until then an insert that needs a key chosen
    is refused rather than risk a key another node also takes. A cluster's stride of 1 is SQLite's own rule
    too, for the one node that holds its only slot: a mode with a single writer.
    """

    def __init__(self, stride: int) -> None:
        if stride < 1:
            raise ValueError("the rowid stride must be at least 1")
        self.stride = stride  # proposed until a slot is assigned; then the cluster's
        self.slot: RowidSlot | None = None
        self.refusal: str | None = None  # why no slot could be had, for the error

    @classmethod
    def plain(cls) -> Rowids:
        """SQLite's own keys: for a node whose log has no other node."""
        rowids = cls(1)
        rowids.slot = PLAIN
        return rowids

    def assign(self, slot: RowidSlot) -> None:
        self.slot = slot
        self.stride = slot.stride
        self.refusal = None

    def refuse(self, why: str) -> None:
        """No slot can be had (all taken): say why in the errors of inserts that need one."""
        self.refusal = why

    def status(self) -> dict[str, object]:
        slot = self.slot
        return {
            "stride": self.stride,
            "residue": slot.residue if slot is not None else None,
            "error": self.refusal,
        }

    def allocator(self, conn: apsw.Connection, authorizer: Authorizer) -> RowidAllocator:
        """The chooser of one database's keys, on its writer connection (the database calls this: it does
        not import this package)."""
        return RowidAllocator(self, conn, authorizer)


class RowidAllocator:
    """Applies a node's ``Rowids`` to one database's writer connection."""

    def __init__(self, rowids: Rowids, conn: apsw.Connection, authorizer: Authorizer) -> None:
        self.rowids = rowids
        self._conn = conn
        self._authorizer = authorizer  # counts the statements that may change a table
        # sql -> (sql to run, the keyed tables it inserts into); None: run as it is. For the current schema.
        self._cache: dict[str, tuple[str, tuple[str, ...]] | None] = {}
        self._tables: dict[str, KeyedTable | None] = {}  # by name as written, lower case
        self._schema_seen = -1
        self._last: dict[str, int] = {}  # table (lower case) -> last key handed out by this process
        self._loaded: set[str] = set()  # tables whose last key stored in the database is in _last
        self._dirty: set[str] = set()  # tables given keys since ``remember`` last stored them
        self.rewritten = 0
        # stride 1 (SQLite's own keys, no rewriting) but for the tables whose keys nextval/setval moved:
        # inserts into those are rewritten too, so that they number after what the sequence handed out
        self._floored: set[str] = set()
        conn.create_scalar_function(autokeys.FUNCTION, self._next_rowid, 2)
        Sequences(conn, self._next_key, self._set_floor)

    def sql_for(self, sql: str) -> str:
        """The text to run for ``sql``: the same text unless it inserts rows whose key SQLite would choose.

        Costs a regular-expression search for statements that are not inserts and a dictionary lookup for
        inserts seen before (per schema version); only a new insert text is tokenized. Without a slot the
        rewritten statement still runs: it fails only if it needs a key chosen (``_ha_next_rowid``
        raises ``NoRowidSlot``), so inserts that give their keys keep working.
        """
        slot = self.rowids.slot
        if slot is not None and slot.stride == 1 and not self._floored:
            return sql
        if not autokeys.may_insert(sql):
            return sql
        if self._schema_seen != self._authorizer.schema_changes:
            self._forget()
        try:
            cached = self._cache[sql]
        except KeyError:
            cached = self._rewrite(sql)
        if cached is None:
            return sql
        rewritten, tables = cached
        for table in tables:
            if table not in self._loaded:
                self._load(table)
        self.rewritten += 1
        return rewritten

    # ------------------------------------------------------------------------------------ keys given
    # The last key given per table is stored with the transactions that gave keys, so that after a restart
    # the node does not give again a key it gave before and that has been deleted since (a plain INTEGER
    # PRIMARY KEY would: SQLite's rule looks only at the keys the table has now). Keyed by slot, so that the
    # copy of another node's database (a snapshot) does not mislead: another slot's keys are not ours.
    def _state_key(self, table: str) -> str | None:
        slot = self.rowids.slot
        return None if slot is None else f"rowid_last.{slot.stride}.{slot.residue}.{table}"

    def _load(self, table: str) -> None:
        key = self._state_key(table)
        if key is None:
            return
        try:
            found = self._conn.execute("SELECT value FROM _ha_state WHERE key = ?", (key,)).get
        except apsw.SQLError:  # a database that is not replicated has no such table
            found = None
        if isinstance(found, int) and found > self._last.get(table, 0):
            self._last[table] = found
        self._loaded.add(table)

    def remember(self, conn: apsw.Connection) -> None:
        """Store the last key given per table, in the transaction that is about to commit (the caller
        lets the node write its internal tables)."""
        for table in self._dirty:
            key = self._state_key(table)
            if key is not None:
                conn.execute(
                    "INSERT INTO _ha_state(key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
                    (key, self._last[table]),
                )
        self._dirty.clear()

    def _forget(self) -> None:
        """The schema may have changed: what was learnt of tables goes (with SQLite's own keys, the floors of
        tables dropped since: a table made again under the name starts from 1, as its new sequence does)."""
        self._schema_seen = self._authorizer.schema_changes
        self._cache.clear()
        self._tables.clear()
        slot = self.rowids.slot
        if slot is not None and slot.stride == 1 and self._floored:
            existing = {
                str(n).lower()
                for (n,) in self._conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")
            }
            for gone in self._floored - existing:
                self._floored.discard(gone)
                self._last.pop(gone, None)

    def _rewrite(self, sql: str) -> tuple[str, tuple[str, ...]] | None:
        tables: list[str] = []

        slot = self.rowids.slot
        plain = slot is not None and slot.stride == 1

        def lookup(name: str) -> KeyedTable | None:
            if plain and name.lower() not in self._floored:
                return None  # SQLite's own key, as without any sequence call
            info = self._lookup(name)
            if info is not None:
                tables.append(info.name.lower())
            return info

        try:
            rewritten = autokeys.rewrite(sql, lookup)
        except autokeys.AutoKeyError as e:
            raise StatementNotAllowed(
                f"{e}: a key chosen by SQLite could clash with another node's",
                hint="send the schema change and the insert as separate statements (a list of "
                "statements is still one transaction)",
            ) from e
        cached = None if rewritten is sql else (rewritten, tuple(dict.fromkeys(tables)))
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[sql] = cached
        return cached

    # ------------------------------------------------------------------------------------ tables
    def _lookup(self, name: str) -> KeyedTable | None:
        key = name.lower()
        if key not in self._tables:
            self._tables[key] = self._read(name)
        return self._tables[key]

    def _read(self, name: str) -> KeyedTable | None:
        conn = self._conn
        listed = conn.execute(
            "SELECT name, type, wr FROM pragma_table_list WHERE schema = 'main' AND name = ? COLLATE NOCASE",
            (name,),
        ).fetchall()
        if not listed or listed[0][1] != "table" or listed[0][2]:
            return None  # no such table, a view, a virtual or a WITHOUT ROWID table
        table = str(listed[0][0])
        info = conn.execute("SELECT name, type, pk FROM pragma_table_info(?)", (table,)).fetchall()
        pk = [r for r in info if r[2]]
        if len(pk) != 1 or str(pk[0][1]).upper() != "INTEGER":
            return None
        pk_index = conn.execute("SELECT 1 FROM pragma_index_list(?) WHERE origin = 'pk'", (table,)).fetchall()
        if pk_index:
            return None  # INTEGER PRIMARY KEY DESC: an ordinary column, not the rowid
        sql = conn.execute(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?", (table,)
        ).fetchall()
        return KeyedTable(
            name=table,
            key=str(pk[0][0]),
            columns=tuple(str(r[0]) for r in info),
            autoincrement=bool(sql and _AUTOINCREMENT.search(str(sql[0][0] or ""))),
        )

    # ------------------------------------------------------------------------------------ the function
    def _next_rowid(self, *args: SQLiteValue) -> int:
        """``_ha_next_rowid(table, largest)``: the next key of this node's slot for ``table``, whose largest
        key so far SQLite read in the same statement (a subquery, cheaper than a query from here)."""
        table, largest = args
        slot = self.rowids.slot
        if slot is None:
            raise NoRowidSlot(
                "this node cannot choose keys for inserts yet: it holds no rowid slot, so a key it chose "
                f"could clash with another node's ({self.rowids.refusal or 'it has not joined the log yet'})",
                hint="give the key explicitly, or retry once the node has joined; see docs/replication.md, "
                "'Keys chosen by the database'",
            )
        name = str(table).lower()
        base = largest if isinstance(largest, int) else 0
        # SQLite reads the largest key once per statement: the rows this statement inserted since are not in
        # it. Never hand out a key twice, nor one below a key handed out before.
        last = self._last.get(name, 0)
        key = slot.next_after(last if last > base else base)
        if key > MAX_KEY:
            raise KeysExhausted(
                f"table {table!r} has no key of this node's residue {slot.residue} (mod {slot.stride}) "
                "left below 2^63",
                hint="give keys explicitly",
            )
        self._last[name] = key
        self._dirty.add(name)
        return key

    # ------------------------------------------------------------------------------------ sequences
    def _next_key(self, name: str, largest: int) -> int:
        """``nextval``: the next key of ``name`` (a table, or a standalone sequence's k) above ``largest``
        and above all this node handed out; remembered, so no insert takes it again."""
        self._floor_table(name.lower())
        return self._next_rowid(name, largest)

    def _set_floor(self, name: str, last: int) -> None:
        """``setval``: the next key of ``name`` this node hands out follows ``last`` (a table's floor only
        rises: SQLite numbers after its largest key whatever it is told)."""
        key = name.lower()
        self._floor_table(key)
        self._last[key] = last
        self._dirty.add(key)

    def _floor_table(self, key: str) -> None:
        if key not in self._loaded:
            self._load(key)
        if key not in self._floored:
            self._floored.add(key)
            self._cache.clear()  # inserts into it, left to SQLite so far, are rewritten from now on
