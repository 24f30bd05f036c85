"""Writer mode elected (``--leader-addr URL``, go-ha's ``dynamic:URL``): the writer holds a lease, one key in
a replicated JetStream key-value bucket, ``<stream>_WRITER``.

- Taking it: ``create`` of the key, a compare-and-set that fails while the key exists, so two nodes racing
  for it cannot both win. The revision that created it is the lease's *epoch*: revisions only grow, so each
  new writer's epoch is larger than every earlier one's.
- Keeping it: the holder updates the key every ``--heartbeat-interval`` with ``update(last=revision)``
  (compare-and-set again: it fails if anyone else took the key meanwhile).
- Losing it: the bucket's max age is ``--lease-timeout``, so a key nobody renews disappears that long after
  its last update, and the next node to look takes it. A stopping writer deletes it: the others take over at
  once.

The holder trusts its lease only until 3/4 of ``--lease-timeout`` after it *sent* its last successful renewal
(its own monotonic clock: a process paused by SIGSTOP sees that time pass), and checks that right before each
write reaches the log. That keeps two nodes from acknowledging writes at once in the ordinary case; the case
no lease can cover (paused between that check and the publish) is the fence's: the log refuses an append
based on an older last change set (``replication/replicated_database.py``), and a new writer marks its term
in the log first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError, NotFoundError
from nats.js.kv import KeyValue

from sqlite_ha.replication.jetstream.common import describe
from sqlite_ha.replication.jetstream.connection import NatsConnection
from sqlite_ha.writer.role import Writer, WriterMode

log = logging.getLogger(__name__)

KEY = "writer"
TRUST = 0.75  # of the lease timeout: how long after sending its last renewal the holder trusts its lease


def bucket_name(stream: str) -> str:
    return f"{stream}_WRITER"


class LeaseWriter(WriterMode):
    name = "elected"
    fenced = True

    def __init__(
        self,
        node: str,
        url: str,
        *,
        nats: NatsConnection,
        stream: str,
        replicas: int,
        ttl: float,
        interval: float,
        pg_port: int | None,
    ) -> None:
        super().__init__(node)
        self.url = url
        self._nats = nats
        self._stream = stream
        self._replicas = replicas
        self.ttl = ttl
        self.interval = interval
        self.pg_port = pg_port
        self._kv: KeyValue | None = None
        self._revision: int | None = None  # of our last write of the key, while we hold it
        self._epoch: int | None = None
        self._since: float | None = None
        self._trusted_until = 0.0  # monotonic
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.renewals = 0
        self.elections = 0  # times this node took the lease

    # ------------------------------------------------------------------------------------ asking
    def holds(self) -> bool:
        return self._revision is not None and time.monotonic() < self._trusted_until

    def status(self) -> dict[str, Any]:
        out = super().status()
        out.update(
            {
                "lease": {
                    "bucket": bucket_name(self._stream),
                    "ttl_s": self.ttl,
                    "renew_every_s": self.interval,
                    "held": self.holds(),
                    "trusted_for_s": round(max(0.0, self._trusted_until - time.monotonic()), 3)
                    if self._revision is not None
                    else None,
                    "elections": self.elections,
                    "renewals": self.renewals,
                    "last_error": self.last_error,
                }
            }
        )
        return out

    # ------------------------------------------------------------------------------------ life
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="writer-lease")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._revision is not None and self._kv is not None:
            # Hand over at once: the others need not wait for the lease to run out.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._kv.delete(KEY, last=self._revision), 1.0)
                log.info("gave up the writer lease (epoch %s)", self._epoch)
        self._revision = None
        self._set(None)

    async def _run(self) -> None:
        while True:
            try:
                await self._tick()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as e:  # NATS away, no JetStream quorum: try again at the next tick
                why = describe(e)
                # Said once when it starts failing (or fails otherwise), not at every tick; /status has it.
                (log.warning if why != self.last_error else log.debug)("writer lease: %s (retrying)", why)
                self.last_error = why
                if self._revision is not None and not self.holds():
                    self._step_down("cannot renew the lease: " + self.last_error)
            # While no writer is known, look twice as often: writes are waiting.
            await asyncio.sleep(self.interval if self.current() is not None else self.interval / 2)

    async def _tick(self) -> None:
        kv = await self._bucket()
        if self._revision is not None:
            await self._renew(kv)
            return
        try:
            entry = await asyncio.wait_for(kv.get(KEY), self.interval)
        except (KeyNotFoundError, NotFoundError):  # expired, deleted, or never taken
            entry = None
        if entry is None:
            await self._take(kv, None)
            return
        value = _parse(entry.value)
        if value.get("node") == self.node:  # our own lease from before a restart: take it back at once
            await self._take(kv, entry.revision)
            return
        self._set(
            Writer(
                node=str(value.get("node") or "?"),
                url=str(value.get("url") or ""),
                is_self=False,
                epoch=int(value.get("epoch") or entry.revision or 0),
                since=_float(value.get("since")),
                pg_port=_int(value.get("pg_port")),
            )
        )

    async def _take(self, kv: KeyValue, over: int | None) -> None:
        """Take the lease: create the key (or, ``over`` a revision of our own earlier lease, update it)."""
        sent = time.monotonic()
        since = time.time()
        body = self._value(epoch=None, since=since)
        try:
            if over is None:
                revision = await asyncio.wait_for(kv.create(KEY, body), self.interval)
            else:
                revision = await asyncio.wait_for(kv.update(KEY, body, last=over), self.interval)
        except KeyWrongLastSequenceError:
            return  # another node was faster: it is the writer, seen at the next tick
        self._revision, self._epoch, self._since = revision, revision, since
        self._trusted_until = sent + self.ttl * TRUST
        self.elections += 1
        log.info("this node is the writer now (lease epoch %d)", revision)
        self._set(self._writer_self())
        await self._renew(kv)  # the epoch into the value, for the others to read

    async def _renew(self, kv: KeyValue) -> None:
        assert self._revision is not None
        sent = time.monotonic()
        try:
            self._revision = await asyncio.wait_for(
                kv.update(KEY, self._value(epoch=self._epoch, since=self._since), last=self._revision),
                self.interval,
            )
        except KeyWrongLastSequenceError:
            self._step_down("another node holds the lease now")
            return
        self._trusted_until = sent + self.ttl * TRUST
        self.renewals += 1
        if self.current() is None or not self.current().is_self:  # type: ignore[union-attr]
            self._set(self._writer_self())

    def _step_down(self, why: str) -> None:
        log.warning("this node is no longer the writer (epoch %s): %s", self._epoch, why)
        self._revision = None
        self._set(None)

    def _writer_self(self) -> Writer:
        return Writer(
            node=self.node,
            url=self.url,
            is_self=True,
            epoch=self._epoch,
            since=self._since,
            pg_port=self.pg_port,
        )

    def _value(self, *, epoch: int | None, since: float | None) -> bytes:
        return json.dumps(
            {"node": self.node, "url": self.url, "pg_port": self.pg_port, "epoch": epoch, "since": since}
        ).encode()

    async def _bucket(self) -> KeyValue:
        if self._kv is not None:
            return self._kv
        nc = self._nats.client
        if nc is None or not nc.is_connected:
            raise ConnectionError("not connected to NATS")
        js = nc.jetstream()
        name = bucket_name(self._stream)
        try:
            kv = await asyncio.wait_for(js.key_value(name), self.interval)
        except (BucketNotFoundError, NotFoundError):
            kv = await asyncio.wait_for(
                js.create_key_value(
                    KeyValueConfig(
                        bucket=name,
                        description="sqlite-ha: the elected writer's lease",
                        history=1,
                        ttl=self.ttl,
                        storage=StorageType.FILE,
                        replicas=self._replicas,
                    )
                ),
                max(self.interval, 5.0),
            )
        info = await asyncio.wait_for(js.stream_info(f"KV_{name}"), self.interval)
        bucket_ttl = float(info.config.max_age or 0)
        if bucket_ttl and abs(bucket_ttl - self.ttl) > 1e-3:
            # The bucket's max age is what makes a lease run out: trust ours no longer than it says.
            log.warning(
                "the writer lease bucket %s expires leases after %gs, this node was given --lease-timeout "
                "%gs: using %gs (give every node the same value)",
                name,
                bucket_ttl,
                self.ttl,
                bucket_ttl,
            )
            self.ttl = bucket_ttl
        self._kv = kv
        return kv


def _parse(raw: bytes | None) -> dict[str, Any]:
    try:
        value = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _float(v: object) -> float | None:
    return float(v) if isinstance(v, int | float) else None


def _int(v: object) -> int | None:
    return int(v) if isinstance(v, int) else None
