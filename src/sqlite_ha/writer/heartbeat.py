"""The heartbeat of writer mode pinned: what one node tells another on ``POST /_ha/heartbeat``, sans IO.

The shape is the base-ha plugin's (``{"node_id", "target"}``), so a heartbeat of that plugin still parses;
ours adds fields that let the receiver rank and order them: the sender's node name (it signs with it), its
PostgreSQL port, a random ``boot`` id per process and a ``seq`` that grows with every heartbeat of that
process (a heartbeat older than one already taken is ignored: a delayed one cannot revive a dead node),
``starting`` (the sender has not heard from all its peers yet: not ranked), ``leaving`` (it stops: drop it
now), ``writer`` (whom it pins, for the status page) and ``to`` (the URL it was sent to: a node that gets its
own heartbeat back learns that this URL of its ``--peers`` is itself). Readers ignore fields they do not know.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from sqlite_ha.errors import BadRequest, HAError

PATH = "/_ha/heartbeat"
REPLY = "REPLY"  # the "method" a reply's signature covers: a reply can never pass for a request
MAX_SIZE = 4096  # bytes of a heartbeat's body; ours are about 250
VERSION = 1
_NODE_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_NAME = re.compile(r"[^\s]{1,128}")
_TARGET = re.compile(r"https?://[^\s/?#@]+(:\d{1,5})?/?")
_BOOT = re.compile(r"[A-Za-z0-9_-]{0,64}")


class BadHeartbeat(BadRequest):
    """A heartbeat that is not one: not JSON, not an object, a field of the wrong type or form."""

    code = "bad_heartbeat"


class UnknownSender(HAError):
    """A heartbeat from a target that is not among this node's ``--peers`` (or whose body names another node
    than the one that signed it): a node of another cluster, or a misconfigured one. Answered 403."""

    code = "unknown_sender"


class WrongMode(HAError):
    """A heartbeat sent to a node that does not run writer mode pinned (a misconfigured cluster)."""

    code = "not_pinned"


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeat:
    node_id: str  # ranked: the lowest alive node id writes
    target: str  # the sender's HTTP base URL (its --local-target): where writes go if it writes
    node: str = ""  # the sender's node name, as it signs requests
    pg_port: int | None = None
    boot: str = ""  # random per process: a new one means the sender restarted
    seq: int = 0  # grows with each heartbeat of one process
    starting: bool = False
    leaving: bool = False
    writer: str | None = None  # the node id the sender pins now (informative only)
    to: str = ""  # the URL it was sent to: a node that receives its own heartbeat learns an alias of itself

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "v": VERSION,
                "node_id": self.node_id,
                "target": self.target,
                "node": self.node,
                "pg_port": self.pg_port,
                "boot": self.boot,
                "seq": self.seq,
                "starting": self.starting,
                "leaving": self.leaving,
                "writer": self.writer,
                "to": self.to or None,
            }
        )

    @classmethod
    def decode(cls, body: bytes) -> Heartbeat:
        """Parse a heartbeat; ``BadHeartbeat`` says precisely what is wrong with it."""
        if len(body) > MAX_SIZE:
            raise BadHeartbeat(f"a heartbeat is at most {MAX_SIZE} bytes, not {len(body)}")
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise BadHeartbeat(f"a heartbeat is a JSON object: {e}") from None
        if not isinstance(doc, dict):
            raise BadHeartbeat(f"a heartbeat is a JSON object, not {type(doc).__name__}")
        return cls(
            node_id=_text(doc, "node_id", _NODE_ID, required=True),
            target=_text(doc, "target", _TARGET, required=True).rstrip("/"),
            node=_text(doc, "node", _NAME),
            pg_port=_int(doc, "pg_port", 65535),
            boot=_text(doc, "boot", _BOOT),
            seq=_int(doc, "seq", 2**63 - 1) or 0,
            starting=_bool(doc, "starting"),
            leaving=_bool(doc, "leaving"),
            writer=_text(doc, "writer", _NODE_ID) or None,
            to=_text(doc, "to", _TARGET).rstrip("/"),
        )


def _text(doc: dict[str, Any], key: str, form: re.Pattern[str], *, required: bool = False) -> str:
    value = doc.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise BadHeartbeat(f"heartbeat field {key!r} must be a string, not {type(value).__name__}")
    if not form.fullmatch(value):
        raise BadHeartbeat(f"heartbeat field {key!r} is malformed: {value[:80]!r}")
    return value


def _int(doc: dict[str, Any], key: str, most: int) -> int | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise BadHeartbeat(f"heartbeat field {key!r} must be an integer from 0 to {most}")
    return value


def _bool(doc: dict[str, Any], key: str) -> bool:
    value = doc.get(key, False)
    if not isinstance(value, bool):
        raise BadHeartbeat(f"heartbeat field {key!r} must be true or false")
    return value
