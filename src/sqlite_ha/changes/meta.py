"""The internal tables replication keeps inside each database, next to the user's tables.

They live in the same file so that a row, its version and the applied stream position always commit in one
transaction: no crash can separate them. Clients cannot write them (see ``authorizer``), change capture never
records them, and they travel with backups and snapshots.
"""

from __future__ import annotations

from typing import Any

import apsw

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
