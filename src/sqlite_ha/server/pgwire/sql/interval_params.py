"""``x ± $n`` where the client declared ``$n`` an interval (psycopg and asyncpg send a ``timedelta`` as
one): SQLite would subtract the interval's text as a number (``'2024-01-02 …' - '1 day'`` is ``2023``), a
wrong value. The translation cannot tell, because the parameter's type arrives with Parse, not in the SQL
text; so the session passes the types here and such arithmetic becomes ``pg_interval_add(x, ?n, ±1)``
(``types/interval.py``: timestamps, dates, times and intervals, to the microsecond), with ``'time'`` as a
fourth argument where ``x`` is a time of day (a ``time`` column, a cast to time, a time parameter), whose
text cannot be told from an interval's. Only statements with an interval parameter pay for the parse.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import sqlglot
from sqlglot import exp

from sqlite_ha.server.pgwire.sql.trees import call, is_call
from sqlite_ha.server.pgwire.types import values as t

INTERVAL_OID = 1186
_ARITHMETIC_PARAM = re.compile(r"[-+]\s*\?\d+|\?\d+\s*\+")


def rewrite(sql: str, param_oids: list[int], table_types: Callable[[str], dict[str, str]]) -> str:
    """``sql`` with the arithmetic on interval parameters made ``pg_interval_add``; as is without any.
    ``table_types`` gives the declared column types of a table (to tell a time column)."""
    if INTERVAL_OID not in param_oids or _ARITHMETIC_PARAM.search(sql) is None:
        return sql
    numbers = frozenset(i + 1 for i, oid in enumerate(param_oids) if oid == INTERVAL_OID)
    times = frozenset(i + 1 for i, oid in enumerate(param_oids) if oid == t.TIME)
    return _rewrite(sql, numbers, times, table_types)


def _rewrite(
    sql: str, numbers: frozenset[int], times: frozenset[int], table_types: Callable[[str], dict[str, str]]
) -> str:
    marked = re.sub(r"\?(\d+)", r":p\1", sql)  # sqlglot reads ?NNN as a bare ?: keep the numbers
    try:
        trees = sqlglot.parse(marked, read="sqlite")
    except sqlglot.errors.SqlglotError:
        return sql
    changed = False

    def is_interval(node: exp.Expr) -> bool:
        return isinstance(node, exp.Placeholder) and node.name[1:].isdigit() and int(node.name[1:]) in numbers

    def adding(base: exp.Expr, interval: exp.Expr, sign: int, columns: dict[str, str]) -> exp.Expr:
        is_time = (
            is_call(base, "pg_time")
            or (isinstance(base, exp.Placeholder) and base.name[1:].isdigit() and int(base.name[1:]) in times)
            or (isinstance(base, exp.Column) and t.oid_for_declared(columns.get(base.name.lower())) == t.TIME)
        )
        kind = [exp.Literal.string("time")] if is_time else []
        return call("pg_interval_add", base, interval, exp.Literal.number(sign), *kind)

    out = []
    for tree in trees:
        if tree is None:
            continue
        columns: dict[str, str] = {}
        for table in tree.find_all(exp.Table):
            columns.update(table_types(table.name))
        for node in list(tree.find_all(exp.Add, exp.Sub)):
            left, right = node.this, node.expression
            if is_interval(right):
                node.replace(adding(left, right, -1 if isinstance(node, exp.Sub) else 1, columns))
                changed = True
            elif isinstance(node, exp.Add) and is_interval(left):
                node.replace(adding(right, left, 1, columns))
                changed = True
        out.append(tree.sql(dialect="sqlite"))
    if not changed:
        return sql
    return re.sub(r":p(\d+)", r"?\1", "; ".join(out))
