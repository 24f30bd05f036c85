"""Writer mode pinned (the base-ha plugin's writer pinning: ``BASE_LOCAL_TARGET`` + ``BASE_PEERS``): nodes
send each other heartbeats, and the lowest node id alive writes.

Every ``interval`` this node sends a heartbeat (``heartbeat.Heartbeat``) to each of its ``--peers`` on
``POST /_ha/heartbeat``, signed with the cluster secret; the peer takes it and answers with its own, signed
too, so one round trip informs both sides. A peer is *alive* while this node has heard from it (its
heartbeat, or its answer to ours) within ``timeout``. The writer is the lowest node id, compared as strings,
among this node and its alive peers; each node decides alone, from its own view.

Start-up. A node that just started knows nobody yet: ranking itself at once, a restarted node with a low id
would take writes while the others still pin the node that wrote meanwhile. So a starting node does not rank
itself until it has heard from every peer, or until one ``timeout`` has passed (then every peer alive has had
the time to be heard: ``timeout`` is at least two intervals); its heartbeats say ``starting`` and its peers
do not rank it either until it says it is ready. Meanwhile it pins the lowest ready node it knows.

Leaving. A node that stops (SIGTERM) sends a last heartbeat that says ``leaving``: its peers drop it at once
instead of after ``timeout``.

What this mode does not give: agreement. Views differ for up to ``timeout`` after a change, and for as long
as a network partition lasts (a node cut off from the others is the lowest node it can see: it writes too).
That is why writes are fenced in every writer mode: each is a conditional append to the log, so two nodes
that both believe they write cannot make the histories diverge; one of them is refused (``fenced``).

Epoch. There is no cluster-wide term here (nothing is agreed), so ``Writer.epoch`` is this node's own count
of the writer changes it has seen: it grows with each change and is comparable only between answers of the
same node process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from sqlite_ha.errors import HAError
from sqlite_ha.security.node_auth import HEADER, NodeVerifier, sign
from sqlite_ha.writer.heartbeat import MAX_SIZE, PATH, REPLY, Heartbeat, UnknownSender
from sqlite_ha.writer.role import Writer, WriterMode

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlite_ha.security.keys import ClusterKeys

log = logging.getLogger(__name__)
_LEAVE_TIMEOUT = 1.0  # seconds the last heartbeats of a stopping node may take


@dataclass(slots=True)
class Peer:
    """What this node knows of one of its ``--peers``."""

    target: str
    node_id: str | None = None
    node: str | None = None
    pg_port: int | None = None
    boot: str = ""
    seq: int = -1
    heard: float | None = None  # monotonic time of its last heartbeat taken (sent by it, or its answer)
    starting: bool = False
    leaving: bool = False
    writer: str | None = None  # whom it pins, by its last heartbeat
    restarts: int = 0  # new boot ids seen
    failures: int = 0  # heartbeats of ours it did not answer (unreachable, refused)
    error: str | None = None  # why the last one failed; None once one succeeds
    kick: asyncio.Event = field(default_factory=asyncio.Event)  # send the next heartbeat now

    def alive(self, now: float, timeout: float) -> bool:
        return self.heard is not None and not self.leaving and now - self.heard < timeout

    def ranked(self, now: float, timeout: float) -> bool:
        """Whether it takes part in the ranking: alive, with a node id, and ready."""
        return self.node_id is not None and not self.starting and self.alive(now, timeout)


_Candidate = tuple[str, str, Peer | None]  # node id, target, the peer (None: this node)


class PinnedWriter(WriterMode):
    name = "pinned"
    fenced = True
    redirect = True  # HTTP writes on a non-writer are answered 307 to the writer, as the plugin does

    def __init__(
        self,
        node_name: str,
        *,
        node_id: str,
        local_target: str,
        peers: Iterable[str],
        interval: float,
        timeout: float,
        keys: ClusterKeys | None,
        pg_port: int | None,
    ) -> None:
        super().__init__(node_name)
        self.node_id = node_id
        self.local_target = local_target.rstrip("/")
        self.interval = interval
        self.timeout = timeout
        self.keys = keys
        self.pg_port = pg_port
        # The same --peers list may be given to every node, this node's own URL included: skip it.
        targets = dict.fromkeys(p.rstrip("/") for p in peers)
        self.peers: dict[str, Peer] = {t: Peer(t) for t in targets if t != self.local_target}
        self.boot = secrets.token_urlsafe(12)
        self._seq = 0
        self._replies = NodeVerifier(keys)  # the peers' signed answers (their nonces: no replayed answer)
        self._started: float | None = None
        self._ready_at: float | None = None  # when start-up ended (monotonic)
        self._ready_why = ""
        self._closed = False
        self._valid_until = 0.0  # the writer computed last holds until then (monotonic; see ``_refresh``)
        self._session: aiohttp.ClientSession | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}  # the heartbeat loop of each peer
        self.sent = 0
        self.received = 0
        self.stale = 0  # heartbeats ignored: older than one already taken from the same process
        self.refused: dict[str, int] = {}  # heartbeats refused by the route, by error code
        self._duplicate_warned: set[str] = set()

    # ------------------------------------------------------------------------------------ ranking
    def _candidates(self, now: float) -> list[_Candidate]:
        out: list[_Candidate] = [
            (p.node_id, p.target, p)
            for p in self.peers.values()
            if p.node_id is not None and p.ranked(now, self.timeout)
        ]
        if not self._closed and not self._starting(now):
            out.append((self.node_id, self.local_target, None))
        return out

    def _choose(self, now: float) -> _Candidate | None:
        """The lowest ranked node id (its target breaks a tie between misconfigured duplicates)."""
        candidates = self._candidates(now)
        return min(candidates, key=lambda c: (c[0], c[1])) if candidates else None

    def _starting(self, now: float) -> bool:
        """Whether start-up still runs: not every peer heard from, and less than ``timeout`` since start."""
        if self._ready_at is not None:
            return False
        if self._started is None:
            return True
        return not (
            all(p.heard is not None for p in self.peers.values()) or now - self._started >= self.timeout
        )

    def _end_start_up(self, now: float) -> None:
        assert self._started is not None
        heard = sum(p.heard is not None for p in self.peers.values())
        self._ready_at = now
        self._ready_why = (
            "every peer answered" if heard == len(self.peers) else f"no answer from {len(self.peers) - heard}"
        )
        log.info(
            "writer mode pinned: start-up over after %.2fs (%s of %d peers heard): node %s now ranks itself",
            now - self._started,
            heard,
            len(self.peers),
            self.node_id,
        )
        for peer in self.peers.values():  # tell them at once that this node is ready
            peer.kick.set()

    def _refresh(self) -> Writer | None:
        """The writer by the view now, recorded (runs on the event loop: it wakes waiters). Asked on every
        request, so the answer is kept until the view can next change by time alone (a peer's heartbeat
        getting ``timeout`` old, the start-up's end); a heartbeat taken computes it again at once."""
        now = time.monotonic()
        if now < self._valid_until:
            return self._writer
        if self._started is not None and self._ready_at is None and not self._starting(now):
            self._end_start_up(now)
        best = self._choose(now)
        writer = None if best is None else self._writer_for(*best)
        if writer is not None and (self._writer is None or writer.node != self._writer.node):
            where = "this node" if writer.is_self else writer.url
            log.info("writer mode pinned: the writer is now %s (%s)", writer.node, where)
        self._set(writer)
        self._valid_until = self._next_change(now)
        return writer

    def _next_change(self, now: float) -> float:
        """When the view changes next if no heartbeat comes: an alive peer times out, or start-up ends."""
        deadlines = [
            p.heard + self.timeout
            for p in self.peers.values()
            if p.heard is not None and p.alive(now, self.timeout)
        ]
        if self._started is not None and self._ready_at is None:
            deadlines.append(self._started + self.timeout)
        return min(deadlines, default=math.inf)

    def _writer_for(self, node_id: str, target: str, peer: Peer | None) -> Writer:
        old = self._writer
        pg_port = self.pg_port if peer is None else peer.pg_port
        if old is not None and (old.node, old.url, old.pg_port) == (node_id, target, pg_port):
            return old
        new = old is None or old.node != node_id  # as WriterMode._set counts changes
        return Writer(
            node=node_id,
            url=target,
            is_self=peer is None,
            epoch=self.changes + 1 if old is None or new else old.epoch,
            since=time.time() if old is None or new else old.since,
            pg_port=pg_port,
        )

    # ------------------------------------------------------------------------------------ asking
    def current(self) -> Writer | None:
        return self._refresh()

    def is_writer(self) -> bool:
        writer = self._refresh()
        return writer is not None and writer.is_self

    def holds(self) -> bool:
        """True while this node is the lowest ranked node id by its own view (without side effects: safe to
        ask from any thread)."""
        now = time.monotonic()
        if now < self._valid_until:
            writer = self._writer
            return writer is not None and writer.is_self and not self._closed
        best = self._choose(now)
        return best is not None and best[2] is None

    # ------------------------------------------------------------------------------------ heartbeats
    def heartbeat(self, to: str = "") -> Heartbeat:
        """This node's next heartbeat (each one has a higher ``seq``), to be sent to ``to``."""
        self._seq += 1
        writer = self._writer
        return Heartbeat(
            node_id=self.node_id,
            target=self.local_target,
            node=self.node,
            pg_port=self.pg_port,
            boot=self.boot,
            seq=self._seq,
            starting=self._starting(time.monotonic()),
            leaving=self._closed,
            writer=writer.node if writer is not None else None,
            to=to,
        )

    def ingest(self, heartbeat: Heartbeat, signer: str | None = None) -> Heartbeat:
        """Take a heartbeat a peer sent (its signature already checked: ``signer`` is the node that signed
        it, None without a cluster secret) and return this node's own, the answer. ``UnknownSender`` when
        its target is not one of ``--peers`` or it names another node than the signer."""
        if heartbeat.boot and heartbeat.boot == self.boot:
            self._forget_alias(heartbeat.to)
            raise UnknownSender(
                f"unknown sender: this is this node's own heartbeat: --peers lists this node as "
                f"{heartbeat.to or 'another URL'}, which it no longer sends heartbeats to",
                target=heartbeat.target,
            )
        peer = self.peers.get(heartbeat.target)
        if peer is None:
            raise UnknownSender(
                f"unknown sender: {heartbeat.target} is not one of this node's --peers",
                hint="give every node the URLs of all the others in --peers (BASE_PEERS)",
                target=heartbeat.target,
            )
        if signer is not None and heartbeat.node and heartbeat.node != signer:
            raise UnknownSender(
                f"unknown sender: the heartbeat says node {heartbeat.node!r} but is signed by {signer!r}",
                target=heartbeat.target,
            )
        self._take(peer, heartbeat)
        return self.heartbeat()

    def _forget_alias(self, url: str) -> None:
        """``url``, one of ``--peers``, is this node itself (under another name than ``--local-target``):
        stop sending it heartbeats, and do not wait for it at start-up."""
        if url not in self.peers:
            return
        log.warning(
            "writer mode pinned: %s in --peers is this node itself (--local-target %s): skipped",
            url,
            self.local_target,
        )
        self.peers = {t: p for t, p in self.peers.items() if t != url}  # one swap: holds() may iterate
        task = self._tasks.pop(url, None)
        if task is not None:
            task.cancel()
        self._valid_until = 0.0
        self._refresh()

    def refuse(self, code: str) -> None:
        """Count a heartbeat the route refused (shown in the status)."""
        self.refused[code] = self.refused.get(code, 0) + 1

    def _take(self, peer: Peer, hb: Heartbeat) -> None:
        if hb.boot and hb.boot == peer.boot and hb.seq <= peer.seq:
            self.stale += 1  # delayed or reordered: a newer one from that process was taken already
            return
        if peer.boot and hb.boot != peer.boot:
            peer.restarts += 1
        if hb.node_id == self.node_id and hb.node_id not in self._duplicate_warned:
            self._duplicate_warned.add(hb.node_id)
            log.warning(
                "writer mode pinned: %s has this node's node id %s: give each node its own --node-id "
                "(ranked by target meanwhile)",
                peer.target,
                hb.node_id,
            )
        peer.boot, peer.seq = hb.boot, hb.seq
        peer.node_id, peer.node, peer.pg_port = hb.node_id, hb.node or None, hb.pg_port
        peer.starting, peer.leaving, peer.writer = hb.starting, hb.leaving, hb.writer
        peer.heard = time.monotonic()
        self.received += 1
        self._valid_until = 0.0
        self._refresh()

    async def _beat(self, peer: Peer) -> None:
        """Send ``peer`` a heartbeat every interval (or at once when kicked), for as long as the mode runs."""
        while True:
            peer.kick.clear()
            try:
                await self._send(peer)
            except Exception as e:  # a bug must not end this peer's heartbeats for good: log it, go on
                log.exception("writer mode pinned: heartbeat to %s", peer.target)
                self._failed(peer, _describe(e))
            with contextlib.suppress(TimeoutError):  # (asyncio.timeout: 3.11's wait_for can lose a cancel)
                async with asyncio.timeout(self.interval):
                    await peer.kick.wait()

    async def _send(self, peer: Peer, timeout: float | None = None) -> None:
        session = self._session
        if session is None:
            return
        body = self.heartbeat(peer.target).encode()
        headers = {"Content-Type": "application/json", **sign(self.keys, self.node, "POST", PATH, body)}
        self.sent += 1
        try:
            wait = aiohttp.ClientTimeout(total=timeout or max(self.interval, self.timeout / 2))
            async with session.post(peer.target + PATH, data=body, headers=headers, timeout=wait) as resp:
                answer = await resp.content.read(MAX_SIZE + 1)
                if resp.status != 200:
                    raise _Failed(f"answered {resp.status}: {answer[:300].decode(errors='replace')}")
                if len(answer) > MAX_SIZE:
                    raise _Failed(f"answered more than {MAX_SIZE} bytes")
                signer = self._replies.verify(resp.headers.get(HEADER), REPLY, PATH, answer)
            reply = Heartbeat.decode(answer)
            if reply.target != peer.target:
                raise _Failed(
                    f"answers as {reply.target}: its --local-target is not the URL in this node's --peers"
                )
            if signer is not None and reply.node and reply.node != signer:
                raise _Failed(f"its answer says node {reply.node!r} but is signed by {signer!r}")
        except (aiohttp.ClientError, OSError, TimeoutError, HAError, _Failed) as e:
            self._failed(peer, _describe(e))
        else:
            if peer.error is not None:
                log.info("writer mode pinned: %s answers heartbeats again", peer.target)
            peer.error = None
            if not self._closed:
                self._take(peer, reply)
        if not self._closed:
            self._refresh()  # a peer not heard of for ``timeout`` drops out of the ranking

    def _failed(self, peer: Peer, why: str) -> None:
        if peer.error is None and not self._closed:
            log.warning("writer mode pinned: heartbeat to %s failed: %s", peer.target, why)
        peer.failures += 1
        peer.error = why

    # ------------------------------------------------------------------------------------ life
    async def start(self) -> None:
        self._started = time.monotonic()
        self._valid_until = 0.0
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, enable_cleanup_closed=True), raise_for_status=False
        )
        self._tasks = {
            t: asyncio.create_task(self._beat(p), name=f"heartbeat {t}") for t, p in self.peers.items()
        }
        self._refresh()
        log.info(
            "writer mode pinned: node id %s at %s, %d peer%s, heartbeat every %gs, lease timeout %gs",
            self.node_id,
            self.local_target,
            len(self.peers),
            "" if len(self.peers) == 1 else "s",
            self.interval,
            self.timeout,
        )

    async def close(self) -> None:
        """Stop sending heartbeats, and tell the peers this node leaves (they rank the others at once)."""
        if self._closed:
            return
        self._closed = True
        self._valid_until = 0.0
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = {}
        if self._session is not None:
            if self._started is not None:
                await asyncio.gather(*(self._send(p, _LEAVE_TIMEOUT) for p in self.peers.values()))
            await self._session.close()
            self._session = None

    def status(self) -> dict[str, Any]:
        out = super().status()
        now = time.monotonic()
        out.update(
            {
                "node_id": self.node_id,
                "target": self.local_target,
                "interval": self.interval,
                "timeout": self.timeout,
                "start_up": {
                    "over": self._ready_at is not None,
                    "took": None
                    if self._ready_at is None or self._started is None
                    else round(self._ready_at - self._started, 3),
                    "why": self._ready_why or None,
                },
                "alive": [
                    {"node_id": node_id, "target": target, "heard_ago": _ago(peer, now)}
                    for node_id, target, peer in sorted(self._candidates(now), key=lambda c: (c[0], c[1]))
                ],
                "peers": [self._peer_status(p, now) for p in self.peers.values()],
                "heartbeats": {
                    "sent": self.sent,
                    "received": self.received,
                    "stale": self.stale,
                    "refused": dict(self.refused),
                },
            }
        )
        return out

    def _peer_status(self, peer: Peer, now: float) -> dict[str, Any]:
        return {
            "target": peer.target,
            "node_id": peer.node_id,
            "node": peer.node,
            "alive": peer.alive(now, self.timeout),
            "starting": peer.starting,
            "leaving": peer.leaving,
            "heard_ago": _ago(peer, now),
            "pins": peer.writer,
            "restarts": peer.restarts,
            "failures": peer.failures,
            "error": peer.error,
        }


class _Failed(Exception):
    """A heartbeat a peer answered, but not with a heartbeat of its own we can take."""


def _describe(err: BaseException) -> str:
    if isinstance(err, HAError):
        return err.message
    if isinstance(err, TimeoutError):
        return "no answer in time"
    return str(err) or type(err).__name__


def _ago(peer: Peer | None, now: float) -> float | None:
    if peer is None:
        return 0.0
    return None if peer.heard is None else round(now - peer.heard, 3)
