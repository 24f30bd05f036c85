"""The COPY statement itself: which table or query, which direction, which format (sans-IO).

Both of PostgreSQL's syntaxes are read, because clients send both: the option list of 9.0 and later
(``COPY t FROM STDIN (FORMAT csv, HEADER true)``, what psycopg and asyncpg write; asyncpg quotes the values:
``FORMAT 'csv'``) and the older keywords (``COPY t FROM STDIN WITH CSV HEADER``, what psql users type into
``\\copy``). Only the client's side of the connection can be read or written: ``COPY … FROM 'file'``,
``TO 'file'`` and ``PROGRAM`` would make the server open its own files or run commands, and are refused
with 42501 before anything else is looked at.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from sqlite_ha.server.pgwire.copy.format import CopyError, CopyOptions

SYNTAX_ERROR = "42601"
INVALID_PARAMETER = "22023"
NOT_SUPPORTED = "0A000"
NOT_ALLOWED = "42501"


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyStatement:
    """One COPY. ``table_sql``/``columns_sql`` are the client's own text, to build a SELECT from for COPY TO;
    ``table``, ``schema`` and ``columns`` are the unquoted names, for COPY FROM's INSERT."""

    is_from: bool
    options: CopyOptions
    table: str = ""
    schema: str | None = None  # None for PostgreSQL's "public" (and SQLite's "main")
    columns: tuple[str, ...] = ()
    table_sql: str = ""
    columns_sql: str = ""
    query: str | None = None  # COPY (query) TO


class _Token(NamedTuple):
    kind: str  # word, ident, string, number, punct, other
    value: str  # words upper case; identifiers and strings unquoted
    start: int
    end: int


_TOKEN = re.compile(
    r"""(?P<space>\s+|--[^\n]*|/\*.*?\*/)
    |(?P<estring>[eE]'(?:[^'\\]|\\.|'')*')
    |(?P<string>'(?:[^']|'')*')
    |(?P<ident>"(?:[^"]|"")*")
    |(?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    |(?P<number>[-+]?\d+(?:\.\d*)?)
    |(?P<punct>[(),.;*])
    |(?P<other>\S)""",
    re.X | re.S,
)
_E_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_E_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))|''", re.S)


def _e_string(body: str) -> str:
    """The value of an ``E'…'`` literal (``DELIMITER E'\\t'``)."""

    def one(m: re.Match[str]) -> str:
        if m.group(0) == "''":
            return "'"
        if m.group(1):
            return chr(int(m.group(1), 8))
        if m.group(2):
            return chr(int(m.group(2), 16))
        return _E_ESCAPES.get(m.group(3), m.group(3))

    return _E_ESCAPE.sub(one, body)


def _tokens(sql: str) -> list[_Token]:
    out: list[_Token] = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup or "other"
        text = m.group()
        if kind == "space":
            continue
        if kind == "estring":
            kind, text = "string", _e_string(text[2:-1])
        elif kind == "string":
            text = text[1:-1].replace("''", "'")
        elif kind == "ident":
            text = text[1:-1].replace('""', '"')
        elif kind == "word":
            text = text.upper()
        out.append(_Token(kind, text, m.start(), m.end()))
    while out and out[-1].value == ";" and out[-1].kind == "punct":
        out.pop()
    return out


class _Reader:
    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.tokens = _tokens(sql)
        self.pos = 0

    def peek(self, offset: int = 0) -> _Token | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise CopyError(SYNTAX_ERROR, "syntax error at end of input")
        self.pos += 1
        return token

    def is_(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind in ("word", "punct") and token.value in words

    def accept(self, *words: str) -> bool:
        if self.is_(*words):
            self.pos += 1
            return True
        return False

    def expect(self, *words: str) -> _Token:
        token = self.peek()
        if token is None or not self.is_(*words):
            raise self.unexpected()
        self.pos += 1
        return token

    def unexpected(self) -> CopyError:
        token = self.peek()
        if token is None:
            return CopyError(SYNTAX_ERROR, "syntax error at end of input")
        return CopyError(SYNTAX_ERROR, f'syntax error at or near "{self.sql[token.start : token.end]}"')

    def name(self) -> str:
        """An identifier: unquoted ones fold to lower case, as in PostgreSQL."""
        token = self.take()
        if token.kind == "ident":
            return token.value
        if token.kind == "word":
            return token.value.lower()
        self.pos -= 1
        raise self.unexpected()

    def names(self) -> list[str]:
        """``( a, "B", c )``"""
        self.expect("(")
        out = [self.name()]
        while self.accept(","):
            out.append(self.name())
        self.expect(")")
        return out

    def string(self) -> str:
        token = self.take()
        if token.kind != "string":
            self.pos -= 1
            raise self.unexpected()
        return token.value


def parse_copy(sql: str) -> CopyStatement:
    """Read a COPY statement; CopyError (42601, 42501, 0A000, 22023) for what cannot run here."""
    r = _Reader(sql)
    r.expect("COPY")
    table = table_sql = columns_sql = ""
    schema: str | None = None
    columns: tuple[str, ...] = ()
    query: str | None = None
    if r.is_("("):
        query = _parenthesized(r)
    else:
        start = r.peek()
        table = r.name()
        if r.accept("."):
            schema, table = table, r.name()
        end = r.tokens[r.pos - 1]
        assert start is not None
        table_sql = sql[start.start : end.end]
        if r.is_("("):
            first = r.peek()
            assert first is not None
            columns = tuple(r.names())
            columns_sql = sql[first.start + 1 : r.tokens[r.pos - 1].start]
    is_from = r.expect("FROM", "TO").value == "FROM"
    target = r.peek()
    if r.is_("PROGRAM") or (target is not None and target.kind == "string"):
        what = "a program" if r.is_("PROGRAM") else "a file"
        raise CopyError(
            NOT_ALLOWED,
            f"COPY {'from' if is_from else 'to'} {what} is not allowed: the server reads and writes no files "
            "of its own",
            hint="COPY FROM STDIN and COPY TO STDOUT work for everyone; psql's \\copy reads and writes the "
            "client's files that way.",
        )
    r.expect("STDIN", "STDOUT")
    if query is not None and is_from:
        raise CopyError(SYNTAX_ERROR, "COPY FROM does not take a query: name a table")
    options = _options(r, is_from)
    if r.is_("WHERE"):
        raise CopyError(NOT_SUPPORTED, "COPY FROM … WHERE is not supported")
    if r.peek() is not None:
        raise r.unexpected()
    if schema is not None and schema.lower() in ("public", "main"):
        schema = None
    return CopyStatement(
        is_from=is_from,
        options=options,
        table=table,
        schema=schema,
        columns=columns,
        table_sql=table_sql,
        columns_sql=columns_sql,
        query=query,
    )


def _parenthesized(r: _Reader) -> str:
    """The text between a ``(`` and its matching ``)``: COPY's query."""
    opening = r.expect("(")
    depth = 1
    while True:
        token = r.take()
        if token.kind == "punct" and token.value == "(":
            depth += 1
        elif token.kind == "punct" and token.value == ")":
            depth -= 1
            if depth == 0:
                query = r.sql[opening.end : token.start].strip()
                if not query:
                    raise CopyError(SYNTAX_ERROR, 'syntax error at or near ")"')
                return query


# ---------------------------------------------------------------------------------------- options
def _options(r: _Reader, is_from: bool) -> CopyOptions:
    raw: dict[str, object] = {}

    def put(name: str, value: object) -> None:
        if name in raw:
            raise CopyError(SYNTAX_ERROR, "conflicting or redundant options", hint=f"{name} is given twice")
        raw[name] = value

    r.accept("WITH")
    if r.is_("("):
        r.expect("(")
        while True:
            name = r.take()
            if name.kind not in ("word", "ident"):
                r.pos -= 1
                raise r.unexpected()
            put(name.value.lower(), _option_value(r))
            if not r.accept(","):
                break
        r.expect(")")
    else:
        _legacy_options(r, put)
    return _build(raw, is_from)


def _option_value(r: _Reader) -> object:
    """An option's argument: a string, word or number; ``*``; a parenthesized column list; or nothing."""
    token = r.peek()
    if token is None or r.is_(",", ")"):
        return True
    if r.is_("("):
        return r.names()
    r.take()
    if token.kind == "punct" and token.value == "*":
        return "*"
    return token.value


def _legacy_options(r: _Reader, put: Callable[[str, object], None]) -> None:
    """``BINARY``, ``CSV``, ``HEADER``, ``DELIMITER [AS] 'x'``, ``NULL [AS] 'x'``, ``QUOTE``, ``ESCAPE``,
    ``FORCE QUOTE cols|*``, ``FORCE NOT NULL cols``, ``ENCODING 'x'``: PostgreSQL's pre-9.0 syntax."""
    while r.peek() is not None and not r.is_("WHERE"):
        word = r.take()
        key = word.value
        if word.kind != "word":
            r.pos -= 1
            raise r.unexpected()
        if key == "BINARY":
            put("format", "binary")
        elif key == "CSV":
            put("format", "csv")
        elif key == "HEADER":
            put("header", True)
        elif key == "FREEZE":
            put("freeze", True)
        elif key == "OIDS":
            put("oids", True)
        elif key in ("DELIMITER", "NULL", "QUOTE", "ESCAPE", "ENCODING"):
            r.accept("AS")
            put(key.lower(), r.string())
        elif key == "FORCE":
            if r.accept("QUOTE"):
                if r.accept("*"):
                    put("force_quote", "*")
                else:
                    put("force_quote", _bare_names(r))
            elif r.accept("NOT"):
                r.expect("NULL")
                put("force_not_null", _bare_names(r))
            else:
                raise r.unexpected()
        else:
            r.pos -= 1
            raise r.unexpected()


def _bare_names(r: _Reader) -> list[str]:
    out = [r.name()]
    while r.accept(","):
        out.append(r.name())
    return out


_TRUE = ("true", "on", "1", "yes")
_FALSE = ("false", "off", "0", "no")


def _flag(name: str, value: object) -> bool:
    if value is True:
        return True
    text = str(value).lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise CopyError(SYNTAX_ERROR, f"{name} requires a Boolean value")


def _char(name: str, value: object) -> bytes:
    data = str(value).encode()
    if len(data) != 1:
        raise CopyError(NOT_SUPPORTED, f"COPY {name} must be a single one-byte character")
    return data


def _columns(name: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise CopyError(SYNTAX_ERROR, f'argument to option "{name}" must be a list of column names')
    return tuple(value)


def _build(raw: dict[str, object], is_from: bool) -> CopyOptions:
    """CopyOptions from the options as written, with PostgreSQL's checks (``ProcessCopyOptions``)."""
    fmt = str(raw.pop("format", "text")).lower()
    if fmt not in ("text", "csv", "binary"):
        raise CopyError(INVALID_PARAMETER, f'COPY format "{fmt}" not recognized')
    csv = fmt == "csv"
    if fmt == "binary":
        for name in ("delimiter", "null", "header", "quote", "escape"):
            if name in raw:
                raise CopyError(SYNTAX_ERROR, f"cannot specify {name.upper()} in BINARY mode")
    for name in ("quote", "escape", "force_quote", "force_not_null", "force_null"):
        if name in raw and not csv:
            raise CopyError(NOT_SUPPORTED, f"COPY {name.replace('_', ' ')} available only in CSV mode")
    if "force_quote" in raw and is_from:
        raise CopyError(NOT_SUPPORTED, "COPY force quote only available using COPY TO")
    for name in ("force_not_null", "force_null"):
        if name in raw and not is_from:
            raise CopyError(NOT_SUPPORTED, f"COPY {name.replace('_', ' ')} only available using COPY FROM")
    if raw.pop("oids", False):
        raise CopyError(NOT_SUPPORTED, "COPY with OIDS is not supported")
    raw.pop("freeze", None)  # a hint to PostgreSQL's storage; nothing to do here
    encoding = str(raw.pop("encoding", "utf8")).lower().replace("-", "").replace("_", "")
    if encoding not in ("utf8", "unicode"):
        raise CopyError(NOT_SUPPORTED, f'COPY encoding "{encoding}" is not supported: the data must be UTF-8')
    if "default" in raw:
        raise CopyError(NOT_SUPPORTED, "COPY DEFAULT is not supported")

    header = header_match = False
    if "header" in raw:
        value = raw.pop("header")
        if str(value).lower() == "match":
            if not is_from:
                raise CopyError(NOT_SUPPORTED, 'cannot use "match" with HEADER in COPY TO')
            header = header_match = True
        else:
            header = _flag("header", value)
    delimiter = _char("delimiter", raw.pop("delimiter")) if "delimiter" in raw else (b"," if csv else b"\t")
    null = str(raw.pop("null")).encode() if "null" in raw else (b"" if csv else b"\\N")
    quote = _char("quote", raw.pop("quote")) if "quote" in raw else b'"'
    escape = _char("escape", raw.pop("escape")) if "escape" in raw else quote
    force_quote = raw.pop("force_quote", ())
    force_not_null = _columns("force_not_null", raw.pop("force_not_null", []))
    force_null = _columns("force_null", raw.pop("force_null", []))
    if raw:
        raise CopyError(SYNTAX_ERROR, f'option "{next(iter(raw))}" not recognized')

    if delimiter in b"\r\n":
        raise CopyError(INVALID_PARAMETER, "COPY delimiter cannot be newline or carriage return")
    if b"\r" in null or b"\n" in null:
        raise CopyError(INVALID_PARAMETER, "COPY null representation cannot use newline or carriage return")
    if fmt == "text" and delimiter in b"\\.abcdefghijklmnopqrstuvwxyz0123456789":
        raise CopyError(INVALID_PARAMETER, f'COPY delimiter cannot be "{delimiter.decode()}"')
    if csv and delimiter == quote:
        raise CopyError(INVALID_PARAMETER, "COPY delimiter and quote must be different")
    if fmt != "binary" and delimiter in null:
        raise CopyError(INVALID_PARAMETER, "COPY delimiter must not appear in the NULL specification")
    if csv and quote in null:
        raise CopyError(INVALID_PARAMETER, "CSV quote character must not appear in the NULL specification")
    return CopyOptions(
        format=fmt,
        delimiter=delimiter,
        null=null,
        header=header,
        header_match=header_match,
        quote=quote,
        escape=escape,
        force_quote_all=force_quote == "*",
        force_quote=() if force_quote == "*" else _columns("force_quote", force_quote or []),
        force_not_null=force_not_null,
        force_null=force_null,
    )
