"""What the clients did and heard: one ``Op`` per request, collected in a ``History``."""

from __future__ import annotations

import enum
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


class Outcome(enum.Enum):
    """What a client may conclude from the answer to a write (docs/replication.md)."""

    OK = "ok"
    """200 with ``seq``: durable in the log, every node will have it."""
    PENDING = "pending"
    """202: committed on its node, in the outbox; must appear everywhere eventually."""
    REFUSED = "refused"
    """503, 4xx, or a connection the node refused: nothing was written, it must never appear."""
    UNKNOWN = "unknown"
    """A timeout, a broken connection, a 5xx other than 503: it may or may not have happened."""
    ANOMALY = "anomaly"
    """An answer the API does not define for a write (e.g. 200 without ``seq``): counted and reported."""


@dataclass(frozen=True, kw_only=True)
class Op:
    """One request and its answer, with wall-clock (``time.time``) start and end."""

    workload: str
    node: str
    write_id: str
    """Identifies what the write leaves in the database (a key, a tag, a value, a batch id)."""
    start: float
    end: float
    status: int
    """HTTP status; 0 when no answer came (connection refused, reset, timeout)."""
    outcome: Outcome
    seq: int | None = None
    body: str = ""
    """The answer's body (first 600 characters) or the client-side error."""
    result: Any = None
    """What the workload needs from the answer (e.g. ``last_insert_id``)."""

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["outcome"] = self.outcome.value
        return d


def classify(status: int, body: Any) -> Outcome:
    """The outcome of a write from its HTTP status and decoded body (None if not JSON)."""
    if status == 200:
        return Outcome.OK if isinstance(body, dict) and isinstance(body.get("seq"), int) else Outcome.ANOMALY
    if status == 202:
        pending = isinstance(body, dict) and (body.get("replication") or {}).get("status") == "pending"
        return Outcome.PENDING if pending else Outcome.ANOMALY
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("code") == "write_outcome_unknown":
        return Outcome.UNKNOWN  # writer modes: no answer from the log or the writer, it may have been written
    if status == 503 or 400 <= status < 500:
        return Outcome.REFUSED
    return Outcome.UNKNOWN


class History:
    """Thread-safe append-only list of ops, plus the nemesis's own log of what it did and when."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ops: list[Op] = []
        self.events: list[tuple[float, str]] = []

    def add(self, op: Op) -> None:
        with self._lock:
            self.ops.append(op)

    def event(self, at: float, what: str) -> None:
        with self._lock:
            self.events.append((at, what))

    def snapshot(self) -> list[Op]:
        with self._lock:
            return list(self.ops)

    def dump(self, path: Path) -> None:
        """Write the history as JSON lines: events first (``{"event", "at"}``), then ops."""
        with path.open("w") as f:
            for at, what in self.events:
                f.write(json.dumps({"event": what, "at": at}) + "\n")
            for op in self.snapshot():
                f.write(json.dumps(op.to_json(), default=str) + "\n")
