"""Snapshot manifests that carry a MAC: a node installs or serves only a snapshot its cluster stored.

The object store holds a snapshot's bytes and, as object headers, its manifest (``SnapshotMeta``: database,
seq, sha256, size, …). Whoever reaches NATS can replace both, so the manifest carries a MAC keyed from the
cluster secret over every other field, and the bytes are checked against the manifest's sha256 (the store does
so while downloading, the bootstrap again before installing). A forger would need the secret to make a
manifest that matches other bytes.

``SignedSnapshotStore`` wraps any ``SnapshotStore``: it signs what it stores (``put``, ``certify``) with the
node's current key and verifies what it reads. A manifest that does not verify is refused: ``latest`` answers
as if there were no snapshot (so a node falls back as it would without one: it asks the live nodes, whose
fresh snapshot replaces the refused one), and ``fetch`` raises ``SnapshotRefused``, so nothing unverified is
installed or served. Each refusal is counted and logged (with why, once per database and manifest).

Without keys (``--insecure-replication`` or no secret) manifests are stored without a MAC and read unchecked.
"""

from __future__ import annotations

import base64
import dataclasses
import hmac
import logging
from pathlib import Path
from typing import Any

import orjson

from sqlite_ha.replication.snapshot import SnapshotError, SnapshotMeta, SnapshotStore
from sqlite_ha.security.keys import ClusterKeys, MacKey

log = logging.getLogger(__name__)

VERSION = "v1"
_LABEL = b"sqlite-ha/snapshot-manifest/" + VERSION.encode()


class SnapshotRefused(SnapshotError):
    """The stored snapshot's manifest does not carry a valid MAC of this cluster: it is not used."""

    code = "snapshot_unauthenticated"


def _manifest(meta: SnapshotMeta) -> bytes:
    fields = dataclasses.asdict(meta)
    fields.pop("mac")
    return orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)


def _mac(key: MacKey, meta: SnapshotMeta) -> bytes:
    return key.mac(_LABEL, meta.database.encode(), _manifest(meta))


def sign(key: MacKey, meta: SnapshotMeta) -> SnapshotMeta:
    mac = base64.urlsafe_b64encode(_mac(key, meta)).decode().rstrip("=")
    return dataclasses.replace(meta, mac=f"{VERSION} {key.key_id} {mac}")


def check(keys: ClusterKeys, meta: SnapshotMeta, database: str) -> str | None:
    """Why the manifest does not verify for ``database``, or None when it does."""
    if meta.database != database:
        return f"its manifest names database {meta.database[:80]!r}"
    if not meta.mac:
        return "its manifest carries no MAC (unsigned)"
    parts = meta.mac.split(" ")
    if len(parts) != 3 or parts[0] != VERSION:
        return "its manifest's MAC is malformed"
    key = keys.verifying(parts[1])
    if key is None:
        return f"its manifest is signed with key {parts[1][:8]!r}, not one of this node's cluster secret(s)"
    expected = base64.urlsafe_b64encode(_mac(key, meta)).rstrip(b"=")
    if not hmac.compare_digest(parts[2].encode(), expected):  # as text: one MAC, one encoding
        return "its manifest's MAC does not match (the manifest was altered or forged)"
    return None


class SignedSnapshotStore:
    """A ``SnapshotStore`` whose manifests are signed and verified (see the module doc)."""

    def __init__(self, store: SnapshotStore, keys: ClusterKeys | None) -> None:
        self.store = store
        self.keys = keys
        self.verifies_checksum = bool(getattr(store, "verifies_checksum", False))
        self.refused = 0
        self.last_refusal: str | None = None
        self._logged: set[tuple[str, str, int]] = set()  # (database, mac, seq) refusals logged already

    def _sign(self, meta: SnapshotMeta) -> SnapshotMeta:
        return sign(self.keys.signing, meta) if self.keys is not None else dataclasses.replace(meta, mac="")

    async def put(self, meta: SnapshotMeta, path: Path) -> None:
        await self.store.put(self._sign(meta), path)

    async def certify(self, meta: SnapshotMeta) -> None:
        await self.store.certify(self._sign(meta))

    async def latest(self, database: str) -> SnapshotMeta | None:
        meta = await self.store.latest(database)
        if meta is None or self._refusal(database, meta) is None:
            return meta
        return None

    async def fetch(self, database: str, dest: Path) -> SnapshotMeta:
        meta = await self.store.fetch(database, dest)
        why = self._refusal(database, meta)
        if why is not None:
            raise SnapshotRefused(
                f"the stored snapshot of {database} is refused: {why}",
                hint="a node of the cluster replaces it when it takes a snapshot (POST /snapshot); check "
                "that every node has the same --cluster-secret",
                database=database,
            )
        return meta

    def _refusal(self, database: str, meta: SnapshotMeta) -> str | None:
        if self.keys is None:
            return None
        why = check(self.keys, meta, database)
        if why is None:
            return None
        self.refused += 1
        self.last_refusal = f"{database} (seq {meta.seq}): {why}"
        seen = (database, meta.mac, meta.seq)
        if seen not in self._logged:
            if len(self._logged) > 1000:
                self._logged.clear()
            self._logged.add(seen)
            log.error(
                "the stored snapshot of %s (seq %d) is refused: %s; it is neither installed nor served",
                database,
                meta.seq,
                why,
            )
        return why

    def stats(self) -> dict[str, Any]:
        return {"refused": self.refused, "last_refusal": self.last_refusal}
