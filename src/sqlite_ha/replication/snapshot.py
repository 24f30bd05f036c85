"""Snapshots of databases in the log's object store, and what a node needs to know about one.

A snapshot is a consistent SQLite file of one database with the log position it includes (``seq``): a node
that installs it consumes the log from ``seq`` on. One object per database; a new snapshot replaces the
previous one only once it is completely stored, so a crash during an upload never leaves none.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlite_ha.errors import HAError


class SnapshotError(HAError):
    code = "snapshot_error"


class NoSnapshot(HAError):
    code = "no_snapshot"


class SnapshotsUnavailable(HAError):
    code = "snapshots_unavailable"


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotMeta:
    database: str
    seq: int  # the log position the snapshot includes
    hlc: int  # the clock of the node that took it
    sha256: str  # of the file's bytes
    size: int
    schema_version: int
    node: str
    taken_at: float  # unix time
    # A caught-up node checked that the database had no change set between ``seq`` and this position, so
    # the snapshot covers the log up to here (other databases' change sets may take the numbers between).
    covers_through: int = 0
    # "v1 <key id> <HMAC-SHA256>" over every other field, keyed from the cluster secret (see
    # ``signed_snapshots``); empty when the node that stored it had no secret.
    mac: str = ""

    @property
    def covers(self) -> int:
        return max(self.seq, self.covers_through)

    def headers(self) -> dict[str, str]:
        return {f"Ha-{k.replace('_', '-').title()}": str(v) for k, v in asdict(self).items()}

    @classmethod
    def from_headers(cls, headers: dict[str, Any]) -> SnapshotMeta:
        norm = {k.lower(): (v[0] if isinstance(v, list) else v) for k, v in headers.items()}
        try:
            return cls(
                database=str(norm["ha-database"]),
                seq=int(norm["ha-seq"]),
                hlc=int(norm["ha-hlc"]),
                sha256=str(norm["ha-sha256"]),
                size=int(norm["ha-size"]),
                schema_version=int(norm["ha-schema-version"]),
                node=str(norm["ha-node"]),
                taken_at=float(norm["ha-taken-at"]),
                covers_through=int(norm.get("ha-covers-through", 0) or 0),
                mac=str(norm.get("ha-mac", "") or ""),
            )
        except (KeyError, ValueError) as e:
            raise SnapshotError(f"the stored snapshot has no usable metadata ({e})") from None

    def to_dict(self) -> dict[str, Any]:
        """For the API: the manifest without its MAC (which only nodes check)."""
        out = asdict(self)
        del out["mac"]
        return out


class SnapshotStore(Protocol):
    """Where snapshots live: the JetStream object store, or memory (in-process tests)."""

    async def put(self, meta: SnapshotMeta, path: Path) -> None:
        """Store the file at ``path`` as the database's snapshot, replacing the previous one when complete."""

    async def latest(self, database: str) -> SnapshotMeta | None:
        """The metadata of the database's snapshot, or None."""

    async def fetch(self, database: str, dest: Path) -> SnapshotMeta:
        """Write the snapshot's bytes to ``dest``; ``NoSnapshot`` when there is none."""

    async def certify(self, meta: SnapshotMeta) -> None:
        """Store updated metadata (``covers_through``) of the database's current snapshot."""


class MemorySnapshotStore:
    """Snapshots kept in memory, for in-process nodes (tests and the memory hub)."""

    def __init__(self) -> None:
        self._objects: dict[str, tuple[SnapshotMeta, bytes]] = {}

    async def put(self, meta: SnapshotMeta, path: Path) -> None:
        self._objects[meta.database] = (meta, await asyncio.to_thread(path.read_bytes))

    async def latest(self, database: str) -> SnapshotMeta | None:
        found = self._objects.get(database)
        return found[0] if found else None

    async def certify(self, meta: SnapshotMeta) -> None:
        if meta.database in self._objects:
            self._objects[meta.database] = (meta, self._objects[meta.database][1])

    async def fetch(self, database: str, dest: Path) -> SnapshotMeta:
        if database not in self._objects:
            raise NoSnapshot(f"no snapshot of {database!r}")
        meta, data = self._objects[database]
        await asyncio.to_thread(dest.write_bytes, data)
        return meta
