"""The PostgreSQL wire protocol listener: an asyncio server in the node's event loop, one ``Session`` per
connection. A connection that misbehaves ends alone; the server keeps serving everybody else.

The node starts the front end here, so here too is what it hands over: ``PgSettings``, and itself as a
``PgNode``, the small interface the sessions use (the consumer declares what it needs, as the HTTP app does
with ``NodeView``).
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import ssl
from dataclasses import dataclass
from typing import Protocol

from sqlite_ha.db.database import Database, Execution
from sqlite_ha.db.statement import Statement
from sqlite_ha.db.transaction import WriteTransaction
from sqlite_ha.errors import ConfigError
from sqlite_ha.server.pgwire.connection import Connection
from sqlite_ha.server.pgwire.session import Session

log = logging.getLogger(__name__)


class PgNode(Protocol):
    """What a session needs of the node."""

    def database(self, ident: str | None = None) -> Database: ...

    def database_ids(self) -> list[str]: ...

    async def execute(self, db: Database, statements: list[Statement]) -> tuple[Execution, int | None]: ...

    def check_fresh(self, db: Database) -> None: ...

    async def begin(self, db: Database) -> WriteTransaction: ...

    async def commit(self, db: Database, tx: WriteTransaction) -> tuple[Execution, int | None]: ...

    async def wait_applied(self, db: Database, min_seq: int, timeout: float) -> None: ...


@dataclass(frozen=True, slots=True)
class PgSettings:
    user: str = "ha"
    password: str = "ha"
    auth: str = "scram-sha-256"  # or "md5", "password"
    idle_in_transaction_timeout: float = 60.0
    read_wait: float = 15.0  # how long a read with ha.min_seq waits for the node to catch up
    max_message_size: int = 64 * 1024 * 1024
    max_copy_size: int = 256 * 1024 * 1024  # data one COPY FROM STDIN may send (it is one transaction)
    tls_required: bool = False  # --pg-tls require: a session that does not start TLS is refused
    allow_cleartext: bool = False  # --pg-allow-cleartext: auth "password" also on sessions without TLS


class PgServer:
    def __init__(self, node: PgNode, settings: PgSettings, *, tls: ssl.SSLContext | None = None) -> None:
        self.node = node
        self.settings = settings
        self.tls = tls
        self._server: asyncio.Server | None = None
        self._sessions: dict[tuple[int, int], Session] = {}  # (pid, secret) → session, for CancelRequest
        self._tasks: set[asyncio.Task[None]] = set()
        self._pids = itertools.count((os.getpid() % 10_000) * 100_000 + 1)
        self.port: int | None = None

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

    def _connection(self) -> Connection:
        conn = Connection()
        session = Session(self.node, self.settings, conn, pid=next(self._pids), tls=self.tls)
        conn.receiver = session
        task = asyncio.get_running_loop().create_task(self._serve(session), name=f"pg-{session.pid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return conn

    async def _serve(self, session: Session) -> None:
        try:
            await session.serve(self._sessions)
        except Exception:  # a fault in one session must not reach the server
            log.exception("PostgreSQL session %d failed", session.pid)

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
