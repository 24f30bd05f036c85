"""The state of one PostgreSQL session, apart from the loop that runs it.

The session commands (``commands.py``), COPY, the handshake, EXPLAIN and writer-mode forwarding act on a
session: its settings, database, prepared statements, transaction block and output buffer. They take this
class, so none of them imports the loop (``session.py``), which imports them: the dependency runs one way.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING, Any, Protocol

from sqlite_ha.db.authorizer import Permission
from sqlite_ha.db.database import ReadView
from sqlite_ha.db.transaction import WriteTransaction
from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.security.users import User
from sqlite_ha.served import ServedDatabase
from sqlite_ha.server.pgwire import isolation
from sqlite_ha.server.pgwire.connection import Connection
from sqlite_ha.server.pgwire.errors import PgError
from sqlite_ha.server.pgwire.prepared import Outcome, Portal, Prepared
from sqlite_ha.server.pgwire.settings import PgNode, PgSettings
from sqlite_ha.server.pgwire.transaction import TransactionBlock
from sqlite_ha.server.pgwire.wire import codec

if TYPE_CHECKING:
    from sqlite_ha.server.pgwire.catalog import catalog
    from sqlite_ha.server.pgwire.forwarding.sessions import NodeSessions
    from sqlite_ha.server.pgwire.temp import SessionTemp


class Forwarding(Protocol):
    """A session's link to the writer in a writer mode (``forwarding/follower.py``), as the session and
    its commands use it."""

    @property
    def engaged(self) -> bool: ...

    @property
    def pinned(self) -> bool: ...

    def began(self, sql: str) -> None: ...

    def ended(self) -> None: ...

    def cancel(self) -> None: ...

    async def close(self) -> None: ...

    async def intercept(self, msg: codec.FrontendMessage) -> bool: ...

    def defer(self, msg: codec.Parse, error: PgError) -> bool: ...

    async def query(self, sql: str) -> bool: ...

    async def execute(self, msg: codec.Execute, portal: Portal) -> bool: ...


class SessionState:
    """What a session is, apart from how it runs statements: its settings, database, prepared statements,
    transaction block and output. The session commands, COPY, the handshake and forwarding act on this; the
    loop and the query path (``session.Session``) fill in ``_prepare``, ``_describe_statement`` and ``run``.
    """

    def __init__(
        self,
        node: PgNode,
        settings: PgSettings,
        conn: Connection,
        *,
        pid: int,
        links: NodeSessions,
        tls: Any = None,
    ) -> None:
        self.node = node
        self.links = links
        self.settings = settings
        self.conn = conn
        self.pid = pid
        self.secret = secrets.randbits(31)
        self.tls = tls
        self.parser = codec.FrontendParser(max_message_size=settings.max_message_size)
        self.out: list[bytes] = []
        self.user = ""
        self.principal: User | None = None  # a user of the auth file; None: --pg-user, every permission
        self.db: ServedDatabase | None = None
        self.params: dict[str, str] = {}
        self.statements: dict[str, Prepared] = {}
        self.portals: dict[str, Portal] = {}
        self.block = TransactionBlock()  # BEGIN … COMMIT: every change of its state goes through it
        self._tx_catalog: tuple[WriteTransaction, catalog.Catalog] | None = None  # the catalog the tx sees
        self.last_seq: int | None = None
        self.min_seq = 0
        self.read_level = "none"  # SET ha.read_level: "strong" reads wait until the node is current
        self.skip_to_sync = False  # after an error in the extended protocol
        self.extended = False  # inside an extended-protocol exchange (until Sync)
        self.running: asyncio.Task[Any] | None = None  # the session task, while a cancellable statement runs
        self.cancelled = False
        self.inline = False  # messages may be answered as they arrive (after startup, outside transactions)
        self.pending: codec.FrontendMessage | Exception | None = None  # handed from ``received`` to the task
        self.refusal: PgError | None = None  # over the server's connection cap: the answer to the startup
        self.forward: Forwarding | None = None  # in a writer mode: runs the session's writes on the writer
        self.forwarded_by: str | None = None  # the node that opened it, on the writer (forwarding/writer.py)
        self.read_seq: int | None = None  # a forwarded block's read position (SET ha.read_seq)
        self.temp: SessionTemp | None = None  # the session's TEMP tables and views, once it makes one
        self.started = time.time()
        self.last_query = ""  # the last statement prepared, for pg_stat_activity
        self.registry: dict[tuple[int, int], SessionState] = {}  # the node's sessions (set once logged in)
        # transaction modes (isolation.py): SET SESSION CHARACTERISTICS, then BEGIN … / SET TRANSACTION …
        self.default_mode = isolation.Mode()
        self.mode = self.default_mode
        self.read_view: ReadView | None = None  # a REPEATABLE READ block's snapshot, from its first read
        self.block_read = False  # the block has read (on its snapshot)

    # ------------------------------------------------------------------------------------ I/O
    def send(self, data: bytes) -> None:
        self.out.append(data)

    async def flush(self) -> None:
        if self.out:
            data = b"".join(self.out)
            self.out.clear()
            self.conn.write(data)
            await self.conn.drain()

    async def next_message(self, timeout: float | None = None) -> codec.FrontendMessage | None:
        """The next frontend message; None when the client closed the connection."""
        while True:
            pending, self.pending = self.pending, None
            if isinstance(pending, Exception):
                raise pending
            if pending is not None:
                return pending
            msg = self.parser.next_message()
            if msg is not None:
                return msg
            await self.flush()
            if self.conn.eof:
                return None
            await self.conn.wait(timeout)

    async def password_message(self) -> bytes:
        """The client's next message, which must be a PasswordMessage (authentication)."""
        msg = await self.next_message(timeout=30.0)
        if msg is None:
            raise ConnectionError("the client left during authentication")
        if not isinstance(msg, codec.PasswordMessage):
            raise PgError("08P01", f"expected a password message, got {type(msg).__name__}", fatal=True)
        return msg.data

    def error(self, e: PgError) -> None:
        if e.raw is not None:
            self.send(e.raw)
            return
        self.send(
            codec.error_response(
                "FATAL" if e.fatal else "ERROR",
                e.code,
                e.message,
                detail=e.detail,
                hint=e.hint,
                where=e.context,
            )
        )

    def notice(self, message: str, code: str = "01000") -> None:
        self.send(codec.notice_response("WARNING", code, message))

    # ------------------------------------------------------------------------------- the block, read-only
    @property
    def in_block(self) -> bool:
        return self.block.in_block

    @property
    def failed(self) -> bool:
        return self.block.failed

    @property
    def tx(self) -> WriteTransaction | None:
        """The block's write transaction, once its first write took the writer."""
        return self.block.tx

    def status(self) -> str:
        return self.block.status()

    def _db(self) -> ServedDatabase:
        if self.db is None:
            raise PgError("3D000", "no database selected")
        return self.db

    def grant(self, db: ServedDatabase) -> Permission | None:
        """What this session's statements on ``db`` may do; None: everything (no check at all)."""
        return None if self.principal is None else self.principal.sql_grant(db.id)

    # ------------------------------------------------------------------------------------ the query path
    def _prepare(self, sql: str, param_oids: list[int], *, describe: bool = True) -> Prepared:
        raise NotImplementedError

    def _describe_statement(self, prepared: Prepared) -> None:
        raise NotImplementedError

    async def run(self, prepared: Prepared, params: tuple[SQLiteValue, ...]) -> Outcome:
        raise NotImplementedError

    def cancel(self) -> None:
        """A CancelRequest for this session (from another connection)."""
        raise NotImplementedError
