"""What the driver must know of an SQL text before a node runs it: where statements end, whether one is
transaction control, and whether it is DML (the statements before which ``sqlite3`` opens a transaction).

Pure functions over a small tokenizer (strings, quoted identifiers, comments, trigger bodies), since the
driver decides these on the caller's thread, with no SQLite connection at hand. Anything it cannot
recognise is passed to SQLite as it is, which reports real errors itself.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

_TOKEN = re.compile(
    r"""\s+|--[^\n]*|/\*.*?(?:\*/|$)|'(?:[^']|'')*'?|"(?:[^"]|"")*"?|`[^`]*`?|\[[^\]]*\]?|[\w$]+|.""",
    re.DOTALL,
)
_DML = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE"})


class Kind(enum.Enum):
    """What a statement is to the driver's transaction handling."""

    BEGIN = "begin"
    COMMIT = "commit"  # COMMIT, END
    ROLLBACK = "rollback"
    SAVEPOINT = "savepoint"
    RELEASE = "release"
    ROLLBACK_TO = "rollback_to"
    DML = "dml"  # INSERT, UPDATE, DELETE, REPLACE (as its first word: sqlite3's rule)
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Parsed:
    kind: Kind
    savepoint: str | None = None  # the name, for SAVEPOINT, RELEASE, ROLLBACK TO


def _words(sql: str) -> list[str]:
    """The tokens that are not blank or comments."""
    return [t for t in (m.group() for m in _TOKEN.finditer(sql)) if not t[0].isspace() and not _comment(t)]


def _comment(token: str) -> bool:
    return token.startswith(("--", "/*"))


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] in "\"'`[":
        inner = token[1:-1]
        return inner.replace(token[0] * 2, token[0]) if token[0] in "\"'`" else inner
    return token


def classify(sql: str) -> Parsed:
    """The kind of one statement (its first words)."""
    words = _words(sql)
    upper = [w.upper() for w in words[:4]]
    if not upper:
        return Parsed(Kind.OTHER)
    first = upper[0]
    if first == "BEGIN":
        return Parsed(Kind.BEGIN)
    if first in ("COMMIT", "END"):
        return Parsed(Kind.COMMIT)
    if first == "ROLLBACK":
        rest = [w for w in upper[1:] if w != "TRANSACTION"]
        if rest and rest[0] == "TO":
            names = [w for w in words[1:] if w.upper() not in ("TRANSACTION", "TO", "SAVEPOINT")]
            return Parsed(Kind.ROLLBACK_TO, _unquote(names[0]) if names else None)
        return Parsed(Kind.ROLLBACK)
    if first == "SAVEPOINT":
        return Parsed(Kind.SAVEPOINT, _unquote(words[1]) if len(words) > 1 else None)
    if first == "RELEASE":
        names = [w for w in words[1:] if w.upper() != "SAVEPOINT"]
        return Parsed(Kind.RELEASE, _unquote(names[0]) if names else None)
    if first in _DML:
        return Parsed(Kind.DML)
    return Parsed(Kind.OTHER)


def split(script: str) -> list[str]:
    """The statements of a script, each with its text as written (without the ``;``); blank ones dropped.

    A ``CREATE TRIGGER`` body's semicolons stay inside it (up to the ``END`` that closes its ``BEGIN``,
    ``CASE … END`` counted)."""
    out: list[str] = []
    start = 0
    words: list[str] = []  # the statement's first words, upper-case, to recognise CREATE … TRIGGER
    trigger = False
    depth = 0  # BEGIN/CASE nesting inside a trigger body
    for m in _TOKEN.finditer(script):
        token = m.group()
        if token[0].isspace() or _comment(token):
            continue
        word = token.upper()
        if len(words) < 4:
            words.append(word)
            if word == "TRIGGER" and words[0] == "CREATE":
                trigger = True
        if trigger:
            if word in ("BEGIN", "CASE"):
                depth += 1
            elif word == "END" and depth > 0:
                depth -= 1
        if token == ";" and depth == 0:
            text = script[start : m.start()]
            if _words(text):
                out.append(text.strip())
            start = m.end()
            words, trigger = [], False
    tail = script[start:]
    if _words(tail):
        out.append(tail.strip())
    return out


def is_single(sql: str) -> bool:
    """Whether ``sql`` holds at most one statement (a trailing ``;`` and comments allowed)."""
    return len(split(sql)) <= 1
