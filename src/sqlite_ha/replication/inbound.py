"""Reading what the log delivers: check the seal first, then read a chunk or decode a change set.

Nothing reads a delivered message's bytes before its MAC is verified (see ``seal``): a message that fails is
handed on as an ``Incoming`` with its reason and the state ``unauthenticated``, which the replica parks
without looking inside (the stream goes on past it). Each such message is counted; they are logged at most
once every ``LOG_EVERY`` seconds per database, with how many were refused meanwhile and never their bytes, so
that a flood of forgeries cannot flood the log too.
"""

from __future__ import annotations

import logging
import time

from sqlite_ha.changes.store import UNAUTHENTICATED, Incoming
from sqlite_ha.replication import chunk, codec
from sqlite_ha.replication.replicator import Delivery
from sqlite_ha.replication.seal import Sealer, Unauthenticated

log = logging.getLogger(__name__)

LOG_EVERY = 10.0  # seconds between two log lines about refused messages of one database
# Bytes of a refused message kept in the dead-letter table: enough to see what it was. Not all of it: every
# node parks every refused message, so a forger who can publish would otherwise fill each node's disk with
# 8 MB messages nobody will ever apply.
KEEP_REFUSED = 4096


class Inbound:
    """Turns the deliveries of one database into ``Incoming`` change sets, chunks or refusals."""

    def __init__(self, database: str, sealer: Sealer) -> None:
        self.database = database
        self.sealer = sealer
        self.refused = 0  # messages that failed verification
        self.last_refusal: str | None = None
        self._unlogged = 0
        self._logged_at = float("-inf")

    def read(self, d: Delivery) -> Incoming:
        try:
            payload = self.sealer.open(self.database, d.payload)
        except Unauthenticated as e:
            self._refused(d, e.message)
            kept = d.payload[:KEEP_REFUSED]
            return Incoming(
                seq=d.seq, payload=kept, msg_id=d.msg_id, error=e.message, error_state=UNAUTHENTICATED
            )
        try:
            if chunk.is_chunk(payload):
                piece = chunk.parse(payload)
                return Incoming(
                    seq=d.seq, payload=b"", msg_id=d.msg_id, chunk=piece, published_at=d.published_at
                )
            cs = codec.decode(payload)
        except codec.DecodeError as e:
            return Incoming(seq=d.seq, payload=payload, msg_id=d.msg_id, error=e.message)
        return Incoming(
            seq=d.seq, payload=payload, msg_id=d.msg_id, changeset=cs, published_at=d.published_at
        )

    def _refused(self, d: Delivery, reason: str) -> None:
        self.refused += 1
        self.last_refusal = f"seq {d.seq}: {reason}"
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY:
            return
        more = f" ({self._unlogged - 1} more refused since the last report)" if self._unlogged > 1 else ""
        log.error(
            "database %s: refused the message at seq %d (msg id %.80r) of the replication log: %s; parked as "
            "'unauthenticated', not applied%s",
            self.database,
            d.seq,
            d.msg_id,
            reason,
            more,
        )
        self._logged_at, self._unlogged = now, 0

    def status(self) -> dict[str, object]:
        return {"refused": self.refused, "last": self.last_refusal}
