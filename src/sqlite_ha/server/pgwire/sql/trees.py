"""What the rewrites of ``rewrites`` and ``casts`` share: the context of one translation, and small helpers
that build SQLite expressions (a call, a template with its holes filled)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import sqlglot
from sqlglot import exp


@dataclass
class RewriteContext:
    """What a rewrite learns while walking one query string."""

    highest: int = 0
    param_types: dict[int, str] = field(default_factory=dict)
    # a catalog query: casts to the reg* types become lookups by the catalog's functions
    catalog: bool = False
    locks: bool = False  # a FOR UPDATE / FOR SHARE was dropped


@functools.cache
def template_tree(sql: str) -> exp.Expr:
    return sqlglot.parse_one(sql, read="sqlite")


def fill(template: str, **args: exp.Expr) -> exp.Expr:
    """A SQLite expression from a template whose columns ``_x_`` (etc.) are replaced by ``args``."""
    tree = template_tree(template).copy()
    for column in list(tree.find_all(exp.Column)):
        if column.name in args:
            column.replace(args[column.name].copy())
    return tree


def call(name: str, *args: exp.Expr | str) -> exp.Anonymous:
    values = [exp.Literal.string(a) if isinstance(a, str) else a for a in args]
    return exp.Anonymous(this=name, expressions=values)


def is_call(node: exp.Expr, name: str) -> bool:
    return isinstance(node, exp.Anonymous) and node.name.lower() == name


def param_number(node: exp.Expr) -> int | None:
    if isinstance(node, exp.Var) and node.name.startswith("?") and node.name[1:].isdigit():
        return int(node.name[1:])
    return None
