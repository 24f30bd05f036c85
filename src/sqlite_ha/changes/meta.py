"""The internal tables replication keeps inside each database, next to the user's tables.

They live in the same file so that a row, its version and the applied stream position always commit in one
transaction: no crash can separate them. Clients cannot write them (see ``authorizer``), change capture never
records them, and they travel with backups and snapshots.
"""

from __future__ import annotations

from typing import Any

import apsw
import orjson

from sqlite_ha.changes.changeset import encode_key
from sqlite_ha.db.schema import TableInfo, quote

SCHEMA = (
    # Small named values: the applied stream position, the clock.
    "CREATE TABLE IF NOT EXISTS _ha_state(key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    # The version of every row ever written or deleted (deleted=1 is a tombstone): last-writer-wins per row.
    "CREATE TABLE IF NOT EXISTS _ha_rows(tbl TEXT NOT NULL, key BLOB NOT NULL, hlc INTEGER NOT NULL,"
    " node TEXT NOT NULL, deleted INTEGER NOT NULL, PRIMARY KEY (tbl, key)) WITHOUT ROWID",
    # Rows of tables without a primary key keep the identity given by the node that inserted them.
    "CREATE TABLE IF NOT EXISTS _ha_rowids(tbl TEXT NOT NULL, local_rowid INTEGER NOT NULL,"
    " origin TEXT NOT NULL, origin_rowid INTEGER NOT NULL, PRIMARY KEY (tbl, local_rowid)) WITHOUT ROWID",
    "CREATE UNIQUE INDEX IF NOT EXISTS _ha_rowids_origin ON _ha_rowids(tbl, origin, origin_rowid)",
    # Rows that lost a UNIQUE clash to a newer row: live, but hidden until the value they need is free.
    "CREATE TABLE IF NOT EXISTS _ha_shadow(tbl TEXT NOT NULL, key BLOB NOT NULL, columns TEXT NOT NULL,"
    " vals BLOB NOT NULL, PRIMARY KEY (tbl, key)) WITHOUT ROWID",
    # Change sets committed here and not yet acknowledged by the log; the relay publishes them.
    "CREATE TABLE IF NOT EXISTS _ha_outbox(hlc INTEGER PRIMARY KEY, msg_id TEXT NOT NULL,"
    " payload BLOB NOT NULL)",
    # Change sets that could not be applied yet (waiting for their schema) or at all (dead letters).
    "CREATE TABLE IF NOT EXISTS _ha_parked(seq INTEGER PRIMARY KEY, msg_id TEXT, node TEXT,"
    " state TEXT NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL, payload BLOB NOT NULL,"
    " parked_at REAL NOT NULL)",
    # Chunks of change sets too large for one message, until the last one arrives (see ``chunks``); a chunk
    # without data is one of a change set this database holds already.
    "CREATE TABLE IF NOT EXISTS _ha_chunks(msg_id TEXT NOT NULL, part INTEGER NOT NULL, idx INTEGER NOT NULL,"
    " count INTEGER NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL, seq INTEGER NOT NULL,"
    " published_at REAL, data BLOB)",
    # (a named index, not a PRIMARY KEY: rows hold megabytes, and SQLite's automatic index would be named
    # sqlite_autoindex__ha_chunks_1, which every listing of internal objects by their _ha_ prefix misses)
    "CREATE UNIQUE INDEX IF NOT EXISTS _ha_chunks_key ON _ha_chunks(msg_id, part, idx)",
    # Chunked change sets applied already: a late duplicate of one of their chunks is dropped.
    "CREATE TABLE IF NOT EXISTS _ha_chunks_done(msg_id TEXT PRIMARY KEY, seq INTEGER NOT NULL,"
    " done_at REAL NOT NULL) WITHOUT ROWID",
    # Schema changes committed or applied here, by their version. Rows need no such list (a copy of a change
    # set finds its own version, or a newer one, in _ha_rows), but a schema statement run twice is not
    # harmless: a DROP TABLE published again after the table was created anew would drop the new one.
    "CREATE TABLE IF NOT EXISTS _ha_ddl_done(node TEXT NOT NULL, hlc INTEGER NOT NULL,"
    " PRIMARY KEY (node, hlc)) WITHOUT ROWID",
    # The former column lists of rebuilt tables (``db.rebuild``), with what each new column is computed from:
    # a row change written in a former shape, arriving after the rebuild, is applied to the new one.
    "CREATE TABLE IF NOT EXISTS _ha_shapes(tbl TEXT NOT NULL, columns TEXT NOT NULL,"
    " pk_columns TEXT NOT NULL, new_columns TEXT NOT NULL, expressions TEXT NOT NULL,"
    " PRIMARY KEY (tbl, columns)) WITHOUT ROWID",
)

APPLIED_SEQ = "applied_seq"
CLOCK = "hlc"


def create(conn: apsw.Connection) -> None:
    with conn:
        for sql in SCHEMA:
            conn.execute(sql)


def get(conn: apsw.Connection, key: str, default: Any = None) -> Any:
    rows = conn.execute("SELECT value FROM _ha_state WHERE key = ?", (key,)).fetchall()
    return rows[0][0] if rows else default


def put(conn: apsw.Connection, key: str, value: Any) -> None:
    conn.execute(
        "INSERT INTO _ha_state(key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def put_position(conn: apsw.Connection, applied_seq: int, clock: int) -> None:
    """The applied stream position and the clock, in one statement: every transaction writes both."""
    conn.execute(
        "INSERT INTO _ha_state(key, value) VALUES (?, ?), (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (APPLIED_SEQ, applied_seq, CLOCK, clock),
    )


def map_rowid(
    conn: apsw.Connection, table: str, local_rowid: int, origin: object, origin_rowid: object
) -> None:
    """Record that the row at ``local_rowid`` of a table without primary key is (origin, origin_rowid)."""
    conn.execute(
        "INSERT OR REPLACE INTO _ha_rowids(tbl, local_rowid, origin, origin_rowid) VALUES (?, ?, ?, ?)",
        (table, local_rowid, origin, origin_rowid),
    )


def set_version(conn: apsw.Connection, table: str, key: bytes, hlc: int, node: str, deleted: bool) -> None:
    """Record the version of a row (a tombstone when ``deleted``)."""
    conn.execute(
        "INSERT INTO _ha_rows(tbl, key, hlc, node, deleted) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(tbl, key) DO UPDATE SET hlc = excluded.hlc, node = excluded.node, "
        "deleted = excluded.deleted",
        (table, key, hlc, node, int(deleted)),
    )


def claim_ddl(conn: apsw.Connection, node: str, hlc: int) -> bool:
    """Record that the schema changes of change set ``(node, hlc)`` ran here; False if they had already."""
    conn.execute("INSERT OR IGNORE INTO _ha_ddl_done(node, hlc) VALUES (?, ?)", (node, hlc))
    return bool(conn.changes())


def claim_version(conn: apsw.Connection, table: str, key: bytes, hlc: int, node: str, deleted: bool) -> bool:
    """Record the version of a row if it is newer than the one recorded; False (nothing written) if not.

    One statement instead of a read and a write: applying pays it for every row of every change set. The
    text comparison of ``node`` is SQLite's BINARY collation, which orders UTF-8 as Python orders str.
    """
    conn.execute(
        "INSERT INTO _ha_rows(tbl, key, hlc, node, deleted) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(tbl, key) DO UPDATE SET hlc = excluded.hlc, node = excluded.node, "
        "deleted = excluded.deleted WHERE (excluded.hlc, excluded.node) > (_ha_rows.hlc, _ha_rows.node)",
        (table, key, hlc, node, int(deleted)),
    )
    return bool(conn.changes())


def rebuilt(conn: apsw.Connection, old: TableInfo, new: TableInfo, expressions: tuple[str, ...]) -> None:
    """After a table rebuild: keep its former shape (``_ha_shapes``) if its columns changed, and move the
    rows' versions to their new identity if the primary key changed (a table given one: from (origin
    node, rowid) to the key's values)."""
    plain = tuple(quote(c) for c in new.columns)
    if old.columns != new.columns or expressions != plain or old.pk_columns != new.pk_columns:
        conn.execute(
            "INSERT OR REPLACE INTO _ha_shapes(tbl, columns, pk_columns, new_columns, expressions) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                new.name,
                orjson.dumps(list(old.columns)).decode(),
                orjson.dumps(list(old.pk_columns)).decode(),
                orjson.dumps(list(new.columns)).decode(),
                orjson.dumps(list(expressions)).decode(),
            ),
        )
    if old.pk_columns == new.pk_columns:
        return
    table = quote(new.name)
    cols = ", ".join(quote(c) for c in new.pk_columns)
    if old.by_rowid:
        rows = conn.execute(
            f"SELECT r.origin, r.origin_rowid, t.rowid, {', '.join('t.' + quote(c) for c in new.pk_columns)} "
            f"FROM {table} AS t LEFT JOIN _ha_rowids AS r ON r.tbl = ? AND r.local_rowid = t.rowid",
            (new.name,),
        ).fetchall()
        moves = [
            (encode_key((r[0], r[1]) if r[0] is not None else ("", r[2])), encode_key(tuple(r[3:])))
            for r in rows
        ]
        conn.execute("DELETE FROM _ha_rowids WHERE tbl = ?", (new.name,))
    else:
        old_cols = ", ".join(quote(c) for c in old.pk_columns)
        rows = conn.execute(f"SELECT {old_cols}, {cols} FROM {table}").fetchall()
        n = len(old.pk_columns)
        moves = [(encode_key(tuple(r[:n])), encode_key(tuple(r[n:]))) for r in rows]
    versions = {
        bytes(k): (h, nd)  # type: ignore[arg-type]
        for k, h, nd in conn.execute(
            "SELECT key, hlc, node FROM _ha_rows WHERE tbl = ? AND deleted = 0", (new.name,)
        ).fetchall()
    }
    conn.execute("DELETE FROM _ha_rows WHERE tbl = ?", (new.name,))
    conn.executemany(
        "INSERT OR REPLACE INTO _ha_rows(tbl, key, hlc, node, deleted) VALUES (?, ?, ?, ?, 0)",
        [(new.name, after, *versions[before]) for before, after in moves if before in versions],
    )
