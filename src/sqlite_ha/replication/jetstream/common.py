"""What the JetStream driver and its pull consumers share: the start policy, name rules, error texts."""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from nats.js.api import DeliverPolicy
from nats.js.errors import APIError, ServiceUnavailableError

from sqlite_ha.replication.replicator import ReplicationError


@dataclass(frozen=True)
class StartPolicy:
    """Where a new consumer starts (``--replication-policy``)."""

    deliver: DeliverPolicy
    start_seq: int | None = None
    start_time: datetime.datetime | None = None


def parse_policy(policy: str) -> StartPolicy:
    """``all``, ``last``, ``new``, ``by_start_sequence=N`` (N >= 1) or ``by_start_time=YYYY-MM-DD HH:MM:SS``
    (UTC)."""
    text = policy.strip()
    simple = {"all": DeliverPolicy.ALL, "last": DeliverPolicy.LAST, "new": DeliverPolicy.NEW}
    if text in simple:
        return StartPolicy(simple[text])
    key, sep, value = text.partition("=")
    if sep and key.strip() == "by_start_sequence":
        try:
            seq = int(value.strip())
        except ValueError:
            seq = 0
        if seq < 1:
            raise ReplicationError(
                f"invalid replication policy {policy!r}: the start sequence must be an integer >= 1",
                retryable=False,
            )
        return StartPolicy(DeliverPolicy.BY_START_SEQUENCE, start_seq=seq)
    if sep and key.strip() == "by_start_time":
        try:
            start = datetime.datetime.strptime(value.strip(), "%Y-%m-%d %H:%M:%S")
        except ValueError:
            raise ReplicationError(
                f"invalid replication policy {policy!r}: the start time must be YYYY-MM-DD HH:MM:SS (UTC)",
                retryable=False,
            ) from None
        return StartPolicy(DeliverPolicy.BY_START_TIME, start_time=start.replace(tzinfo=datetime.UTC))
    raise ReplicationError(
        f"invalid replication policy {policy!r}",
        retryable=False,
        hint="use all, last, new, by_start_sequence=N or by_start_time=YYYY-MM-DD HH:MM:SS",
    )


def valid_name(name: str) -> bool:
    """A name JetStream accepts for a consumer (it becomes a subject token)."""
    return bool(name) and not any(c in name for c in ".*>/\\") and not any(c.isspace() for c in name)


def describe(e: BaseException) -> str:
    """A short text for a NATS error (nats-py's own texts are often empty or generic)."""
    if isinstance(e, APIError):
        # nats-py raises some APIError subclasses (KeyNotFoundError…) without calling APIError's __init__
        description = getattr(e, "description", None)
        if description:
            return f"{description.strip()} (JetStream error {getattr(e, 'err_code', None) or e.code})"
        if isinstance(e, ServiceUnavailableError):
            return "JetStream is not available (no responders)"
        return type(e).__name__
    if isinstance(e, TimeoutError):
        return "timed out"
    return str(e).strip() or type(e).__name__
