"""SQL cursors: ``DECLARE … CURSOR [WITH HOLD] FOR …``, ``FETCH``, ``MOVE``, ``CLOSE``, and ``pg_cursors``.

Django's ``QuerySet.iterator()`` and psycopg's named (server-side) cursors use them: psycopg sends
``DECLARE "name" NO SCROLL CURSOR WITH HOLD FOR …`` (WITHOUT HOLD inside a transaction), then a Describe of
the
*portal* of that name, then ``FETCH FORWARD n FROM "name"`` until fewer than n rows come, then ``CLOSE``. So a
cursor is a portal of the session, in the same namespace as the extended protocol's portals, as in PostgreSQL.

A cursor's rows are those of its query as of DECLARE: the query runs at DECLARE, on the reader (or on the
block's own writer connection, seeing the block's writes), and FETCH hands them out. That is what
PostgreSQL's cursors show too (a cursor sees the snapshot of its DECLARE, never later changes), and it means a
cursor holds nothing of the database while it is open: no read snapshot that would stop the WAL from being
checkpointed, and no writer, so a WITH HOLD cursor that a client forgets to close blocks no one. The price is
memory: a cursor's result is bounded by ``--max-result-rows``/``--max-result-bytes`` like any result
(``54000`` beyond), and a session may hold at most ``MAX_CURSORS`` cursors.

Lifetimes are PostgreSQL's: DECLARE without HOLD only inside a transaction block (``25P01`` outside), and such
a
cursor ends with the block; a WITH HOLD cursor survives COMMIT, but not the ROLLBACK of the block that
declared it. SCROLL cursors move forward only here (``FETCH BACKWARD``, ``PRIOR``, ``ABSOLUTE``… are
``0A000``).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlite_ha.db.cursor import RowCursor
from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.errors import HAError
from sqlite_ha.server.pgwire.errors import PgError
from sqlite_ha.server.pgwire.prepared import Outcome, Portal, Prepared
from sqlite_ha.server.pgwire.prepared import formats as _formats
from sqlite_ha.server.pgwire.types import values as t

if TYPE_CHECKING:
    from sqlite_ha.server.pgwire.state import SessionState

KINDS = frozenset({"declare", "fetch", "move", "close", "cursor_exists"})
MAX_CURSORS = 64
MAX_LAZY = 8  # cursors of a session that keep a reader connection (and its snapshot) open

_NAME = r'(?:"((?:[^"]|"")+)"|([A-Za-z_][\w$]*))'
_DECLARE = re.compile(
    rf"^\s*DECLARE\s+{_NAME}\s+((?:(?:BINARY|ASENSITIVE|INSENSITIVE|NO\s+SCROLL|SCROLL)\s+)*)CURSOR\s+"
    r"(?:(WITH|WITHOUT)\s+HOLD\s+)?FOR\s+(.+?)\s*;?\s*$",
    re.I | re.S,
)
_FETCH = re.compile(
    rf"^\s*(FETCH|MOVE)\s+(?:(.*?)\s+)?(?:(?:FROM|IN)\s+)?{_NAME}\s*;?\s*$",
    re.I | re.S,
)
_CLOSE = re.compile(rf"^\s*CLOSE\s+(?:(ALL)|{_NAME})\s*;?\s*$", re.I | re.S)
# psycopg asks whether a cursor it did not declare exists before closing it
_EXISTS = re.compile(
    r"^\s*SELECT\s+1\s+FROM\s+(?:pg_catalog\s*\.\s*)?pg_cursors\s+WHERE\s+name\s*=\s*'((?:[^']|'')*)'\s*;?\s*$",
    re.I | re.S,
)
_QUERY_START = re.compile(r"^\s*\(*\s*(SELECT|VALUES|WITH|TABLE)\b", re.I)


def _name(quoted: str | None, bare: str | None) -> str:
    return quoted.replace('""', '"') if quoted is not None else (bare or "").lower()


def classify(sql: str) -> str | None:
    """``cursor_exists`` for psycopg's ``pg_cursors`` question; None for anything else."""
    return "cursor_exists" if _EXISTS.match(sql) else None


def prepare(session: SessionState, sql: str, kind: str, param_oids: list[int]) -> Prepared:
    """A cursor statement, described: DECLARE takes its query's parameters, FETCH answers the cursor's
    columns (when the cursor exists at Parse), the others no rows."""
    columns: list[t.Column] | None = None
    if kind == "declare":
        found = _DECLARE.match(sql)
        if found is not None:
            inner = session._prepare(found.group(5), param_oids)
            param_oids = inner.param_oids
    elif kind == "fetch":
        found = _FETCH.match(sql)
        if found is not None and found.group(1).upper() == "FETCH":
            portal = session.portals.get(_name(found.group(3), found.group(4)))
            if portal is not None and portal.cursor is not None:
                columns = portal.columns
    elif kind == "cursor_exists":
        columns = [t.Column("?column?", t.INT4, False)]
    return Prepared(sql=sql, kind=kind, run_sql="", param_oids=param_oids, columns=columns)


async def run(session: SessionState, prepared: Prepared, params: tuple[SQLiteValue, ...]) -> Outcome:
    kind = prepared.kind
    if kind == "declare":
        return await _declare(session, prepared.sql, prepared.param_oids, params)
    if kind in ("fetch", "move"):
        return await _fetch(session, prepared.sql)
    if kind == "close":
        return _close(session, prepared.sql)
    found = _EXISTS.match(prepared.sql)
    name = found.group(1).replace("''", "'") if found else ""
    portal = session.portals.get(name)
    rows: list[tuple[SQLiteValue, ...]] = [(1,)] if portal is not None and portal.cursor is not None else []
    return Outcome(f"SELECT {len(rows)}", prepared.columns, rows)


async def _declare(
    session: SessionState, sql: str, param_oids: list[int], params: tuple[SQLiteValue, ...]
) -> Outcome:
    found = _DECLARE.match(sql)
    if found is None:
        raise PgError(
            "42601",
            "cannot read the DECLARE statement",
            hint="DECLARE name [NO SCROLL] CURSOR [WITH HOLD] FOR query",
        )
    name = _name(found.group(1), found.group(2))
    options = found.group(3).upper().split()
    hold = (found.group(4) or "").upper() == "WITH"
    query = found.group(5)
    if not hold and not session.in_block:
        raise PgError("25P01", "DECLARE CURSOR can only be used in transaction blocks")
    if _QUERY_START.match(query) is None:
        raise PgError("42601", "DECLARE CURSOR can only be used with SELECT or VALUES")
    if name in session.portals:
        raise PgError("42P03", f'cursor "{name}" already exists')
    if sum(1 for p in session.portals.values() if p.cursor is not None) >= MAX_CURSORS:
        raise PgError("54000", f"too many open cursors (at most {MAX_CURSORS} a session): close some first")
    inner = session._prepare(query, list(param_oids))
    if session.failed:
        raise PgError(
            "25P02", "current transaction is aborted, commands ignored until end of transaction block"
        )
    lazy = await _open_lazily(session, inner, params)
    if lazy is not None:
        rows, notices, described = None, [], inner.columns or []
    else:
        outcome = await session.run(inner, params)
        rows, notices, described = outcome.rows, outcome.notices, inner.columns or outcome.columns or []
    binary = "BINARY" in options
    codes = _formats([1] if binary else [], len(described))
    portal = Portal(
        prepared=inner,
        params=params,
        result_binary=[1] if binary else [],
        rows=rows,
        columns=[t.Column(c.name, c.oid, fmt == 1) for c, fmt in zip(described, codes, strict=True)],
        tag="",
        cursor="hold" if hold else "block",
        cursor_block=session.in_block,
        lazy=lazy,
    )
    session.portals[name] = portal
    return Outcome("DECLARE CURSOR", notices=notices)


async def _open_lazily(
    session: SessionState, inner: Prepared, params: tuple[SQLiteValue, ...]
) -> RowCursor | None:
    """A cursor read as FETCH asks, on a reader of its own; None where its rows are taken at once instead:
    inside a block holding the writer (the cursor must see the block's writes, which only the writer's
    connection sees), in a REPEATABLE READ or SERIALIZABLE block (it must see the block's snapshot, not one
    of its own), for a catalog query, an in-memory database, or past ``MAX_LAZY`` such cursors."""
    if session.tx is not None or inner.kind != "query" or inner.catalog or inner.explain or not inner.columns:
        return None
    if session.in_block and session.mode.snapshot:
        return None
    if sum(1 for p in session.portals.values() if p.lazy is not None) >= MAX_LAZY:
        return None
    served = session._db()
    if served.db.spec.memory:
        return None
    try:
        if session.read_level == "strong":
            await served.wait_current(session.settings.read_wait)
        if session.min_seq:
            await served.wait_applied(session.min_seq, session.settings.read_wait)
        return await served.db.open_cursor(inner.run_sql, params or None, session.grant(served))
    except HAError as e:
        raise PgError.of(e) from e


def _count(direction: str) -> int | None:
    """How many rows a FETCH direction asks for (None: all of them); forward directions only."""
    words = direction.upper().split()
    if not words or words == ["NEXT"] or words == ["FORWARD"]:
        return 1
    if words in (["ALL"], ["FORWARD", "ALL"]):
        return None
    if words[0] == "FORWARD" and len(words) == 2:
        words = words[1:]
    if len(words) == 1 and re.fullmatch(r"\+?\d+", words[0]):
        return int(words[0])
    raise PgError("0A000", f"FETCH {direction}: cursors move forward only here", hint="use FETCH FORWARD n")


def _cursor(session: SessionState, name: str) -> Portal:
    portal = session.portals.get(name)
    if portal is None or portal.cursor is None:
        raise PgError("34000", f'cursor "{name}" does not exist')
    return portal


async def _fetch(session: SessionState, sql: str) -> Outcome:
    found = _FETCH.match(sql)
    if found is None:
        raise PgError("42601", "cannot read the FETCH statement", hint="FETCH FORWARD n FROM name")
    verb = found.group(1).upper()
    count = _count(found.group(2) or "")
    portal = _cursor(session, _name(found.group(3), found.group(4)))
    if portal.lazy is not None:
        try:
            taken = await portal.lazy.fetch(count)
        except HAError as e:
            raise PgError.of(e) from e
    else:
        rows = portal.rows or []
        end = len(rows) if count is None else min(len(rows), portal.sent + count)
        taken = rows[portal.sent : end]
        portal.sent = end
    if verb == "MOVE":
        return Outcome(f"MOVE {len(taken)}")
    return Outcome(f"FETCH {len(taken)}", portal.columns, taken)


def _close(session: SessionState, sql: str) -> Outcome:
    found = _CLOSE.match(sql)
    if found is None:
        raise PgError("42601", "cannot read the CLOSE statement", hint="CLOSE name, or CLOSE ALL")
    if found.group(1):
        close_all(session)
        return Outcome("CLOSE CURSOR ALL")
    name = _name(found.group(2), found.group(3))
    _cursor(session, name)
    _drop(session, name)
    return Outcome("CLOSE CURSOR")


def _drop(session: SessionState, name: str) -> None:
    portal = session.portals.pop(name, None)
    if portal is not None and portal.lazy is not None:
        portal.lazy.close()


def close_all(session: SessionState) -> None:
    """CLOSE ALL, DISCARD ALL and the session's end: every cursor goes, and its reader with it."""
    for name in [n for n, p in session.portals.items() if p.cursor is not None]:
        _drop(session, name)


def block_ended(session: SessionState, *, committed: bool) -> None:
    """COMMIT or ROLLBACK: cursors without HOLD end; WITH HOLD ones survive a COMMIT (and are the session's
    from then on) but not the ROLLBACK of the block that declared them."""
    for name, portal in list(session.portals.items()):
        if portal.cursor is None:
            continue
        if portal.cursor == "block" or (portal.cursor_block and not committed):
            _drop(session, name)
        else:
            portal.cursor_block = False
