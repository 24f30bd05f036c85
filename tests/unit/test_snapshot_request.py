"""The envelope of snapshot requests between nodes: versioned, small, tolerant of later fields."""

from __future__ import annotations

import orjson
import pytest

from sqlite_ha.replication.snapshot_request import EnvelopeError, SnapshotReply, SnapshotRequest


def test_request_and_reply_round_trip() -> None:
    request = SnapshotRequest(database="app.db", node="node4", need=1234)
    assert SnapshotRequest.decode(request.encode()) == request
    for reply in (
        SnapshotReply(database="app.db", node="node1", ok=True, seq=1200, covers=1240, taken=True),
        SnapshotReply(database="app.db", node="node2", ok=False, error="this node has a gap"),
        SnapshotReply(database="app.db", node="node3", ok=False, pending=True),
    ):
        assert SnapshotReply.decode(reply.encode()) == reply


def test_a_later_version_s_fields_are_ignored() -> None:
    raw = orjson.loads(SnapshotRequest(database="app.db", node="n", need=7).encode())
    raw.update(v=2, mac="00ff", nonce=3)
    assert SnapshotRequest.decode(orjson.dumps(raw)) == SnapshotRequest(
        database="app.db", node="n", need=7, v=2
    )


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"kind": "snapshot_request", "database": "a", "node": "n", "need": 1}',  # no version
        b'{"kind": "snapshot_reply", "v": 1, "database": "a", "node": "n", "ok": true}',  # another kind
        b'{"kind": "snapshot_request", "v": 1, "node": "n", "need": 1}',  # no database
        b'{"kind": "snapshot_request", "v": 1, "database": "a", "node": "n", "need": "1"}',
        b'{"kind": "snapshot_request", "v": 1, "database": "a", "node": "n"}',  # no need
    ],
)
def test_malformed_requests_are_refused(data: bytes) -> None:
    with pytest.raises(EnvelopeError):
        SnapshotRequest.decode(data)
