"""COPY on a PostgreSQL session: the messages around the data, and the rows' way into and out of SQLite.

The formats are in ``format.py`` and the statement in ``statement.py``, both sans-IO; this is the
thin part that talks to the session (its messages) and to the node (its write path). The session hands a
COPY statement to ``Copy.run`` and gets the command tag back (``COPY n``); errors come out as ``CopyError``.

COPY FROM STDIN writes through the same path as every other write, as ONE transaction (one change set):

- in autocommit, rows are parsed as CopyData arrives and turned into one ``INSERT`` statement per row (so
  an error names its line). A COPY that fits in one chunk (``CHUNK_ROWS`` rows, ``CHUNK_BYTES`` of data) is
  one ``execute`` request at CopyDone, like any autocommit statement: the writer is never held while
  the client is still sending. A larger one takes the writer (``begin``) at its first full chunk, runs
  each chunk in that transaction as it comes, and commits at CopyDone (``commit``): memory stays at one
  chunk however large the COPY, and the answer comes after the log's ack as for any write. While it holds
  the writer, a client that stops sending for ``idle_in_transaction_timeout`` is disconnected.
- inside ``BEGIN … COMMIT`` the rows go into the session's write transaction, within a savepoint, so a
  failed COPY leaves nothing behind even there (and the transaction is failed, as in PostgreSQL).

Anything wrong (a bad value, a constraint, CopyFail, data past ``max_copy_size``) rolls the COPY back:
nothing is written. The data a COPY may send is bounded (``PgSettings.max_copy_size``): the change set of
one transaction is held in memory, and may not exceed ``--max-transaction-size`` anyway.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlite_ha.db.schema import quote
from sqlite_ha.db.statement import Statement
from sqlite_ha.db.transaction import WriteTransaction
from sqlite_ha.errors import HAError, SQLError
from sqlite_ha.replication.replicated_database import ReplicationPending
from sqlite_ha.server.pgwire.copy.format import CopyError, CopyRow, RowEncoder, row_parser
from sqlite_ha.server.pgwire.copy.statement import CopyStatement, parse_copy
from sqlite_ha.server.pgwire.forwarding import writer as forwarded
from sqlite_ha.server.pgwire.sqlstate import sqlstate
from sqlite_ha.server.pgwire.types import values as t
from sqlite_ha.server.pgwire.wire import codec

if TYPE_CHECKING:
    from sqlite_ha.served import ServedDatabase
    from sqlite_ha.server.pgwire.state import SessionState

__all__ = ["Copy", "CopyError"]

CHUNK_ROWS = 2000  # rows run per statement batch on the writer
CHUNK_BYTES = 1024 * 1024  # or this much COPY data, whichever comes first
FLUSH_BYTES = 256 * 1024  # COPY TO writes to the socket every this many bytes
SAVEPOINT = "_ha_copy"  # a COPY inside a transaction block

_STATEMENT_PREFIX = re.compile(r"^statement \d+: ")


class Copy:
    """One COPY statement on a session."""

    def __init__(self, session: SessionState, sql: str) -> None:
        self.session = session
        self.statement = parse_copy(sql)

    async def run(self) -> str:
        """Run the COPY, messages included; returns the command tag. CopyError when it fails."""
        stmt = self.statement
        try:
            if stmt.is_from:
                return await _CopyIn(self.session, stmt).run()
            return await self._copy_out()
        except CopyError as e:
            name = stmt.table if stmt.query is None else ""
            if name and not e.fatal:
                e.context = f"COPY {name}, {e.context}" if e.context else f"COPY {name}"
            raise

    async def _copy_out(self) -> str:
        """COPY TO STDOUT: the query's rows, each a CopyData in the asked format."""
        s, stmt = self.session, self.statement
        sql = stmt.query
        if sql is None:
            sql = f"SELECT {stmt.columns_sql or '*'} FROM {stmt.table_sql}"
        prepared = s._prepare(sql, [], describe=False)
        if prepared.kind != "query":
            raise CopyError(
                "0A000", "COPY (…) TO STDOUT takes a SELECT, VALUES or a statement with RETURNING"
            )
        outcome = await s.run(prepared, ())
        for text in outcome.notices:
            s.notice(text)
        if outcome.columns is None:
            raise CopyError("0A000", "COPY query must return rows (a write needs a RETURNING clause)")
        binary = stmt.options.binary
        columns = [t.Column(c.name, c.oid, binary, c.typmod) for c in outcome.columns]
        encoder = RowEncoder(stmt.options, [c.name for c in columns])
        s.send(codec.copy_out_response(binary, len(columns)))
        head = encoder.header() or b""
        if head and not binary:  # a header line is a message of its own
            s.send(codec.copy_data(head))
            head = b""
        pending = 0
        for row in outcome.rows:
            try:
                data = encoder.row([c.encode(v) for c, v in zip(columns, row, strict=True)])
            except t.NotEncodable as e:
                raise CopyError(e.sqlstate, str(e)) from e
            if head:  # binary COPY's file header goes with the first row, as PostgreSQL sends it (psycopg
                data, head = head + data, b""  # reads the first message as header and row together)
            s.send(codec.copy_data(data))
            pending += len(data)
            if pending >= FLUSH_BYTES:
                await s.flush()
                pending = 0
        tail = encoder.trailer()
        if tail is not None:
            s.send(codec.copy_data(head + tail))
        s.send(codec.copy_done())
        return f"COPY {len(outcome.rows)}"


class _CopyIn:
    """COPY FROM STDIN: CopyInResponse, then CopyData until CopyDone (or CopyFail), rows written in chunks."""

    def __init__(self, session: SessionState, stmt: CopyStatement) -> None:
        self.session = session
        self.stmt = stmt
        self.db: ServedDatabase = session._db()
        self.grant = session.grant(self.db)
        self.names: list[str] = []
        self.oids: list[int] = []
        self.sql = ""
        self.statements: list[Statement] = []
        self.lines: list[int] = []  # the input line of each statement
        self.tx: WriteTransaction | None = None
        self.owned = False  # the transaction is this COPY's own (autocommit), not the session's
        self.count = 0
        self.size = 0
        self.flushed_at = 0  # ``size`` when the last chunk was written

    async def run(self) -> str:
        s, options = self.session, self.stmt.options
        self._target()
        parser = row_parser(options, self.names)
        limit = s.settings.max_copy_size
        s.send(codec.copy_in_response(options.binary, len(self.names)))
        # CopyData must reach this loop, not the session's inline answers (which drop it outside COPY)
        inline, s.inline = s.inline, False
        done = False
        try:
            while True:
                msg = await self._next()
                if isinstance(msg, codec.CopyData):
                    self.size += len(msg.data)
                    if self.size > limit:
                        raise CopyError(
                            "54000",
                            f"COPY data exceeds the limit of {limit:,} bytes; nothing was written",
                            hint="split the data into several COPY statements (or raise --pg-max-copy-size)",
                        )
                    await self._add(parser.feed(msg.data))
                elif isinstance(msg, codec.CopyDone):
                    await self._add(parser.finish())
                    await self._finish()
                    done = True
                    return f"COPY {self.count}"
                elif isinstance(msg, codec.CopyFail):
                    raise CopyError("57014", f"COPY from stdin failed: {msg.message}")
                elif not isinstance(msg, codec.Flush | codec.Sync):  # ignored during COPY, as PostgreSQL does
                    raise CopyError(
                        "08P01", f"unexpected {type(msg).__name__} message during COPY from stdin"
                    )
        finally:
            s.inline = inline
            if not done:
                self._abandon()

    def _target(self) -> None:
        """The columns rows fill and their types, from the table (before CopyInResponse, as PostgreSQL)."""
        s, stmt = self.session, self.stmt
        seen: set[str] = set()
        for name in stmt.columns:
            if name.lower() in seen:
                raise CopyError("42701", f'column "{name}" specified more than once')
            seen.add(name.lower())
        table = f"{quote(stmt.schema)}.{quote(stmt.table)}" if stmt.schema else quote(stmt.table)
        columns = ", ".join(quote(c) for c in stmt.columns) if stmt.columns else "*"
        try:
            described = self.db.db.describe(
                f"SELECT {columns} FROM {table}", 0, on_writer=s.tx is not None, grant=s.grant(self.db)
            )
        except HAError as e:
            raise CopyError(sqlstate(e), e.message, hint=e.hint) from e
        self.names = list(stmt.columns) or [name for name, _ in described.columns]
        self.oids = [t.oid_for_declared(decl) or t.TEXT for _, decl in described.columns]
        targets = ", ".join(quote(n) for n in self.names)
        marks = ", ".join("?" * len(self.names))
        self.sql = f"INSERT INTO {table} ({targets}) VALUES ({marks})"

    async def _next(self) -> codec.FrontendMessage:
        s = self.session
        holding = self.tx is not None or s.tx is not None
        timeout = s.settings.idle_in_transaction_timeout if holding else None
        try:
            msg = await s.next_message(timeout)
        except TimeoutError:
            raise CopyError(
                "25P03",
                "terminating connection: the client sent no COPY data for "
                f"{timeout:g}s while the COPY held the database's writer",
                fatal=True,
            ) from None
        except codec.ProtocolError as e:
            if e.fatal:
                raise
            raise CopyError(e.code, e.message) from e
        if msg is None or isinstance(msg, codec.Terminate):
            raise ConnectionError("the client left during COPY FROM STDIN")
        return msg

    async def _add(self, rows: list[CopyRow]) -> None:
        binary = self.stmt.options.binary
        oids = self.oids
        for row in rows:
            try:
                params = tuple(
                    t.decode_param(v, oid, binary) for v, oid in zip(row.values, oids, strict=True)
                )
            except t.BadParameter as e:
                raise self._bad_value(row, str(e)) from e
            self.statements.append(Statement(sql=self.sql, bindings=params, grant=self.grant))
            self.lines.append(row.line)
        if len(self.statements) >= CHUNK_ROWS or self.size - self.flushed_at >= CHUNK_BYTES:
            await self._flush()

    def _bad_value(self, row: CopyRow, message: str) -> CopyError:
        """The first value of ``row`` that does not parse as its column's type, named as PostgreSQL does."""
        binary = self.stmt.options.binary
        for name, value, oid in zip(self.names, row.values, self.oids, strict=True):
            try:
                t.decode_param(value, oid, binary)
            except t.BadParameter as e:
                shown = "" if binary or value is None else f': "{value.decode("utf-8", "replace")[:60]}"'
                return CopyError(e.sqlstate, str(e), context=f"line {row.line}, column {name}{shown}")
        return CopyError("22P02", message, context=f"line {row.line}")

    async def _writer(self) -> WriteTransaction:
        """The transaction chunks run in: the session's inside a block (within a savepoint), else our own."""
        if self.tx is not None:
            return self.tx
        s = self.session
        try:
            if s.in_block:
                tx = s.tx
                if tx is None:  # the block's first write takes the writer, as in SessionState._run_query
                    tx = await self.db.begin()
                    for name in s.block.took_writer(tx):
                        tx.savepoint(name)
                tx.savepoint(SAVEPOINT)
                self.tx = tx
            else:
                self.tx = await self.db.begin()
                self.owned = True
        except HAError as e:
            raise CopyError(sqlstate(e), e.message, hint=e.hint) from e
        return self.tx

    async def _flush(self) -> None:
        self.flushed_at = self.size
        if not self.statements:
            return
        tx = await self._writer()
        try:
            await tx.run(self.statements)
        except HAError as e:
            raise self._error(e) from e
        self.count += len(self.statements)
        self.statements.clear()
        self.lines.clear()

    async def _finish(self) -> None:
        s = self.session
        if self.tx is None and not s.in_block:  # all in one chunk: one request, like any autocommit write
            if not self.statements:
                return
            try:
                _, seq = await self.db.execute(self.statements)
            except ReplicationPending as e:
                seq = None
                s.notice(e.message)  # committed here, published later: not an error
            except HAError as e:
                raise self._error(e) from e
            self.count += len(self.statements)
            self._written(seq)
            return
        await self._flush()
        tx, self.tx = self.tx, None
        if tx is None:
            return
        if not self.owned:
            try:
                tx.release(SAVEPOINT)
            except HAError as e:
                raise self._error(e) from e
            return
        try:
            _, seq = await self.db.commit(tx)
        except ReplicationPending as e:
            seq = None
            s.notice(e.message)
        except HAError as e:
            tx.rollback()
            raise self._error(e) from e
        self._written(seq)

    def _written(self, seq: int | None) -> None:
        s = self.session
        if seq is not None:
            s.last_seq = seq
            if s.forwarded_by is not None:
                forwarded.report_seq(s, seq)

    def _abandon(self) -> None:
        """Undo everything this COPY wrote; the writer goes back unless the session's block holds it."""
        tx, self.tx = self.tx, None
        if tx is None:
            return
        if self.owned:
            tx.rollback()
            return
        try:
            tx.rollback_to(SAVEPOINT)
            tx.release(SAVEPOINT)
        except HAError:
            pass  # the transaction is gone already (SQLite rolled it back): the block is failed anyway

    def _error(self, e: HAError) -> CopyError:
        """A database error, with the input line of the row that caused it."""
        line = None
        if isinstance(e, SQLError) and e.index is not None and e.index < len(self.lines):
            line = self.lines[e.index]
        message = _STATEMENT_PREFIX.sub("", e.message)
        return CopyError(sqlstate(e), message, context=f"line {line}" if line else None, hint=e.hint)
