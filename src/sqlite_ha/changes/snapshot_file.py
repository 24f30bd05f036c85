"""Make a snapshot file of a database: a consistent copy, stripped of node-local state, with its position.

The copy is made with the backup API from one read snapshot (writes go on meanwhile), so the applied
position stored inside it (``_ha_state``) is exactly the position its rows reflect: a node that installs it
consumes the log from there. The outbox and the parked change sets belong to the node that took the
snapshot, not to the data, and are removed from the copy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import apsw

from sqlite_ha.changes import meta
from sqlite_ha.db.database import Database
from sqlite_ha.errors import HAError

_CHUNK = 1024 * 1024


class SnapshotError(HAError):
    """The copy cannot serve as a snapshot (the database it was made from is damaged)."""

    code = "snapshot_error"


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotFile:
    path: str
    seq: int  # the log position the copy includes
    hlc: int  # the clock of the node when the copy was made
    schema_version: int
    sha256: str
    size: int


def make_snapshot_file(db: Database, dest: str) -> SnapshotFile:
    """Write the snapshot to ``dest``. Blocking (runs on a worker thread for file databases)."""
    db.backup_to(dest)
    conn = apsw.Connection(dest)
    try:
        with conn:
            seq = int(meta.get(conn, meta.APPLIED_SEQ, 0) or 0)
            hlc = int(meta.get(conn, meta.CLOCK, 0) or 0)
            conn.execute("DELETE FROM _ha_outbox")
            conn.execute("DELETE FROM _ha_parked")
        schema_version = int(conn.execute("PRAGMA schema_version").fetchall()[0][0] or 0)
        conn.execute("PRAGMA journal_mode=DELETE")
        # The full check runs here, once, on the copy that is uploaded: a node installing it checks the
        # checksum (the same bytes) and runs the quicker structural check.
        check = conn.execute("PRAGMA integrity_check").fetchall()
        if check != [("ok",)]:
            raise SnapshotError(f"the copy of {db.id} fails SQLite's integrity check: {check[0][0]}")
    finally:
        conn.close()
    digest = hashlib.sha256()
    size = 0
    with open(dest, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return SnapshotFile(
        path=dest, seq=seq, hlc=hlc, schema_version=schema_version, sha256=digest.hexdigest(), size=size
    )
