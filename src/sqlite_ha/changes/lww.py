"""Apply a change set from the log with last-writer-wins per row.

Every row carries its version ``(hlc, node)`` in ``_ha_rows``. A change is applied only if its version is
newer than the row's; then the row is made *equal to the change's full image* (or deleted, leaving a
tombstone). Applying is therefore idempotent (a duplicate finds its own version) and commutative (the
newest version wins whatever the order), which is what makes every node end with the same database.

The caller holds the transaction; triggers are off while applying, so changes made by triggers at the origin
arrive as rows and are not made a second time here.

What a change set may do is bounded whoever sealed it: its schema statements run under the authorizer's
``replicated`` rule (no ATTACH, DETACH, VACUUM, ``load_extension``, PRAGMA but the header's two, nothing on
internal tables), and its row changes may name user tables only. Anything else is ``Refused``: the change set
is parked with the reason and never retried.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass

import apsw
import orjson

from sqlite_ha.changes import meta
from sqlite_ha.changes.changeset import ChangeSet, Row, RowChange, encode_key
from sqlite_ha.changes.hlc import HLC
from sqlite_ha.changes.unique import Candidate, UniqueResolver, Version
from sqlite_ha.db import rebuild
from sqlite_ha.db.authorizer import INTERNAL_PREFIX, Authorizer
from sqlite_ha.db.schema import SchemaCache, TableInfo, quote
from sqlite_ha.db.tabledef import TableDefError
from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.errors import HAError

# Schema statements replayed on a database that already has their effect fail with these; that is success.
_ALREADY = re.compile(r"already exists|duplicate column name", re.IGNORECASE)
_COLUMN_GONE = re.compile(r"^\s*ALTER\s+TABLE\s+.*\b(DROP|RENAME)\s+(COLUMN\s+)?", re.IGNORECASE | re.DOTALL)
_NO_SUCH = re.compile(r"no such (table|column)", re.IGNORECASE)
_CONSTRAINT_GONE = re.compile(r"^\s*ALTER\s+TABLE\s+.*\bDROP\s+CONSTRAINT\b", re.IGNORECASE | re.DOTALL)


class ApplyError(HAError):
    code = "apply_error"


class SchemaMissing(ApplyError):
    """The change needs a table or column this database does not have (yet)."""

    code = "schema_missing"


class UniqueConflict(ApplyError):
    """The row clashes with another row on a UNIQUE constraint other than its primary key."""

    code = "unique_conflict"


class Refused(ApplyError):
    """The change set asks for what no replicated change may do (the host's files, internal tables)."""

    code = "apply_refused"


@dataclass(slots=True)
class ApplyResult:
    applied: int = 0  # rows changed
    skipped: int = 0  # rows whose local version was newer or equal
    ddl: int = 0


class Applier:
    def __init__(self, *, schema: SchemaCache, hlc: HLC) -> None:
        self.schema = schema
        self.hlc = hlc
        self.resolver = UniqueResolver(schema)

    def apply(self, conn: apsw.Connection, cs: ChangeSet) -> ApplyResult:
        result = ApplyResult()
        for change in cs.changes:
            _refuse_table(change.table)
        # A copy of a change set whose schema changes ran here already (published again by its node, or
        # replayed by someone who can reach the log) runs none of them a second time.
        ddl = cs.ddl if cs.ddl and meta.claim_ddl(conn, cs.node, cs.hlc) else ()
        positions = cs.ddl_positions or (0,) * len(ddl)
        at = 0  # the next schema statement
        while at < len(ddl) and positions[at] == 0:
            self._schema_statement(conn, ddl[at], result)
            at += 1
        self.hlc.observe(cs.hlc)  # once it is known not to be refused: a refused one moves no clock
        version = cs.version
        claimed: set[tuple[str, bytes]] = set()  # rows this change set changed already (around a rebuild)
        for i, change in enumerate(cs.changes):
            while at < len(ddl) and positions[at] <= i:  # a table rebuild between the row changes
                self._schema_statement(conn, ddl[at], result)
                at += 1
            change = self._current_shape(conn, change)
            # The version first: a change already superseded here (a node's own, say) needs no schema, even
            # if the table has changed or gone since. A newer version is recorded at once; if the row then
            # cannot be written, the caller's savepoint takes the version back with it.
            key = encode_key(change.key)
            if (change.table, key) not in claimed:
                if not meta.claim_version(conn, change.table, key, cs.hlc, cs.node, change.op == "DELETE"):
                    result.skipped += 1
                    continue
                claimed.add((change.table, key))
            info = self._table(conn, change)
            self._write_row(conn, info, change, version)
            result.applied += 1
        while at < len(ddl):
            self._schema_statement(conn, ddl[at], result)
            at += 1
        return result

    def _schema_statement(self, conn: apsw.Connection, sql: str, result: ApplyResult) -> None:
        if rebuild.mentioned(sql):
            self._rebuild(conn, sql)
            result.ddl += 1
            self.schema.refresh(conn)
            return
        try:
            with _replicated(conn):
                conn.execute(sql)
        except apsw.Error as e:
            denied = _denied(conn)  # refused when prepared (SQLError) or run (AuthError: ATTACH)
            if denied is not None:
                raise Refused(f"refused: {denied}: {sql[:200]}") from e
            if not isinstance(e, apsw.SQLError):
                raise
            message = str(e)
            if "cannot VACUUM" in message:  # in the apply transaction it never runs: refused, not retried
                raise Refused(
                    f"refused: VACUUM is not allowed in a replicated change set: {sql[:200]}"
                ) from e
            if _ALREADY.search(message):
                pass  # replayed: its effect is there already
            elif "no such column" in message and _COLUMN_GONE.match(sql):
                pass  # a column dropped or renamed by an earlier replay
            elif "no such constraint" in message and _CONSTRAINT_GONE.match(sql):
                pass  # a constraint dropped by an earlier replay
            elif _NO_SUCH.search(message):
                raise SchemaMissing(f"schema change needs what is not here yet: {message}: {sql}") from e
            else:
                raise ApplyError(f"schema change failed: {message}: {sql}") from e
        result.ddl += 1
        self.schema.refresh(conn)

    def _rebuild(self, conn: apsw.Connection, sql: str) -> None:
        """A table rebuild from the log, run on this node's own rows (see ``db.rebuild``)."""
        for piece in rebuild.split(sql):
            if isinstance(piece, str):
                raise Refused(f"refused: SQL beside a table rebuild: {piece[:200]}")
            try:
                outcomes = rebuild.run(conn, piece, guard=lambda: _replicated(conn), savepoint=False)
            except TableDefError as e:
                if e.fields.get("sqlstate") in ("42P01", "42703"):
                    raise SchemaMissing(f"table rebuild needs what is not here yet: {e.message}") from e
                raise ApplyError(f"table rebuild failed: {e.message}") from e
            except apsw.Error as e:
                denied = _denied(conn)
                if denied is not None:
                    raise Refused(f"refused: {denied}: {sql[:200]}") from e
                if _NO_SUCH.search(str(e)):
                    raise SchemaMissing(f"table rebuild needs what is not here yet: {e}") from e
                raise ApplyError(f"table rebuild failed: {e}: {sql[:200]}") from e
            for outcome in outcomes:
                meta.rebuilt(conn, outcome.old, outcome.new, outcome.expressions)

    def _current_shape(self, conn: apsw.Connection, change: RowChange) -> RowChange:
        """A change written in a table's shape from before a rebuild, in the table's shape now."""
        for _ in range(8):  # one step per rebuild since the change was written
            info = self.schema.table(conn, change.table)
            if info is None or (change.columns == info.columns and change.pk_columns == info.pk_columns):
                return change
            shape = conn.execute(
                "SELECT new_columns, expressions FROM _ha_shapes WHERE tbl = ? AND columns = ?",
                (change.table, orjson.dumps(list(change.columns)).decode()),
            ).fetchall()
            if not shape:
                return change
            columns = tuple(orjson.loads(str(shape[0][0])))
            expressions = orjson.loads(str(shape[0][1]))
            new = _project(conn, change.columns, expressions, change.new)
            old = _project(conn, change.columns, expressions, change.old)
            pk_columns = info.pk_columns if set(info.pk_columns) <= set(columns) else ()
            key = change.key
            if pk_columns != change.pk_columns:
                image = new if new is not None else old
                if image is None or not pk_columns:
                    return change  # cannot tell its new identity: applying it says why
                key = tuple(image[columns.index(c)] for c in pk_columns)
            change = dataclasses.replace(
                change, columns=columns, pk_columns=pk_columns, key=key, new=new, old=old
            )
        return change

    def _table(self, conn: apsw.Connection, change: RowChange) -> TableInfo:
        info = self.schema.table(conn, change.table)
        if info is None:
            raise SchemaMissing(f"no table {change.table!r}", table=change.table)
        missing = [c for c in change.columns if c not in info.columns]
        if missing:
            raise SchemaMissing(f"table {change.table!r} has no column {missing[0]!r}", table=change.table)
        if tuple(change.pk_columns) != info.pk_columns:
            raise ApplyError(
                f"table {change.table!r}: primary key {list(change.pk_columns)} in the change set, "
                f"{list(info.pk_columns)} here",
                table=change.table,
            )
        return info

    def _write_row(self, conn: apsw.Connection, info: TableInfo, change: RowChange, version: Version) -> None:
        """Make the row equal to the change: remove what is there, then insert the full image."""
        if info.fts:  # through the FTS5 table itself, which keeps its index in step with its rows
            conn.execute(f"DELETE FROM {quote(info.name)} WHERE rowid = ?", change.key)
            if change.op != "DELETE" and change.new is not None:
                conn.execute(_insert_sql(info.name, change.columns, "INSERT"), change.new)
            return
        if not info.by_rowid and not info.unique and not info.opaque_unique and change.new is not None:
            # No other UNIQUE constraint for REPLACE to delete by: replacing by primary key is exactly
            # "delete what is there, insert the image" in one statement.
            conn.execute(_insert_sql(info.name, change.columns, "INSERT OR REPLACE"), change.new)
            return
        table = quote(info.name)
        key_bytes = encode_key(change.key)
        local_rowid = self._local_rowid(conn, info, change.key) if info.by_rowid else None
        where, args = ("rowid = ?", (local_rowid,)) if info.by_rowid else (info.pk_where(), change.key)
        freed: list[dict[str, SQLiteValue]] = []
        shadows = bool(info.unique) and self.schema.has_shadows(conn, info.name)
        if info.unique and (local_rowid is not None or not info.by_rowid):
            cols = ", ".join(quote(c) for c in info.columns)
            old = conn.execute(f"SELECT {cols} FROM {table} WHERE {where}", args).fetchall()
            if old:  # the values it held may now go to a hidden row
                freed.append(dict(zip(info.columns, old[0], strict=True)))
        if shadows:
            conn.execute("DELETE FROM _ha_shadow WHERE tbl = ? AND key = ?", (info.name, key_bytes))
        if local_rowid is not None or not info.by_rowid:
            conn.execute(f"DELETE FROM {table} WHERE {where}", args)
        if change.op == "DELETE" or change.new is None:
            if local_rowid is not None:
                conn.execute(
                    "DELETE FROM _ha_rowids WHERE tbl = ? AND local_rowid = ?", (info.name, local_rowid)
                )
            if shadows and freed:
                self.resolver.settle(conn, info, seeds=[], freed=freed)
            return
        if not shadows:
            try:
                self._insert(conn, info, change, local_rowid)
                return
            except apsw.ConstraintError as e:
                if "UNIQUE" not in str(e):
                    raise
                if not info.unique or info.opaque_unique:
                    raise UniqueConflict(
                        f"table {info.name!r}: {e} (on a UNIQUE index sqlite-ha cannot compare: "
                        f"{', '.join(info.opaque_unique) or 'unknown'})",
                        table=info.name,
                    ) from e
        values = dict(zip(change.columns, change.new, strict=True))
        seed = Candidate(key=change.key, key_bytes=key_bytes, version=version, values=values, visible=False)
        self.resolver.settle(conn, info, seeds=[seed], freed=freed)

    @staticmethod
    def _insert(conn: apsw.Connection, info: TableInfo, change: RowChange, local_rowid: int | None) -> None:
        assert change.new is not None
        if not info.by_rowid:
            conn.execute(_insert_sql(info.name, change.columns, "INSERT"), change.new)
            return
        conn.execute(_insert_sql(info.name, ("rowid", *change.columns), "INSERT"), (local_rowid, *change.new))
        if local_rowid is None:
            origin, origin_rowid = change.key
            meta.map_rowid(conn, info.name, conn.last_insert_rowid(), origin, origin_rowid)

    @staticmethod
    def _local_rowid(conn: apsw.Connection, info: TableInfo, key: Row) -> int | None:
        """Where the row with this cross-node identity lives here, if it does."""
        origin, origin_rowid = key
        found = conn.execute(
            "SELECT local_rowid FROM _ha_rowids WHERE tbl = ? AND origin = ? AND origin_rowid = ?",
            (info.name, origin, origin_rowid),
        ).fetchall()
        if found:
            return int(found[0][0])  # type: ignore[arg-type]
        if origin == "":  # a row that predates replication keeps its rowid, unless that rowid is now mapped
            mapped = conn.execute(
                "SELECT 1 FROM _ha_rowids WHERE tbl = ? AND local_rowid = ?", (info.name, origin_rowid)
            ).fetchall()
            exists = conn.execute(
                f"SELECT 1 FROM {quote(info.name)} WHERE rowid = ?", (origin_rowid,)
            ).fetchall()
            if exists and not mapped:
                return int(origin_rowid)  # type: ignore[arg-type]
        return None


@contextlib.contextmanager
def _replicated(conn: apsw.Connection) -> Iterator[None]:
    """Run SQL that came from the log under the authorizer's ``replicated`` rule."""
    auth = conn.authorizer
    if not isinstance(auth, Authorizer):  # every connection of a Database has one; refuse to run without
        raise Refused("the connection has no sqlite-ha authorizer: replicated SQL is not run without one")
    before = auth.internal
    auth.internal, auth.replicated, auth.denied = True, True, None
    try:
        yield
    finally:
        auth.internal, auth.replicated = before, False


def _denied(conn: apsw.Connection) -> str | None:
    """Why the authorizer refused the replicated statement that just failed, if it did."""
    auth = conn.authorizer
    return auth.denied if isinstance(auth, Authorizer) else None


def _project(
    conn: apsw.Connection, columns: tuple[str, ...], expressions: list[str], row: Row | None
) -> Row | None:
    """``row`` (of ``columns``) computed into the new shape, as the rebuild computed the rows it copied."""
    if row is None:
        return None
    source = ", ".join(f"? AS {quote(c)}" for c in columns)
    with _replicated(conn):
        found = conn.execute(f"SELECT {', '.join(expressions)} FROM (SELECT {source})", row).fetchall()
    return tuple(found[0])


def _refuse_table(table: str) -> None:
    """Row changes from the log go to user tables only: not to sqlite-ha's, nor to SQLite's own."""
    name = table.lower()
    if name.startswith(INTERNAL_PREFIX) or name.startswith("sqlite_"):
        raise Refused(f"refused: a replicated change to table {table[:80]!r}, which is internal", table=table)


@functools.lru_cache(maxsize=1024)
def _insert_sql(table: str, columns: tuple[str, ...], verb: str) -> str:
    cols = ", ".join(quote(c) if c != "rowid" else c for c in columns)
    return f"{verb} INTO {quote(table)}({cols}) VALUES ({', '.join('?' * len(columns))})"
