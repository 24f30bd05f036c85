"""One PostgreSQL client connection over a node: simple and extended query, transactions.

Its start (TLS, authentication) is in ``handshake.py``, the statements it answers itself (BEGIN, SET, SHOW,
savepoints, COPY) in ``commands.py``; what stays here is the message loop and the query path, whose inline
reads are the hot path.

The session is a loop over the sans-IO codec: it reads frontend messages, runs them on the node (through the
same write path as HTTP, so a COMMIT is acknowledged only once the change set is in the log), and writes the
answers in batches (one socket write per Sync, Flush or simple query, not per message).

The loop is a task, but most messages never wake it: while it waits for the client, bytes are handled as
they arrive (``received``), in the socket's callback, as long as nothing needs to wait. Bind, Describe,
Sync and a read that SQLite answers within the inline budget are answered there, so a prepared point read
costs no task switch and no future. The first message that must wait (a write, a COMMIT, a slow read, a
simple query) is handed to the task, which then handles everything after it in order.

Transactions follow PostgreSQL's model over SQLite's single writer: ``BEGIN`` opens nothing yet; reads before
the first write run on the reader (each sees the latest commit, as READ COMMITTED does); the first write takes
the writer (``WriteTransaction``) until COMMIT or ROLLBACK. Savepoints made before that are replayed when it
starts. A failed statement puts the transaction in the failed state: everything but ROLLBACK gets 25P02.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import apsw

from sqlite_ha.db.database import Database
from sqlite_ha.db.statement import Result, Statement
from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.errors import HAError
from sqlite_ha.replication.replicated_database import ReplicationPending
from sqlite_ha.served import ServedDatabase
from sqlite_ha.server.pgwire import commands, comments, cursors, explain, handshake, isolation, temp
from sqlite_ha.server.pgwire.catalog import catalog
from sqlite_ha.server.pgwire.catalog.activity import SessionContext, SessionView
from sqlite_ha.server.pgwire.catalog.functions import FunctionError
from sqlite_ha.server.pgwire.errors import PgError
from sqlite_ha.server.pgwire.forwarding import writer as forwarded
from sqlite_ha.server.pgwire.forwarding.follower import Forward
from sqlite_ha.server.pgwire.prepared import Outcome, Portal, Prepared, verb
from sqlite_ha.server.pgwire.prepared import column_field as _field
from sqlite_ha.server.pgwire.prepared import formats as _formats
from sqlite_ha.server.pgwire.prepared import guess_oid as _guess_oid
from sqlite_ha.server.pgwire.prepared import parameter_type as _parameter_type
from sqlite_ha.server.pgwire.sql import interval_params
from sqlite_ha.server.pgwire.sql import schemas as schema_names
from sqlite_ha.server.pgwire.sql.colnames import pg_column_name
from sqlite_ha.server.pgwire.sql.dialect import (
    TranslationError,
    classify,
    split_statements,
    translate,
    translate_catalog,
)
from sqlite_ha.server.pgwire.sql.infer import infer, key_types, result_types
from sqlite_ha.server.pgwire.sql.sequences import sequence_calls
from sqlite_ha.server.pgwire.state import SessionState
from sqlite_ha.server.pgwire.types import values as t
from sqlite_ha.server.pgwire.wire import codec

if TYPE_CHECKING:
    pass


log = logging.getLogger(__name__)


class Session(SessionState):
    """The loop of one client connection and its query path."""

    def received(self, data: bytes) -> None:
        """Bytes from the client (the socket's callback): answered here while nothing needs to wait."""
        self.parser.feed(data)
        if not self.conn.waiting:
            self.conn.backlog(self.parser.buffered)  # the task is busy: it reads the parser when it is back
            return
        if self.inline and self.block.tx is None and not self.conn.write_paused:
            self._answer_inline()
            if self.out:
                self.conn.write(b"".join(self.out))
                self.out.clear()
            if self.pending is None:
                return  # all answered, or a message is still incomplete: the task sleeps on
        self.conn.wake()

    def _answer_inline(self) -> None:
        """Handle the parsed messages until one must wait: that one goes to the task as ``pending``."""
        while True:
            try:
                msg = self.parser.next_message()
            except codec.ProtocolError as e:
                self.pending = e
                return
            if msg is None:
                return
            if (self.skip_to_sync and not isinstance(msg, codec.Sync)) or isinstance(msg, codec.Flush):
                continue  # a Flush: ``received`` writes everything out once the bytes are handled
            try:
                if not self._dispatch_now(msg):
                    self.pending = msg
                    return
            except PgError as e:
                if e.fatal:
                    self.pending = e
                    return
                self._failed(msg, e)

    # ------------------------------------------------------------------------------------ life
    async def serve(self, cancel_registry: dict[tuple[int, int], Session]) -> None:
        try:
            if not await handshake.startup(self, cancel_registry):
                return
            cancel_registry[(self.pid, self.secret)] = self
            self.registry = cancel_registry  # type: ignore[assignment]  # its sessions are Sessions
            self.inline = True
            if self.forwarded_by is None and self.node.writer.name != "leaderless":
                self.forward = Forward(self)
            await self.loop()
        except codec.ProtocolError as e:
            self.error(PgError(e.code, e.message, fatal=True))
        except PgError as e:
            self.error(e)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            cancel_registry.pop((self.pid, self.secret), None)
            cursors.close_all(self)  # their readers, and the snapshots they keep
            self._abandon()
            temp.close(self)
            if self.forward is not None:
                await self.forward.close()
            with contextlib.suppress(Exception):
                await self.flush()
            with contextlib.suppress(Exception):
                await self.conn.close()

    def _abandon(self) -> None:
        isolation.ended(self)
        tx = self.block.abandon()
        if tx is not None:
            tx.rollback()

    def cancel(self) -> None:
        """A CancelRequest from another connection: stop the read or the transaction block's statement this
        session runs now (an autocommit write is never abandoned half-way: it completes, as PostgreSQL's
        cancel is best effort)."""
        if self.forward is not None and self.forward.pinned:
            self.forward.cancel()
            return
        # Only while the session task is suspended inside such a statement (single-threaded loop: ``running``
        # is set exactly then), so the cancellation lands in that statement's await and nowhere else.
        if self.running is not None and not self.cancelled:
            self.cancelled = True
            self.running.cancel()

    # ------------------------------------------------------------------------------------ messages
    async def loop(self) -> None:
        while True:
            # a block holding the writer, or a REPEATABLE READ snapshot (which keeps the WAL from being
            # checkpointed past it), may not idle forever
            holding = self.tx is not None or self.read_view is not None
            timeout = self.settings.idle_in_transaction_timeout if holding else None
            try:
                msg = await self.next_message(timeout)
            except codec.ProtocolError as e:
                if e.fatal:
                    raise
                self.error(PgError(e.code, e.message))  # the message was consumed: the stream goes on
                self._after_error()
                if self.extended:
                    self.skip_to_sync = True
                else:
                    self.send(codec.ready_for_query(self.status()))
                continue
            except TimeoutError:
                held = "the database's writer" if self.tx is not None else "a snapshot of the database"
                raise PgError(
                    "25P03",
                    f"terminating connection due to idle-in-transaction timeout: the transaction held {held}",
                    fatal=True,
                ) from None
            if msg is None or isinstance(msg, codec.Terminate):
                return
            if self.skip_to_sync and not isinstance(msg, codec.Sync):
                continue
            try:
                await self.dispatch(msg)
            except PgError as e:
                if e.fatal:
                    self.error(e)
                    return
                self._failed(msg, e)

    def _failed(self, msg: codec.FrontendMessage, e: PgError) -> None:
        """A message failed: report it; the extended protocol then skips to the next Sync."""
        self.error(e)
        self._after_error()
        if not isinstance(msg, codec.Query):
            self.skip_to_sync = True
        else:
            self.send(codec.ready_for_query(self.status()))

    def _after_error(self) -> None:
        self.block.fail()

    async def dispatch(self, msg: codec.FrontendMessage) -> None:
        if self.forward is not None and self.forward.engaged and await self.forward.intercept(msg):
            return
        if self._dispatch_now(msg):
            return
        if isinstance(msg, codec.Parse) and self.forward is not None:  # a statement only the writer knows
            await self.forward.intercept(msg)
            return
        self.extended = not isinstance(msg, codec.Query | codec.Sync)
        if isinstance(msg, codec.Query):
            await self.simple_query(msg.sql)
        elif isinstance(msg, codec.Execute):
            await self.execute_portal(msg)
        elif isinstance(msg, codec.Flush):
            await self.flush()
        else:
            raise PgError("0A000", f"{type(msg).__name__} is not supported")

    def _dispatch_now(self, msg: codec.FrontendMessage) -> bool:
        """Handle a message that needs no waiting; False when it needs the task (``dispatch``)."""
        if isinstance(msg, codec.Bind):
            self.extended = True
            self.bind(msg)
        elif isinstance(msg, codec.Execute):
            self.extended = True
            return self._execute_now(msg)
        elif isinstance(msg, codec.Sync):
            self.extended = False
            self.skip_to_sync = False
            self.portals.pop("", None)
            self.send(codec.ready_for_query(self.status()))
        elif isinstance(msg, codec.Parse):
            self.extended = True
            return self.parse(msg)
        elif isinstance(msg, codec.Describe):
            self.extended = True
            self.describe(msg)
        elif isinstance(msg, codec.Close):
            self.extended = True
            (self.statements if msg.kind == "S" else self.portals).pop(msg.name, None)
            self.send(codec.close_complete())
        elif isinstance(msg, codec.CopyData | codec.CopyDone | codec.CopyFail):
            pass  # outside COPY: ignored, as PostgreSQL does
        else:
            return False
        return True

    # ------------------------------------------------------------------------------------ simple query
    async def simple_query(self, sql: str) -> None:
        if self.forward is not None and await self.forward.query(sql):
            return
        pieces = split_statements(sql)
        if not pieces:
            self.send(codec.empty_query_response())
            self.send(codec.ready_for_query(self.status()))
            return
        for piece in pieces:
            prepared = self._prepare(piece, [], describe=False)
            outcome = await self.run(prepared, ())
            for text in outcome.notices:
                self.notice(text)
            columns = outcome.columns
            if columns is not None:
                self.send(codec.row_description([_field(c) for c in columns]))
                encoders = [c.encode for c in columns]
                try:
                    for row in outcome.rows:
                        self.send(codec.data_row([enc(v) for enc, v in zip(encoders, row, strict=True)]))
                except t.NotEncodable as e:  # an int4 column holding a larger value: 22003, never a wrong one
                    raise PgError(e.sqlstate, str(e)) from e
            self.send(codec.command_complete(outcome.tag))
        self.send(codec.ready_for_query(self.status()))

    # ------------------------------------------------------------------------------------ extended query
    def parse(self, msg: codec.Parse) -> bool:
        """False when the statement goes to the writer (``Forward.defer``: this node cannot prepare it)."""
        try:
            prepared = self._prepare(msg.sql, list(msg.param_oids))
        except PgError as e:
            if self.forward is not None and self.forward.defer(msg, e):
                return False
            raise
        if msg.name and msg.name in self.statements:
            raise PgError("42P05", f'prepared statement "{msg.name}" already exists')
        self.statements[msg.name] = prepared
        self.send(codec.parse_complete())
        return True

    def _prepare(self, sql: str, param_oids: list[int], *, describe: bool = True) -> Prepared:
        self.last_query = sql
        kind = classify(sql)
        if kind == "comment" and comments.kept(sql):  # written as the table's comment view: a write
            run_sql = comments.statement(sql, self._catalog())
            return Prepared(sql=sql, kind="query", run_sql=run_sql, param_oids=param_oids, columns=None)
        if kind == "query" and sql.lstrip()[:4].upper() == "DROP":
            dropped = comments.drop_schema(sql, self._catalog())  # what is in it: the catalog knows
            if dropped is not None:
                return Prepared(sql=sql, kind="query", run_sql=dropped, param_oids=param_oids, columns=None)
        if kind == "query" and "pg_cursors" in sql:
            kind = cursors.classify(sql) or kind
        if kind in cursors.KINDS:
            return cursors.prepare(self, sql, kind, param_oids)
        if kind != "query":
            # SHOW answers one text column; every other session command answers no rows
            columns = [t.Column(commands.show_label(sql), t.TEXT, False)] if kind == "show" else None
            return Prepared(sql=sql, kind=kind, run_sql="", param_oids=param_oids, columns=columns)
        try:
            explained = explain.split(sql)
        except explain.AnalyzeRefused as e:
            raise PgError("0A000", str(e)) from e
        if explained is not None:
            return explain.prepare(self, sql, explained, param_oids, describe=describe)
        run = sequence_calls(sql) if "val" in sql else sql  # pg_catalog.setval(…): on the database
        is_catalog = catalog.is_catalog_query(run)
        try:
            translation = translate_catalog(catalog.prepare(run)) if is_catalog else translate(run)
        except TranslationError as e:
            width = catalog.empty_answer(sql) if is_catalog else None
            if width is None:
                raise PgError(e.sqlstate, str(e)) from e
            columns = [t.Column("?column?", t.TEXT, False) for _ in range(width)]
            return Prepared(sql=sql, kind="empty", run_sql="", param_oids=param_oids, columns=columns)
        except Exception as e:  # a fault of the translation, not of the session: this statement fails alone
            # (the statement's text stays out of the log: it may hold secrets)
            log.exception("translating a PostgreSQL %s statement failed", verb(sql))
            raise PgError("XX000", f"internal error translating the statement: {type(e).__name__}") from e
        oids = list(param_oids) + [0] * max(0, translation.param_count - len(param_oids))
        for i, cast in enumerate(translation.param_types[: len(oids)]):
            if not oids[i] and cast:
                oids[i] = t.oid_for_declared(cast) or 0  # "$1::int": the cast says the type
        prepared = Prepared(
            sql=sql,
            kind=kind,
            run_sql=interval_params.rewrite(
                translation.sql, oids, lambda table: self._table_types(self._db())(table)
            ),
            param_oids=oids,
            catalog=is_catalog,
            locks=translation.locks,
        )
        prepared.temp = not is_catalog and temp.is_temp(self, sql, translation.sql)
        if describe:
            try:
                self._describe_statement(prepared)
            except PgError as e:
                if schema_names.unknown_schema(e.message) and schema_names.learn(self._db().db):
                    return self._prepare(sql, param_oids, describe=describe)  # it names a schema now known
                raise
        return prepared

    def _describe_statement(self, prepared: Prepared) -> None:
        """Columns and parameter types without running anything (SQLite prepares, the trace stops it)."""
        db = self._db()
        prepared.descriptions.clear()
        if prepared.temp:
            return temp.describe(self, prepared)
        if prepared.catalog:
            try:
                columns = self._catalog().describe(prepared.run_sql, len(prepared.param_oids))
            except apsw.Error as e:
                width = catalog.empty_answer(prepared.sql)
                if width is None:
                    raise PgError("42000", f"catalog query: {e}") from e
                columns = [("?column?", None)] * width
            prepared.columns = [
                t.Column(name, t.oid_for_declared(decl) or t.TEXT, False) for name, decl in columns
            ]
            prepared.param_oids = [oid or t.TEXT for oid in prepared.param_oids]
            return
        try:
            described = db.db.describe(
                prepared.run_sql,
                len(prepared.param_oids),
                on_writer=self.tx is not None,
                grant=self.grant(db),
            )
        except HAError as e:
            raise PgError.of(e) from e
        declared = [decl for _, decl in described.columns]
        if not all(declared):  # expressions: ask the statement what they compute
            inferred = result_types(prepared.run_sql, self._table_types(db))
            declared = [d or (inferred[i] if i < len(inferred) else None) for i, d in enumerate(declared)]
            declared = [_parameter_type(d, prepared.param_oids) for d in declared]
        if "INTEGER" in declared:  # a rowid alias: a SERIAL's CREATE TABLE keeps its type (int4)
            declared = _key_types(db, prepared.run_sql, [name for name, _ in described.columns], declared)
        prepared.columns = [
            t.declared_column(pg_column_name(name, prepared.sql), decl, _guess_oid(name))
            for (name, _), decl in zip(described.columns, declared, strict=True)
        ]
        if not all(prepared.param_oids):
            declared = infer(prepared.run_sql, len(prepared.param_oids), self._table_types(db))
            for i, decl in enumerate(declared):
                if not prepared.param_oids[i]:
                    prepared.param_oids[i] = t.oid_for_declared(decl) or t.TEXT

    def bind(self, msg: codec.Bind) -> None:
        prepared = self.statements.get(msg.statement)
        if prepared is None:
            raise PgError("26000", f'prepared statement "{msg.statement}" does not exist')
        n = len(prepared.param_oids)
        if len(msg.params) != n:
            raise PgError(
                "08P01", f"bind message supplies {len(msg.params)} parameters, but the statement needs {n}"
            )
        formats = _formats(msg.param_formats, n)
        try:
            params = tuple(
                t.decode_param(data, oid, fmt == 1)
                for data, oid, fmt in zip(msg.params, prepared.param_oids, formats, strict=True)
            )
        except t.BadParameter as e:
            raise PgError(e.sqlstate, str(e)) from e
        self.portals[msg.portal] = Portal(
            prepared=prepared, params=params, result_binary=msg.result_formats, bind=msg
        )
        self.send(codec.bind_complete())

    def describe(self, msg: codec.Describe) -> None:
        if msg.kind == "S":
            prepared = self.statements.get(msg.name)
            if prepared is None:
                raise PgError("26000", f'prepared statement "{msg.name}" does not exist')
            self.send(codec.parameter_description(prepared.param_oids))
            self._send_description(prepared.columns, None)
        else:
            portal = self.portals.get(msg.name)
            if portal is None:
                raise PgError("34000", f'portal "{msg.name}" does not exist')
            prepared = portal.prepared
            key = tuple(portal.result_binary)
            encoded = prepared.descriptions.get(key)  # libpq sends Describe with every execution
            if encoded is None:
                self._send_description(prepared.columns, portal.result_binary)
                if len(prepared.descriptions) < 8:
                    prepared.descriptions[key] = self.out[-1]
            else:
                self.send(encoded)

    def _send_description(self, columns: list[t.Column] | None, formats: Sequence[int] | None) -> None:
        if not columns:
            self.send(codec.no_data())
            return
        codes = _formats(formats or (), len(columns))
        self.send(codec.row_description([_field(c, fmt) for c, fmt in zip(columns, codes, strict=True)]))

    async def execute_portal(self, msg: codec.Execute) -> None:
        portal = self._portal(msg.portal)
        if portal.rows is None:
            if self.forward is not None and await self.forward.execute(msg, portal):
                return
            self._fill(portal, await self.run(portal.prepared, portal.params))
        self._send_rows(portal, msg.max_rows)

    def _execute_now(self, msg: codec.Execute) -> bool:
        """Execute a portal without waiting: one whose rows are there, or a read SQLite answers at once.
        False when it must wait (``execute_portal``); nothing has happened then."""
        portal = self._portal(msg.portal)
        if portal.rows is None:
            outcome = self._read_now(portal.prepared, portal.params)
            if outcome is None:
                return False
            self._fill(portal, outcome)
        self._send_rows(portal, msg.max_rows)
        return True

    def _portal(self, name: str) -> Portal:
        portal = self.portals.get(name)
        if portal is None:
            raise PgError("34000", f'portal "{name}" does not exist')
        return portal

    def _fill(self, portal: Portal, outcome: Outcome) -> None:
        for text in outcome.notices:
            self.notice(text)
        announced = portal.prepared.columns
        if announced is not None and outcome.columns is not None and len(announced) != len(outcome.columns):
            # the table changed shape since Describe; PostgreSQL's answer, which drivers (asyncpg) take
            # as "prepare again". The statement is described anew for the next Bind.
            self._describe_statement(portal.prepared)
            raise PgError("0A000", "cached plan must not change result type")
        portal.tag = outcome.tag
        portal.rows = outcome.rows
        if outcome.columns is not None:
            described = portal.prepared.columns or outcome.columns
            codes = _formats(portal.result_binary, len(described))
            portal.columns = [
                t.Column(c.name, c.oid, fmt == 1, c.typmod) for c, fmt in zip(described, codes, strict=True)
            ]

    def _send_rows(self, portal: Portal, max_rows: int) -> None:
        rows, columns = portal.rows or [], portal.columns
        if columns is not None:
            end = len(rows) if max_rows <= 0 else min(len(rows), portal.sent + max_rows)
            encoders = [c.encode for c in columns]
            try:
                for row in rows[portal.sent : end]:
                    self.send(codec.data_row([enc(v) for enc, v in zip(encoders, row, strict=True)]))
            except t.NotEncodable as e:
                raise PgError(e.sqlstate, str(e)) from e
            portal.sent = end
            if end < len(rows):
                self.send(codec.portal_suspended())
                return
        self.send(codec.command_complete(portal.tag))

    # ------------------------------------------------------------------------------------ running
    async def run(self, prepared: Prepared, params: tuple[SQLiteValue, ...]) -> Outcome:
        try:
            return await self._run(prepared, params)
        except PgError as e:
            # a schema another node made (or made before this process started): learn it, translate again
            if not (schema_names.unknown_schema(e.message) and schema_names.learn(self._db().db)):
                raise
        fresh = self._prepare(prepared.sql, prepared.param_oids, describe=False)
        prepared.run_sql, prepared.read_only = fresh.run_sql, None
        return await self._run(prepared, params)

    async def _run(self, prepared: Prepared, params: tuple[SQLiteValue, ...]) -> Outcome:
        if self.failed and prepared.kind not in ("rollback", "commit", "rollback_to"):
            raise PgError(
                "25P02", "current transaction is aborted, commands ignored until end of transaction block"
            )
        if prepared.kind == "empty":
            return Outcome("SELECT 0", prepared.columns, [])
        if prepared.kind in cursors.KINDS:
            return await cursors.run(self, prepared, params)
        if prepared.kind != "query":
            return await commands.run(self, prepared)
        if prepared.temp:
            return temp.run(self, prepared, params)
        try:
            db = self._db()
            if prepared.read_only is None:
                prepared.read_only = db.is_read_only([Statement(sql=prepared.run_sql, grant=self.grant(db))])
            if not prepared.read_only and not self.in_block:
                # An autocommit write joins others' in one commit (group commit): it is never abandoned.
                return await self._run_query(prepared, params)
            # No task of its own per statement (it cost 8% of a point read): a CancelRequest cancels this
            # session's task while it waits in a read or in a statement of a transaction block (which the
            # interrupt aborts, as in PostgreSQL), and the cancellation is taken back here.
            task = asyncio.current_task()
            self.cancelled = False
            self.running = task
            try:
                return await self._run_query(prepared, params)
            except asyncio.CancelledError:
                if self.cancelled and task is not None and task.uncancel() == 0:
                    raise PgError("57014", "canceling statement due to user request") from None
                raise
            finally:
                self.running = None
        except HAError as e:
            raise PgError.of(e) from e

    def _read_now(self, prepared: Prepared, params: tuple[SQLiteValue, ...]) -> Outcome | None:
        """A read answered without waiting, or None: it needs the task (``run``)."""
        columns = prepared.columns
        if prepared.kind != "query" or prepared.catalog or prepared.temp or columns is None:
            return None
        if self.block.tx is not None or self.block.failed or self.min_seq or self.read_level != "none":
            return None
        if self.mode.snapshot:  # a REPEATABLE READ block reads its snapshot, in _run_query
            return None
        if prepared.locks and self.in_block and self.forward is None:  # it takes the writer, in _run_query
            return None
        try:
            db = self._db()
            if prepared.read_only is None:
                stmt = Statement(sql=prepared.run_sql, bindings=params or None, grant=self.grant(db))
                prepared.read_only = db.is_read_only([stmt])
            if not prepared.read_only:
                return None
            db.check_fresh()
            rows = db.db.read_rows_now(prepared.run_sql, params or None, self.grant(db))
        except HAError as e:
            raise PgError.of(e) from e
        if rows is None or (rows and len(rows[0]) != len(columns)):
            return None  # slow, or the schema changed since Describe: the general path sorts it out
        return Outcome(prepared.row_tag(len(rows)), columns, rows)

    def _catalog(self) -> catalog.Catalog:
        """The catalog database of the session's database, current with its schema.

        Inside a write transaction, one of the session's own, from the transaction's view: a migration that
        drops and creates tables in one transaction (SQLAlchemy's create_all checks each table first) must
        see its own changes, and no other session may see them before COMMIT.
        """
        db = self._db()
        # a session with TEMP objects sees them listed (inside a write block it sees the block's view)
        own_temp = temp.visible_catalog(self) if self.temp is not None and self.tx is None else None
        if own_temp is not None:
            return own_temp
        if self.tx is not None:
            if self._tx_catalog is None or self._tx_catalog[0] is not self.tx:
                self._tx_catalog = (self.tx, catalog.Catalog(db.id, self.settings.user))
            own = self._tx_catalog[1]
            own.sync(self.tx.connection)
            return own
        self._tx_catalog = None
        cat = _CATALOGS.get(db.db)
        if cat is None:
            cat = _CATALOGS[db.db] = catalog.Catalog(db.id, self.settings.user)
        cat.sync(db.db.reader_connection)
        return cat

    def _catalog_context(self, query: str) -> SessionContext:
        """The session as the catalog's session-dependent views and functions show it."""
        me = _view(self, query, "active")
        registry = self.registry

        def sessions() -> list[SessionView]:
            return [me if s is self else _view(s, s.last_query, _idle_state(s)) for s in registry.values()]

        return SessionContext(
            me=me, settings=self.params, sessions=sessions, databases=self.node.database_ids()
        )

    async def _run_query(self, prepared: Prepared, params: tuple[SQLiteValue, ...]) -> Outcome:
        db = self._db()
        if prepared.catalog:
            try:
                result = self._catalog().run(prepared.run_sql, params, self._catalog_context(prepared.sql))
            except FunctionError as e:  # a catalog function's own refusal, with PostgreSQL's SQLSTATE
                raise PgError(e.code, e.message, hint=e.hint) from e
            except apsw.Error as e:
                width = catalog.empty_answer(prepared.sql)
                if width is None:
                    raise PgError("42000", f"catalog query: {e}") from e
                columns = [t.Column("?column?", t.TEXT, False) for _ in range(width)]
                return Outcome("SELECT 0", prepared.columns or columns, [])
            return self._outcome(prepared, result, [])
        stmt = Statement(sql=prepared.run_sql, bindings=params or None, grant=self.grant(db))
        notices: list[str] = []
        if self.read_level == "strong" and self.tx is None:  # in a write block the node is the writer
            await db.wait_current(self.settings.read_wait)
        if self.min_seq:
            await db.wait_applied(self.min_seq, self.settings.read_wait)
        if self.tx is not None:
            result = (await self.tx.run([stmt]))[-1]
        elif self.in_block and ((prepared.locks and self.forward is None) or not db.is_read_only([stmt])):
            # a write, or SELECT … FOR UPDATE/SHARE: its row locks are the writer, held to the block's end (in
            # a writer mode the block's first write checks that nothing changed since its reads: 40001)
            isolation.refuse_write(self, prepared.verb)
            tx = await db.begin()
            for name in self.block.took_writer(tx):
                tx.savepoint(name)
            if self.read_seq is not None:
                await forwarded.check_read_seq(self, db)
            result = (await tx.run([stmt]))[-1]
        elif self.in_block and self.mode.snapshot:  # REPEATABLE READ: every read on the block's snapshot
            if self.read_view is None:
                self.read_view = db.db.read_view()
            self.block_read = True
            result = (await self.read_view.execute([stmt])).results[-1]
        else:
            if self.default_mode.read_only and not self.in_block and not db.is_read_only([stmt]):
                isolation.refuse_write(self, prepared.verb)
            try:
                execution, seq = await db.execute([stmt])
            except ReplicationPending as e:
                execution, seq = e.execution, None
                notices.append(e.message)  # committed here, published later: not an error
            if seq is not None:
                self.last_seq = seq
                if self.forwarded_by is not None:
                    forwarded.report_seq(self, seq)
            result = execution.results[-1]
        return self._outcome(prepared, result, notices)

    def _lazy_table_types(self, table: str) -> dict[str, str]:
        return self._table_types(self._db())(table)

    def _table_types(self, db: ServedDatabase) -> Callable[[str], dict[str, str]]:
        """Declared column types of a table as this session sees them: a write block's own connection may
        have created or altered it (``CREATE TABLE t …; SELECT t.x + $1 FROM t`` in one block)."""
        on_writer = self.tx is not None
        return lambda table: db.db.table_types(table, on_writer=on_writer)

    def _outcome(self, prepared: Prepared, result: Result, notices: list[str]) -> Outcome:
        if prepared.explain:
            return Outcome("EXPLAIN", prepared.columns, explain.plan_lines(result.rows), notices)
        if result.columns and (result.rows or prepared.verb not in ("CREATE", "ALTER", "DROP")):
            if prepared.columns and len(prepared.columns) == len(result.columns):
                columns = prepared.columns  # what Describe announced
            else:
                declared = list(result.types)
                if not all(declared) and self.db is not None:  # expressions: what they compute (1 is int4)
                    inferred = result_types(prepared.run_sql, self._table_types(self.db))
                    declared = [d or _inferred(inferred, i) for i, d in enumerate(declared)]
                if "INTEGER" in declared and self.db is not None:  # a rowid alias (see _describe_statement)
                    declared = _key_types(self.db, prepared.run_sql, result.columns, declared)
                columns = [
                    t.result_column(pg_column_name(name, prepared.sql), decl, result.rows, i)
                    for i, (name, decl) in enumerate(zip(result.columns, declared, strict=True))
                ]
            return Outcome(prepared.row_tag(len(result.rows)), columns, result.rows, notices)
        return Outcome(tag=prepared.change_tag(result.rows_affected), notices=notices)


def _key_types(
    db: ServedDatabase, sql: str, names: Sequence[str], declared: list[str | None]
) -> list[str | None]:
    def create_sql(table: str) -> str | None:
        rows = db.db.reader_connection.execute(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ? COLLATE NOCASE", (table,)
        ).fetchall()
        return str(rows[0][0]) if rows and rows[0][0] is not None else None

    kept = key_types(sql, list(names), create_sql)
    return [k if d == "INTEGER" and k else d for d, k in zip(declared, kept, strict=True)]


def _inferred(inferred: list[str | None], i: int) -> str | None:
    """An inferred type for a column of rows at hand: "TEXT" (what a column without declared type is
    assumed to be) and parameters are left to the values."""
    found = inferred[i] if i < len(inferred) else None
    return None if found is None or found == "TEXT" or found.startswith("$") else found


# Shared by the node's sessions. Keyed by the database object, not its id: a re-bootstrapped database is a new
# object whose file may hold another schema under the same schema_version.
_CATALOGS: weakref.WeakKeyDictionary[Database, catalog.Catalog] = weakref.WeakKeyDictionary()


def _view(session: SessionState, query: str, state: str) -> SessionView:
    """A session as pg_stat_activity shows it."""
    return SessionView(
        pid=session.pid,
        user=session.user,
        database=session.db.id if session.db is not None else "",
        application_name=session.params.get("application_name", ""),
        backend_start=session.started,
        state=state,
        query=query,
    )


def _idle_state(session: SessionState) -> str:
    if not session.in_block:
        return "idle"
    return "idle in transaction (aborted)" if session.failed else "idle in transaction"
