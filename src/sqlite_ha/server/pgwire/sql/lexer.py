"""The cheap reading of SQL text that every statement pays, before (and mostly instead of) sqlglot.

One scan finds what is not code (strings, quoted names, dollar quotes, comments) and each top-level ``;``,
so that cutting a simple query into statements, the fast path's search for PostgreSQL-only syntax and the
textual fixes before sqlglot all skip strings and comments the same way. ``classify`` reads only the first
keywords: session commands are answered by the session, never translated.
"""

from __future__ import annotations

import re
from typing import NamedTuple


class Span(NamedTuple):
    """A stretch of text that is not code: ``kind`` is one of ``' E " $`` , ``-`` (a comment) or ``;``."""

    kind: str
    start: int
    end: int
    closed: bool


_SPAN_START = re.compile(r"""['"\-/;$]""")
_DOLLAR_TAG = re.compile(r"\$(?:[^\W\d]\w*)?\$")
_STRING_BODY = re.compile(r"(?:[^']|'')*+'")
_ESCAPE_STRING_BODY = re.compile(r"(?:[^'\\]|\\.|'')*+'", re.S)
_IDENT_BODY = re.compile(r'(?:[^"]|"")*+"')
_BLOCK_COMMENT_TOKENS = re.compile(r"/\*|\*/")


def is_word_char(c: str) -> bool:
    return c != "" and (c.isalnum() or c in "_$")


def _block_comment_end(sql: str, start: int) -> int:
    """PostgreSQL block comments nest; -1 when unterminated."""
    depth = 0
    for m in _BLOCK_COMMENT_TOKENS.finditer(sql, start):
        depth += 1 if m.group() == "/*" else -1
        if depth == 0:
            return m.end()
    return -1


def lex(sql: str) -> list[Span]:
    """The non-code stretches of ``sql``, in order; an unterminated one runs to the end, not closed."""
    spans: list[Span] = []
    pos = 0
    while (m := _SPAN_START.search(sql, pos)) is not None:
        start = m.start()
        c = sql[start]
        if c == ";":
            kind, end = ";", start + 1
        elif c == "'":
            before = sql[start - 2 : start]  # E'…' (not a word ending in e) has backslash escapes
            escaped = before[-1:] in ("e", "E") and (len(before) < 2 or not is_word_char(before[0]))
            body = (_ESCAPE_STRING_BODY if escaped else _STRING_BODY).match(sql, start + 1)
            kind, end = ("E" if escaped else "'"), (body.end() if body else -1)
        elif c == '"':
            body = _IDENT_BODY.match(sql, start + 1)
            kind, end = '"', (body.end() if body else -1)
        elif c == "-" and sql.startswith("--", start):
            newline = sql.find("\n", start)
            kind, end = "-", (len(sql) if newline < 0 else newline + 1)
        elif c == "/" and sql.startswith("/*", start):
            kind, end = "-", _block_comment_end(sql, start)
        elif c == "$" and (tag := _DOLLAR_TAG.match(sql, start)) and not is_word_char(sql[start - 1 : start]):
            close = sql.find(tag.group(), tag.end())
            kind, end = "$", (close + len(tag.group()) if close >= 0 else -1)
        else:  # a minus, a slash, a parameter $n or a $ inside a name
            pos = start + 1
            continue
        closed = end >= 0
        end = end if closed else len(sql)
        spans.append(Span(kind, start, end, closed))
        pos = end
    return spans


def split_statements(sql: str) -> list[str]:
    """Split a simple-query string on top-level ';', dropping pieces that hold only blanks and comments."""
    pieces: list[str] = []
    start = pos = 0
    has_content = False  # the current piece holds more than blanks and comments
    for span in lex(sql):
        if sql[pos : span.start].strip():
            has_content = True
        if span.kind == ";":
            if has_content:
                pieces.append(sql[start : span.start].strip())
            start, has_content = span.end, False
        elif span.kind != "-":
            has_content = True
        pos = span.end
    if has_content or sql[pos:].strip():
        pieces.append(sql[start:].strip())
    return pieces


LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*", re.S)
_SESSION_COMMAND = re.compile(
    r"(?P<rollback_to>ROLLBACK(?:\s+(?:WORK|TRANSACTION))?\s+TO\b)"
    r"|(?P<query>(?:COMMIT|ROLLBACK)\s+PREPARED\b)"
    r"|(?P<begin>BEGIN\b|START\s+TRANSACTION\b)"
    r"|(?P<commit>(?:COMMIT|END)\b)"
    r"|(?P<rollback>(?:ROLLBACK|ABORT)\b)"
    r"|(?P<set>SET\b)|(?P<show>SHOW\b)|(?P<reset>RESET\b)|(?P<savepoint>SAVEPOINT\b)|(?P<release>RELEASE\b)"
    r"|(?P<discard>DISCARD\b)|(?P<listen>LISTEN\b)|(?P<unlisten>UNLISTEN\b)|(?P<close>CLOSE\b)"
    r"|(?P<deallocate>DEALLOCATE\b)|(?P<copy>COPY\b)|(?P<lock>LOCK\b)"
    r"|(?P<declare>DECLARE\b)|(?P<fetch>FETCH\b)|(?P<move>MOVE\b)"
    r"|(?P<enum_type>(?:CREATE|DROP|ALTER)\s+TYPE\b)|(?P<comment>COMMENT\s+ON\b)|(?P<grant>(?:GRANT|REVOKE)\b)"
    r"|(?P<extension>(?:CREATE|DROP)\s+EXTENSION\b)"
    r"|(?P<owner>ALTER\s+(?:TABLE|VIEW|MATERIALIZED\s+VIEW|SEQUENCE|SCHEMA|INDEX|TYPE|DATABASE)\s+"
    r"(?:ONLY\s+)?(?:IF\s+EXISTS\s+)?(?:\"[^\"]*\"|[\w$.])+\s+OWNER\s+TO\b)",
    re.I,
)


def classify(sql: str) -> str:
    """The kind of one statement from its first keywords: a session command's name, else ``"query"``."""
    m = _SESSION_COMMAND.match(sql, _noise_end(sql))
    return m.lastgroup if m is not None and m.lastgroup else "query"


def _noise_end(sql: str) -> int:
    """Where the leading whitespace and comments end; block comments nest, as in PostgreSQL."""
    i, n = 0, len(sql)
    while i < n:
        if sql[i].isspace():
            i += 1
        elif sql.startswith("--", i):
            newline = sql.find("\n", i)
            i = n if newline < 0 else newline + 1
        elif sql.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if sql.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif sql.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        else:
            break
    return i
