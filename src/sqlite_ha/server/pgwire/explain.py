"""``EXPLAIN`` as PostgreSQL clients read it: one text column, ``QUERY PLAN``, a line per plan node.

SQLite's plain EXPLAIN lists virtual-machine instructions, which says nothing to someone asking PostgreSQL
for a plan; its ``EXPLAIN QUERY PLAN`` is the equivalent. Its rows (id, parent, detail) become indented
lines, the children of a node under it with ``->``, as PostgreSQL prints them. ``EXPLAIN ANALYZE`` would run
the statement, which is refused rather than answered with a plan that was not run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.server.pgwire.errors import PgError
from sqlite_ha.server.pgwire.prepared import Prepared
from sqlite_ha.server.pgwire.types import values as t

if TYPE_CHECKING:
    from sqlite_ha.server.pgwire.state import SessionState

COLUMN = "QUERY PLAN"
_EXPLAIN = re.compile(
    r"\s*EXPLAIN\b\s*(?:\((?P<options>[^)]*)\)|(?P<words>(?:(?:ANALY[SZ]E|VERBOSE)\b\s*)*))", re.I | re.S
)
_SQLITE_OWN = re.compile(r"\s*EXPLAIN\s+QUERY\s+PLAN\b", re.I)
_ANALYZE_ON = re.compile(r"\bANALY[SZ]E\b(?!\s+(?:false|off|0)\b)", re.I)


class AnalyzeRefused(ValueError):
    """EXPLAIN ANALYZE: it would run the statement."""


def split(sql: str) -> str | None:
    """The statement a PostgreSQL ``EXPLAIN`` is about, or None when ``sql`` is not one (SQLite's own
    ``EXPLAIN QUERY PLAN`` is left to SQLite)."""
    found = _EXPLAIN.match(sql)
    if found is None or _SQLITE_OWN.match(sql):
        return None
    options = found.group("options") or found.group("words") or ""
    if _ANALYZE_ON.search(options):
        raise AnalyzeRefused(
            "EXPLAIN ANALYZE is not supported: it would run the statement; EXPLAIN shows the plan"
        )
    return sql[found.end() :]


def plan_lines(rows: Sequence[Sequence[SQLiteValue]]) -> list[tuple[SQLiteValue, ...]]:
    """SQLite's ``EXPLAIN QUERY PLAN`` rows (id, parent, notused, detail) as PostgreSQL's lines."""
    depth: dict[int, int] = {0: -1}
    lines: list[tuple[SQLiteValue, ...]] = []
    for row in rows:
        node, parent, detail = int(row[0] or 0), int(row[1] or 0), str(row[3])
        level = depth.get(parent, -1) + 1
        depth[node] = level
        lines.append((detail if level == 0 else " " * (6 * level - 4) + "->  " + detail,))
    return lines


def prepare(
    session: SessionState, sql: str, target_sql: str, param_oids: list[int], *, describe: bool
) -> Prepared:
    """EXPLAIN: the target statement translated as any other, its plan asked of SQLite."""
    target = session._prepare(target_sql, param_oids, describe=False)
    if target.kind != "query" or target.catalog:
        raise PgError("0A000", "EXPLAIN is supported for queries and writes on the database's tables")
    prepared = Prepared(
        sql=sql,
        kind="query",
        run_sql=f"EXPLAIN QUERY PLAN {target.run_sql}",
        param_oids=target.param_oids,
    )
    if describe:
        session._describe_statement(prepared)
    prepared.explain = True
    prepared.columns = [t.Column(COLUMN, t.TEXT, False)]
    return prepared
