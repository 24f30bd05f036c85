"""The role of a node that only follows the log: a live local read replica."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Subscriber:
    """The role of a node that only follows the log (``sqlite-ha sync``, ``sqlite_ha.replica``): it never
    publishes, claims no rowid slot, takes and serves no snapshots, is never a writer, and never creates or
    changes the stream; it needs of NATS only what a consumer needs. A snapshot it installs is copied into
    the file through SQLite, since other processes read the file meanwhile."""

    durable: bool = False  # its consumers outlive it in the log (``--durable NAME``)
