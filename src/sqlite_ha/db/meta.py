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
    # Change sets committed here and not yet acknowledged by the log; the relay publishes them.
    "CREATE TABLE IF NOT EXISTS _ha_outbox(hlc INTEGER PRIMARY KEY, msg_id TEXT NOT NULL,"
    " payload BLOB NOT NULL)",
    # Change sets that could not be applied yet (waiting for their schema) or at all (dead letters).
    "CREATE TABLE IF NOT EXISTS _ha_parked(seq INTEGER PRIMARY KEY, msg_id TEXT, node TEXT,"
    " state TEXT NOT NULL, error TEXT NOT NULL, attempts INTEGER NOT NULL, payload BLOB NOT NULL,"
    " parked_at REAL NOT NULL)",
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
