"""``POST /_ha/heartbeat``: the receiving end of writer mode pinned's heartbeats.

Not behind the client login (``--token``, ``--auth-file``): nodes do not hold client credentials. Behind the
node signature instead (``security/node_auth.py``): a heartbeat must be signed with the cluster secret,
fresh and never seen before (401 ``node_unauthorized``), come from one of this node's ``--peers`` (403
``unknown_sender``) and be a heartbeat (400 ``bad_heartbeat``; 413 over ``MAX_SIZE`` bytes or without a
``Content-Length``, refused by ``body_middleware`` before the body is read: see ``LIMITS``). Only then is it
taken, and the answer is this node's own heartbeat, signed as a reply.
Without a cluster secret (``--insecure-replication``) heartbeats cannot be signed and are taken unsigned:
anyone who reaches the port can then claim the lowest node id, as anyone can write to such a cluster's log.
"""

from __future__ import annotations

from typing import Protocol

from aiohttp import web

from sqlite_ha.errors import HAError
from sqlite_ha.security.keys import ClusterKeys
from sqlite_ha.security.node_auth import HEADER, NodeVerifier, sign
from sqlite_ha.writer.heartbeat import MAX_SIZE, PATH, REPLY, Heartbeat, WrongMode
from sqlite_ha.writer.pinned import PinnedWriter
from sqlite_ha.writer.role import WriterMode

LIMITS = {PATH: MAX_SIZE}  # for ``body_middleware``: a heartbeat's body is refused before it is read


class HeartbeatNode(Protocol):
    name: str
    keys: ClusterKeys | None
    writer: WriterMode


class HeartbeatRoute:
    """The handler; the node is read at each request (its writer mode is chosen when it starts)."""

    def __init__(self, node: HeartbeatNode) -> None:
        self.node = node
        self._verifier: NodeVerifier | None = None  # made at the first heartbeat: it remembers nonces

    async def handle(self, request: web.Request) -> web.Response:
        writer = self.node.writer
        if not isinstance(writer, PinnedWriter):
            raise WrongMode(
                f"node {self.node.name} runs writer mode {writer.name}, not pinned: it takes no heartbeats",
                hint="give every node of the cluster the same writer mode (--local-target and --peers)",
            )
        body = await request.read()
        if self._verifier is None:
            self._verifier = NodeVerifier(self.node.keys)
        try:
            signer = self._verifier.verify(request.headers.get(HEADER), "POST", PATH, body)
            answer = writer.ingest(Heartbeat.decode(body), signer)
        except HAError as err:
            writer.refuse(err.code)
            raise
        data = answer.encode()
        headers = sign(self.node.keys, self.node.name, REPLY, PATH, data)
        return web.Response(body=data, content_type="application/json", headers=headers)
