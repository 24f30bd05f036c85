"""Clauses PostgreSQL has and SQLite spells otherwise or lacks: ``FETCH … WITH TIES``, the collations
``"C"`` and ``"POSIX"``, ``INCLUDE (…)`` of an index.

Each is translated so that the answer is PostgreSQL's, or refused: sqlglot would print ``FETCH FIRST 2 ROWS
WITH TIES`` as ``LIMIT 2`` (the ties silently dropped), and SQLite knows no collation named ``POSIX``.
"""

from __future__ import annotations

from sqlglot import exp

from sqlite_ha.server.pgwire.sql.translation import TranslationError
from sqlite_ha.server.pgwire.sql.trees import RewriteContext

# C and POSIX order strings by their bytes, which is what SQLite's BINARY collation does (UTF-8 sorts as
# its code points): the default collation of a database made with initdb --locale=C.
_BYTE_ORDER = {"c", "posix", "ucs_basic"}


def rewrite_collate(node: exp.Collate, ctx: RewriteContext) -> exp.Expr:
    """``x COLLATE "C"`` / ``"POSIX"`` → ``x COLLATE BINARY`` (SQLite's own, in C); other collations are left
    to SQLite (which knows BINARY, NOCASE and RTRIM) and refused by it when unknown. A column declared
    ``COLLATE "C"`` keeps the name (the catalog shows it): every connection has collations of these names
    (``sqlite_ha.db.functions``)."""
    name = node.expression
    if isinstance(name, exp.Identifier | exp.Var) and name.name.lower() in _BYTE_ORDER:
        node.set("expression", exp.Var(this="BINARY"))
    return node


def rewrite_with_ties(node: exp.Select, ctx: RewriteContext) -> exp.Expr:
    """``ORDER BY k … [OFFSET m] FETCH FIRST n ROWS WITH TIES``: the rows up to the n-th after the offset,
    and those that tie with it on ``k``.

    A row ties with the (m + n)-th exactly when its rank over ``k`` (``rank()``: one plus the rows before
    it) is at most m + n, so the statement becomes ``LIMIT (SELECT count(*) FROM (SELECT rank() OVER
    (ORDER BY k) AS r FROM <the same FROM, WHERE, GROUP BY>) WHERE r <= m + n) - m OFFSET m``: same rows,
    same order, one more scan of the query's source."""
    fetch = node.args.get("limit")
    if not isinstance(fetch, exp.Fetch):
        return node
    options = fetch.args.get("limit_options")
    if not (isinstance(options, exp.LimitOptions) and options.args.get("with_ties")):
        return node
    order = node.args.get("order")
    if not isinstance(order, exp.Order) or not order.expressions:
        raise TranslationError("WITH TIES cannot be specified without ORDER BY clause", sqlstate="42601")
    if node.args.get("distinct") is not None:
        raise TranslationError("FETCH … WITH TIES with DISTINCT is not supported", sqlstate="0A000")
    count = fetch.args.get("count") or exp.Literal.number(1)
    offset_node = node.args.get("offset")
    offset = offset_node.expression if isinstance(offset_node, exp.Offset) else exp.Literal.number(0)
    keys = [_resolved(key.copy(), node) for key in order.expressions]
    ranked = node.copy()
    for part in ("limit", "offset", "order"):
        ranked.set(part, None)
    rank = exp.Window(this=exp.Anonymous(this="rank", expressions=[]), order=exp.Order(expressions=keys))
    ranked.set("expressions", [exp.alias_(rank, "_pg_rank")])
    bound = exp.Add(this=exp.Paren(this=offset.copy()), expression=exp.Paren(this=count.copy()))
    counted = (
        exp.select(exp.Count(this=exp.Star()))
        .from_(exp.Subquery(this=ranked, alias=exp.TableAlias(this=exp.to_identifier("_pg_ranked"))))
        .where(exp.LTE(this=exp.column("_pg_rank"), expression=bound))
    )
    limit = exp.Sub(this=exp.Subquery(this=counted), expression=exp.Paren(this=offset.copy()))
    node.set("limit", exp.Limit(expression=limit))
    return node


def _resolved(key: exp.Ordered, select: exp.Select) -> exp.Ordered:
    """An ORDER BY key with a select alias or an ordinal (``ORDER BY 2``) replaced by what it names, so that
    it means the same inside ``rank() OVER (ORDER BY …)``, where aliases are not visible."""
    value = key.this
    outputs = select.expressions
    if isinstance(value, exp.Literal) and not value.is_string and value.name.isdigit():
        i = int(value.name) - 1
        if 0 <= i < len(outputs):
            key.set("this", outputs[i].unalias().copy())
    elif isinstance(value, exp.Column) and not value.table:
        for output in outputs:
            if isinstance(output, exp.Alias) and output.alias == value.name:
                key.set("this", output.this.copy())
                break
    return key


def refuse_no_columns(node: exp.Create, ctx: RewriteContext) -> exp.Expr:
    """``CREATE TABLE t ()``: PostgreSQL allows a table without columns, SQLite does not. A hidden stand-in
    column would show in ``SELECT *`` and in every view over the table, so the table is refused."""
    schema = node.this
    if (
        node.kind == "TABLE"
        and isinstance(schema, exp.Schema)
        and not schema.expressions
        and node.args.get("expression") is None
    ):
        raise TranslationError(
            "a table without columns is not supported (a SQLite table has at least one column)",
            sqlstate="0A000",
        )
    return node


def drop_include(node: exp.IndexParameters) -> None:
    """``CREATE [UNIQUE] INDEX … INCLUDE (c, …)``: SQLite has no columns stored in an index without being
    part of its key. The index is made without them: it finds the same rows (only a covering read of the
    INCLUDE columns is lost), and a UNIQUE index stays unique on its key columns alone, as in PostgreSQL."""
    node.set("include", None)


_EXACT_DIGITS = 15  # what a double holds exactly (types/numeric.py)


def check_numeric_literal(node: exp.Literal, ctx: RewriteContext) -> exp.Expr:
    """A number written in the SQL with more significant digits than a double holds (``5.0279727992133166``,
    an integer beyond 64 bits): PostgreSQL reads it as an exact numeric, SQLite would round it to a float
    without a word. Refused with 22003, as a numeric parameter with as many digits is."""
    if node.is_string:
        return node
    text = node.name
    if "." not in text and "e" not in text.lower() and abs(int(text)) < 2**63:
        return node  # an integer SQLite keeps exactly
    digits = text.lower().split("e")[0].replace(".", "").lstrip("0").rstrip("0")
    if len(digits) > _EXACT_DIGITS:
        raise TranslationError(
            f'numeric value "{text[:60]}" cannot be stored exactly (sqlite-ha computes a numeric as a double:'
            " up to 15 significant digits are exact)",
            sqlstate="22003",
        )
    return node


def rewrite_set_operation(node: exp.SetOperation, ctx: RewriteContext) -> exp.Expr:
    """``(SELECT … ORDER BY … LIMIT n) UNION (SELECT …)``: SQLite takes no parentheses around the members of
    a compound select, and no ORDER BY or LIMIT inside one. A member with its own ORDER BY, LIMIT or OFFSET
    becomes ``SELECT * FROM (…)``, which keeps its rows; the parentheses of any other are dropped."""
    for part in ("this", "expression"):
        member = node.args.get(part)
        if not isinstance(member, exp.Subquery) or member.args.get("alias") is not None:
            continue
        inner = member.this
        if isinstance(inner, exp.Select) and any(inner.args.get(k) for k in ("order", "limit", "offset")):
            alias = exp.TableAlias(this=exp.to_identifier(f"_pg_member_{part}"))
            node.set(part, exp.select("*").from_(exp.Subquery(this=inner, alias=alias)))
        elif isinstance(inner, exp.Select | exp.SetOperation):
            node.set(part, inner)
    return node


def replace_view(tree: exp.Create) -> list[exp.Expr] | None:
    """``CREATE OR REPLACE VIEW v AS …``: SQLite has no OR REPLACE, so ``DROP VIEW IF EXISTS v`` then
    ``CREATE VIEW v AS …``, in one statement's run (views over ``v`` read it by name, so they see the new
    one). Its comments stay, as PostgreSQL keeps them on a replaced view. None for anything else."""
    if not tree.args.get("replace") or str(tree.args.get("kind") or "").upper() != "VIEW":
        return None
    if tree.args.get("materialized") or isinstance(tree.this, exp.Schema):
        return None  # a column list (v (a, b)) or a materialized view: left to SQLite's own refusal
    tree.set("replace", False)
    drop = exp.Drop(tables=[tree.this.copy()], kind="VIEW", exists=True)
    return [drop, tree]
