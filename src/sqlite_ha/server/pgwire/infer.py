"""Parameter types for ParameterDescription, read off the statement: asyncpg encodes every argument strictly
by the type the server announces, so ``WHERE id = $1`` must announce the type of ``id``, not text.

A statement's text is enough for the shapes clients and ORMs send: ``INSERT INTO t(a, b) VALUES (?1, ?2)``,
``col <op> ?n`` (and ``?n <op> col``), ``SET col = ?n``, ``LIMIT ?n`` / ``OFFSET ?n``. The column's declared
type comes from the tables the statement names; a parameter found nowhere is announced as text.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_NAME = r'(?:"(?:[^"]|"")+"|\[[^\]]+\]|`[^`]+`|[A-Za-z_][\w$]*)'
_TABLES = re.compile(rf"\b(?:from|join|into|update)\s+(?:{_NAME}\s*\.\s*)?({_NAME})", re.I)
_INSERT = re.compile(
    rf"\binsert\s+(?:or\s+\w+\s+)?into\s+(?:{_NAME}\s*\.\s*)?({_NAME})\s*\(([^)]*)\)\s*values\s*\(", re.I
)
_COMPARE_LEFT = re.compile(
    rf"(?:{_NAME}\s*\.\s*)?({_NAME})\s*(?:=|==|<>|!=|<=|>=|<|>|\blike\b|\bis\b)\s*\?(\d+)", re.I
)
_COMPARE_RIGHT = re.compile(rf"\?(\d+)\s*(?:=|==|<>|!=|<=|>=|<|>)\s*(?:{_NAME}\s*\.\s*)?({_NAME})", re.I)
_LIMIT = re.compile(r"\b(?:limit|offset)\s+\?(\d+)", re.I)
_IN = re.compile(rf"(?:{_NAME}\s*\.\s*)?({_NAME})\s+(?:not\s+)?in\s*\(([^()]*)\)", re.I)


def _unquote(name: str) -> str:
    if name[:1] in '"[`':
        return name[1:-1].replace('""', '"')
    return name


def infer(sql: str, count: int, table_types: Callable[[str], dict[str, str]]) -> list[str | None]:
    """Declared types for parameters ``?1``..``?count`` (None where the statement does not say)."""
    out: list[str | None] = [None] * count
    if not count:
        return out
    tables = list(dict.fromkeys(_unquote(m.group(1)) for m in _TABLES.finditer(sql)))
    columns: dict[str, str] = {}
    for table in reversed(tables):  # the first table named wins a clash of column names
        columns.update(table_types(table))

    def put(index: str, column: str) -> None:
        i = int(index) - 1
        decl = columns.get(_unquote(column).lower())
        if 0 <= i < count and out[i] is None and decl:
            out[i] = decl

    for m in _INSERT.finditer(sql):
        names = [c.strip() for c in m.group(2).split(",")]
        rest = sql[m.end() :]
        values = rest.split(")", 1)[0].split(",")
        for name, value in zip(names, values, strict=False):
            param = re.fullmatch(r"\s*\?(\d+)\s*", value)
            if param:
                put(param.group(1), name)
    for m in _COMPARE_LEFT.finditer(sql):
        put(m.group(2), m.group(1))
    for m in _COMPARE_RIGHT.finditer(sql):
        put(m.group(1), m.group(2))
    for m in _IN.finditer(sql):
        for param in re.findall(r"\?(\d+)", m.group(2)):
            put(param, m.group(1))
    for m in _LIMIT.finditer(sql):
        i = int(m.group(1)) - 1
        if 0 <= i < count and out[i] is None:
            out[i] = "BIGINT"
    return out
