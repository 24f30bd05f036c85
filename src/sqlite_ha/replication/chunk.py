"""The wire format of a chunk: a piece of a change set too large for one message of the log.

A change set whose encoding is larger than the log's max payload is published as ``count`` messages, in
order, each one only after the log acknowledged the previous one. Each is::

    #chunk {"v":1,"id":…,"node":…,"database":…,"hlc":…,"index":…,"count":…,"part":…,"size":…,
    "sha256":…}\\n<bytes>     (the header on one line)

the 7 bytes ``#chunk `` (a change set is a JSON object, so it never starts so), a JSON header on one line, a
newline, then bytes ``index * part`` up to ``(index + 1) * part`` of the encoded change set. ``size`` and
``sha256`` describe the whole change set. Each chunk has its own ``Nats-Msg-Id``, ``<id>/<part>/<index>``,
so a chunk published again is deduplicated by the log, and a change set published again with another chunk
size (the max payload changed) is a distinct set of chunks. Readers ignore header fields they do not know.
Sans-IO: no log, no database here; ``docs/cdc.md`` documents it for outside consumers.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from sqlite_ha.changes.chunks import Chunk
from sqlite_ha.replication.codec import MAX_MESSAGE, DecodeError

MAGIC = b"#chunk "
FORMAT_VERSION = 1
ALIGN = 64 * 1024  # chunk sizes are multiples of this when the max payload allows


def is_chunk(payload: bytes) -> bool:
    return payload[: len(MAGIC)] == MAGIC


def chunk_msg_id(msg_id: str, part: int, index: int) -> str:
    return f"{msg_id}/{part}/{index}"


def part_size(max_payload: int, msg_id: str, node: str, database: str) -> int:
    """Bytes of change set per chunk in messages of at most ``max_payload`` bytes: rounded down to a
    multiple of ``ALIGN`` so that a small change of the limit does not change the chunking."""
    widest = _header(
        msg_id=msg_id,
        node=node,
        database=database,
        hlc=2**63 - 1,
        index=MAX_MESSAGE,
        count=MAX_MESSAGE,
        part=MAX_MESSAGE,
        size=MAX_MESSAGE,
        sha256="0" * 64,
    )
    part = max_payload - (len(MAGIC) + len(widest) + 1)
    if part >= 2 * ALIGN:
        return part // ALIGN * ALIGN
    if part < 1:
        raise ValueError(f"a max payload of {max_payload} bytes leaves no room for a chunk")
    return part


def split(
    payload: bytes, *, msg_id: str, node: str, database: str, hlc: int, sha256: str, part: int
) -> Iterator[tuple[str, bytes]]:
    """The chunks of an encoded change set, in order: (the chunk's msg_id, the message). Lazily, one message
    in memory at a time."""
    view = memoryview(payload)
    count = max(1, -(-len(payload) // part))
    for index in range(count):
        header = _header(
            msg_id=msg_id,
            node=node,
            database=database,
            hlc=hlc,
            index=index,
            count=count,
            part=part,
            size=len(payload),
            sha256=sha256,
        )
        data = view[index * part : (index + 1) * part]
        yield chunk_msg_id(msg_id, part, index), b"".join((MAGIC, header, b"\n", data))


def _header(
    *,
    msg_id: str,
    node: str,
    database: str,
    hlc: int,
    index: int,
    count: int,
    part: int,
    size: int,
    sha256: str,
) -> bytes:
    return orjson.dumps(
        {
            "v": FORMAT_VERSION,
            "id": msg_id,
            "node": node,
            "database": database,
            "hlc": hlc,
            "index": index,
            "count": count,
            "part": part,
            "size": size,
            "sha256": sha256,
        }
    )


def parse(payload: bytes) -> Chunk:
    """Read one chunk message; every problem is a ``DecodeError``. The chunk's data is a view of
    ``payload``, not a copy."""
    if not is_chunk(payload):
        raise DecodeError("not a chunk")
    end = payload.find(b"\n", len(MAGIC), len(MAGIC) + 64 * 1024)
    if end < 0:
        raise DecodeError("chunk: no header line")
    try:
        header = orjson.loads(payload[len(MAGIC) : end])
    except orjson.JSONDecodeError as e:
        raise DecodeError(f"chunk header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise DecodeError("chunk header is not a JSON object")
    if header.get("v") != FORMAT_VERSION:
        raise DecodeError(f"chunk format version {header.get('v')!r} is not supported")
    texts: dict[str, str] = {}
    for name in ("id", "node", "database", "sha256"):
        text = header.get(name)
        if not isinstance(text, str) or not text:
            raise DecodeError(f"chunk header: {name} must be a non-empty string")
        texts[name] = text
    numbers: dict[str, int] = {}
    for name in ("hlc", "index", "count", "part", "size"):
        number = header.get(name)
        if not isinstance(number, int) or isinstance(number, bool) or number < 0:
            raise DecodeError(f"chunk header: {name} must be a non-negative integer")
        numbers[name] = number
    index, count, part, size = (numbers[n] for n in ("index", "count", "part", "size"))
    if size > MAX_MESSAGE:
        raise DecodeError(f"chunked change set of {size} bytes is larger than {MAX_MESSAGE}")
    if part < 1 or count != max(1, -(-size // part)) or not index < count:
        raise DecodeError(f"chunk header: index {index}, count {count}, part {part} do not fit size {size}")
    data = memoryview(payload)[end + 1 :]
    expected = min(part, size - index * part)
    if len(data) != expected:
        raise DecodeError(f"chunk {index} of {texts['id']} holds {len(data)} bytes, not {expected}")
    return Chunk(
        msg_id=texts["id"],
        node=texts["node"],
        hlc=numbers["hlc"],
        index=index,
        count=count,
        part=part,
        size=size,
        sha256=texts["sha256"],
        data=data,
    )
