"""PostgreSQL-dialect SQL translated to SQLite, for the PG wire front end.

Most statements clients send are already valid SQLite once ``$n`` becomes ``?n``. ``translate`` finds them
with one cheap scan (strings and comments masked, one precompiled regex for PostgreSQL-only syntax) and
rewrites only the parameters. Everything else is parsed by sqlglot as PostgreSQL, rewritten by the fixes
below, and generated as SQLite. Results are cached by SQL text, so a prepared statement pays at most once.

Rules the front end relies on:

* Parameters: ``$n`` becomes ``?n`` (numbered, so a repeated ``$1`` binds once); ``param_count`` is the
  highest ``n``. ``param_types`` names the PostgreSQL type of each parameter that the SQL casts explicitly
  (``$1::int`` gives ``int4``), for ParameterDescription.
* Declared types are kept as PostgreSQL spells them (``BOOLEAN``, ``TIMESTAMPTZ``, ``JSONB``, ``UUID``,
  ``BYTEA``, ``NUMERIC(10, 2)``, ``DOUBLE PRECISION``, ``VARCHAR(20)``, ``INTEGER[]``), NOT turned into
  TEXT: SQLite accepts any type name and derives the column affinity from it (INT → integer, CHAR/TEXT →
  text, REAL/FLOA/DOUB → real, anything else → numeric, which leaves non-numeric text alone), and the front
  end maps the declared name back to a type OID. On the translated path ``TIMESTAMP WITH TIME ZONE`` is
  spelt ``TIMESTAMPTZ``, ``INT``/``INT4`` ``INTEGER`` and ``DECIMAL`` ``NUMERIC``; the fast path keeps what
  the client wrote, so the front end must know both spellings.
* ``SERIAL``/``BIGSERIAL``/``SMALLSERIAL`` and ``GENERATED … AS IDENTITY`` become ``INTEGER PRIMARY KEY``
  (the rowid alias, the only column SQLite numbers itself); such a column must be the table's only primary
  key column, or the table must have none. ``GENERATED ALWAYS`` does not forbid explicit values.
* Timestamps are text: ``now()`` and ``CURRENT_TIMESTAMP`` are ``datetime('now', 'subsec')`` (UTC,
  ``YYYY-MM-DD HH:MM:SS.SSS``), casts to ``timestamp[tz]`` normalise through ``datetime(x, 'subsec')``, and
  ``± interval '…'`` becomes ``datetime()`` modifiers. Comparisons between timestamps are textual.
* Arrays are JSON text: the front end passes an array parameter as JSON, ``x = ANY($1)`` becomes
  ``x IN (SELECT value FROM json_each(?1))``, ``ARRAY[…]`` becomes ``json_array(…)``.
* ``ORDER BY`` goes through sqlglot so NULLs sort as in PostgreSQL (last when ascending).
* Dropped: ``FOR UPDATE``/``FOR SHARE`` (SQLite serialises writers), ``CASCADE`` on ``DROP``, ``USING
  method`` and ``CONCURRENTLY`` on indexes, the ``public`` and ``pg_catalog`` qualifiers.

Session commands (``SET``, ``BEGIN``, ``LISTEN``, …) are not translated: ``classify`` names them and the
session answers them; ``split_statements`` cuts a simple-query message into statements first.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError

from sqlite_ha.errors import HAError
from sqlite_ha.server.pgwire import arrays, catalog_query

MAX_PARAM = 32766  # SQLITE_MAX_VARIABLE_NUMBER of current builds
CACHE_SIZE = 4096

DType = exp.DataType.Type


@dataclass(frozen=True, slots=True)
class Translation:
    """The SQLite text to run for one PostgreSQL query string.

    ``translated`` says whether sqlglot rewrote it (False on the fast path, where only ``$n`` changed).
    ``param_types`` has ``param_count`` entries: the PostgreSQL type name (``int4``, ``jsonb``, ``_int4``)
    of each parameter the SQL casts explicitly, else None.
    """

    sql: str
    param_count: int
    translated: bool
    param_types: tuple[str | None, ...] = ()


class TranslationError(HAError):
    """The statement cannot be expressed in SQLite; the PG server reports it as SQLSTATE 42601."""

    code = "translation_error"

    def __init__(self, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"could not translate the statement to SQLite: {reason}", hint=hint, reason=reason)
        self.reason = reason


# --- lexing: strings, quoted identifiers, dollar quotes, comments, ';' -------------------------------------


class _Span(NamedTuple):
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


def _is_word_char(c: str) -> bool:
    return c != "" and (c.isalnum() or c in "_$")


def _block_comment_end(sql: str, start: int) -> int:
    """PostgreSQL block comments nest; -1 when unterminated."""
    depth = 0
    for m in _BLOCK_COMMENT_TOKENS.finditer(sql, start):
        depth += 1 if m.group() == "/*" else -1
        if depth == 0:
            return m.end()
    return -1


def _spans(sql: str) -> list[_Span]:
    """The non-code stretches of ``sql``, in order; an unterminated one runs to the end, not closed."""
    spans: list[_Span] = []
    pos = 0
    while (m := _SPAN_START.search(sql, pos)) is not None:
        start = m.start()
        c = sql[start]
        if c == ";":
            kind, end = ";", start + 1
        elif c == "'":
            before = sql[start - 2 : start]  # E'…' (not a word ending in e) has backslash escapes
            escaped = before[-1:] in ("e", "E") and (len(before) < 2 or not _is_word_char(before[0]))
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
        elif (
            c == "$" and (tag := _DOLLAR_TAG.match(sql, start)) and not _is_word_char(sql[start - 1 : start])
        ):
            close = sql.find(tag.group(), tag.end())
            kind, end = "$", (close + len(tag.group()) if close >= 0 else -1)
        else:  # a minus, a slash, a parameter $n or a $ inside a name
            pos = start + 1
            continue
        closed = end >= 0
        end = end if closed else len(sql)
        spans.append(_Span(kind, start, end, closed))
        pos = end
    return spans


def split_statements(sql: str) -> list[str]:
    """Split a simple-query string on top-level ';', dropping pieces that hold only blanks and comments."""
    pieces: list[str] = []
    start = pos = 0
    has_content = False  # the current piece holds more than blanks and comments
    for span in _spans(sql):
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


_LEADING_NOISE = re.compile(r"(?:\s+|--[^\n]*|/\*.*?\*/)*", re.S)
_SESSION_COMMAND = re.compile(
    r"(?P<rollback_to>ROLLBACK(?:\s+(?:WORK|TRANSACTION))?\s+TO\b)"
    r"|(?P<query>(?:COMMIT|ROLLBACK)\s+PREPARED\b)"
    r"|(?P<begin>BEGIN\b|START\s+TRANSACTION\b)"
    r"|(?P<commit>(?:COMMIT|END)\b)"
    r"|(?P<rollback>(?:ROLLBACK|ABORT)\b)"
    r"|(?P<set>SET\b)|(?P<show>SHOW\b)|(?P<reset>RESET\b)|(?P<savepoint>SAVEPOINT\b)|(?P<release>RELEASE\b)"
    r"|(?P<discard>DISCARD\b)|(?P<listen>LISTEN\b)|(?P<unlisten>UNLISTEN\b)|(?P<close>CLOSE\b)"
    r"|(?P<deallocate>DEALLOCATE\b)|(?P<copy>COPY\b)",
    re.I,
)


def classify(sql: str) -> str:
    """The kind of one statement from its first keywords: a session command's name, else ``"query"``."""
    lead = _LEADING_NOISE.match(sql)
    m = _SESSION_COMMAND.match(sql, lead.end() if lead else 0)
    return m.lastgroup if m is not None and m.lastgroup else "query"


# --- the fast path -----------------------------------------------------------------------------------------

# PostgreSQL-only syntax, or syntax SQLite accepts with another meaning (CAST to a PG type, ORDER BY's NULLs,
# CURRENT_TIMESTAMP's precision), looked for in the text with strings and comments masked. Words are checked
# as a set (one regex alternation per keyword was ~20 µs a statement); a false positive only costs one
# sqlglot translation.
_PG_TYPES = (
    "SERIAL",
    "SERIAL2",
    "SERIAL4",
    "SERIAL8",
    "BIGSERIAL",
    "SMALLSERIAL",
    "IDENTITY",
    "ZONE",
    "VARYING",
)
_PG_TIME = ("CURRENT_TIMESTAMP", "LOCALTIMESTAMP", "NOW", "INTERVAL", "DATE_TRUNC", "DATE_PART", "EXTRACT")
_PG_FUNCTIONS = ("GEN_RANDOM_UUID", "UUID_GENERATE_V4", "CURRENT_SCHEMA", "PG_ADVISORY_UNLOCK_ALL", "TO_CHAR")
_PG_STRINGS = ("ILIKE", "SIMILAR", "POSITION", "SUBSTRING", "CHAR_LENGTH", "CHARACTER_LENGTH")
_PG_OTHER = (
    "CAST",
    "ANY",
    "SOME",
    "ARRAY",
    "GREATEST",
    "LEAST",
    "ORDER",
    "FOR",
    "TRUNCATE",
    "CONCURRENTLY",
    "FETCH",
)
_PG_WORDS = frozenset((*_PG_TYPES, *_PG_TIME, *_PG_FUNCTIONS, *_PG_STRINGS, *_PG_OTHER))
_SYMBOL_START = re.compile(r"[?~^\[:#@<]")  # one character class is 3x faster than the alternation
_PG_SYMBOLS = re.compile(r"::|[?~^\[]|#>|@>|<@")
_CONTEXT_WORDS = frozenset(
    ["DISTINCT", "ALL", "DEFAULT", "USING", "CASCADE", "RESTRICT", "CONSTRAINT", "PUBLIC", "PG_CATALOG"]
)
_PG_IN_CONTEXT = re.compile(
    "|".join(
        (
            r"\bDISTINCT\s+ON\b|\bALL\s*\(|\bLIMIT\s+ALL\b|\bUSING\s+\w+\s*\(|\bON\s+CONSTRAINT\b",
            r"\bDROP\b[^;]*\b(?:CASCADE|RESTRICT)\b|(?:\bPUBLIC|\"PUBLIC\"|\bPG_CATALOG|\"PG_CATALOG\")\s*\.",
            r"\bDEFAULT\s+(?!VALUES\b|NULL\b|TRUE\b|FALSE\b|CURRENT_DATE\b|CURRENT_TIME\b|[-+\d.'(])",
        )
    )
)
_WORD = re.compile(r"[A-Z_][A-Z0-9_$]*")


def _has_pg_syntax(masked: str) -> bool:
    upper = masked.upper()
    words = _WORD.findall(upper)
    return (
        not _PG_WORDS.isdisjoint(words)
        or (_SYMBOL_START.search(masked) is not None and _PG_SYMBOLS.search(masked) is not None)
        or (not _CONTEXT_WORDS.isdisjoint(words) and _PG_IN_CONTEXT.search(upper) is not None)
    )


_PARAM = re.compile(r"\$(\d+)")
_PARAM_AFTER_NAME = re.compile(r"([\w$])?\$(\d+)")  # group 1 set: a $ inside a name such as a$1
# What a SQLite statement can start with; anything else (garbage included) goes to sqlglot, which explains.
_SQLITE_START = re.compile(
    r"(?:\(|(?:SELECT|INSERT|UPDATE|DELETE|WITH|VALUES|CREATE|DROP|ALTER|REPLACE|PRAGMA|EXPLAIN|ANALYZE"
    r"|VACUUM|REINDEX|BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b)",
    re.I,
)


def _check_param(n: int) -> int:
    if n > MAX_PARAM:  # $0 is left to SQLite, which names it in its own error
        raise TranslationError(f"parameter ${n} is out of range (1 to {MAX_PARAM})")
    return n


def _fast_translate(sql: str) -> Translation | None:
    """Only ``$n`` → ``?n`` when the text has no PostgreSQL-only syntax; None when sqlglot is needed."""
    spans = _spans(sql)
    if not spans:
        masked = sql
    else:
        parts: list[str] = []
        pos = 0
        for span in spans:
            if not span.closed or span.kind in "E$":
                return None
            parts.append(sql[pos : span.start])
            text = sql[span.start : span.end]
            parts.append({"'": "''", '"': text, "-": " ", ";": ";"}[span.kind])
            pos = span.end
        parts.append(sql[pos:])
        masked = "".join(parts)
    if _has_pg_syntax(masked):
        return None
    if _SQLITE_START.match(masked) is None:
        lead = _LEADING_NOISE.match(masked)
        start = lead.end() if lead else 0
        if start < len(masked) and _SQLITE_START.match(masked, start) is None:
            return None
    if "$" not in masked:
        return Translation(sql, 0, False, ())
    if not spans:
        code, highest = _renumber(sql)
        return Translation(code, highest, False, (None,) * highest)
    out: list[str] = []
    highest = pos = 0
    for span in spans:
        code, n = _renumber(sql[pos : span.start])
        out += [code, sql[span.start : span.end]]
        highest, pos = max(highest, n), span.end
    code, n = _renumber(sql[pos:])
    out.append(code)
    highest = max(highest, n)
    return Translation("".join(out), highest, False, (None,) * highest)


def _renumber(code: str) -> tuple[str, int]:
    """``$n`` → ``?n`` in a stretch of code, and the highest ``n``."""
    if "$" not in code:
        return code, 0
    numbers = _PARAM.findall(code)
    highest = _check_param(int(numbers[0]) if len(numbers) == 1 else max(map(int, numbers), default=0))
    simple = len(numbers) == code.count("$")
    i = code.find("$")
    while simple and i >= 0:
        simple = not _is_word_char(code[i - 1 : i])
        i = code.find("$", i + 1)
    if simple:  # every $ starts a parameter: the common case, 3x faster than a regex substitution
        return code.replace("$", "?"), highest
    return _PARAM_AFTER_NAME.sub(lambda m: m.group() if m.group(1) else "?" + m.group(2), code), highest


@functools.lru_cache(maxsize=CACHE_SIZE)
def translate(sql: str) -> Translation:
    """SQLite text for a PostgreSQL query string (possibly several statements); cached by text."""
    fast = _fast_translate(sql)
    return fast if fast is not None else _translate_with_sqlglot(sql)


@functools.lru_cache(maxsize=1024)
def translate_catalog(sql: str) -> Translation:
    """As ``translate``, for a query over the PostgreSQL catalog: ``catalog_query`` rewrites its arrays and
    reg* casts first, and the SQL starts with a comment naming the types of the output columns."""
    return _translate_with_sqlglot(sql, catalog=True)


# --- the sqlglot path --------------------------------------------------------------------------------------

_CATALOG_PREFIX = re.compile(r"(?<![\w$.])pg_catalog\s*\.\s*", re.I)
_ENDS_WITH_INTERVAL = re.compile(r"\bINTERVAL\s*$", re.I)


@dataclass
class _Context:
    """What a rewrite learns while walking one query string."""

    highest: int = 0
    param_types: dict[int, str] = field(default_factory=dict)
    catalog: bool = (
        False  # a catalog query: casts to the reg* types become lookups by the catalog's functions
    )


def _translate_with_sqlglot(sql: str, *, catalog: bool = False) -> Translation:
    parts: list[str] = []
    pos = 0
    for span in _spans(sql):  # textual fixes outside strings and comments, before sqlglot reads the SQL
        code = _CATALOG_PREFIX.sub("", sql[pos : span.start])
        literal = sql[span.start : span.end]
        if span.kind == "'" and span.closed and _ENDS_WITH_INTERVAL.search(code):
            normalized = _normalized_interval(literal[1:-1])
            literal = literal if normalized is None else f"'{normalized}'"
        parts += [code, literal]
        pos = span.end
    text = "".join([*parts, _CATALOG_PREFIX.sub("", sql[pos:])])
    try:
        trees = sqlglot.parse(text, read="postgres")
    except SqlglotError as e:
        raise TranslationError(f"it does not parse as PostgreSQL: {_describe(e)}") from e
    ctx = _Context(catalog=catalog)
    out: list[str] = []
    for tree in trees:
        if tree is None:
            continue
        for statement in _split_statement(tree):
            _values_aliases_to_ctes(statement)
            header = catalog_query.rewrite(statement) if catalog else ""
            _rewrite_tree(statement, ctx)
            try:
                out.append(header + statement.sql(dialect="sqlite", unsupported_level=ErrorLevel.RAISE))
            except SqlglotError as e:
                raise TranslationError(f"SQLite has no equivalent: {_describe(e)}") from e
    types = tuple(ctx.param_types.get(n) for n in range(1, ctx.highest + 1))
    return Translation("; ".join(out), ctx.highest, True, types)


def _values_aliases_to_ctes(statement: exp.Expr) -> None:
    """``FROM (VALUES …) AS v(a, b)`` (SQLAlchemy's bulk INSERT … SELECT sends it) as a CTE: SQLite cannot
    name a VALUES list's columns in a table alias, but it can in ``WITH v(a, b) AS (VALUES …)``."""
    ctes = []
    for values in list(statement.find_all(exp.Values)):
        alias = values.args.get("alias")
        if not isinstance(values.parent, exp.From | exp.Join) or alias is None or not alias.columns:
            continue
        ctes.append(
            exp.CTE(
                this=exp.Values(expressions=values.expressions),
                alias=exp.TableAlias(this=exp.to_identifier(alias.name), columns=alias.columns),
            )
        )
        values.replace(exp.Table(this=exp.to_identifier(alias.name)))
    if not ctes:
        return
    key = "with_" if "with_" in statement.arg_types else "with"
    existing = statement.args.get(key)
    if isinstance(existing, exp.With):
        existing.set("expressions", [*existing.expressions, *ctes])
    else:
        statement.set(key, exp.With(expressions=ctes))


def _describe(error: SqlglotError) -> str:
    """sqlglot's first complaint, without the ANSI-underlined excerpt its message carries."""
    details = error.errors[0] if isinstance(error, ParseError) and error.errors else None
    if details:
        return f"{details.get('description')} at line {details.get('line')}, column {details.get('col')}"
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _split_statement(tree: exp.Expr) -> list[exp.Expr]:
    """Statement-level rewrites, some of which turn one statement into several."""
    if isinstance(tree, exp.TruncateTable):  # RESTART IDENTITY is implied for a rowid alias; CASCADE ignored
        return [exp.Delete(this=table.copy()) for table in tree.expressions]
    if isinstance(tree, exp.Drop):
        tree.set("cascade", False)
        tree.set("restrict", False)
        tree.set("concurrently", False)
        tables = tree.args.get("tables") or []
        if len(tables) > 1:  # SQLite drops one object per statement
            drops: list[exp.Expr] = [tree.copy() for _ in tables]
            for drop, table in zip(drops, tables, strict=True):
                drop.set("tables", [table.copy()])
            return drops
    if isinstance(tree, exp.Create):
        tree.set("concurrently", False)
        if isinstance(tree.this, exp.Schema):
            _rewrite_identity_columns(tree.this)
    return [tree]


def _rewrite_identity_columns(schema: exp.Schema) -> None:
    """SERIAL and IDENTITY columns become ``INTEGER PRIMARY KEY``: SQLite numbers only the rowid alias."""
    columns = [e for e in schema.expressions if isinstance(e, exp.ColumnDef)]
    table_keys = [e for e in schema.expressions if isinstance(e, exp.PrimaryKey)]
    for column in columns:
        kind = column.args.get("kind")
        identity = [
            c for c in column.constraints if isinstance(c.kind, exp.GeneratedAsIdentityColumnConstraint)
        ]
        is_serial = isinstance(kind, exp.DataType) and kind.this in (
            DType.SERIAL,
            DType.BIGSERIAL,
            DType.SMALLSERIAL,
        )
        if not (is_serial or identity):
            continue
        for constraint in identity:
            constraint.pop()
        column.set("kind", exp.DataType.build("INT"))
        if any(isinstance(c.kind, exp.PrimaryKeyColumnConstraint) for c in column.constraints):
            continue
        key_names = [[_key_name(k) for k in key.expressions] for key in table_keys]
        if key_names == [[column.name]]:
            continue  # PRIMARY KEY (id) on an INTEGER column is the rowid alias as well
        has_key = table_keys or any(
            isinstance(c.kind, exp.PrimaryKeyColumnConstraint) for col in columns for c in col.constraints
        )
        if has_key:
            raise TranslationError(
                f"column {column.name!r} is SERIAL or IDENTITY but not the table's only primary key column",
                hint="SQLite generates values only for an INTEGER PRIMARY KEY column",
            )
        column.append("constraints", exp.ColumnConstraint(kind=exp.PrimaryKeyColumnConstraint()))


def _key_name(key: exp.Expr) -> str:
    return key.this.name if isinstance(key, exp.Ordered) else key.name


def _rewrite_tree(tree: exp.Expr, ctx: _Context) -> None:
    """Apply the node rewrites bottom-up, so each sees its operands already translated."""
    for node in reversed(list(tree.walk(bfs=False))):
        rewrite = _REWRITES.get(type(node))
        if rewrite is None:
            continue
        new = rewrite(node, ctx)
        if new is not node:
            if node is tree:
                raise TranslationError(f"cannot rewrite a whole {type(node).__name__} statement")
            node.replace(new)
    leftover = tree.find(exp.Interval, exp.Any, exp.All)
    if leftover is not None:
        raise TranslationError(
            f"{leftover.sql(dialect='postgres')!r} is supported only as "
            + ("timestamp ± interval" if isinstance(leftover, exp.Interval) else "= ANY (…) or <> ALL (…)")
        )


# --- node rewrites -----------------------------------------------------------------------------------------


@functools.cache
def _template_tree(sql: str) -> exp.Expr:
    return sqlglot.parse_one(sql, read="sqlite")


def _fill(template: str, **args: exp.Expr) -> exp.Expr:
    """A SQLite expression from a template whose columns ``_x_`` (etc.) are replaced by ``args``."""
    tree = _template_tree(template).copy()
    for column in list(tree.find_all(exp.Column)):
        if column.name in args:
            column.replace(args[column.name].copy())
    return tree


def _call(name: str, *args: exp.Expr | str) -> exp.Anonymous:
    values = [exp.Literal.string(a) if isinstance(a, str) else a for a in args]
    return exp.Anonymous(this=name, expressions=values)


def _is_call(node: exp.Expr, name: str) -> bool:
    return isinstance(node, exp.Anonymous) and node.name.lower() == name


def _param_number(node: exp.Expr) -> int | None:
    if isinstance(node, exp.Var) and node.name.startswith("?") and node.name[1:].isdigit():
        return int(node.name[1:])
    return None


def _rewrite_parameter(node: exp.Parameter, ctx: _Context) -> exp.Expr:
    name = node.name
    if not name.isdigit():
        raise TranslationError(f"parameter ${name} is not a positional parameter ($1, $2, …)")
    ctx.highest = max(ctx.highest, _check_param(int(name)))
    return exp.Var(this=f"?{int(name)}")


_UUID_V4 = (
    "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-'"
    " || substr('89ab', 1 + (random() & 3), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))"
)


def _now(node: exp.Expr, ctx: _Context) -> exp.Expr:
    return _call("datetime", "now", "subsec")


def _refuse_version(node: exp.CurrentVersion, ctx: _Context) -> exp.Expr:
    raise TranslationError(  # sqlglot would answer with sqlite_version(), which clients cannot parse
        "version() is answered by the PostgreSQL catalog, not by SQLite",
        hint="the session answers catalog queries before translating",
    )


def _rewrite_anonymous(node: exp.Anonymous, ctx: _Context) -> exp.Expr:
    name = node.name.lower()
    if name == "uuid_generate_v4":
        return _fill(_UUID_V4)
    if name == "pg_advisory_unlock_all":  # there are no advisory locks to release
        return exp.Null()
    return node


# (PostgreSQL type name, how SQLite casts to it)
_CASTS: dict[Any, tuple[str, str]] = {
    DType.INT: ("int4", "INTEGER"),
    DType.BIGINT: ("int8", "INTEGER"),
    DType.SMALLINT: ("int2", "INTEGER"),
    DType.TEXT: ("text", "TEXT"),
    DType.VARCHAR: ("varchar", "TEXT"),
    DType.CHAR: ("bpchar", "TEXT"),
    DType.BPCHAR: ("bpchar", "TEXT"),
    DType.NAME: ("name", "TEXT"),
    DType.UUID: ("uuid", "TEXT"),
    DType.DOUBLE: ("float8", "REAL"),
    DType.FLOAT: ("float4", "REAL"),
    DType.DECIMAL: ("numeric", "NUMERIC"),
    DType.VARBINARY: ("bytea", "BLOB"),
    DType.BOOLEAN: ("bool", "boolean"),
    DType.JSON: ("json", "json"),
    DType.JSONB: ("jsonb", "json"),
    DType.DATE: ("date", "date"),
    DType.TIMESTAMP: ("timestamp", "datetime"),
    DType.TIMESTAMPTZ: ("timestamptz", "datetime"),
    DType.TIME: ("time", "time"),
    DType.TIMETZ: ("timetz", "time"),
    DType.INTERVAL: ("interval", "interval"),
}
_BOOLEAN_CAST = (
    "CASE WHEN _x_ IS NULL THEN NULL WHEN typeof(_x_) IN ('integer', 'real') THEN _x_ <> 0"
    " WHEN lower(trim(_x_)) IN ('t', 'true', 'y', 'yes', 'on', '1') THEN 1"
    " WHEN lower(trim(_x_)) IN ('f', 'false', 'n', 'no', 'off', '0') THEN 0 END"
)


_OID_TYPES = {"oid", "regconfig"}  # the reg* casts that name objects are catalog_query's


def _rewrite_cast(node: exp.Cast, ctx: _Context) -> exp.Expr:
    to: exp.DataType = node.to
    value: exp.Expr = node.this
    if ctx.catalog and to.this == DType.USERDEFINED and to.text("kind").lower() in arrays.BY_NAME:
        if (n := _param_number(value)) is not None:  # $1::_oid: an array parameter of that type
            ctx.param_types[n] = to.text("kind").lower()
        return value  # arrays are JSON text already
    if ctx.catalog and isinstance(to.this, str):
        name = to.this.lower()
        if name in _OID_TYPES:
            if (n := _param_number(value)) is not None and name == "oid":
                ctx.param_types[n] = "oid"
            return exp.Cast(this=value, to=exp.DataType(this=DType.USERDEFINED, kind="INTEGER"))
    is_array = to.this == DType.ARRAY
    element = to.expressions[0] if is_array and to.expressions else to
    pg_name, strategy = _CASTS.get(element.this, (None, None))
    n = _param_number(value)
    if n is not None and pg_name is not None:
        ctx.param_types[n] = f"_{pg_name}" if is_array else pg_name
    if is_array:
        return value  # arrays are JSON text already
    literal = value.name if isinstance(value, exp.Literal) and value.is_string else None
    if strategy is None:
        raise TranslationError(f"a cast to {to.sql(dialect='postgres').lower()} has no SQLite equivalent")
    if strategy in ("INTEGER", "TEXT", "REAL", "NUMERIC", "BLOB"):
        if strategy == "TEXT" and literal is not None:
            return value
        if strategy == "BLOB" and literal is not None and literal.startswith("\\x"):
            return exp.HexString(this=literal[2:])
        return exp.Cast(this=value, to=exp.DataType(this=DType.USERDEFINED, kind=strategy))
    if strategy == "json":
        if literal is None:
            return _call("json", value)
        try:
            json.loads(literal)
        except ValueError as e:
            raise TranslationError(f"{literal!r} is not valid JSON: {e}") from e
        return value
    if strategy == "boolean":
        return _fill(_BOOLEAN_CAST, _x_=value) if literal is None else _boolean_literal(literal)
    if strategy == "interval":
        if literal is None:
            raise TranslationError("only a literal string can be cast to interval")
        return exp.Interval(this=value)
    return _call(strategy, value) if strategy == "date" else _call(strategy, value, "subsec")


def _boolean_literal(text: str) -> exp.Boolean:
    word = text.strip().lower()
    if word and ("true".startswith(word) or "yes".startswith(word) or word == "on" or word == "1"):
        return exp.true()
    if word and ("false".startswith(word) or "no".startswith(word) or word in ("of", "off", "0")):
        return exp.false()
    raise TranslationError(f"invalid input syntax for type boolean: {text!r}")


# PostgreSQL interval units → (SQLite modifier unit, factor), in the order SQLite must apply them
_INTERVAL_UNITS: dict[str, tuple[str, float]] = {}
for _names, _unit, _factor in (
    ("year years yr yrs y", "years", 1.0),
    ("month months mon mons", "months", 1.0),
    ("week weeks w", "days", 7.0),
    ("day days d", "days", 1.0),
    ("hour hours hr hrs h", "hours", 1.0),
    ("minute minutes min mins m", "minutes", 1.0),
    ("second seconds sec secs s", "seconds", 1.0),
    ("millisecond milliseconds ms msec msecs", "seconds", 1e-3),
    ("microsecond microseconds us usec usecs", "seconds", 1e-6),
):
    _INTERVAL_UNITS.update(dict.fromkeys(_names.split(), (_unit, _factor)))
_MODIFIER_ORDER = ("years", "months", "days", "hours", "minutes", "seconds")
_INTERVAL_PART = re.compile(
    r"\s*(?:(?P<n>[+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?P<unit>[a-z]+)"
    r"|(?P<sign>[+-])?(?P<h>\d+):(?P<m>\d+)(?::(?P<s>\d+(?:\.\d*)?))?)",
    re.I,
)


def _interval_totals(text: str) -> dict[str, float]:
    """``'1 day 02:00 ago'`` → ``{"days": -1, "hours": -2, …}``, in SQLite's modifier units."""
    body, sign = text.strip().removeprefix("@").strip(), 1.0
    if body.lower().endswith(" ago"):
        body, sign = body[:-4], -1.0
    totals = dict.fromkeys(_MODIFIER_ORDER, 0.0)
    pos = 0
    while pos < len(body.rstrip()):
        m = _INTERVAL_PART.match(body, pos)
        if m is None or (m["unit"] is not None and m["unit"].lower() not in _INTERVAL_UNITS):
            raise TranslationError(f"interval {text!r} is not understood")
        if m["unit"] is not None:
            target, factor = _INTERVAL_UNITS[m["unit"].lower()]
            totals[target] += sign * float(m["n"]) * factor
        else:
            clock_sign = -sign if m["sign"] == "-" else sign
            totals["hours"] += clock_sign * float(m["h"])
            totals["minutes"] += clock_sign * float(m["m"])
            totals["seconds"] += clock_sign * float(m["s"] or 0)
        pos = m.end()
    return totals


def _normalized_interval(text: str) -> str | None:
    """The interval in ``N unit`` parts only, or None if it does not parse.

    sqlglot keeps a single ``N unit`` of an interval string and drops the rest (``'1 day 02:30'`` becomes
    ``'1' DAY``), so interval literals are rewritten into a form it keeps whole before it reads them.
    """
    try:
        totals = _interval_totals(text)
    except TranslationError:
        return None
    return " ".join(f"{_number(v)} {unit}" for unit, v in totals.items() if v) or "0 seconds"


def _interval_modifiers(interval: exp.Interval, sign: int) -> list[str]:
    """``'1 day 02:00'`` → ``['+1 days', '+2 hours']`` for SQLite's date functions."""
    if not isinstance(interval.this, exp.Literal):
        raise TranslationError(f"interval {interval.sql(dialect='postgres')} is not a literal")
    unit = interval.text("unit")
    text = f"{interval.this.name} {unit}" if unit else interval.this.name
    return [f"{_signed(sign * v)} {unit}" for unit, v in _interval_totals(text).items() if v]


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.6f}".rstrip("0")


def _signed(value: float) -> str:
    text = _number(value)
    return text if text.startswith("-") else "+" + text


def _rewrite_interval_arithmetic(node: exp.Add | exp.Sub, ctx: _Context) -> exp.Expr:
    left, right = node.this, node.expression
    if isinstance(right, exp.Interval) and not isinstance(left, exp.Interval):
        base, interval = left, right
    elif isinstance(node, exp.Add) and isinstance(left, exp.Interval) and not isinstance(right, exp.Interval):
        base, interval = right, left
    else:
        return node
    modifiers = _interval_modifiers(interval, -1 if isinstance(node, exp.Sub) else 1)
    if _is_call(base, "datetime") and base.expressions[1:2] == [exp.Literal.string("subsec")]:
        return _call("datetime", *base.expressions, *modifiers)  # flatten chained arithmetic
    return _call("datetime", base, "subsec", *modifiers)


_TRUNC = {
    "second": "strftime('%Y-%m-%d %H:%M:%S', _x_)",
    "minute": "strftime('%Y-%m-%d %H:%M:00', _x_)",
    "hour": "strftime('%Y-%m-%d %H:00:00', _x_)",
    "day": "datetime(_x_, 'start of day')",
    "week": "datetime(_x_, 'start of day', '-6 days', 'weekday 1')",  # PostgreSQL weeks start on Monday
    "month": "datetime(_x_, 'start of month')",
    "quarter": "datetime(_x_, 'start of month', '-' || ((CAST(strftime('%m', _x_) AS INTEGER) - 1) % 3)"
    " || ' months')",
    "year": "datetime(_x_, 'start of year')",
}


def _rewrite_date_trunc(node: exp.TimestampTrunc | exp.DateTrunc, ctx: _Context) -> exp.Expr:
    unit = node.text("unit").lower()
    if unit not in _TRUNC:
        raise TranslationError(f"date_trunc to {unit or node.args.get('unit')!r} is not supported")
    return _fill(_TRUNC[unit], _x_=node.this)


_EXTRACT_FORMATS = {
    "year": "%Y",
    "month": "%m",
    "day": "%d",
    "hour": "%H",
    "minute": "%M",
    "dow": "%w",
    "isodow": "%u",
    "doy": "%j",
    "week": "%V",
    "isoyear": "%G",
}
_EXTRACT = {
    "epoch": "unixepoch(_x_, 'subsec')",
    "second": "CAST(strftime('%f', _x_) AS REAL)",
    "milliseconds": "CAST(strftime('%f', _x_) AS REAL) * 1000",
    "microseconds": "CAST(strftime('%f', _x_) AS REAL) * 1000000",
    "quarter": "(CAST(strftime('%m', _x_) AS INTEGER) + 2) / 3",
    **{k: f"CAST(strftime('{v}', _x_) AS INTEGER)" for k, v in _EXTRACT_FORMATS.items()},
}


def _rewrite_extract(node: exp.Extract, ctx: _Context) -> exp.Expr:
    part = node.this.name.lower()
    if part not in _EXTRACT:
        raise TranslationError(f"extract({part} from …) is not supported")
    return _fill(_EXTRACT[part], _x_=node.expression)


def _rewrite_quantified(node: exp.Binary, ctx: _Context) -> exp.Expr:
    """``x = ANY(array)`` → ``x IN (…)``; arrays are JSON text, read back with ``json_each``."""
    quantified = node.expression
    if isinstance(quantified, exp.Any | exp.All):
        quantifier, operand = ("all" if isinstance(quantified, exp.All) else "any"), quantified.this
    elif isinstance(quantified, exp.Anonymous) and quantified.name.lower() in ("any", "some", "all"):
        if len(quantified.expressions) != 1:
            return node
        quantifier = "all" if quantified.name.lower() == "all" else "any"
        operand = quantified.expressions[0]
    else:
        return node
    while isinstance(operand, exp.Paren):
        operand = operand.this
    is_query = isinstance(operand, exp.Subquery | exp.Query)
    if is_query and not isinstance(operand, exp.Subquery):
        operand = exp.Subquery(this=operand)
    op = type(node)
    if (op is exp.EQ and quantifier == "any") or (op is exp.NEQ and quantifier == "all"):
        if _is_call(operand, "json_array"):
            test: exp.Expr = exp.In(this=node.this, expressions=operand.expressions)
        elif is_query:
            test = exp.In(this=node.this, query=operand)
        else:
            test = exp.In(this=node.this, query=_fill("(SELECT value FROM json_each(_x_))", _x_=operand))
        return test if op is exp.EQ else exp.Not(this=test)
    if op in (exp.GT, exp.GTE, exp.LT, exp.LTE) and not is_query:
        smallest = (op in (exp.GT, exp.GTE)) == (quantifier == "any")
        bound = _fill(f"(SELECT {'min' if smallest else 'max'}(value) FROM json_each(_x_))", _x_=operand)
        return op(this=node.this, expression=bound)
    symbol = {exp.EQ: "=", exp.NEQ: "<>"}.get(op, "<, <=, >, >=")
    raise TranslationError(
        f"{symbol} {quantifier.upper()} (…) is not supported here", hint="use = ANY (…) or <> ALL (…)"
    )


def _rewrite_array(node: exp.Array, ctx: _Context) -> exp.Expr:
    return _call("json_array", *node.expressions)


def _drop_public_schema(node: exp.Table | exp.Column, ctx: _Context) -> exp.Expr:
    db = node.args.get("db")
    if isinstance(db, exp.Identifier) and db.name.lower() == "public" and not node.args.get("catalog"):
        node.set("db", None)
    return node


def _rewrite_on_conflict(node: exp.OnConflict, ctx: _Context) -> exp.Expr:
    if node.args.get("constraint") is not None:
        raise TranslationError(
            "ON CONFLICT ON CONSTRAINT is not supported", hint="name the conflict columns: ON CONFLICT (col)"
        )
    keys = node.args.get("conflict_keys") or []
    node.set("conflict_keys", [k.this if isinstance(k, exp.Ordered) else k for k in keys])
    return node


def _rewrite_index_parameters(node: exp.IndexParameters, ctx: _Context) -> exp.Expr:
    node.set("using", None)  # btree is what SQLite has; GIN/GiST become plain indexes
    for column in node.args.get("columns") or []:
        if isinstance(column, exp.Ordered):  # SQLite's own NULL order, so no NULLS FIRST/LAST is printed
            column.set("nulls_first", not column.args.get("desc"))
    return node


def _rewrite_column_def(node: exp.ColumnDef, ctx: _Context) -> exp.Expr:
    kind = node.args.get("kind")
    if isinstance(kind, exp.DataType) and kind.this != DType.USERDEFINED:
        name = kind.sql(dialect="postgres")
        name = re.sub(r"^(?:INT\b|INT4\b)", "INTEGER", re.sub(r"^DECIMAL\b", "NUMERIC", name))
        node.set("kind", exp.DataType(this=DType.USERDEFINED, kind=name))
    return node


def _rewrite_default(node: exp.DefaultColumnConstraint, ctx: _Context) -> exp.Expr:
    value = node.this
    plain = isinstance(value, exp.Literal | exp.Null | exp.Boolean | exp.Paren) or (
        isinstance(value, exp.Neg) and isinstance(value.this, exp.Literal)
    )
    if not plain:  # SQLite wants expression defaults in parentheses
        node.set("this", exp.Paren(this=value))
    return node


def _drop_locks(node: exp.Select, ctx: _Context) -> exp.Expr:
    node.set("locks", None)  # FOR UPDATE / FOR SHARE: SQLite serialises writers
    return node


def _as_string(node: exp.ByteString | exp.RawString, ctx: _Context) -> exp.Expr:
    return exp.Literal.string(node.name)  # E'…' and $$…$$ are plain text strings once parsed


_REWRITES: dict[type[exp.Expr], Callable[[Any, _Context], exp.Expr]] = {
    exp.Parameter: _rewrite_parameter,
    exp.Cast: _rewrite_cast,
    exp.CurrentTimestamp: _now,
    exp.Localtimestamp: _now,
    exp.Uuid: lambda node, ctx: _fill(_UUID_V4),
    exp.Anonymous: _rewrite_anonymous,
    exp.CurrentSchema: lambda node, ctx: exp.Literal.string("public"),
    exp.CurrentVersion: _refuse_version,
    exp.Add: _rewrite_interval_arithmetic,
    exp.Sub: _rewrite_interval_arithmetic,
    exp.TimestampTrunc: _rewrite_date_trunc,
    exp.DateTrunc: _rewrite_date_trunc,
    exp.Extract: _rewrite_extract,
    **dict.fromkeys((exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE), _rewrite_quantified),
    exp.Array: _rewrite_array,
    exp.Table: _drop_public_schema,
    exp.Column: _drop_public_schema,
    exp.OnConflict: _rewrite_on_conflict,
    exp.IndexParameters: _rewrite_index_parameters,
    exp.ColumnDef: _rewrite_column_def,
    exp.DefaultColumnConstraint: _rewrite_default,
    exp.Select: _drop_locks,
    exp.ByteString: _as_string,
    exp.RawString: _as_string,
}
