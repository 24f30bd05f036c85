"""Writes sent to a node that is not the writer: forwarded to the writer, or redirected to it with 307.

In a writer mode (static, elected, pinned) one node commits every write. A client does not need to know
which: a follower sends the write to the writer over HTTP (method, path, query, body and the client's own
``Authorization`` kept, so the writer authenticates the client itself) and answers with the writer's answer,
``seq`` included. The follower marks the request ``X-HA-Forwarded-By: <node>`` and signs it with the
cluster secret (``X-HA-Node-Auth``): a node that receives a signed forwarded write and is not the writer
answers 503 ``not_writer`` instead of forwarding it again, so two nodes that disagree about the writer cannot
bounce a request between them. The mark grants nothing: the writer still checks the client's credentials.

Retries stay within ``--writer-wait`` and only where nothing can have been written: no writer known yet, a
connection to the writer refused (nothing was sent), or an answer ``not_writer``, ``fenced``, ``no_writer``
or ``not_ready`` (a writer starting) from it (it wrote nothing). A connection that fails after the request
was sent, or an answer that does not come within the time a write takes (``--replication-timeout`` and a
margin), is not retried: the write may have happened, and the client hears 503 ``write_outcome_unknown``.

HTTPS to a writer whose URL says ``https``: its certificate is checked against the system's CAs (and
``SSL_CERT_FILE``) and the node's ``--client-ca``; with ``--client-ca`` the node presents its own ``--cert``
as a client certificate, since the writer then requires one.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
import orjson
from multidict import CIMultiDict
from yarl import URL

from sqlite_ha.security.node_auth import HEADER as NODE_AUTH
from sqlite_ha.security.node_auth import NodeUnauthorized, NodeVerifier, sign
from sqlite_ha.writer.role import NotWriter, NoWriter, OutcomeUnknown, Writer, WriterMode

if TYPE_CHECKING:
    from sqlite_ha.config import Config
    from sqlite_ha.security.keys import ClusterKeys

log = logging.getLogger(__name__)

FORWARDED_BY = "X-HA-Forwarded-By"  # the node that forwarded a write (signed in X-HA-Node-Auth)
FORWARDED_TO = "X-HA-Forwarded-To"  # on the answer a follower returns: the writer that answered
MARGIN = 5.0  # seconds a forwarded write may take beyond --replication-timeout (the writer's own bound)
CONNECT_TIMEOUT = 5.0
_RETRIED = frozenset({"not_writer", "fenced", "no_writer", "not_ready"})  # answers that wrote nothing
_PAUSE_FIRST, _PAUSE_MAX = 0.05, 0.5  # between two attempts while the writer is refused or changing
# Not passed on: hop-by-hop headers, those the client library recomputes, and the forwarding marks (set anew).
_REQUEST_DROPPED = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",
        NODE_AUTH.lower(),
        FORWARDED_BY.lower(),
    }
)
_RESPONSE_DROPPED = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "content-encoding",
        "date",
        "server",
        "trailer",
        "upgrade",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Forwarded:
    """The writer's answer, returned to the client unchanged."""

    status: int
    body: bytes
    headers: CIMultiDict[str]


class _NotSent(Exception):
    """The connection to the writer could not be made: nothing of the request left this node."""


def client_context(config: Config) -> ssl.SSLContext:
    """How this node checks a writer's HTTPS certificate (and, with ``--client-ca``, proves its own)."""
    context = ssl.create_default_context()  # the system's CAs; SSL_CERT_FILE/SSL_CERT_DIR if set
    if config.client_ca:
        context.load_verify_locations(cafile=config.client_ca)
        if config.cert:
            context.load_cert_chain(config.cert, config.key)
    return context


def forwarded_by(
    verifier: NodeVerifier, headers: Mapping[str, str], method: str, target: str, body: bytes
) -> str | None:
    """The node that forwarded this request, if it is one: ``X-HA-Forwarded-By`` with a valid signature.
    A mark that is not signed by a node of this cluster is refused (``NodeUnauthorized``, 401), not taken
    for a client's request: two clusters with different secrets must not forward a write back and forth.
    Without a cluster secret (``--insecure-replication``) the mark is taken as it is."""
    name = headers.get(FORWARDED_BY)
    if name is None:
        return None
    signer = verifier.verify(headers.get(NODE_AUTH), method, target, body)
    if signer is not None and signer != name:
        raise NodeUnauthorized(f"{FORWARDED_BY} names {name!r} but the request is signed by {signer!r}")
    return name


class Forwarder:
    """Sends writes to the writer: one client session per node (its connections reused), started and
    closed with the HTTP server."""

    def __init__(
        self,
        *,
        node: str,
        writer: WriterMode,
        keys: ClusterKeys | None,
        wait: float,
        timeout: float,
        tls: ssl.SSLContext | None = None,
        keepalive: float = 5.0,
    ) -> None:
        self.node = node
        self.writer = writer
        self.keys = keys
        self.wait = wait  # --writer-wait: how long a write waits for a writer that takes it
        self.timeout = timeout  # how long the writer may take to answer once it has the request
        self.tls = tls
        # An idle connection to the writer is dropped before the writer would close it (its idle bound is
        # --header-timeout on connections aiohttp serves): a request sent just as the writer closes one
        # would fail after it was sent, and be answered write_outcome_unknown without need.
        self.keepalive = keepalive
        self.forwarded = 0  # writes forwarded (answered by the writer, whatever it answered)
        self.retries = 0
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=self.tls if self.tls is not None else True, keepalive_timeout=self.keepalive
                ),
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def stats(self) -> dict[str, int]:
        return {"forwarded": self.forwarded, "retries": self.retries}

    async def writer_now(self) -> Writer:
        """The writer, waiting up to ``--writer-wait`` for one (``NoWriter`` after that)."""
        return await self.writer.wait_writer(self.wait)

    async def send(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | AsyncIterator[bytes],
    ) -> Forwarded | None:
        """The writer's answer to the request (``target``: path and query as received); None when this
        node became the writer meanwhile (the caller serves the request itself). A streamed ``body`` (an
        upload) is tried once: it cannot be sent again."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        pause = _PAUSE_FIRST
        while True:
            writer = await self.writer.wait_writer(max(0.0, deadline - loop.time()))
            if writer.is_self:
                return None
            try:
                answer = await self._send_once(writer, method, target, headers, body)
            except _NotSent as e:  # an upload too: its body was not read yet
                why = f"the writer {writer.url} is unreachable ({e})"
                last: Forwarded | None = None
            else:
                self.forwarded += 1
                if _error_code(answer) not in _RETRIED or not isinstance(body, bytes):
                    return answer
                why, last = f"the writer {writer.url} answered {_error_code(answer)}", answer
            left = deadline - loop.time()
            if left <= 0:
                if last is not None:
                    return last  # its own answer says why; nothing was written
                raise NoWriter(
                    f"{why}; nothing was written (waited {self.wait:g}s, --writer-wait)",
                    hint="retry in a moment: writes resume once the writer is reachable",
                    writer=writer.url,
                )
            self.retries += 1
            log.debug("forwarding %s %s: %s; trying again", method, target, why)
            await self.writer.wait_change(min(pause, left))  # a new writer: at once
            pause = min(pause * 2, _PAUSE_MAX)

    async def _send_once(
        self,
        writer: Writer,
        method: str,
        target: str,
        headers: Mapping[str, str],
        body: bytes | AsyncIterator[bytes],
    ) -> Forwarded:
        if self._session is None:
            await self.start()
        assert self._session is not None
        base = writer.url.rstrip("/")
        full = urlsplit(base).path + target  # as the writer will see it (a URL may carry a path prefix)
        out: CIMultiDict[str] = CIMultiDict(
            (k, v) for k, v in headers.items() if k.lower() not in _REQUEST_DROPPED
        )
        out[FORWARDED_BY] = self.node
        # An upload is streamed: its signature covers the method, target and sender but not the body, which
        # the writer checks like any client's (the mark only says "do not forward again").
        out.update(sign(self.keys, self.node, method, full, body if isinstance(body, bytes) else b""))
        streamed = not isinstance(body, bytes)
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=min(CONNECT_TIMEOUT, self.wait) or CONNECT_TIMEOUT,
            sock_read=None if streamed else self.timeout,
        )
        try:
            async with self._session.request(
                method,
                URL(base + target, encoded=True),
                data=body,
                headers=out,
                allow_redirects=False,
                timeout=timeout,
            ) as resp:
                data = await resp.read()
                kept: CIMultiDict[str] = CIMultiDict(
                    (k, v) for k, v in resp.headers.items() if k.lower() not in _RESPONSE_DROPPED
                )
                kept[FORWARDED_TO] = writer.url
                return Forwarded(status=resp.status, body=data, headers=kept)
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
            raise _NotSent(str(e) or type(e).__name__) from e
        except (aiohttp.ClientError, TimeoutError) as e:
            raise OutcomeUnknown(
                f"the write was sent to the writer {writer.url} but no answer came "
                f"({e or type(e).__name__}): it may or may not have been written",
                hint="read the data back (at the writer, or with min_seq/level=strong) before retrying",
                writer=writer.url,
            ) from e


def _error_code(answer: Forwarded) -> str | None:
    """The error code of a writer's answer (409 and 503 only: the statuses of the retried codes)."""
    if answer.status not in (409, 503):
        return None
    try:
        doc = orjson.loads(answer.body)
    except orjson.JSONDecodeError:
        return None
    error = doc.get("error") if isinstance(doc, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def not_writer(node: str, by: str, writer: Writer | None) -> NotWriter:
    """The answer to a write another node forwarded here while this node does not take writes."""
    known = f"; it knows {writer.url} as the writer" if writer is not None and writer.url else ""
    return NotWriter(
        f"node {node} received a write forwarded by {by} but is not the writer{known}; nothing was written",
        hint="the forwarding node waits for the writer and tries again",
    )
