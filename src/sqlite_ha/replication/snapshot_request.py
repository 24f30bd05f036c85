"""Asking the live nodes for a fresh snapshot: the envelope of the request and its reply, sans IO.

A node that cannot start a database from the log alone (a new node, one that was down or frozen longer
than the log keeps change sets) and finds no stored snapshot that covers what it missed asks the other
nodes. A node that can prove it has every change set of that database up to the log's end answers by storing
a snapshot now (or pointing at a stored one that is new enough) and replying with its position; a node that
cannot prove it refuses. Several may answer: the asker takes the first good reply and installs the stored
snapshot. A node that will try says so at once (a ``pending`` reply), so the asker knows within a moment
whether anyone is working on it, and how many, rather than waiting out a long timeout for nobody.

Both messages are small versioned JSON objects; readers ignore fields they do not know, so a later version can
add one (a MAC keyed from the cluster secret is planned) without breaking older nodes. The transport (NATS
request/reply on a subject outside the replication stream) lives in the JetStream driver.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any, Protocol

import orjson

VERSION = 1


class EnvelopeError(ValueError):
    """Bytes that are not a snapshot request or reply this version understands."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotRequest:
    database: str
    node: str  # who asks (a node never answers its own request)
    need: int  # the snapshot must cover the log up to here: the log's first sequence less one
    v: int = VERSION

    def encode(self) -> bytes:
        return orjson.dumps({"kind": "snapshot_request", **asdict(self)})

    @classmethod
    def decode(cls, data: bytes) -> SnapshotRequest:
        return cls(**_fields(cls, data, "snapshot_request"))


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotReply:
    database: str
    node: str  # who answers
    ok: bool
    pending: bool = False  # "working on it": the final reply of this node follows
    seq: int = 0  # the stored snapshot's position
    covers: int = 0  # how far it covers the log (``SnapshotMeta.covers``)
    taken: bool = False  # stored for this request (False: a stored one was new enough)
    error: str | None = None  # why it refused
    v: int = VERSION

    def encode(self) -> bytes:
        return orjson.dumps({"kind": "snapshot_reply", **asdict(self)})

    @classmethod
    def decode(cls, data: bytes) -> SnapshotReply:
        return cls(**_fields(cls, data, "snapshot_reply"))


def _fields(cls: type[Any], data: bytes, kind: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise EnvelopeError(f"not JSON: {e}") from None
    if not isinstance(obj, dict) or obj.get("kind") != kind:
        raise EnvelopeError(f"not a {kind}")
    if not isinstance(obj.get("v"), int) or obj["v"] < 1:
        raise EnvelopeError(f"{kind} without a version")
    known = fields(cls)
    out = {f.name: obj[f.name] for f in known if f.name in obj}  # unknown fields are a later version's
    for f in known:
        if f.name not in out and f.default is MISSING:
            raise EnvelopeError(f"{kind} without {f.name}")
    for name, kinds in _TYPES.items():
        value = out.get(name)
        if name in out and (not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool))):
            raise EnvelopeError(f"{kind}: {name} is not {' or '.join(k.__name__ for k in kinds)}")
    return out


_TYPES: dict[str, tuple[type, ...]] = {
    "database": (str,),
    "node": (str,),
    "need": (int,),
    "seq": (int,),
    "covers": (int,),
    "ok": (bool,),
    "pending": (bool,),
    "taken": (bool,),
    "error": (str, type(None)),
}


Send = Callable[[SnapshotReply], Awaitable[None]]
# Answer a request by sending replies: none (a node that does not replicate the database stays silent), a
# refusal, or a pending reply followed by the final one.
Answer = Callable[[SnapshotRequest, Send], Awaitable[None]]


class SnapshotRequests(Protocol):
    """Request/reply between the nodes of a cluster about snapshots."""

    def serve(self, answer: Answer) -> None:
        """Answer the requests of other nodes with ``answer`` (in the background) until ``close``."""

    async def ask(self, request: SnapshotRequest, timeout: float) -> SnapshotReply | None:
        """Ask every live node: the first reply that is ``ok`` and covers ``request.need``; else the last
        refusal (``ok`` false, with why), else None (no node answered within ``timeout``)."""

    async def close(self) -> None:
        """Stop answering; idempotent."""
