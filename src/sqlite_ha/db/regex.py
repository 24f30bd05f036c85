"""PostgreSQL's regular expressions (``~``, ``~*``, ``!~``, ``!~*``, ``regexp_replace``) as SQL
functions.

Translated PostgreSQL SQL runs ``x ~ p`` as SQLite's ``x REGEXP p`` (which calls ``regexp(p, x)``) and
``x ~* p`` as ``regexp_i_like(x, p)``; SQLite has no implementation of either, so a node registers them on
every connection (see ``functions.py``). They run Python's ``re``, after rewriting what PostgreSQL's POSIX
"advanced" expressions spell differently: bracket classes (``[[:digit:]]``), word boundaries ``\\m``,
``\\M``, ``\\y``, ``\\Y``, and in replacements ``\\&`` for the whole match. What else differs (back
references inside lookarounds, ARE's embedded options, collating elements) is rare in applications; a
pattern Python refuses is refused with PostgreSQL's ``2201B``.
"""

from __future__ import annotations

import functools
import re

from sqlite_ha.db.values import SQLiteValue

_CLASSES = {
    "alpha": "a-zA-Z",
    "digit": "0-9",
    "alnum": "a-zA-Z0-9",
    "upper": "A-Z",
    "lower": "a-z",
    "space": r"\s",
    "punct": r"!-/:-@\[-`{-~",
    "xdigit": "0-9A-Fa-f",
    "word": r"\w",
    "blank": r" \t",
    "cntrl": r"\x00-\x1f\x7f",
    "print": r"\x20-\x7e",
    "graph": r"\x21-\x7e",
}
_CLASS = re.compile(r"\[:(\w+):\]")
_ESCAPES = {"m": r"\b(?=\w)", "M": r"\b(?<=\w)", "y": r"\b", "Y": r"\B"}
_ESCAPE = re.compile(r"\\(.)")


class InvalidRegex(ValueError):
    """A pattern PostgreSQL would refuse, or that Python cannot run (SQLSTATE 2201B)."""

    sqlstate = "2201B"


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str, flags: str = "") -> re.Pattern[str]:
    """Python's compiled form of a PostgreSQL ARE pattern with regexp flags (``i``, ``g`` ignored here)."""
    python = _CLASS.sub(lambda m: _CLASSES.get(m.group(1), m.group(0)), pattern)
    python = _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(0)), python)
    options = re.IGNORECASE if "i" in flags else 0
    if "n" in flags or "m" in flags:  # newline-sensitive matching
        options |= re.MULTILINE
    if "s" not in flags and "n" not in flags and "m" not in flags:
        options |= re.DOTALL  # PostgreSQL's default: '.' matches a newline
    try:
        return re.compile(python, options)
    except re.error as e:
        raise InvalidRegex(f"invalid regular expression: {e}") from e


def regexp(*args: SQLiteValue) -> int | None:
    """``value REGEXP pattern`` (SQLite calls ``regexp(pattern, value)``): PostgreSQL's ``value ~ p``."""
    pattern, value = args
    if pattern is None or value is None:
        return None
    return 1 if compile_pattern(str(pattern)).search(str(value)) else 0


def regexp_i_like(*args: SQLiteValue) -> int | None:
    """PostgreSQL's ``value ~* pattern``, case-insensitive."""
    value, pattern = args
    if pattern is None or value is None:
        return None
    return 1 if compile_pattern(str(pattern), "i").search(str(value)) else 0


def regexp_replace(*args: SQLiteValue) -> str | None:
    """``regexp_replace(source, pattern, replacement [, flags])``: the first match, or all with ``g``."""
    if len(args) not in (3, 4):
        raise InvalidRegex("regexp_replace takes 3 or 4 arguments")
    if any(a is None for a in args):
        return None
    source, pattern, replacement = (str(a) for a in args[:3])
    flags = str(args[3]) if len(args) == 4 else ""
    if set(flags) - set("gimnsx"):
        raise InvalidRegex(f'invalid regular expression option: "{flags}"')
    compiled = compile_pattern(pattern, flags.replace("g", ""))
    # PostgreSQL's replacement: \1..\9 groups, \& the whole match, \\ a backslash; others literal
    python = re.sub(r"\\(.)", lambda m: _replacement(m.group(1)), replacement.replace("\\\\", "\x00"))
    python = python.replace("\x00", "\\\\")
    return compiled.sub(python, source, count=0 if "g" in flags else 1)


def _replacement(ch: str) -> str:
    if ch == "&":
        return r"\g<0>"
    if ch.isdigit():
        return rf"\g<{ch}>"
    return "\\\\" + ch if ch != "\\" else "\\\\"
