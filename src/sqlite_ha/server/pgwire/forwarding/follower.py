"""PostgreSQL sessions on a node that is not the writer: writes run on the writer, reads stay here.

In a writer mode one node takes writes. A client connected to another node does not need to know that: its
session runs every read locally, and hands every write to the writer over a forwarded session of its own
(``upstream.py``; the writer's side is ``writer.py``), relaying the writer's answers to the client byte for
byte, so results, errors and SQLSTATEs are the writer's own.

What is handed over, and for how long (``Forward.pinned`` while messages go to the writer):

- a simple Query that writes (any of its statements is not a read) goes whole, up to its ReadyForQuery;
- an Execute of a portal that writes goes, with every message after it up to the client's Sync (a pipelined
  ``executemany`` is one round trip); the writer is first told what it needs and has not seen: the portal's
  Bind and its statement's Parse, whose answers are swallowed;
- a transaction block is local until its first write (its reads are local, as READ COMMITTED reads are);
  that write replays the block's BEGIN, with its options, and its savepoints on the writer, and from there the
  block runs there until the writer says it ended (ReadyForQuery 'I'). Its local reads must not let an update
  be lost: the block passes the position of the log it read at (``SET ha.read_seq``), and its first write
  fails with 40001 if the database changed in the log since (see ``writer.py``).

After a write, the session's next local statement waits until this node has applied it (the writer reports
each write's position as ParameterStatus ``ha.seq``): a session reads its own writes. Statements prepared on
the writer while the session was pinned there are prepared here too once it is back.

While no writer is known, a write waits up to ``--writer-wait`` for one and then fails with 57P03; so does a
write when the writer does not answer for that long. A link to the writer lost while a write or a block is in
flight ends the client's session (08006, or 08007 when a write's outcome is unknown), never silently.

Nothing here runs on a leaderless node or on the writer: a session has a ``Forward`` only in a writer mode,
and asks the mode at each write, so the read path is the same as everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlite_ha.db.statement import Statement
from sqlite_ha.errors import HAError
from sqlite_ha.security.node_auth import sign
from sqlite_ha.server.pgwire.errors import PgError
from sqlite_ha.server.pgwire.forwarding.upstream import FORWARDED_BY, Upstream, UpstreamError
from sqlite_ha.server.pgwire.prepared import Portal, Prepared
from sqlite_ha.server.pgwire.sql.dialect import split_statements
from sqlite_ha.server.pgwire.wire import codec
from sqlite_ha.writer.role import NoWriter, Writer

if TYPE_CHECKING:
    from sqlite_ha.server.pgwire.state import SessionState

log = logging.getLogger(__name__)

_COPY_FROM = re.compile(r"\bFROM\s+STDIN\b", re.I)
# What preparing a statement fails with here when it names a table (column, …) this node has not applied yet
_UNKNOWN_HERE = frozenset({"42P01", "42703", "42704", "42883"})
_RETRY_EVERY = 0.2  # seconds between attempts to reach a writer that does not answer


class Forward:
    """The forwarding state of one session on a node of a writer mode."""

    def __init__(self, session: SessionState) -> None:
        self.session = session
        self.upstream: Upstream | None = None
        self.pinned = False  # the client's messages go to the writer
        self.begin_sql: str | None = None  # the open block's BEGIN, replayed on the writer at its first write
        self.awaiting_read = False  # in a block, before its first statement: its read position is taken then
        self.read_seq: int | None = None  # the log position the block's first local read saw
        self.written: tuple[str, int] | None = None  # (database, seq) of the session's last forwarded write
        self.mirror: dict[str, codec.Parse] = {}  # statements prepared on the writer only, to prepare here
        self.deferred: tuple[codec.Parse, PgError] | None = None  # a Parse for the writer (``defer``)
        self._up_statements: dict[str, object] = {}  # what the writer holds under each statement name
        self._up_portals: set[str] = set()

    @property
    def engaged(self) -> bool:
        """Whether the session's messages must come through ``intercept`` (never answered inline)."""
        return (
            self.pinned
            or self.awaiting_read
            or self.written is not None
            or bool(self.mirror)
            or self.deferred is not None
        )

    def _update(self) -> None:
        self.session.inline = not self.engaged

    # ------------------------------------------------------------------------------------ block state
    def began(self, sql: str) -> None:
        """A BEGIN outside a block, on this node: the block is local until its first write."""
        if self.session.node.writer.is_writer():
            return
        self.begin_sql = sql
        self.read_seq = None
        self.awaiting_read = True
        self._update()

    def ended(self) -> None:
        """COMMIT or ROLLBACK of a block that never wrote (it ended here)."""
        self.begin_sql = None
        self.read_seq = None
        self.awaiting_read = False
        self._update()

    def _noted_read(self) -> None:
        """The block's first local statement: the position it reads at, for the check at its first write."""
        self.awaiting_read = False
        db = self.session.db
        self.read_seq = db.applied_seq if db is not None else None
        self._update()

    # ------------------------------------------------------------------------------------ entry points
    async def intercept(self, msg: codec.FrontendMessage) -> bool:
        """Before the session handles ``msg``: relay it when pinned (True), else catch up with the
        session's own writes first (False: the session goes on with it)."""
        if self.pinned:
            await self._relay(msg)
            return True
        if self.deferred is not None and self.deferred[0] is msg:
            await self._parse_there(*self.deferred)
            return True
        await self._catch_up()
        if self.awaiting_read and isinstance(msg, codec.Execute):  # may be answered without ``execute``
            portal = self.session.portals.get(msg.portal)
            if portal is not None and portal.prepared.kind == "query" and not self._writes(portal.prepared):
                self._noted_read()
        return False

    def defer(self, msg: codec.Parse, error: PgError) -> bool:
        """A Parse that failed here because this node lacks something the statement names (a table created
        on the writer and not applied here yet): it goes to the writer, with the rest of the exchange."""
        if error.code not in _UNKNOWN_HERE or self.session.tx is not None or self.session.failed:
            return False
        if self.session.node.writer.is_writer():
            return False
        self.deferred = (msg, error)
        self._update()
        return True

    async def _parse_there(self, msg: codec.Parse, error: PgError) -> None:
        self.deferred = None
        self._update()
        if not await self._connect():
            raise error
        await self._start_block()
        self.pinned = True
        self._update()
        await self._relay(msg)

    async def query(self, sql: str) -> bool:
        """A simple Query outside a pinned block: True when it ran on the writer (answered, up to its
        ReadyForQuery)."""
        if not await self._to_writer(lambda: self._query_writes(sql)):
            return False
        self.pinned = True
        self._update()
        await self._relay(codec.Query(sql=sql))
        return True

    async def execute(self, msg: codec.Execute, portal: Portal) -> bool:
        """An Execute outside a pinned block: True when it went to the writer (and with it every message up
        to the client's Sync, or the block's end)."""
        session = self.session
        if not await self._to_writer(lambda: self._writes(portal.prepared)):
            return False
        up = self._up()
        self.pinned = True
        self._update()
        error = await self._replay(self._portal_messages(msg.portal))
        if error is not None:
            # The writer now skips to the client's Sync, as the client does after this error.
            session.conn.write(error)
        else:
            up.send([msg])
        return True

    async def _to_writer(self, writes: Callable[[], bool]) -> bool:
        """Whether a statement outside a pinned block goes to the writer: this node does not write and the
        statement does (``writes``, asked only then: it prepares). Then the block is started there; a read
        in a local block is noted instead (its position, for the lost-update check)."""
        session = self.session
        if session.node.writer.is_writer():
            return False
        if session.failed or not writes():
            if session.in_block and self.awaiting_read:
                self._noted_read()
            return False
        if not await self._connect():
            return False
        await self._start_block()
        return True

    def cancel(self) -> None:
        """A CancelRequest while the session runs on the writer: passed on to the writer's session."""
        up = self.upstream
        if up is not None and up.lost is None:
            task = asyncio.get_running_loop().create_task(up.cancel(), name="pg-forward-cancel")
            _CANCELS.add(task)
            task.add_done_callback(_CANCELS.discard)

    async def close(self) -> None:
        up, self.upstream = self.upstream, None
        if up is not None:
            await up.close()

    # ------------------------------------------------------------------------------------ classification
    def _writes(self, prepared: Prepared) -> bool:
        """Whether a statement must run on the writer. A statement this node cannot judge (it names a table
        this node has not seen yet) goes too: the writer knows."""
        kind = prepared.kind
        if kind == "copy":
            return _COPY_FROM.search(prepared.sql) is not None
        if kind != "query" or prepared.catalog or prepared.explain:
            return False
        if prepared.read_only is None:
            db = self.session._db()
            try:
                stmt = Statement(sql=prepared.run_sql, grant=self.session.grant(db))
                prepared.read_only = db.is_read_only([stmt])
            except HAError:
                return True
        return not prepared.read_only

    def _query_writes(self, sql: str) -> bool:
        """Whether a simple Query writes: any of its statements does. One that fails to prepare stops the
        look (the statements before it decide; run here, it fails as it would on the writer)."""
        for piece in split_statements(sql):
            try:
                prepared = self.session._prepare(piece, [], describe=False)
            except PgError:
                return False
            if self._writes(prepared):
                return True
        return False

    # ------------------------------------------------------------------------------------ the writer
    async def _connect(self) -> bool:
        """A session on the writer, opened or reused; False when this node is the writer (run here).
        57P03 when no writer is known, or the writer does not answer, within ``--writer-wait``."""
        session = self.session
        node = session.node
        wait = node.config.writer_wait
        deadline = time.monotonic() + wait
        why = ""
        while True:
            if node.writer.is_writer():
                return False
            try:
                writer = await node.writer.wait_writer(max(0.0, deadline - time.monotonic()))
            except NoWriter as e:
                raise PgError.of(e) from e
            if writer.is_self:
                return False
            try:
                await self._open(writer)
                self._flush_local()
                return True
            except (OSError, EOFError, TimeoutError, UpstreamError) as e:
                why = e.message if isinstance(e, UpstreamError) else (str(e) or type(e).__name__)
                if isinstance(e, UpstreamError) and e.code not in (None, "57P03"):
                    raise PgError(
                        "08004",
                        f"the writer {writer.url} refused this node's forwarded session: {why}",
                        hint="every node needs the same cluster secret (or --pg-pass without one)",
                    ) from e
                session.links.pg_ports.pop(writer.url, None)
            if time.monotonic() >= deadline:
                raise PgError(
                    "57P03",
                    f"the writer {writer.url} does not answer ({why}); nothing was written "
                    f"(waited {wait:g}s, --writer-wait)",
                    hint="retry in a moment: writes resume once the writer is back or another takes over",
                )
            await asyncio.sleep(_RETRY_EVERY)

    async def _open(self, writer: Writer) -> None:
        session = self.session
        links = session.links
        host = urlsplit(writer.url).hostname or "127.0.0.1"
        port = writer.pg_port or await self._pg_port(writer)
        up = self.upstream
        if up is not None and (up.lost is not None or up.target != (host, port)):
            await self.close()
            self._up_statements.clear()
            self._up_portals.clear()
            up = None
        db = session._db()
        if up is None:
            if not links.keys:
                raise PgError(
                    "57P03",
                    "this node cannot forward writes to the writer: it has no cluster secret and no "
                    "--pg-pass login to key the forwarded session with",
                    hint="connect to the writer, or give the nodes a cluster secret",
                )
            params = {"user": session.user, "database": db.id, FORWARDED_BY: links.node_name}
            app = session.params.get("application_name")
            if app:
                params["application_name"] = app
            up = await Upstream.connect(
                host,
                port,
                params=params,
                key=links.keys[0],
                node=links.node_name,
                timeout=max(1.0, session.node.config.writer_wait),
                relay=session.conn.write,
                on_seq=self._written,
                on_lost=self._upstream_lost,
            )
            links.opened += 1
            self.upstream = up
        if up.database != db.id:
            error = await self._replay([codec.Query(sql=f"SET database = '{db.id}'")])
            if error is not None:
                raise PgError("3D000", f"the writer does not serve database {db.id}", raw=error)
            up.database = db.id

    async def _pg_port(self, writer: Writer) -> int:
        """The writer's PostgreSQL port, asked of it: ``GET /leader`` (signed as a node request); from a
        writer without that route, its ``GET /status`` (with this node's ``--token``, the cluster's)."""
        links = self.session.links
        port = links.pg_ports.get(writer.url)
        if port:
            return port
        node = self.session.node
        base = writer.url.rstrip("/")
        body = await _get_json(base + "/leader", sign(node.keys, node.name, "GET", "/leader"))
        if body is None:
            token = node.config.token
            status = await _get_json(base + "/status", {"Authorization": f"Bearer {token}"} if token else {})
            body = (status or {}).get("writer", {}).get("writer") or {}
        port = body.get("pg_port")
        if not isinstance(port, int) or not port:
            raise UpstreamError(f"the writer {writer.url} says no PostgreSQL port (GET /leader)", "57P03")
        links.pg_ports[writer.url] = port
        return port

    def _up(self) -> Upstream:
        up = self.upstream
        if up is None or up.lost is not None:
            raise self._lost()
        return up

    def _lost(self) -> PgError:
        up = self.upstream
        why = up.lost if up is not None and up.lost else "not connected"
        if up is not None and not up.at_rest:
            return PgError(
                "08007",
                f"the connection to the writer was lost before it answered ({why}): whether the statement "
                "in flight was committed is unknown",
                hint="check whether the write happened before retrying it",
                fatal=True,
            )
        return PgError(
            "08006",
            f"the connection to the writer was lost ({why}); the transaction block was rolled back there",
            fatal=True,
        )

    def _upstream_lost(self) -> None:
        """The writer's session ended on its own (the writer stopped, or closed an idle block): a client
        waiting inside a block held there is told at once, and its session ends."""
        session = self.session
        if self.pinned and session.conn.waiting:
            error = self._lost()
            session.conn.write(codec.error_response("FATAL", error.code, error.message))
            if session.conn.transport is not None:
                session.conn.transport.close()  # the session's task sees the end and cleans up

    def _flush_local(self) -> None:
        """What the session answered so far goes before anything relayed from the writer."""
        session = self.session
        if session.out:
            session.conn.write(b"".join(session.out))
            session.out.clear()

    async def _replay(self, messages: list[codec.FrontendMessage]) -> bytes | None:
        """Send the session's own requests, swallowing their answers; the writer's ErrorResponse if one
        failed (relayed to the client by the caller, in place of the answer it waits for)."""
        if not messages:
            return None
        up = self._up()
        up.swallowed_error = None
        extended = not isinstance(messages[-1], codec.Query)
        up.send([*messages, codec.Flush()] if extended else messages, relay=False)
        await up.settle()
        if up.lost is not None:
            raise self._lost()
        error, up.swallowed_error = up.swallowed_error, None
        return error

    async def _start_block(self) -> None:
        """At a block's first write: open it on the writer as the client opened it here."""
        session = self.session
        if not session.in_block or self.pinned:
            return
        sql = [self.begin_sql or "BEGIN"]
        if self.read_seq is not None:
            sql.append(f"SET ha.read_seq = {self.read_seq}")
        sql += [f'SAVEPOINT "{name}"' for name in session.block.pending_savepoints]
        error = await self._replay([codec.Query(sql="; ".join(sql))])
        if error is not None:
            raise PgError("25000", "the transaction block could not be opened on the writer", raw=error)
        session.block.savepoints_forwarded()
        self.awaiting_read = False

    def _statement_messages(self, name: str) -> list[codec.FrontendMessage]:
        """Parse (and a Close before it) so that the writer holds this session's statement ``name``."""
        prepared = self.session.statements.get(name)
        if prepared is None or self._up_statements.get(name) is prepared:
            return []  # unknown here (the writer answers) or there already
        self._up_statements[name] = prepared
        parse = codec.Parse(name=name, sql=prepared.sql, param_oids=tuple(prepared.param_oids))
        return [codec.Close(kind="S", name=name), parse] if name else [parse]

    def _portal_messages(self, name: str) -> list[codec.FrontendMessage]:
        """Bind (and its statement's Parse) so that the writer holds this session's portal ``name``."""
        portal = self.session.portals.get(name)
        if name in self._up_portals or portal is None or portal.bind is None:
            return []
        self._up_portals.add(name)
        return [*self._statement_messages(portal.bind.statement), portal.bind]

    # ------------------------------------------------------------------------------------ pinned
    async def _relay(self, msg: codec.FrontendMessage) -> None:
        """One client message while pinned: to the writer, after what the writer needs for it."""
        session = self.session
        up = self._up()
        needs: list[codec.FrontendMessage] = []
        if isinstance(msg, codec.Bind):
            needs = self._statement_messages(msg.statement)
            self._up_portals.add(msg.portal)
            session.portals.pop(msg.portal, None)
        elif isinstance(msg, codec.Execute):
            needs = self._portal_messages(msg.portal)
        elif isinstance(msg, codec.Describe):
            needs = self._portal_messages(msg.name) if msg.kind == "P" else self._statement_messages(msg.name)
        elif isinstance(msg, codec.Parse):
            self._up_statements[msg.name] = msg
            self.mirror[msg.name] = msg
            session.statements.pop(msg.name, None)
        elif isinstance(msg, codec.Close):
            if msg.kind == "S":
                self._up_statements.pop(msg.name, None)
                self.mirror.pop(msg.name, None)
                session.statements.pop(msg.name, None)
            else:
                self._up_portals.discard(msg.name)
                session.portals.pop(msg.name, None)
        if needs:
            error = await self._replay(needs)
            if error is not None:
                session.conn.write(error)  # in place of the answer to ``msg``: the writer skips to Sync
                return
        up.send([msg])
        if isinstance(msg, codec.Query | codec.Sync | codec.Flush | codec.CopyDone | codec.CopyFail):
            await up.settle()
            if up.lost is not None:
                raise self._lost()
            if isinstance(msg, codec.Sync | codec.Query):
                self._up_portals.discard("")  # the writer's session drops the unnamed portal at Sync
            if up.at_rest:
                self._synced(up.status)

    def _synced(self, status: str) -> None:
        """The writer's ReadyForQuery: the client's state is the writer's."""
        session = self.session
        if status == "I":
            self.pinned = False
            session.block.mirror(status)
            self.begin_sql = None
            self.read_seq = None
            self.awaiting_read = False
            self._up_portals.clear()
            self.session.links.forwarded += 1
        else:
            session.block.mirror(status)
        self._update()

    # ------------------------------------------------------------------------------------ read-your-writes
    def _written(self, seq: int) -> None:
        """The writer reported the position of a write of this session."""
        up = self.upstream
        self.session.last_seq = seq
        if up is not None:
            self.written = (up.database, seq)
        self._update()

    async def _catch_up(self) -> None:
        """Before the first local statement after a write: until this node has applied it; then prepare
        here the statements the client prepared on the writer."""
        session = self.session
        if self.written is not None:
            database, seq = self.written
            try:
                await session.node.database(database).wait_applied(seq, session.settings.read_wait)
            except HAError as e:
                raise PgError.of(e) from e
            self.written = None
        for name, parse in list(self.mirror.items()):
            del self.mirror[name]
            with contextlib.suppress(PgError):
                prepared = session._prepare(parse.sql, list(parse.param_oids))
                session.statements[name] = prepared
                self._up_statements[name] = prepared
        self._update()


_CANCELS: set[asyncio.Task[None]] = set()


async def _get_json(url: str, headers: dict[str, str]) -> dict[str, Any] | None:
    """A JSON object from another node; None when it has no such route (404). ``UpstreamError`` when it
    does not answer or answers something else."""
    import aiohttp  # only nodes that forward need the client

    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0)) as http,
            http.get(url, headers=headers) as answer,
        ):
            if answer.status == 404:
                return None
            body = await answer.json(content_type=None) if answer.status == 200 else None
    except (aiohttp.ClientError, ValueError, TimeoutError) as e:
        raise UpstreamError(f"GET {url}: {e or type(e).__name__}") from e
    if not isinstance(body, dict):
        raise UpstreamError(f"GET {url}: HTTP {answer.status}", "57P03")
    return body
