"""PostgreSQL-dialect SQL translated to SQLite, for the PG wire front end.

Most statements clients send are already valid SQLite once ``$n`` becomes ``?n``. ``translate`` finds them
with one cheap scan (strings and comments masked, one precompiled regex for PostgreSQL-only syntax) and
rewrites only the parameters. Everything else is parsed by sqlglot as PostgreSQL, rewritten by the fixes
of ``rewrites``, and generated as SQLite. Results are cached by SQL text, so a prepared statement pays at
most once. Callers import what they use from here; ``lexer`` (the scan, ``split_statements``, ``classify``),
``translation`` (``Translation``, ``TranslationError``), ``rewrites`` and ``intervals`` hold the parts.

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
* Dropped: ``FOR UPDATE``/``FOR SHARE`` (``Translation.locks`` says so: in a block the session takes the
  writer for it), ``CASCADE`` on ``DROP``, ``USING method`` and ``CONCURRENTLY`` on indexes, the ``public``
  and ``pg_catalog`` qualifiers.

Session commands (``SET``, ``BEGIN``, ``LISTEN``, …) are not translated: ``classify`` names them and the
session answers them; ``split_statements`` cuts a simple-query message into statements first.
"""

from __future__ import annotations

import functools
import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, SqlglotError

from sqlite_ha.server.pgwire.catalog import query as catalog_query
from sqlite_ha.server.pgwire.sql import ddl, schemas, sequences
from sqlite_ha.server.pgwire.sql.intervals import normalized_interval
from sqlite_ha.server.pgwire.sql.jsonb import mark_comparisons as mark_jsonb_comparisons
from sqlite_ha.server.pgwire.sql.lexer import LEADING_NOISE, classify, is_word_char, lex, split_statements
from sqlite_ha.server.pgwire.sql.rewrites import (
    rewrite_tree,
    split_statement,
    values_aliases_to_ctes,
)
from sqlite_ha.server.pgwire.sql.translation import Translation, TranslationError, check_param
from sqlite_ha.server.pgwire.sql.trees import RewriteContext
from sqlite_ha.server.pgwire.sql.unnest import rewrite_unnest_tables

__all__ = [
    "Translation",
    "TranslationError",
    "classify",
    "split_statements",
    "translate",
    "translate_catalog",
]

CACHE_SIZE = 4096


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
_PG_FUNCTIONS = (
    "GEN_RANDOM_UUID",
    "UUID_GENERATE_V4",
    "CURRENT_SCHEMA",
    "PG_ADVISORY_UNLOCK_ALL",
    "TO_CHAR",
    "GENERATE_SERIES",
    "MAKE_INTERVAL",
)
# LIKE: SQLite's ignores case, PostgreSQL's does not (and escapes with \\ by default)
_PG_STRINGS = ("LIKE", "ILIKE", "SIMILAR", "POSITION", "SUBSTRING", "CHAR_LENGTH", "CHARACTER_LENGTH")
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
    "ONLY",
    "INCLUDE",  # CREATE INDEX … INCLUDE (…): dropped
    "COLLATE",  # "C" and "POSIX" are BINARY
)
_PG_WORDS = frozenset((*_PG_TYPES, *_PG_TIME, *_PG_FUNCTIONS, *_PG_STRINGS, *_PG_OTHER))
_SYMBOL_START = re.compile(r"[?~^\[:#@<]")  # one character class is 3x faster than the alternation
_PG_SYMBOLS = re.compile(r"::|[?~^\[]|#>|@>|<@")
_CONTEXT_WORDS = frozenset(
    [
        *("DISTINCT", "ALL", "DEFAULT", "USING", "CASCADE", "RESTRICT", "CONSTRAINT", "PUBLIC", "PG_CATALOG"),
        "INTEGER",
        "TABLE",
        *("UNION", "EXCEPT", "INTERSECT", "REPLACE"),
    ]
)
_PG_IN_CONTEXT = re.compile(
    "|".join(
        (
            # PostgreSQL's integer is int4, declared INT (SQLite's INTEGER, the rowid alias, is int8)
            r"\bINTEGER\b(?!\s+PRIMARY\s+KEY\b)|\bDISTINCT\s+ON\b|\bALL\s*\(|\bLIMIT\s+ALL\b|\bUSING\s+\w+\s*\(|\bON\s+CONSTRAINT\b",
            r"\bDROP\b[^;]*\b(?:CASCADE|RESTRICT)\b|(?:\bPUBLIC|\"PUBLIC\"|\bPG_CATALOG|\"PG_CATALOG\")\s*\.",
            # (SELECT …) UNION (SELECT …): SQLite takes no parenthesised members
            r"\)\s*(?:UNION|EXCEPT|INTERSECT)\b|\b(?:UNION|EXCEPT|INTERSECT)(?:\s+ALL|\s+DISTINCT)?\s*\(",
            r"\bCREATE\s+OR\s+REPLACE\s+VIEW\b",  # SQLite has no OR REPLACE: DROP VIEW IF EXISTS first
            # CREATE TABLE t (): no columns, which SQLite cannot make (refused after sqlglot reads it)
            r'\bTABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?:"[^"]*"|[^\s(;"]+)(?:\s*\.\s*(?:"[^"]*"|[^\s(;"]+))?\s*\(\s*\)',
            r"\bDEFAULT\s+(?!VALUES\b|NULL\b|TRUE\b|FALSE\b|CURRENT_DATE\b|CURRENT_TIME\b|[-+\d.'(])",
        )
    )
)
_WORD = re.compile(r"[A-Z_][A-Z0-9_$]*")

# SQLite keywords that PostgreSQL does not reserve and that SQLite does not take as a bare name: a column
# ``index`` (pandas' ``to_sql`` makes one) is ``SELECT index FROM t`` in PostgreSQL and a syntax error in
# SQLite. Where one is used as a name, the statement goes through sqlglot, which quotes it. ALTER, BETWEEN,
# DROP and INSERT qualify too, but sqlglot cannot read them as names either. (Derived with SQLite itself:
# tests/unit/test_dialect_keywords.py checks the list against the SQLite in use.)
SQLITE_ONLY_KEYWORDS = frozenset(
    {"ADD", "AUTOINCREMENT", "COMMIT", "DELETE", "ESCAPE", "EXISTS", "INDEX", "NOTHING", "RAISE", "SET"}
    | {"TRANSACTION", "UPDATE", "VALUES"}
)
# Where each is the keyword: every pattern ends with the word it vouches for.
_START = r"(?:^|[;(])\s*"  # a statement's start, or a subquery's
_KEYWORD_CONTEXTS: dict[str, tuple[re.Pattern[str], ...]] = {
    word: tuple(re.compile(p) for p in patterns)
    for word, patterns in {
        "ADD": (_START + r"ALTER\b[^;]*\bADD$",),
        "AUTOINCREMENT": (r"\bKEY(?:\s+(?:ASC|DESC))?\s+AUTOINCREMENT$",),
        "COMMIT": (_START + "COMMIT$",),
        "DELETE": (_START + "DELETE$", r"\)\s*DELETE$", r"\b(?:ON|BEFORE|AFTER|OF|BEGIN)\s+DELETE$"),
        "ESCAPE": (r"(?:''|\$\d+|\?\d*)\s*ESCAPE$",),
        "EXISTS": (r"\bIF(?:\s+NOT)?\s+EXISTS$", r"\bEXISTS(?=\s*\()"),
        "INDEX": (r"\b(?:CREATE(?:\s+UNIQUE)?|DROP|REINDEX)\s+INDEX$",),
        "NOTHING": (r"\bDO\s+NOTHING$",),
        "RAISE": (r"\bRAISE(?=\s*\()",),
        "SET": (r"\bUPDATE\b[^;]*?\bSET$", r"\bSET(?=\s+(?:NULL|DEFAULT)\b)", _START + r"ALTER\b[^;]*\bSET$"),
        "TRANSACTION": (r"\b(?:BEGIN|END|COMMIT|ROLLBACK)\s+TRANSACTION$",),
        "UPDATE": (_START + "UPDATE$", r"\)\s*UPDATE$", r"\b(?:ON|DO|FOR|BEFORE|AFTER|OF|BEGIN)\s+UPDATE$"),
        "VALUES": (r"\bVALUES(?=\s*\()", r"\bDEFAULT\s+VALUES$"),
    }.items()
}
_QUOTED_NAME = re.compile(r'"[^"]*"')
_WORD_AT = {word: re.compile(rf"\b{word}\b") for word in SQLITE_ONLY_KEYWORDS}


def _keyword_used_as_name(upper: str, words: list[str]) -> bool:
    """Whether one of ``SQLITE_ONLY_KEYWORDS`` in ``upper`` (strings and comments masked) stands where it is
    not that keyword: then it is a name, which SQLite reads only quoted."""
    present = SQLITE_ONLY_KEYWORDS.intersection(words)
    if not present:
        return False
    if '"' in upper:
        upper = _QUOTED_NAME.sub('""', upper)  # a quoted name is a name already
    for word in present:
        contexts = _KEYWORD_CONTEXTS[word]
        for m in _WORD_AT[word].finditer(upper):
            if not any(_vouches(pattern, upper, m.start(), m.end()) for pattern in contexts):
                return True
    return False


_CONTEXT_REACH = 256  # how far before a word its context is looked for: a hostile statement stays linear


def _vouches(pattern: re.Pattern[str], upper: str, start: int, end: int) -> bool:
    """Whether ``pattern`` says the word at ``upper[start:end]`` is the keyword: a pattern ending in ``$``
    ends exactly at the word, the others (a look-ahead after the word) start at it. ``^`` matches only at the
    text's real start, so a bounded search cannot take a word far into a statement for its first."""
    if pattern.pattern.endswith("$"):
        return pattern.search(upper, max(0, start - _CONTEXT_REACH), end) is not None
    return pattern.match(upper, start) is not None


def _has_pg_syntax(masked: str) -> bool:
    upper = masked.upper()
    words = _WORD.findall(upper)
    return (
        not _PG_WORDS.isdisjoint(words)
        or (_SYMBOL_START.search(masked) is not None and _PG_SYMBOLS.search(masked) is not None)
        or (not _CONTEXT_WORDS.isdisjoint(words) and _PG_IN_CONTEXT.search(upper) is not None)
        or _keyword_used_as_name(upper, words)
        or schemas.needs_sqlglot(upper, words)
    )


_PARAM = re.compile(r"\$(\d+)")
_PARAM_AFTER_NAME = re.compile(r"([\w$])?\$(\d+)")  # group 1 set: a $ inside a name such as a$1
# What a SQLite statement can start with; anything else (garbage included) goes to sqlglot, which explains.
_SQLITE_START = re.compile(
    r"(?:\(|(?:SELECT|INSERT|UPDATE|DELETE|WITH|VALUES|CREATE|DROP|ALTER|REPLACE|PRAGMA|EXPLAIN|ANALYZE"
    r"|VACUUM|REINDEX|BEGIN|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE)\b)",
    re.I,
)


def _fast_translate(sql: str) -> Translation | None:
    """Only ``$n`` → ``?n`` when the text has no PostgreSQL-only syntax; None when sqlglot is needed."""
    spans = lex(sql)
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
        lead = LEADING_NOISE.match(masked)
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
    simple = len(numbers) == code.count("$")
    i = code.find("$")
    while simple and i >= 0:
        simple = not is_word_char(code[i - 1 : i])
        i = code.find("$", i + 1)
    if simple:  # every $ starts a parameter: the common case, 3x faster than a regex substitution
        highest = int(numbers[0]) if len(numbers) == 1 else max(map(int, numbers), default=0)
        return code.replace("$", "?"), check_param(highest)
    # a $ inside a name (a$1) is part of the name, not a parameter
    params = [int(m.group(2)) for m in _PARAM_AFTER_NAME.finditer(code) if not m.group(1)]
    renumbered = _PARAM_AFTER_NAME.sub(lambda m: m.group() if m.group(1) else "?" + m.group(2), code)
    return renumbered, check_param(max(params, default=0))


def translate(sql: str) -> Translation:
    """SQLite text for a PostgreSQL query string (possibly several statements); cached by text, refusals
    too: a client repeating a statement that cannot be translated would otherwise pay sqlglot every time."""
    global _schema_generation
    if schemas.generation != _schema_generation:  # a schema appeared: cached fast-path texts may name it
        _schema_generation = schemas.generation
        _translated.cache_clear()
    found = _translated(sql)
    if isinstance(found, Translation):
        return found
    reason, hint, sqlstate = found
    raise TranslationError(reason, hint=hint, sqlstate=sqlstate)


@functools.lru_cache(maxsize=CACHE_SIZE)
def _translated(sql: str) -> Translation | tuple[str, str | None, str]:
    try:
        lead = LEADING_NOISE.match(sql)  # comments too: sqlmigrate prints one before each statement
        body = sql[lead.end() :] if lead is not None else sql
        head = body[:7].upper()
        if head.startswith(("ALTER", "CREATE", "DROP", "VACUUM", "ANALY")):  # schema statements: see ``ddl``
            special = _schema_statement(body, head)
            if isinstance(special, Translation):
                return special
            sql = special
        if "is_called" in body and (state := sequences.state_query(body)) is not None:
            return _translate_with_sqlglot(state)  # pg_dump's read of a sequence (sql/sequences.py)
        fast = _fast_translate(sql)
        return fast if fast is not None else _translate_with_sqlglot(sql)
    except TranslationError as e:  # kept as its words: a cached exception object would collect tracebacks
        return e.reason, e.hint, e.sqlstate


_schema_generation = 0


def note_schemas(names: set[str] | frozenset[str]) -> None:
    """Schemas of a served database (``sql/schemas.py``): statements naming one must go through sqlglot."""
    schemas.note(names)


def _schema_statement(sql: str, head: str) -> Translation | str:
    """The translation of an ALTER TABLE SQLite cannot run as it is, or of VACUUM/ANALYZE; else the text to
    translate as usual (CREATE without storage parameters and operator classes)."""
    if sequences.is_sequence_statement(sql):
        return Translation(sql=sequences.translate(sql), param_count=0, translated=True)
    if head.startswith("CREATE"):
        if "IDENTITY" in sql.upper():  # its options (sql/sequences.py)
            sql = sequences.identity_options(sql)
        return ddl.strip_storage(sql)
    if head.startswith("DROP"):
        # DROP TABLE a, b: one statement per table, each with its comments (sql/rewrites.py), and tables
        # of a schema (sql/schemas.py) by their names
        dropped = ddl.drop_tables(sql) if not schemas.known() else None
        if dropped is None:
            return sql
        return Translation(
            sql="; ".join(translate(one).sql for one in dropped.split("; ")), param_count=0, translated=True
        )
    if head.startswith("ALTER"):
        if (identity := sequences.add_identity(sql)) is not None:
            # the sequence marked, so that the primary key added next makes it the rowid-numbered identity
            mark = f"{sequences.MARKER} /*pg:identity {sequences.identity_kind(sql)}*/"
            created = translate(identity[0]).sql.replace(sequences.MARKER, mark, 1)
            return Translation(sql=f"{created}; {translate(identity[1]).sql}", param_count=0, translated=True)
        if not ddl.needs_rebuild(sql):
            return sql
        return Translation(
            sql=ddl.alter_table(sql, lambda s: translate(s).sql), param_count=0, translated=True
        )
    statements = ddl.vacuum(sql)
    if statements is None:
        return sql
    return Translation(sql=statements, param_count=0, translated=True)


@functools.lru_cache(maxsize=1024)
def translate_catalog(sql: str) -> Translation:
    """As ``translate``, for a query over the PostgreSQL catalog: ``catalog_query`` rewrites its arrays and
    reg* casts first, and the SQL starts with a comment naming the types of the output columns."""
    return _translate_with_sqlglot(sql, catalog=True)


# --- the sqlglot path --------------------------------------------------------------------------------------

_CATALOG_PREFIX = re.compile(r"(?<![\w$.])pg_catalog\s*\.\s*", re.I)
_ENDS_WITH_INTERVAL = re.compile(r"\bINTERVAL\s*$", re.I)


def _translate_with_sqlglot(sql: str, *, catalog: bool = False) -> Translation:
    parts: list[str] = []
    pos = 0
    for span in lex(sql):  # textual fixes outside strings and comments, before sqlglot reads the SQL
        code = _spaced_params(_CATALOG_PREFIX.sub("", sql[pos : span.start]))
        literal = sql[span.start : span.end]
        if span.kind == "'" and span.closed and _ENDS_WITH_INTERVAL.search(code):
            normalized = normalized_interval(literal[1:-1])
            literal = literal if normalized is None else f"'{normalized}'"
        parts += [code, literal]
        pos = span.end
    text = "".join([*parts, _spaced_params(_CATALOG_PREFIX.sub("", sql[pos:]))])
    try:
        trees = sqlglot.parse(text, read="postgres")
    except SqlglotError as e:
        raise TranslationError(f"it does not parse as PostgreSQL: {_describe(e)}") from e
    ctx = RewriteContext(catalog=catalog)
    out: list[str] = []
    for tree in trees:
        if tree is None:
            continue
        for statement in split_statement(tree):
            values_aliases_to_ctes(statement)
            header = catalog_query.rewrite(statement) if catalog else ""
            if not catalog:
                rewrite_unnest_tables(statement)
                mark_jsonb_comparisons(statement)
            rewrite_tree(statement, ctx)
            _quote_keyword_names(statement)
            try:
                out.append(header + statement.sql(dialect="sqlite", unsupported_level=ErrorLevel.RAISE))
            except SqlglotError as e:
                raise TranslationError(f"SQLite has no equivalent: {_describe(e)}") from e
    types = tuple(ctx.param_types.get(n) for n in range(1, ctx.highest + 1))
    return Translation("; ".join(out), ctx.highest, True, types, locks=ctx.locks)


def _quote_keyword_names(statement: exp.Expr) -> None:
    """Quote names that are SQLite keywords (``index``): PostgreSQL reads them bare, SQLite only quoted."""
    for ident in statement.find_all(exp.Identifier):
        if not ident.quoted and ident.name.upper() in SQLITE_ONLY_KEYWORDS:
            ident.set("quoted", True)


_PARAM_ALONE = re.compile(r"(?<![\w$])\$(\d+)")


def _spaced_params(code: str) -> str:
    """``$1+$2`` → `` $1 + $2 ``: sqlglot reads ``$1+$`` as the start of a dollar-quoted string and
    fails. Spaces around a parameter change nothing else outside strings and names."""
    return _PARAM_ALONE.sub(r" $\1 ", code) if "$" in code else code


def _describe(error: SqlglotError) -> str:
    """sqlglot's first complaint, without the ANSI-underlined excerpt its message carries."""
    details = error.errors[0] if isinstance(error, ParseError) and error.errors else None
    if details:
        return f"{details.get('description')} at line {details.get('line')}, column {details.get('col')}"
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__
