"""Where an HTTP write runs in a writer mode: here, forwarded to the writer, or redirected to it (307).

The routes decide whether a request writes (a query by SQLite's own classification, an upload always) and
ask ``WriteRouter.to_writer`` only then, and only on a node that is not the writer: reads, and every request
on the writer or on a leaderless node, never come here. The choices a client has:

- default: forwarded (``forward.Forwarder``), the writer's answer returned unchanged;
- ``?forward=false``, or writer mode pinned (seed 000's plugin answers mutating requests so): 307 with
  ``Location`` on the writer, same path and query; clients keep method and body on a 307.
  ``?forward=true`` forwards in mode pinned too;
- ``?local=true`` (as the ``ha`` command): run here. In a writer mode the write is still a conditional append
  to the log, so it may be refused with 409 ``fenced`` when another node wrote meanwhile.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from sqlite_ha.errors import BadRequest
from sqlite_ha.security.node_auth import NodeVerifier
from sqlite_ha.server.http.forward import Forwarder, client_context, forwarded_by, not_writer

if TYPE_CHECKING:
    from sqlite_ha.config import Config
    from sqlite_ha.security.keys import ClusterKeys
    from sqlite_ha.writer.role import WriterMode

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def flag(request: web.Request, name: str) -> bool | None:
    """A boolean query parameter (None when absent); a value that is neither is a 400."""
    raw = request.query.get(name)
    if raw is None:
        return None
    value = raw.strip().lower()
    if value in _TRUE or value == "":
        return True
    if value in _FALSE:
        return False
    raise BadRequest(f"{name} must be true or false, not {raw!r}")


class WriteRouter:
    """The forwarding of one node's HTTP API: built when the server starts (the node is complete then)."""

    def __init__(self, *, name: str, writer: WriterMode, keys: ClusterKeys | None, config: Config) -> None:
        self.name = name
        self.writer = writer
        self.config = config
        self.verifier = NodeVerifier(keys)  # forwarded writes and node requests to GET /leader
        tls = client_context(config) if config.cert or config.client_ca else None
        self.forwarder = Forwarder(
            node=name,
            writer=writer,
            keys=keys,
            wait=config.writer_wait,
            timeout=config.replication_timeout + 5.0,
            tls=tls,
            keepalive=min(5.0, config.header_timeout / 2) or 5.0,
        )

    async def start(self) -> None:
        if self.writer.name != "leaderless":
            await self.forwarder.start()

    async def close(self) -> None:
        await self.forwarder.close()

    def check_flags(self, request: web.Request) -> None:
        """Refuse a bad ``forward`` or ``local`` on any request, a read too: it is a mistake either way."""
        flag(request, "forward")
        flag(request, "local")

    def local(self, request: web.Request) -> bool:
        """Whether the write runs on this node: asked with ``?local=true``."""
        return flag(request, "local") is True

    async def to_writer(
        self, request: web.Request, body: bytes | AsyncIterator[bytes]
    ) -> web.StreamResponse | None:
        """The answer to a write this node does not take: the writer's (forwarded), or a 307 to it. None
        when this node is (or became) the writer: the route serves the request itself."""
        signed = body if isinstance(body, bytes) else b""
        by = forwarded_by(self.verifier, request.headers, request.method, request.raw_path, signed)
        if by is not None:  # forwarded by another node: never forwarded again
            raise not_writer(self.name, by, self.writer.current())
        forward = flag(request, "forward")
        if self.writer.redirect if forward is None else not forward:
            writer = await self.forwarder.writer_now()
            if writer.is_self:
                return None
            location = writer.url.rstrip("/") + request.raw_path
            return web.Response(
                status=307,
                body=orjson.dumps({"location": location, "writer": writer.to_dict()}),
                content_type="application/json",
                headers={"Location": location},
            )
        answer = await self.forwarder.send(request.method, request.raw_path, request.headers, body)
        if answer is None:
            return None
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)

    def leader(self) -> dict[str, Any]:
        """``GET /leader``: who writes, since when, the epoch, this node's role, how to reach this node."""
        cfg = self.config
        return {
            **self.writer.status(),
            "url": self.own_url(),
            "pg_port": cfg.pg_port or None,
            "forwarding": self.forwarder.stats(),
        }

    def own_url(self) -> str:
        cfg = self.config
        if cfg.leader_addr or cfg.local_target:
            return cfg.leader_addr or cfg.local_target
        writer = self.writer.current()
        if writer is not None and writer.is_self and writer.url:
            return writer.url
        host = cfg.host if cfg.host not in ("0.0.0.0", "::", "") else socket.gethostname()
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if cfg.cert else 'http'}://{host}:{cfg.port}"
