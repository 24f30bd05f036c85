"""The PostgreSQL wire protocol listener: an asyncio server in the node's event loop, one ``Session`` per
connection. A connection that misbehaves ends alone; the server keeps serving everybody else.

The node starts the front end here and hands it ``settings.PgSettings`` and itself as a ``settings.PgNode``.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import ssl

from sqlite_ha.errors import ConfigError
from sqlite_ha.server.pgwire.connection import Connection
from sqlite_ha.server.pgwire.errors import PgError
from sqlite_ha.server.pgwire.forwarding.sessions import NodeSessions
from sqlite_ha.server.pgwire.session import Session
from sqlite_ha.server.pgwire.settings import PgNode, PgSettings

log = logging.getLogger(__name__)


class _Refused(asyncio.Protocol):
    """A connection over the cap when too many are being refused already: closed at once, unanswered."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


class PgServer:
    def __init__(self, node: PgNode, settings: PgSettings, *, tls: ssl.SSLContext | None = None) -> None:
        self.node = node
        self.settings = settings
        self.tls = tls
        self._server: asyncio.Server | None = None
        self._sessions: dict[tuple[int, int], Session] = {}  # (pid, secret) → session, for CancelRequest
        self._tasks: set[asyncio.Task[None]] = set()
        self._pids = itertools.count((os.getpid() % 10_000) * 100_000 + 1)
        self._over_cap = 0  # sessions in ``_tasks`` being refused
        self.refused = 0  # connections refused over the cap since start
        self.port: int | None = None
        self.links = NodeSessions(node, settings)  # forwarded sessions: to the writer, and from other nodes

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(self._connection, host, port, reuse_address=True)
        except OSError as e:
            why = "address already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise ConfigError("--pg-port", f"cannot listen on {host}:{port}: {why}") from e
        sockets = self._server.sockets
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("PostgreSQL wire protocol on %s:%d (auth %s)", host, self.port, self.settings.auth)

    @property
    def open(self) -> int:
        """Sessions served now (those being refused over the cap not counted)."""
        return len(self._tasks) - self._over_cap

    def _connection(self) -> asyncio.Protocol:
        cap = self.settings.max_connections
        over = bool(cap) and len(self._tasks) - self._over_cap >= cap
        if over:
            self.refused += 1
            if self._over_cap >= self.settings.over_cap_max:
                return _Refused()
            self._over_cap += 1
        conn = Connection()
        session = Session(
            self.node, self.settings, conn, pid=next(self._pids), links=self.links, tls=self.tls
        )
        if over:
            session.refusal = PgError(
                "53300", f"sorry, too many clients already (--pg-max-connections {cap})", fatal=True
            )
        conn.receiver = session
        task = asyncio.get_running_loop().create_task(self._serve(session, over), name=f"pg-{session.pid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return conn

    async def _serve(self, session: Session, over: bool) -> None:
        # The start-up (TLS, login) must end within the timeout; a client that dawdles is disconnected.
        timer = asyncio.get_running_loop().call_later(
            self.settings.startup_timeout, self._startup_expired, session
        )
        try:
            await session.serve(self._sessions)
        except Exception:  # a fault in one session must not reach the server
            log.exception("PostgreSQL session %d failed", session.pid)
        finally:
            timer.cancel()
            if over:
                self._over_cap -= 1

    def _startup_expired(self, session: Session) -> None:
        if (session.pid, session.secret) in self._sessions:
            return  # started: the session is registered for CancelRequest from then on
        transport = session.conn.transport
        if transport is not None and not transport.is_closing():
            log.info("PostgreSQL client: start-up not done within %gs; closed", self.settings.startup_timeout)
            transport.close()

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()  # a session rolls back an open transaction as it ends
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        if server is not None:
            await server.wait_closed()
