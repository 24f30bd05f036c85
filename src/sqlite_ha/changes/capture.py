"""Capture one write transaction as a ``ChangeSet``, inside the transaction, just before COMMIT.

The session extension tells which rows the transaction changed, net of statement rollbacks, ``ROLLBACK TO``,
``INSERT OR REPLACE`` deletes and ``DELETE`` without ``WHERE``, including changes made by triggers and
foreign-key actions. (It sees a ``DELETE`` without ``WHERE`` only because the authorizer turns SQLite's
truncate optimisation off whenever a statement is prepared: a session turns it off only for statements
prepared while it is attached.) For each changed row we then read its full image from the table, stamp it with
the transaction's clock in ``_ha_rows``, and put the encoded change set in the outbox, all in the same
transaction as the change itself.

Virtual tables are not seen, only their shadow tables: an FTS5 table that keeps its own content travels as
its rows, read from its content table; its index does not travel (each node's FTS5 builds its own). Virtual
tables whose rows cannot be read back are refused. Schema statements and the header pragmas travel as SQL.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable
from typing import Any

import apsw

from sqlite_ha.changes import meta
from sqlite_ha.changes.changeset import ChangeSet, Operation, Row, RowChange, encode_key
from sqlite_ha.changes.hlc import HLC
from sqlite_ha.changes.unique import UniqueResolver
from sqlite_ha.db.rebuild import Outcome as RebuildOutcome
from sqlite_ha.db.rebuild import Rebuild
from sqlite_ha.db.schema import (
    SchemaCache,
    Shadow,
    TableInfo,
    is_user_table,
    quote,
    unreplicable_virtual_table,
)
from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.errors import PayloadTooLarge, StatementNotAllowed

_OPS: dict[str, Operation] = {"INSERT": "INSERT", "UPDATE": "UPDATE", "DELETE": "DELETE"}
# Schema statements, and the pragmas that set a value in the database file's header, which no session sees
# either (clients may set these two; ``authorizer``): both travel as SQL, in order.
_DDL = re.compile(
    r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*(?:(?:CREATE|DROP|ALTER)\b|"
    r"PRAGMA\s+(?:(?:main|\"main\")\s*\.\s*)?(?:user_version|application_id)\s*(?:=|\())",
    re.IGNORECASE | re.DOTALL,
)
_CREATE_VIRTUAL = re.compile(
    r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*CREATE\s+VIRTUAL\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?"
    r"(?:(?:main|\"main\")\s*\.\s*)?(\"(?:[^\"]|\"\")+\"|`[^`]+`|\[[^\]]+\]|[\w$]+)",
    re.IGNORECASE | re.DOTALL,
)
_IDEMPOTENT = (
    (
        re.compile(
            r"^(\s*CREATE\s+(?:UNIQUE\s+)?(?:TABLE|INDEX|VIEW|TRIGGER|VIRTUAL\s+TABLE))\s+(?!IF\s)",
            re.IGNORECASE,
        ),
        r"\1 IF NOT EXISTS ",
    ),
    (re.compile(r"^(\s*DROP\s+(?:TABLE|INDEX|VIEW|TRIGGER))\s+(?!IF\s)", re.IGNORECASE), r"\1 IF EXISTS "),
)

Encoder = Callable[[ChangeSet], bytes]


def is_ddl(sql: str) -> bool:
    return bool(_DDL.match(sql))


def idempotent(sql: str) -> str:
    """``CREATE … IF NOT EXISTS`` / ``DROP … IF EXISTS``, so that replaying a schema change is harmless."""
    sql = re.sub(r"^\s*(?:--[^\n]*\n\s*|/\*.*?\*/\s*)*", "", sql, flags=re.DOTALL)
    for pattern, repl in _IDEMPOTENT:
        sql = pattern.sub(repl, sql, count=1)
    return sql.strip()


class Capture:
    """Records the write transactions of one database. Not thread-safe: one transaction at a time."""

    def __init__(
        self,
        *,
        database: str,
        node: str,
        hlc: HLC,
        schema: SchemaCache,
        encode: Encoder,
        ddl_sync: bool = True,
        max_size: int | None = None,
        outbox: bool = True,
        committed: Callable[[ChangeSet, bytes], None] | None = None,
    ) -> None:
        self.database = database
        # Whether each change set is kept in the outbox until the log has it; off for a node that publishes
        # to no log (go-ha's disablePublisher): nothing would ever take the entries out again.
        self.outbox = outbox
        # Told of each change set once its transaction committed, in commit order (the CDC publishers).
        self.committed = committed
        self._finished: tuple[ChangeSet, bytes] | None = None
        self.node = node
        self.hlc = hlc
        self.schema = schema
        self.encode = encode
        self.ddl_sync = ddl_sync
        self.resolver = UniqueResolver(schema)
        # Rides along in every write, once the transaction's clock is taken, and stores it (``hlc.last``).
        self.before_commit: Callable[[apsw.Connection], None] | None = None
        # Told whether the transaction in which ``before_commit`` ran committed (True) or rolled back.
        self.after_end: Callable[[bool], None] | None = None
        self._before_commit_ran = False
        # The largest change set a transaction may make (--max-transaction-size): a larger one is refused
        # before COMMIT. (One larger than a message of the log travels in chunks: that is no limit.)
        self.max_size = max_size
        self._session: apsw.Session | None = None
        self._ddl: list[str] = []
        # A table rebuild (``db.rebuild``) splits the transaction: the rows changed before it are taken when
        # it starts (``pause``), the rebuild travels as one schema step, a new session records what follows.
        self._rows: list[RowChange] = []  # row changes taken at pauses, in order
        self._positions: list[int] = []  # per schema statement: how many of ``_rows`` come before it
        self._pause_rows: list[int] = []  # per pause: how many row changes it took
        self._clock: int | None = None  # the transaction's clock, once a pause needed it
        self._poisoned: str | None = None
        self._conn: apsw.Connection | None = None
        self._schema_changed = False
        self._created_virtual: set[str] = set()  # virtual tables this transaction created (lower case)

    def begin(self, conn: apsw.Connection) -> None:
        self._open_session(conn)
        self._conn = conn
        self._ddl = []
        self._rows = []
        self._positions = []
        self._pause_rows = []
        self._clock = None
        self._poisoned = None
        self._schema_changed = False
        self._created_virtual = set()
        self._finished = None

    def record_statement(self, cursor: apsw.Cursor, sql: str) -> None:
        """Called as each statement starts; keeps the schema changes, with their bindings expanded."""
        if is_ddl(sql):
            self._schema_changed = True
            created = _CREATE_VIRTUAL.match(sql)
            if created is not None:
                refused = unreplicable_virtual_table(sql)
                if refused is not None:
                    raise StatementNotAllowed(
                        f"{refused} cannot be replicated: the change capture sees its internal tables, not "
                        "its rows, so its contents would differ between nodes",
                        hint="for full-text search use an FTS5 table that keeps its own content (no content= "
                        "option); keep other virtual tables out of replicated databases",
                    )
                self._created_virtual.add(_unquote(created.group(1)).lower())
            if self.ddl_sync:
                self._ddl.append(idempotent(cursor.expanded_sql or sql))
                self._positions.append(len(self._rows))

    def _open_session(self, conn: apsw.Connection) -> None:
        session = apsw.Session(conn, "main")
        session.config(apsw.SQLITE_SESSION_OBJCONFIG_ROWID, 1)  # tables without a primary key too
        session.table_filter(is_user_table)
        session.attach()
        self._session = session

    def _still_there(self, change: RowChange) -> bool:
        conn = self._conn
        info = self.schema.table(conn, change.table) if conn is not None else None
        if conn is None or info is None or info.columns != change.columns:
            return False
        if info.by_rowid:
            rowid = change.new_rowid if change.new_rowid is not None else change.old_rowid
            found = conn.execute(
                f"SELECT {', '.join(quote(c) for c in info.columns)} FROM {quote(info.name)} WHERE rowid = ?",
                (rowid,),
            ).fetchall()
        else:
            found = conn.execute(info.select_sql(), change.key).fetchall()
        return (tuple(found[0]) if found else None) == change.new

    def pause(self, conn: apsw.Connection) -> None:
        """A table rebuild starts: take the rows changed so far (their images as they are now, before the
        table changes shape) and stop recording, so that the rows the rebuild copies do not travel."""
        session, self._session = self._session, None
        if session is None:
            return
        try:
            raw = session.changeset()
        except apsw.SchemaChangeError as e:
            refused = _schema_change_refused()
            self._poisoned = refused.message  # those rows are lost to the change set: it must not commit
            raise refused from e
        finally:
            session.close()
        if self._schema_changed:
            self.schema.refresh(conn)
        taken = 0
        if raw:
            if self._clock is None:
                self._clock = self.hlc.now()
            changes = self._row_changes(conn, raw, self._clock)
            self._rows.extend(changes)
            taken = len(changes)
        self._pause_rows.append(taken)

    def resume(self, conn: apsw.Connection, spec: Rebuild, outcomes: list[RebuildOutcome] | None) -> None:
        """The rebuild is over (``outcomes`` None: it failed and rolled itself back): it travels as one
        schema statement; the rows' versions follow a new primary key; recording goes on."""
        if outcomes is not None:
            self._schema_changed = True
            self.schema.refresh(conn)
            if self.ddl_sync:
                self._ddl.append(spec.sql())
                self._positions.append(len(self._rows))
            for outcome in outcomes:
                meta.rebuilt(conn, outcome.old, outcome.new, outcome.expressions)
        self._open_session(conn)

    def mark(self) -> int:
        """Where the schema changes recorded so far end: ``rewind`` to it when a savepoint rolls back. (The
        number of pauses so far rides in the high bits.)"""
        return len(self._ddl) | (len(self._pause_rows) << 32)

    def rewind(self, mark: int) -> None:
        ddl, pauses = mark & 0xFFFFFFFF, mark >> 32
        del self._ddl[ddl:]
        del self._positions[ddl:]
        taken = sum(self._pause_rows[pauses:])
        # Rows taken at a pause after the savepoint may be among those the rollback undid: if each is still
        # as it was taken, it stays true (a rebuild that failed alone, after rows changed before the
        # savepoint); else the change set would tell other nodes of a change that did not happen.
        if taken and not all(self._still_there(c) for c in self._rows[len(self._rows) - taken :]):
            self._poisoned = (
                "a savepoint was rolled back past a table rebuild that followed row changes in the same "
                "transaction; such a transaction cannot be replicated, so it was rolled back"
            )

    def end(self, committed: bool) -> None:
        """The transaction is over: tell ``after_end`` if ``before_commit`` ran in it."""
        ran, self._before_commit_ran = self._before_commit_ran, False
        finished, self._finished = self._finished, None
        if ran and self.after_end is not None:
            self.after_end(committed)
        if committed and finished is not None and self.committed is not None:
            self.committed(*finished)

    def abort(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
        self._ddl = []
        self._rows = []
        self._positions = []

    def finish(self, conn: apsw.Connection) -> tuple[ChangeSet, bytes] | None:
        """Build the change set, store versions and the outbox entry; returns the change set and its
        encoding, or None when the transaction changed nothing."""
        session, self._session = self._session, None
        if session is None:
            return None
        try:
            raw = session.changeset()
        except apsw.SchemaChangeError as e:
            raise _schema_change_refused() from e
        finally:
            session.close()
        if self._poisoned is not None:
            raise StatementNotAllowed(self._poisoned, hint="send the schema change as a request of its own")
        ddl, self._ddl = tuple(self._ddl), []
        positions, self._positions = tuple(self._positions), []
        earlier, self._rows = self._rows, []
        if self._schema_changed:
            self.schema.refresh(conn)  # kept current for the applier too, even when DDL does not travel
        if not raw and not ddl and not earlier:
            return None
        hlc = self._clock if self._clock is not None else self.hlc.now()
        changes = tuple(earlier) + (tuple(self._row_changes(conn, raw, hlc)) if raw else ())
        if not changes and not ddl:
            return None
        cs = ChangeSet(
            database=self.database,
            node=self.node,
            hlc=hlc,
            ddl=ddl,
            ddl_positions=positions if any(positions) else (),
            changes=changes,
            timestamp_ns=time.time_ns(),
            process_id=os.getpid(),
        )
        if self.before_commit is not None:
            self._before_commit_ran = True
            self.before_commit(conn)
        payload = self.encode(cs)
        limit = self.max_size
        if limit is not None and len(payload) > limit:
            raise PayloadTooLarge(
                f"this transaction's change set is {len(payload):,} bytes, more than the "
                f"{limit:,} bytes --max-transaction-size allows; it was rolled back",
                hint="split it into smaller transactions, or raise --max-transaction-size",
                size=len(payload),
                limit=limit,
            )
        if self.outbox:
            conn.execute(
                "INSERT INTO _ha_outbox(hlc, msg_id, payload) VALUES (?, ?, ?)", (hlc, cs.msg_id, payload)
            )
        if self.committed is not None:
            self._finished = (cs, payload)
        if ddl:
            meta.claim_ddl(conn, self.node, hlc)
        if self.before_commit is None:  # else it stores the clock with the position
            meta.put(conn, meta.CLOCK, hlc)
        return cs, payload

    def _row_changes(self, conn: apsw.Connection, raw: bytes, hlc: int) -> list[RowChange]:
        out: list[RowChange] = []
        freed: list[tuple[TableInfo, dict[str, SQLiteValue]]] = []
        for tc in apsw.Changeset.iter(raw):
            info = self.schema.table(conn, tc.name)
            fts: TableInfo | None = None
            if info is None:
                shadow = self.schema.shadow(conn, tc.name)
                if shadow is None:  # dropped later in the same transaction: the DROP travels as DDL
                    continue
                info = self._shadow_rows(shadow)
                if info is None:
                    continue
                fts = shadow.fts
            change = self._row_change(conn, info, tc)
            if change is None:
                continue
            if fts is not None:  # a row of the FTS5 table: (rowid, columns…) are (id, c0, c1…) of its content
                change = dataclasses.replace(
                    change, table=fts.name, columns=fts.columns, pk_columns=fts.pk_columns
                )
            out.append(change)
            meta.set_version(
                conn, change.table, encode_key(change.key), hlc, self.node, change.op == "DELETE"
            )
            if change.old is not None and info.unique and self.schema.has_shadows(conn, info.name):
                freed.append((info, dict(zip(info.columns, change.old, strict=True))))
        # Values this transaction released may belong to rows hidden by an earlier clash: show them again,
        # as every other node will when it applies this change set.
        for info, values in freed:
            self.resolver.settle(conn, info, seeds=[], freed=[values])
        return out

    def _shadow_rows(self, shadow: Shadow) -> TableInfo | None:
        """The content table whose rows stand for the virtual table's, or None when the change to this shadow
        table needs no replicating (an FTS5 index, which every node builds from the rows; the options that
        creating an FTS5 table writes, which creating it does again on every node). A change that cannot be
        described as rows raises: committing it here alone would leave this node unlike all the others."""
        if shadow.fts is None:  # a virtual table made before this database was replicated
            raise StatementNotAllowed(
                f"writes to the virtual table {quote(shadow.owner)} cannot be replicated (the change capture "
                "sees its internal tables only, not its rows), so the transaction was rolled back",
                hint="for full-text search use an FTS5 table that keeps its own content (no content= "
                "option); keep other virtual tables out of replicated databases",
                table=shadow.owner,
            )
        if shadow.role == "config" and shadow.owner.lower() not in self._created_virtual:
            raise StatementNotAllowed(
                f"FTS5 configuration changes to {quote(shadow.owner)} (INSERT INTO t(t, …) VALUES "
                "('rank', …) and the like) cannot be replicated, so the transaction was rolled back",
                hint="give the option in each query instead (… AND rank MATCH 'bm25(10.0, 5.0)')",
                table=shadow.owner,
            )
        return shadow.content if shadow.role == "content" else None

    def _row_change(self, conn: apsw.Connection, info: TableInfo, tc: Any) -> RowChange | None:
        op = _OPS[tc.op]
        old: Row | None = tuple(tc.old) if tc.old is not None else None
        new_sparse: Row | None = tuple(tc.new) if tc.new is not None else None
        rowid: int | None = None
        if info.by_rowid:
            rowid = int((old or new_sparse or (0,))[0])  # type: ignore[arg-type]
            old = old[1:] if old is not None else None
            new_sparse = new_sparse[1:] if new_sparse is not None else None
        new: Row | None = None
        if op == "INSERT" and new_sparse is not None and len(new_sparse) == len(info.columns):
            new = new_sparse  # an insert's record holds the whole row, read from the table by changeset()
        elif op != "DELETE":
            lookup = (rowid,) if info.by_rowid else _pk_of(info, new_sparse if op == "INSERT" else old)
            found = conn.execute(info.select_sql(), lookup).fetchall()
            if not found:
                return None
            new = tuple(found[0])
        if op == "UPDATE" and old is not None and new is not None and len(old) == len(new):
            unchanged: Any = apsw.no_change
            old = tuple(n if o is unchanged else o for o, n in zip(old, new, strict=True))
        if old is not None and len(old) != len(info.columns):
            old = None  # the table's columns changed inside the transaction: no reliable old image
        if info.by_rowid:
            assert rowid is not None
            key = self._rowid_identity(conn, info, op, rowid)
        else:
            key = _pk_of(info, new if new is not None else old)
        return RowChange(
            table=info.name,
            op=op,
            columns=info.columns,
            pk_columns=info.pk_columns,
            key=key,
            new=new,
            old=old,
            old_rowid=rowid if op != "INSERT" else None,
            new_rowid=rowid if op != "DELETE" else None,
            indirect=bool(tc.indirect),
        )

    def _rowid_identity(self, conn: apsw.Connection, info: TableInfo, op: Operation, rowid: int) -> Row:
        if op == "INSERT":
            meta.map_rowid(conn, info.name, rowid, self.node, rowid)
            return (self.node, rowid)
        found = conn.execute(
            "SELECT origin, origin_rowid FROM _ha_rowids WHERE tbl = ? AND local_rowid = ?",
            (info.name, rowid),
        ).fetchall()
        if op == "DELETE" and found:
            conn.execute("DELETE FROM _ha_rowids WHERE tbl = ? AND local_rowid = ?", (info.name, rowid))
        return tuple(found[0]) if found else ("", rowid)


def _schema_change_refused() -> StatementNotAllowed:
    return StatementNotAllowed(
        "this transaction changed rows of a table and then dropped or renamed it or one of its "
        "columns; such a transaction cannot be replicated as one change set, so it was rolled back",
        hint="send the schema change as a request of its own; with foreign keys on, DROP TABLE of a "
        "table that others reference deletes its rows first: empty it with DELETE, then drop it",
    )


def _unquote(name: str) -> str:
    if name[:1] in ('"', "`", "[") and len(name) >= 2:
        inner = name[1:-1]
        return inner.replace('""', '"') if name[0] == '"' else inner
    return name


def _pk_of(info: TableInfo, row: Row | None) -> Row:
    if row is None:
        raise ValueError(f"no values for the primary key of {quote(info.name)}")
    return tuple(row[i] for i in info.pk_positions())
