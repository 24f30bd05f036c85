"""Result column names as PostgreSQL gives them.

SQLite names an unaliased expression by its text (``count(*)``, ``a + b``, ``1``); PostgreSQL names a
function call by the function (``count``), a CASE ``case``, EXISTS ``exists``, and any other expression
``?column?``. Clients read columns by name (psycopg's ``dict_row``, asyncpg's ``Record['count']``, pandas),
so the names have to match. Column references and aliases keep their names, as in both.
"""

from __future__ import annotations

import re

from sqlite_ha.server.pgwire.sql.translation import NOW_SQL

_IDENTIFIER = re.compile(r"[^\W\d][\w$]*")
_CALL = re.compile(r"(?:[^\W\d][\w$]*\s*\.\s*)?([^\W\d][\w$]*)\s*\(", re.S)
_KEYWORD = re.compile(r"(CASE|EXISTS)\b", re.I)
_CAST_OF_COLUMN = re.compile(r"\s*([^\W\d][\w$]*)\s+AS\s", re.I)
_SQL_VALUES = {"CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP"}
# what the catalog calls them
_RENAMED = {f"pg_{name}": name for name in ("version", "current_user", "session_user", "current_role")}
_TRANSLATED = {NOW_SQL: "now"}  # what dialect makes of now(): named after the original
# the dialect's casts to date/time types and numeric (sqlite_ha.db.functions) → PostgreSQL's type name
_CASTS = {
    "pg_timestamp": "timestamp",
    "pg_timestamptz": "timestamptz",
    "pg_date": "date",
    "pg_time": "time",
    "pg_timetz": "timetz",
    "pg_bool": "bool",
    "pg_numeric": "numeric",
}
_ARGUMENT_COLUMN = re.compile(
    r"\s*(?:[^\W\d][\w$]*\s*\.\s*)?([^\W\d][\w$]*)\s*[,)]"
)  # what dialect makes of now(): named after the original


def pg_column_name(name: str, sql: str) -> str:
    """PostgreSQL's name for a result column SQLite named ``name``, in the statement ``sql``."""
    if name.upper() in _SQL_VALUES and f'"{name}"' not in sql:
        return name.lower()  # CURRENT_DATE and the like: keywords, named in lower case
    if _IDENTIFIER.fullmatch(name) or f'"{name}"' in sql:
        return name  # a column, or an alias (one that is not an identifier has to be quoted)
    text = name.strip()
    if text in _TRANSLATED:
        return _TRANSLATED[text]
    call = _CALL.match(text)
    if call is not None and _closes_at_end(text, call.end() - 1):
        function = call.group(1).lower()
        if function in _CASTS:  # a cast the dialect made a call: named after the column, else the type
            column = _ARGUMENT_COLUMN.match(text, call.end())
            return column.group(1) if column is not None else _CASTS[function]
        if function != "cast":
            return _RENAMED.get(function, function)
        column = _CAST_OF_COLUMN.match(text, call.end())
        return column.group(1) if column is not None else "?column?"  # PostgreSQL: the type name, rarely read
    keyword = _KEYWORD.match(text)
    return keyword.group(1).lower() if keyword is not None else "?column?"


def _closes_at_end(text: str, opening: int) -> bool:
    """Whether the parenthesis at ``opening`` closes at the very end of ``text`` (strings skipped)."""
    depth, quote = 0, ""
    for i in range(opening, len(text)):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i == len(text) - 1
    return False
