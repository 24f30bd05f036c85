"""The cluster's rowid slots in a JetStream key-value bucket, ``<stream>_ROWID_SLOTS``.

Key ``stride`` holds the cluster's stride (the first node to start sets it); key ``slot.<r>`` holds the name
of the node whose keys are ≡ r (mod stride). Slots are taken with ``create`` (compare-and-set: it fails when
the key exists), so two nodes racing for one slot cannot both win, and they stay taken across restarts: a
node finds its own by its name. A node gone for good keeps its slot until an operator deletes the key
(``nats kv del <stream>_ROWID_SLOTS slot.<r>``; ``GET /status`` shows each node's residue), which is safe
only while that node is not running: a running node keeps using its residue. One that comes back finds no
slot under its name and claims a free one.
"""

from __future__ import annotations

import contextlib
import logging

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from sqlite_ha.changes.rowids import RowidSlot
from sqlite_ha.replication.jetstream.common import describe
from sqlite_ha.replication.replicator import ReplicationError

log = logging.getLogger(__name__)


def bucket_name(stream: str) -> str:
    return f"{stream}_ROWID_SLOTS"


async def _bucket(js: JetStreamContext, stream: str, replicas: int) -> KeyValue:
    name = bucket_name(stream)
    try:
        return await js.key_value(name)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(
            KeyValueConfig(
                bucket=name,
                description="sqlite-ha: which node holds which residue of the keys SQLite chooses",
                history=1,
                storage=StorageType.FILE,
                replicas=replicas,
            )
        )


async def _value(kv: KeyValue, key: str) -> str | None:
    try:
        entry = await kv.get(key)
    except (KeyNotFoundError, NotFoundError):  # KeyDeletedError is a KeyNotFoundError
        return None
    return entry.value.decode() if entry.value else None


async def claim(js: JetStreamContext, *, stream: str, replicas: int, node: str, stride: int) -> RowidSlot:
    """``node``'s slot: the one it already holds, else the lowest free one, claimed now."""
    try:
        kv = await _bucket(js, stream, replicas)
        with contextlib.suppress(KeyWrongLastSequenceError):  # set by the first node; all use it
            await kv.create("stride", str(stride).encode())
        current = int(await _value(kv, "stride") or stride)
        if current != stride:
            log.warning("the cluster's rowid stride is %d (not %d as given): using it", current, stride)
        holders = {r: await _value(kv, f"slot.{r}") for r in range(1, current + 1)}
        for residue, holder in holders.items():
            if holder == node:
                return RowidSlot(current, residue)
        raced = False
        for residue, holder in holders.items():
            if holder is not None:
                continue
            try:
                await kv.create(f"slot.{residue}", node.encode())
            except (KeyWrongLastSequenceError, KeyNotFoundError):
                # (nats-py's create answers KeyNotFoundError when its check of a key it found taken races
                # a change of that key: contention too)
                if await _value(kv, f"slot.{residue}") == node:  # our own earlier attempt landed
                    return RowidSlot(current, residue)
                raced = True
                continue  # another node took it just now
            log.info("claimed rowid slot %d of %d", residue, current)
            return RowidSlot(current, residue)
    except ReplicationError:
        raise
    except Exception as e:
        raise ReplicationError(f"claiming a rowid slot in {bucket_name(stream)}: {describe(e)}") from e
    if raced:  # the slots seen free were taken meanwhile: what is free now needs another look
        raise ReplicationError(f"claiming a rowid slot in {bucket_name(stream)}: other nodes took them first")
    raise ReplicationError(
        f"all {current} rowid slots of {bucket_name(stream)} are held by other nodes: this node cannot "
        "choose keys for inserts that leave the key to the database",
        retryable=False,
        hint="free the slot of a node gone for good (see docs/replication.md), or use a larger "
        "--rowid-stride when starting a new cluster",
    )
