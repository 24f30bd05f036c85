"""Change sets larger than one message of the log arrive as chunks; they wait here until the last one came.

A chunk is stored in ``_ha_chunks`` by the transaction that moves the applied position past it, so a crash
between two chunks loses nothing and the position stays one number. When every chunk of a change set is
there, the caller joins them, checks the whole against its length and SHA-256, applies it in that same
transaction, and ``finish`` deletes the chunks and remembers the change set in ``_ha_chunks_done``, so that
a late duplicate of any of its chunks (one published again after the log's deduplication window) is
dropped instead of waiting forever for the rest of its copy.

A chunk of a change set this database already holds (committed here and still in the outbox) is stored
without its bytes: a *reflected* chunk. A change set with a reflected chunk is not applied when complete:
its rows are in this file (and in a snapshot of it, which is how a reflected chunk reaches another node).

The sets themselves are identified by the change set's ``msg_id`` and the chunk size (``part``): a change
set published again with another chunk size (the log's max payload changed) is another set of the same
change set; whichever completes first is applied, and ``finish`` drops the others.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import apsw

# A set that received no chunk for this long (log time) can no longer be completed: the publisher sends
# every chunk of a change set again from the first when its attempt broke off, and a chunk it sends is
# deduplicated against an earlier copy only within the log's deduplication window (2 minutes).
PARTIAL_EXPIRY = 3600.0
DONE_KEEP = 7 * 86400.0  # how long the ids of applied chunked change sets are remembered (log time)


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    """One piece of an encoded change set too large for one message of the log."""

    msg_id: str  # the whole change set's id (``ChangeSet.msg_id``)
    node: str  # the node that committed the change set
    hlc: int  # its clock
    index: int  # 0 .. count - 1
    count: int
    part: int  # bytes of change set per chunk (the last one may hold fewer)
    size: int  # bytes of the whole encoded change set
    sha256: str  # hex digest of the whole encoded change set
    data: bytes | memoryview


@dataclass(frozen=True, slots=True, kw_only=True)
class Assembled:
    """A complete set: the change set's bytes, or why they are not usable."""

    payload: bytes
    reflected: bool  # committed in this database already: nothing to apply
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PartialSet:
    msg_id: str
    part: int
    count: int
    received: int
    bytes: int
    first_seq: int
    last_seq: int
    last_published_at: float | None


class ChunkStore:
    """The chunks of incomplete change sets of one database; every method runs in the caller's transaction
    on the writer connection, except ``partials`` (any connection)."""

    def add(
        self, conn: apsw.Connection, chunk: Chunk, *, seq: int, published_at: float | None, reflected: bool
    ) -> Assembled | None:
        """Store a chunk (again: a duplicate replaces its copy); the set when this chunk completed it."""
        conn.execute(
            "INSERT OR REPLACE INTO _ha_chunks(msg_id, part, idx, count, size, sha256, seq, published_at, "
            "data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                chunk.msg_id,
                chunk.part,
                chunk.index,
                chunk.count,
                chunk.size,
                chunk.sha256,
                seq,
                published_at,
                None if reflected else chunk.data,
            ),
        )
        have = conn.execute(
            "SELECT count(*), sum(data IS NULL) FROM _ha_chunks WHERE msg_id = ? AND part = ? AND count = ?",
            (chunk.msg_id, chunk.part, chunk.count),
        ).fetchall()[0]
        if int(have[0] or 0) < chunk.count:
            return None
        if int(have[1] or 0):
            return Assembled(payload=b"", reflected=True)
        return self._assemble(conn, chunk)

    @staticmethod
    def _assemble(conn: apsw.Connection, chunk: Chunk) -> Assembled:
        cursor = conn.execute(
            "SELECT data FROM _ha_chunks WHERE msg_id = ? AND part = ? AND count = ? ORDER BY idx",
            (chunk.msg_id, chunk.part, chunk.count),
        )
        digest = hashlib.sha256()
        parts: list[bytes] = []
        for (data,) in cursor:
            assert isinstance(data, bytes)
            digest.update(data)
            parts.append(data)
        payload = b"".join(parts)
        parts.clear()
        if len(payload) != chunk.size:
            error = f"chunked change set {chunk.msg_id}: {len(payload)} bytes joined, {chunk.size} announced"
            return Assembled(payload=payload, reflected=False, error=error)
        if digest.hexdigest() != chunk.sha256:
            return Assembled(
                payload=payload, reflected=False, error=f"chunked change set {chunk.msg_id}: SHA-256 mismatch"
            )
        return Assembled(payload=payload, reflected=False)

    @staticmethod
    def finish(conn: apsw.Connection, msg_id: str, *, seq: int, at: float) -> None:
        """The change set is applied (or parked): drop its chunks, every copy, and remember it."""
        conn.execute("DELETE FROM _ha_chunks WHERE msg_id = ?", (msg_id,))
        conn.execute(
            "INSERT OR REPLACE INTO _ha_chunks_done(msg_id, seq, done_at) VALUES (?, ?, ?)", (msg_id, seq, at)
        )
        conn.execute("DELETE FROM _ha_chunks_done WHERE done_at < ?", (at - DONE_KEEP,))

    @staticmethod
    def done(conn: apsw.Connection, msg_id: str) -> bool:
        return bool(conn.execute("SELECT 1 FROM _ha_chunks_done WHERE msg_id = ?", (msg_id,)).fetchall())

    @staticmethod
    def expire(conn: apsw.Connection, now: float, after: float = PARTIAL_EXPIRY) -> list[str]:
        """Drop the sets whose newest chunk is older than ``after`` seconds at log time ``now``; their ids."""
        stale = [
            str(r[0])
            for r in conn.execute(
                "SELECT msg_id FROM _ha_chunks GROUP BY msg_id HAVING max(coalesce(published_at, 0)) < ?",
                (now - after,),
            ).fetchall()
        ]
        for msg_id in stale:
            conn.execute("DELETE FROM _ha_chunks WHERE msg_id = ?", (msg_id,))
        return stale

    @staticmethod
    def partials(conn: apsw.Connection, limit: int = 10) -> tuple[int, list[PartialSet]]:
        """How many incomplete sets there are, and the oldest ``limit`` of them."""
        total = int(
            conn.execute("SELECT count(*) FROM (SELECT 1 FROM _ha_chunks GROUP BY msg_id, part)").fetchall()[
                0
            ][0]
            or 0
        )
        rows: list[Any] = conn.execute(
            "SELECT msg_id, part, max(count), count(*), sum(coalesce(length(data), 0)), min(seq), max(seq), "
            "max(published_at) FROM _ha_chunks GROUP BY msg_id, part ORDER BY min(seq) LIMIT ?",
            (limit,),
        ).fetchall()
        return total, [
            PartialSet(
                msg_id=str(r[0]),
                part=int(r[1]),
                count=int(r[2]),
                received=int(r[3]),
                bytes=int(r[4]),
                first_seq=int(r[5]),
                last_seq=int(r[6]),
                last_published_at=None if r[7] is None else float(r[7]),
            )
            for r in rows
        ]
