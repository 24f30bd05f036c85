"""The wire format of chunks (sans-IO): splitting, parsing, and what a reader refuses."""

from __future__ import annotations

import hashlib
import os

import orjson
import pytest

from sqlite_ha.replication import chunk
from sqlite_ha.replication.codec import DecodeError

ID = "node1.app.db.117657408264798208"


def pieces(payload: bytes, max_payload: int) -> list[tuple[str, bytes]]:
    part = chunk.part_size(max_payload, ID, "node1", "app.db")
    sha = hashlib.sha256(payload).hexdigest()
    return list(
        chunk.split(payload, msg_id=ID, node="node1", database="app.db", hlc=7, sha256=sha, part=part)
    )


@pytest.mark.parametrize("size", [1, 4095, 4096 * 3, 100_000])
def test_split_and_parse_give_back_the_change_set(size: int) -> None:
    payload = os.urandom(size)
    out = pieces(payload, 4096)
    assert all(len(message) <= 4096 for _, message in out)
    parsed = [chunk.parse(message) for _, message in out]
    assert b"".join(bytes(c.data) for c in parsed) == payload
    assert [c.index for c in parsed] == list(range(len(out)))
    assert {(c.msg_id, c.node, c.hlc, c.count, c.size) for c in parsed} == {(ID, "node1", 7, len(out), size)}
    assert [msg_id for msg_id, _ in out] == [f"{ID}/{parsed[0].part}/{i}" for i in range(len(out))]
    assert all(chunk.is_chunk(message) for _, message in out)
    assert not chunk.is_chunk(b'{"v": 1}')


def test_chunk_size_is_aligned_under_the_embedded_servers_max_payload() -> None:
    max_payload = 8 * 1024 * 1024 - 1024  # what the JetStream driver reports: max_payload less headers
    part = chunk.part_size(max_payload, ID, "node1", "app.db")
    assert part % chunk.ALIGN == 0
    assert max_payload - 2 * chunk.ALIGN < part < max_payload
    assert chunk.part_size(max_payload - 100, ID, "node1", "app.db") == part  # small changes: same chunks
    with pytest.raises(ValueError, match="no room"):
        chunk.part_size(100, ID, "node1", "app.db")


def header_and_data(message: bytes) -> tuple[dict[str, object], bytes]:
    line, _, data = message[len(chunk.MAGIC) :].partition(b"\n")
    return orjson.loads(line), data


def rebuilt(header: dict[str, object], data: bytes) -> bytes:
    return chunk.MAGIC + orjson.dumps(header) + b"\n" + data


@pytest.mark.parametrize(
    "change",
    [
        {"v": 2},
        {"id": ""},
        {"node": 5},
        {"index": -1},
        {"index": 99},
        {"count": 1},
        {"part": 0},
        {"size": 10},
        {"size": 2_000_000_000},
        {"hlc": True},
    ],
)
def test_a_bad_header_is_refused(change: dict[str, object]) -> None:
    header, data = header_and_data(pieces(os.urandom(10_000), 4096)[0][1])
    with pytest.raises(DecodeError):
        chunk.parse(rebuilt({**header, **change}, data))


def test_malformed_messages_are_refused() -> None:
    message = pieces(os.urandom(10_000), 4096)[1][1]
    header, data = header_and_data(message)
    for bad in (
        b"{}",
        chunk.MAGIC + b"no newline",
        chunk.MAGIC + b"[1, 2]\n",
        chunk.MAGIC + b"not json\n",
        rebuilt(header, data[:-1]),  # a byte short
        rebuilt(header, data + b"x"),  # a byte too many
    ):
        with pytest.raises(DecodeError):
            chunk.parse(bad)
    # unknown header fields are ignored
    assert bytes(chunk.parse(rebuilt({**header, "later": "field"}, data)).data) == data
