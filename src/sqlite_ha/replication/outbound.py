"""Putting one committed change set into the log, whole or in chunks: the one way every sender does it.

The write path, the outbox relay, a recovering database and a node starting with a gap all publish change
sets of this node's outbox. Each must chunk one larger than a message of the log the same way (same chunk
size, same chunk ids), so that the log deduplicates whichever attempt lands twice.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from sqlite_ha.replication import chunk
from sqlite_ha.replication.replicator import Replicator
from sqlite_ha.replication.seal import Sealer

SEAL_INLINE = 256 * 1024  # bytes of change set sealed on the event loop; larger ones on a worker thread


@dataclass(frozen=True, slots=True, kw_only=True)
class Published:
    seq: int  # where every node applies it: the seq of its last chunk when chunked
    chunks: int  # 0 when it went as one message


async def publish_changeset(
    replicator: Replicator,
    *,
    database: str,
    hlc: int,
    msg_id: str,
    payload: bytes,
    timeout: float,
    sealer: Sealer,
    expect: int | None = None,
) -> Published:
    """Publish a change set; one over the log's max payload goes in chunks, in order, each after the log
    acknowledged the one before. Sent again after a failure, every chunk goes again (deduplicated).

    Every message is sealed (a MAC with the node's current key, see ``seal``) as it goes: the outbox keeps
    the plain change set. A seal is the same bytes for the same key, so a message published again is the
    same message (deduplicated by the log); the chunks leave room for it.

    With ``expect`` every message is a conditional append (writer modes): the first expects the database's
    last change set at ``expect``, each further chunk the one before it."""
    limit = replicator.max_payload()
    if limit is not None:
        limit -= sealer.overhead
    if limit is None or len(payload) <= limit:
        if len(payload) < SEAL_INLINE:
            message = sealer.seal(database, payload)
        else:  # megabytes: off the event loop
            message = await asyncio.to_thread(sealer.seal, database, payload)
        seq = await replicator.publish(database, message, msg_id=msg_id, timeout=timeout, expect=expect)
        return Published(seq=seq, chunks=0)
    node = replicator.node
    part = chunk.part_size(limit, msg_id, node, database)
    sha256 = await asyncio.to_thread(lambda: hashlib.sha256(payload).hexdigest())
    pieces = chunk.split(
        payload, msg_id=msg_id, node=node, database=database, hlc=hlc, sha256=sha256, part=part
    )
    seq, count = 0, 0
    for piece_id, message in pieces:
        sealed = await asyncio.to_thread(sealer.seal, database, message)
        seq = await replicator.publish(database, sealed, msg_id=piece_id, timeout=timeout, expect=expect)
        if expect is not None:
            expect = seq
        count += 1
    return Published(seq=seq, chunks=count)
