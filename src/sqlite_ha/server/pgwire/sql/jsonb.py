"""jsonb operators and ``AT TIME ZONE``, as Django's PostgreSQL backend (and others) send them.

jsonb is JSON text in SQLite. ``->`` is SQLite's own operator (same meaning); the others become the
functions of ``sqlite_ha.db.jsonb``: ``@>``/``<@`` → ``pg_jsonb_contains``, ``?``/``?|``/``?&`` →
``pg_jsonb_exists[_any|_all]``, ``#>``/``#>>`` → ``pg_jsonb_path[_text]``, ``->>`` → ``pg_jsonb_text(… -> …)``
(PostgreSQL's ``->>`` answers text: ``'true'``, ``'1'``; SQLite's answers 1). Comparisons and ORDER BY of
jsonb values (an operand that is ``->``, ``#>`` or a cast to json/jsonb) get ``COLLATE pg_jsonb``, so they
compare as jsonb does (``'10' > '8'``, objects whatever their key order) and not as text.

``x AT TIME ZONE 'UTC'`` is ``x``: timestamps are stored in UTC, and ``timestamptz AT TIME ZONE 'UTC'`` is
that same wall-clock time (what Django sends for every date lookup and truncation with ``USE_TZ``).
Another zone is refused: a ``timestamp`` and a ``timestamptz`` are the same text here, and the two
directions of the conversion would need to know which one the operand is. A zone given as a parameter (Django
with server-side binding) is checked when the statement runs (``pg_at_utc``).
"""

from __future__ import annotations

from typing import Any

from sqlglot import exp

from sqlite_ha.db.functions import UTC_NAMES
from sqlite_ha.server.pgwire.sql.translation import TranslationError

DType = exp.DataType.Type

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ)


def _is_jsonb(node: exp.Expr) -> bool:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.JSONExtract | exp.JSONBExtract):
        return True
    return isinstance(node, exp.Cast) and node.to.this in (DType.JSON, DType.JSONB)


def _collated(node: exp.Expr) -> exp.Collate:
    inner = node if isinstance(node, exp.Paren) else exp.Paren(this=node)
    return exp.Collate(this=inner, expression=exp.Var(this="pg_jsonb"))


def mark_comparisons(tree: exp.Expr) -> None:
    """``COLLATE pg_jsonb`` on jsonb operands of comparisons, ``IN`` and ORDER BY (before the rewrites,
    while casts to jsonb are still to be seen)."""
    for node in list(tree.find_all(*_COMPARISONS, exp.In, exp.Ordered)):
        if isinstance(node, exp.Ordered | exp.In):
            if _is_jsonb(node.this):
                node.set("this", _collated(node.this))
        elif _is_jsonb(node.this):
            node.set("this", _collated(node.this))
        elif _is_jsonb(node.expression):
            node.set("expression", _collated(node.expression))


def _call(name: str, *args: exp.Expr) -> exp.Anonymous:
    return exp.Anonymous(this=name, expressions=list(args))


def _contains(node: exp.ArrayContainsAll, ctx: Any) -> exp.Expr:
    return _call("pg_jsonb_contains", node.this, node.expression)


def _contained_by(node: exp.ArrayContainedBy, ctx: Any) -> exp.Expr:
    return _call("pg_jsonb_contains", node.expression, node.this)


def _exists(node: exp.JSONBContainsTopKey, ctx: Any) -> exp.Expr:
    return _call("pg_jsonb_exists", node.this, node.expression)


def _exists_any(node: exp.JSONBContainsAnyTopKeys, ctx: Any) -> exp.Expr:
    return _call("pg_jsonb_exists_any", node.this, node.expression)


def _exists_all(node: exp.JSONBContainsAllTopKeys, ctx: Any) -> exp.Expr:
    return _call("pg_jsonb_exists_all", node.this, node.expression)


# The path of ``#>`` is a text-array literal ``'{a,b}'`` or ``ARRAY[…]`` (JSON by then): the function reads
# both.
def _path(node: exp.JSONBExtract, ctx: Any) -> exp.Expr:
    return _call("pg_jsonb_path", node.this, node.expression)


def _path_text(node: exp.JSONBExtractScalar, ctx: Any) -> exp.Expr:
    return _call("pg_jsonb_path_text", node.this, node.expression)


def _text(node: exp.JSONExtractScalar, ctx: Any) -> exp.Expr:
    extract = exp.JSONExtract(this=node.this, expression=node.expression)
    return _call("pg_jsonb_text", extract)


def _at_time_zone(node: exp.AtTimeZone, ctx: Any) -> exp.Expr:
    zone = node.args.get("zone")
    if isinstance(zone, exp.Literal) and zone.is_string and zone.name.strip().lower() in UTC_NAMES:
        return exp.Paren(this=node.this)
    if not isinstance(zone, exp.Literal) and isinstance(zone, exp.Expr):  # a parameter: told at execution
        return _call("pg_at_utc", node.this, zone)
    shown = zone.sql(dialect="postgres") if isinstance(zone, exp.Expr) else "?"
    raise TranslationError(
        f"AT TIME ZONE {shown} is not supported, only 'UTC'",
        hint="timestamps are stored in UTC; with Django, set TIME_ZONE = 'UTC' (USE_TZ = True)",
    )


REWRITES: dict[type[exp.Expr], Any] = {
    exp.ArrayContainsAll: _contains,
    exp.ArrayContainedBy: _contained_by,
    exp.JSONBContainsTopKey: _exists,
    exp.JSONBContainsAnyTopKeys: _exists_any,
    exp.JSONBContainsAllTopKeys: _exists_all,
    exp.JSONBExtract: _path,
    exp.JSONBExtractScalar: _path_text,
    exp.JSONExtractScalar: _text,
    exp.AtTimeZone: _at_time_zone,
}
