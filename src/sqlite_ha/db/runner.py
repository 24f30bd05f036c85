"""Run one client statement on a connection and collect its result.

Whether a statement returns rows is read from the prepared statement (apsw's exec trace fires after prepare
and before the first step), never guessed from the SQL text.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import apsw

from sqlite_ha.db.statement import Result, Statement
from sqlite_ha.errors import BadRequest, HAError

# Clients' statements are prepared with this flag, a harmless planner hint (no lookaside memory for a
# statement kept long, which a cached one is). apsw's statement cache is keyed by text and flags, and SQLite
# asks the authorizer only when it prepares: without it, a client sending the exact text of a statement the
# node prepared for itself (the authorizer off: an INSERT into an internal table) would reuse it unchecked.
CLIENT_PREPARE = apsw.SQLITE_PREPARE_PERSISTENT


class ResultTooLarge(HAError):
    code = "result_too_large"


def too_many_rows() -> ResultTooLarge:
    return ResultTooLarge(
        "the result has more rows than --max-result-rows allows",
        hint="add LIMIT, or page through the rows with WHERE on a key",
    )


def too_many_bytes(limit: int) -> ResultTooLarge:
    return ResultTooLarge(
        f"the result is larger than --max-result-bytes ({limit} bytes)",
        hint="select fewer or smaller columns, add LIMIT, or page through the rows with WHERE on a key",
        limit=limit,
    )


class QueryTimeout(HAError):
    code = "query_timeout"


@dataclass(frozen=True, kw_only=True)
class Limits:
    max_rows: int = 500_000
    max_bytes: int = 128 * 1024 * 1024  # the values of one request's rows, counted as they are stepped
    timeout: float = 30.0  # seconds a single request may keep SQLite busy
    inline_budget: float = 0.05  # seconds a request may run on the event loop before moving to a thread


P = ParamSpec("P")
T = TypeVar("T")


async def on_thread(
    executor: Executor,
    conn: apsw.Connection,
    deadline: Deadline,
    fn: Callable[P, T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run ``fn`` (which uses ``conn``, guarded by ``deadline``) on a worker thread; if the caller is
    cancelled, stop it there too.

    Cancelling the awaiting task does not stop a thread: a cancelled slow query would keep its worker and
    its connection busy until the query timeout, and the connection could be handed to the next request
    while the thread still runs on it. So the running statement is interrupted and any later one is refused
    (``Deadline.stop``: an interrupt between two statements would be lost), and the cancellation goes on only
    once the thread has let go of the connection, which is at once.
    """
    job = executor.submit(fn, *args, **kwargs)
    try:
        return await asyncio.wrap_future(job)
    except asyncio.CancelledError:
        deadline.stop()
        conn.interrupt()
        try:
            while not job.done():
                waiter = asyncio.wrap_future(job)
                waiter.add_done_callback(_retrieve)
                try:
                    await asyncio.wait([waiter])
                except asyncio.CancelledError:
                    continue  # cancelled again: the connection still has to be let go of first
        finally:
            deadline.release()
        raise


def _retrieve(future: asyncio.Future[Any]) -> None:
    """The outcome of an abandoned job is of no interest, but must not be logged as never retrieved."""
    if not future.cancelled():
        future.exception()


class Budget:
    """What a request's results may still hold: rows and bytes, taken row by row as SQLite steps them, so
    that an oversized result is refused when it passes the limit, not once it sits whole in memory.

    A value counts its length (text, blob) or 8 (a number, NULL): close to what it costs here and in the
    answer, and cheap enough for every row of every read (``collect`` counts inline: a method call per row
    would cost more than the count).
    """

    __slots__ = ("bytes", "max_bytes", "rows")

    def __init__(self, limits: Limits) -> None:
        self.rows = limits.max_rows
        self.bytes = limits.max_bytes
        self.max_bytes = limits.max_bytes


def collect(cursor: apsw.Cursor, budget: Budget) -> list[Any]:
    """The rows of ``cursor``, each taken from ``budget`` as SQLite steps it (``run_statement`` counts the
    same way)."""
    rows: list[Any] = []
    append = rows.append
    left_rows, left_bytes = budget.rows, budget.bytes
    try:
        for row in cursor:
            left_rows -= 1
            if left_rows < 0:
                raise too_many_rows()
            for value in row:
                kind = type(value)
                left_bytes -= len(value) if kind is str or kind is bytes else 8
            if left_bytes < 0:
                raise too_many_bytes(budget.max_bytes)
            append(row)
    finally:
        budget.rows, budget.bytes = left_rows, left_bytes
    return rows


class Deadline:
    """Progress handler that interrupts a statement running past its deadline.

    Installed once per connection; ``arm`` before each request. The check runs every ``STEPS`` virtual machine
    instructions, so its cost does not show on point queries.
    """

    STEPS = 4000

    def __init__(self) -> None:
        self.at = float("inf")
        self.fired = False
        self.stopped = False  # the caller gave up: end whatever runs, whatever ``arm`` says, until release

    def stop(self) -> None:
        self.stopped = True

    def release(self) -> None:
        self.stopped = False

    def install(self, conn: apsw.Connection) -> None:
        conn.set_progress_handler(self, self.STEPS)

    def arm(self, seconds: float) -> None:
        self.at = time.monotonic() + seconds if seconds > 0 else float("inf")
        self.fired = False

    def disarm(self) -> None:
        self.at = float("inf")

    def __call__(self) -> bool:
        if self.stopped:
            return True
        if time.monotonic() > self.at:
            self.fired = True
            return True
        return False


def prepared_columns(
    conn: apsw.Connection, sql: str, params: int, *, prepare_flags: int = 0
) -> list[tuple[str, str | None]]:
    """The result columns (name, declared type) of ``sql``'s first statement without running it: SQLite
    prepares it and the execution trace stops it before the first step (parameters bound as NULL). SQLite's
    errors propagate."""
    seen: list[list[tuple[str, str | None]]] = []

    def trace(cursor: apsw.Cursor, text: str, bindings: Any) -> bool:
        seen.append([(str(d[0]), d[1]) for d in cursor.description])
        return False

    cur = conn.cursor()
    cur.exec_trace = trace
    try:
        cur.execute(sql, (None,) * params if params else None, prepare_flags=prepare_flags)
    except apsw.ExecTraceAbort:
        pass
    finally:
        cur.close(True)
    return seen[0] if seen else []


def run_statement(
    conn: apsw.Connection,
    stmt: Statement,
    budget: Budget,
    on_statement: Callable[[apsw.Cursor, str], None] | None = None,
) -> Result:
    """Execute ``stmt`` (which may hold several SQL statements: the last one's result is returned), its
    rows taken from ``budget`` (shared by the request's statements).

    Raises apsw errors untranslated: the caller knows the statement's index and translates.
    """
    results: list[Result] = []
    dml: list[bool] = []  # per result: whether its statement is an INSERT, UPDATE or DELETE

    def trace(cursor: apsw.Cursor, sql: str, bindings: Any) -> bool:
        if results and not results[-1].columns:
            _finish_exec(conn, results[-1], dml[-1])
        if on_statement is not None:
            on_statement(cursor, sql)
        desc = cursor.description
        results.append(Result(columns=[d[0] for d in desc], types=[d[1] for d in desc]))
        dml.append(not desc and changes_rows(sql))
        return True

    cur = conn.cursor()
    cur.exec_trace = trace
    try:
        cur.execute(stmt.sql, stmt.bindings, prepare_flags=CLIENT_PREPARE)
        left_rows, left_bytes = budget.rows, budget.bytes
        typed = 0  # results whose column types were read once their statement ran
        try:
            for row in cur:  # ``results[-1]``: a statement after the first one (same SQL) adds a result
                if typed != len(results):
                    # Its first row: SQLite has run the statement, and one prepared before a schema change
                    # (apsw's cache) was prepared again. The types the trace saw may be the old table's, and
                    # ``description`` keeps them; ``description_full`` reads them anew. So with the names: a
                    # view replaced (``CREATE OR REPLACE VIEW``) may have other columns than the old one.
                    typed = len(results)
                    full = cur.description_full
                    results[-1].columns = [d[0] for d in full]
                    results[-1].types = [d[1] for d in full]
                left_rows -= 1
                if left_rows < 0:
                    raise too_many_rows()
                for value in row:
                    kind = type(value)
                    left_bytes -= len(value) if kind is str or kind is bytes else 8
                if left_bytes < 0:
                    raise too_many_bytes(budget.max_bytes)
                results[-1].rows.append(row)
        finally:
            budget.rows, budget.bytes = left_rows, left_bytes
    except BaseException:
        cur.close(True)  # finalize now, so the transaction can roll back with no statement pending
        raise
    if not results:
        raise BadRequest("the statement is empty")
    if not results[-1].columns:
        _finish_exec(conn, results[-1], dml[-1])
    return results[-1]


def _finish_exec(conn: apsw.Connection, result: Result, dml: bool) -> None:
    """``rows_affected``: SQLite's count of the rows the statement changed, for an INSERT, UPDATE or DELETE;
    0 for any other statement, for which SQLite keeps the count of an earlier statement (``changes()`` is
    not reset by DDL, pragmas or ANALYZE; a DROP TABLE deleting rows does not count them either).
    ``last_insert_id``: SQLite's last_insert_rowid(), which every request starts at 0 (``Database``), so it
    is the rowid of the latest row this request inserted, or 0, never one inserted by another client."""
    result.rows_affected = conn.changes() if dml else 0
    result.last_insert_id = conn.last_insert_rowid()


_TOKEN = re.compile(
    r"""\s+|--[^\n]*|/\*.*?(?:\*/|$)|'(?:[^']|'')*'?|"(?:[^"]|"")*"?|`[^`]*`?|\[[^\]]*\]?|[()]|[\w$]+|.""",
    re.DOTALL,
)
_DML = frozenset({"INSERT", "REPLACE", "UPDATE", "DELETE"})
_MAIN_VERBS = _DML | {"SELECT", "VALUES"}


@functools.lru_cache(maxsize=4096)
def changes_rows(sql: str) -> bool:
    """Whether one SQL statement is an INSERT, REPLACE, UPDATE or DELETE (also after a WITH clause): the
    statements SQLite counts the changed rows of."""
    depth = 0
    leading = True
    for m in _TOKEN.finditer(sql):
        token = m.group()
        if token[0].isspace() or token.startswith(("--", "/*")):
            continue
        word = token.upper()
        if leading:
            if word != "WITH":
                return word in _DML
            leading = False
        elif token == "(":
            depth += 1
        elif token == ")":
            depth -= 1
        elif depth == 0 and word in _MAIN_VERBS:
            return word in _DML
    return False
