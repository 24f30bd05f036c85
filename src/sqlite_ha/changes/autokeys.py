"""Rewrite inserts that let SQLite choose a key so that the key is supplied instead.

SQLite has no hook to choose a rowid, and changing a key after the insert would make ``last_insert_rowid()``
and ``RETURNING`` lie. So the key has to be in the statement when it runs: an ``INSERT`` or ``REPLACE`` into a
table whose primary key is a rowid alias (``INTEGER PRIMARY KEY``, with or without ``AUTOINCREMENT``) is
rewritten so that the key column always gets a value, ``coalesce(<the value given>, NEXT)`` where the
statement names the column (an explicit NULL or a parameter bound to NULL asks for a key, as in SQLite) and
``NEXT`` where it does not. ``NEXT`` stands for ``_ha_next_rowid('t', (SELECT max("id") FROM "t"))`` (with
``sqlite_sequence`` too for AUTOINCREMENT): the node's allocator (``rowids``), given the largest key, which
SQLite reads once per statement.

A ``VALUES`` list gets the key in each row (``VALUES (?, NEXT)``), the cheapest form to run.
Every other form (``INSERT … SELECT``, and VALUES lists too long to be worth tokenizing) becomes one shape:
the rows the statement inserts (its ``SELECT`` or ``VALUES``, text untouched, so parameters keep their
numbers) move into a common table expression, and a ``SELECT`` over it adds the key::

    INSERT INTO t(x) SELECT a FROM s RETURNING id
    INSERT INTO t(x, "id") WITH _ha_src(_ha_c1) AS (SELECT a FROM s)
        SELECT _ha_c1, NEXT FROM _ha_src RETURNING id

``DEFAULT VALUES`` becomes ``("id") VALUES (NEXT)``. ``INSERT OR …``, ``REPLACE``,
upserts (``ON CONFLICT``, after which the SELECT gets ``WHERE true`` as SQLite's grammar asks),
``RETURNING``, an alias (``INSERT INTO t AS x``), ``main.`` and quoted names keep working; the statements of
a text holding several are rewritten one by one. Anything else is returned unchanged: this module only reads
SQL, a tokenizer deep.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlite_ha.db.schema import quote

FUNCTION = "_ha_next_rowid"
SOURCE = "_ha_src"
ROWID_NAMES = ("rowid", "oid", "_rowid_")


@dataclass(frozen=True, slots=True)
class KeyedTable:
    """A table whose key SQLite would choose: its rowid alias and the columns an INSERT without a column list
    fills, in order (generated columns excluded)."""

    name: str  # as stored in the schema
    key: str
    columns: tuple[str, ...]
    autoincrement: bool


class AutoKeyError(ValueError):
    """A text this module cannot make safe (an INSERT into a table created earlier in the same text)."""


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # word, qid (quoted identifier), str, param, op
    text: str
    start: int
    end: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<comment>--[^\n]*|/\*.*?(?:\*/|\Z))
      | (?P<str>'[^']*(?:''[^']*)*')
      | (?P<qid>"[^"]*(?:""[^"]*)*"|`[^`]*(?:``[^`]*)*`|\[[^\]]*\])
      | (?P<param>[?:@$]\w*)
      | (?P<word>[\w\x80-\U0010ffff]+)
      | (?P<op>\S))""",
    re.VERBOSE | re.DOTALL,
)
_INLINE_VALUES = 4096  # longer VALUES lists are not tokenized: they take the common table expression
_MAYBE_INSERT = re.compile(r"insert|replace", re.IGNORECASE)
# What makes a text need every token: more statements, an upsert, RETURNING, a line comment.
_NEEDS_ALL_TOKENS = re.compile(r";|--|returning|conflict", re.IGNORECASE)
_DDL_WORDS = frozenset({"CREATE", "DROP", "ALTER"})


def may_insert(sql: str) -> bool:
    """The cheap test: False means the text surely holds no INSERT or REPLACE."""
    return _MAYBE_INSERT.search(sql) is not None


def _tokens(sql: str) -> list[_Token] | None:
    out = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup
        if kind is None or kind == "comment":
            continue  # trailing whitespace, or a comment
        text = m.group(kind)
        if kind == "op" and text in "'\"`[":
            return None  # unterminated: SQLite reports it
        out.append(_Token(kind, text, m.start(kind), m.end()))
    return out


def _statements(tokens: list[_Token]) -> list[list[_Token]]:
    """Cut at semicolons outside parentheses and outside a trigger's BEGIN … END."""
    out: list[list[_Token]] = []
    current: list[_Token] = []
    depth = 0
    trigger = False  # inside CREATE TRIGGER … BEGIN, until its END
    begun = False
    cases = 0
    for tok in tokens:
        if tok.kind == "op" and tok.text == ";" and depth == 0 and not (trigger and begun):
            if current:
                out.append(current)
            current, trigger, begun, cases = [], False, False, 0
            continue
        current.append(tok)
        if tok.kind == "op":
            depth += {"(": 1, ")": -1}.get(tok.text, 0)
        elif tok.kind == "word":
            word = tok.upper
            if word == "TRIGGER" and current[0].upper == "CREATE":
                trigger = True
            elif trigger and word == "BEGIN":
                begun = True
            elif trigger and word == "CASE":
                cases += 1
            elif trigger and word == "END":
                if cases:
                    cases -= 1
                else:
                    begun = False
    if current:
        out.append(current)
    return out


def _name(tok: _Token) -> str | None:
    if tok.kind == "word":
        return tok.text
    if tok.kind == "qid":
        inner = tok.text[1:-1]
        return inner.replace(tok.text[0] * 2, tok.text[0]) if tok.text[0] in '"`' else inner
    if tok.kind == "str":  # SQLite takes a string literal where it expects a name
        return tok.text[1:-1].replace("''", "'")
    return None


class _Skip(Exception):
    """Not an insert with a key to supply: leave the statement as it is."""


def rewrite(sql: str, lookup: Callable[[str], KeyedTable | None]) -> str:
    """``sql`` with every INSERT/REPLACE into a keyed table given its key (see the module's docstring).

    ``lookup`` finds a table by the name a statement uses (None: not a table with a rowid alias, or no such
    table). Raises ``AutoKeyError`` for an INSERT into a table that does not exist, in a text that changes
    the schema before it: what the table will be is unknown, so its key cannot be supplied safely.
    """
    if _NEEDS_ALL_TOKENS.search(sql) is None and _balanced(sql):
        # One statement, no upsert, no RETURNING, no line comment: its rows run to the end of the text, and
        # only the tokens before them are needed (most inserts; tokenizing long VALUES costs milliseconds).
        try:
            replaced = _rewrite_statement(sql, _Lazy(sql), lookup, ddl_before=False)
        except _Skip:
            return sql
        return sql if replaced is None else replaced
    tokens = _tokens(sql)
    if tokens is None:
        return sql
    pieces: list[str] = []
    done = 0
    ddl_before = False
    for stmt in _statements(tokens):
        try:
            replaced = _rewrite_statement(sql, stmt, lookup, ddl_before)
        except _Skip:
            replaced = None
        if stmt[0].upper in _DDL_WORDS:
            ddl_before = True
        if replaced is None:
            continue
        start, end = stmt[0].start, stmt[-1].end
        pieces.append(sql[done:start])
        pieces.append(replaced)
        done = end
    if not pieces:
        return sql
    pieces.append(sql[done:])
    return "".join(pieces)


def _balanced(sql: str) -> bool:
    """No string or quoted name left open (the rows are not tokenized on the short path)."""
    return (
        sql.count("'") % 2 == 0
        and sql.count('"') % 2 == 0
        and sql.count("`") % 2 == 0
        and sql.count("[") == sql.count("]")
    )


class _Lazy:
    """The tokens of a text, read only as far as they are asked for."""

    def __init__(self, sql: str) -> None:
        self._scan = _TOKEN.finditer(sql)
        self._read: list[_Token] = []

    def __getitem__(self, k: int) -> _Token:
        while len(self._read) <= k:
            m = next(self._scan, None)
            if m is None:
                raise IndexError(k)
            kind = m.lastgroup
            if kind is None or kind == "comment":
                continue
            text = m.group(kind)
            if kind == "op" and text in "'\"`[":
                raise _Skip  # unterminated: SQLite reports it
            self._read.append(_Token(kind, text, m.start(kind), m.end()))
        return self._read[k]


def _rewrite_statement(
    sql: str, stmt: list[_Token] | _Lazy, lookup: Callable[[str], KeyedTable | None], ddl_before: bool
) -> str | None:
    """One statement rewritten, or None to leave it. ``stmt`` is ``_Lazy`` when the statement is the whole
    text and its rows run to its end."""
    i = 0
    whole = isinstance(stmt, _Lazy)
    n = len(stmt) if isinstance(stmt, list) else 2**31

    def at(k: int) -> _Token:
        if k >= n:
            raise _Skip
        try:
            return stmt[k]
        except IndexError:
            raise _Skip from None

    if at(0).upper == "WITH":  # a leading WITH clause: its tables are in parentheses; find the verb
        depth = 0
        i = 1
        while True:
            tok = at(i)
            if tok.kind == "op" and tok.text in "()":
                depth += 1 if tok.text == "(" else -1
            elif depth == 0 and tok.upper in ("INSERT", "REPLACE", "SELECT", "UPDATE", "DELETE", "VALUES"):
                break
            i += 1
    verb = at(i).upper
    if verb == "INSERT":
        i += 1
        if at(i).upper == "OR":
            i += 2
    elif verb != "REPLACE":
        return None
    else:
        i += 1
    if at(i).upper != "INTO":
        return None
    i += 1
    first = _name(at(i))
    table_end = i
    if first is None:
        return None
    table = first
    if at(i + 1).kind == "op" and at(i + 1).text == ".":
        second = _name(at(i + 2))
        if second is None or first.lower() != "main":
            return None  # temp or attached schemas: not replicated
        table, table_end = second, i + 2
    i = table_end + 1
    info = lookup(table)
    if info is None:
        if ddl_before:
            raise AutoKeyError(
                f"this text changes the schema and then inserts into {table!r}, which does not exist yet"
            )
        return None
    if at(i).upper == "AS":
        i += 2
        table_end = i - 1
    columns: list[str] | None = None
    list_span: tuple[int, int] | None = None
    if at(i).kind == "op" and at(i).text == "(":
        columns = []
        open_at = i
        i += 1
        while not (at(i).kind == "op" and at(i).text == ")"):
            name = _name(at(i))
            if name is None:
                return None
            columns.append(name)
            i += 1
            if at(i).kind == "op" and at(i).text == ",":
                i += 1
        list_span = (stmt[open_at].start, stmt[i].end)
        i += 1
    key_pos = _key_position(info, columns)
    target = list(columns) if columns is not None else list(info.columns)
    if at(i).upper == "DEFAULT":
        if columns is not None or at(i + 1).upper != "VALUES":
            return None
        head = sql[stmt[0].start : stmt[table_end].end]
        rest = sql[stmt[i + 1].end : len(sql.rstrip()) if whole else stmt[-1].end]
        return f"{head} ({quote(info.key)}) VALUES ({_call(info)}){rest}"
    body_start = i
    if isinstance(stmt, _Lazy):
        body_stop, tail, upsert = len(sql), "", False
    else:
        body_end = _rows_end(stmt, body_start)
        if body_end == body_start:
            return None
        body_stop = stmt[body_end - 1].end
        tail = sql[stmt[body_end].start : stmt[-1].end] if body_end < n else ""
        upsert = body_end < n and stmt[body_end].upper == "ON"
    if key_pos is None and not target:
        return None
    if at(body_start).upper == "VALUES" and (not whole or len(sql) - at(body_start).start <= _INLINE_VALUES):
        inline = _inline_values(sql, stmt, body_start, body_stop, info, key_pos, len(target))
        if inline is not None:
            if key_pos is None:
                target.append(info.key)
            head = sql[stmt[0].start : list_span[0] if list_span is not None else stmt[table_end].end]
            return f"{head}({', '.join(quote(c) for c in target)}) {inline}" + (f" {tail}" if tail else "")
    names = [f"_ha_c{j + 1}" for j in range(len(target))]
    exprs = list(names)
    if key_pos is None:
        target.append(info.key)
        exprs.append(_call(info))
    else:
        exprs[key_pos] = f"coalesce({names[key_pos]}, {_call(info)})"
    head = sql[stmt[0].start : list_span[0] if list_span is not None else stmt[table_end].end]
    body = sql[at(body_start).start : body_stop].rstrip()
    return (
        f"{head}({', '.join(quote(c) for c in target)}) "
        f"WITH {SOURCE}({', '.join(names)}) AS ({body}) "
        f"SELECT {', '.join(exprs)} FROM {SOURCE}"
        + (" WHERE true" if upsert else "")
        + (f" {tail}" if tail else "")
    )


def _inline_values(
    sql: str,
    stmt: list[_Token] | _Lazy,
    start: int,
    stop: int,
    info: KeyedTable,
    key_pos: int | None,
    width: int,
) -> str | None:
    """``VALUES (…), (…)`` with the key put into each row, or None if the rows are anything else.

    Cheaper to run than the common-table-expression form (a one-row insert is the most frequent write), but
    it needs every token of the rows, so long VALUES lists take the other form.
    """
    out: list[str] = []
    done = stmt[start].start
    k = start + 1
    while True:
        tok = _get(stmt, k)
        if tok is None or tok.kind != "op" or tok.text != "(" or tok.start >= stop:
            return None
        depth = 1
        exprs: list[tuple[int, int]] = []
        first: int | None = None
        last = 0
        while True:
            k += 1
            tok = _get(stmt, k)
            if tok is None:
                return None
            if tok.kind == "op" and tok.text in "()":
                depth += 1 if tok.text == "(" else -1
                if depth == 0:
                    break
            if depth == 1 and tok.kind == "op" and tok.text == ",":
                if first is None:
                    return None
                exprs.append((first, last))
                first = None
            else:
                first = tok.start if first is None else first
                last = tok.end
        if first is None:
            return None
        exprs.append((first, last))
        if len(exprs) != width:
            raise _Skip  # SQLite refuses the statement as it is, and says why in its own words
        if key_pos is None:
            out.append(sql[done : tok.start] + f", {_call(info)}")
            done = tok.start
        else:
            key_start, key_end = exprs[key_pos]
            out.append(sql[done:key_start] + f"coalesce({sql[key_start:key_end]}, {_call(info)})")
            done = key_end
        k += 1
        after = _get(stmt, k)
        if after is None or after.start >= stop:
            out.append(sql[done : tok.end])
            return "".join(out)
        if after.kind != "op" or after.text != ",":
            return None
        k += 1


def _get(stmt: list[_Token] | _Lazy, k: int) -> _Token | None:
    try:
        return stmt[k]
    except IndexError:
        return None


def _rows_end(stmt: list[_Token], start: int) -> int:
    """Where the rows an INSERT inserts end: at an upsert, at RETURNING, or with the statement."""
    depth = 0
    n = len(stmt)
    for k in range(start, n):
        tok = stmt[k]
        if tok.kind == "op" and tok.text in "()":
            depth += 1 if tok.text == "(" else -1
        elif depth == 0 and (
            tok.upper == "RETURNING"
            or (
                tok.upper == "ON"
                and k + 2 < n
                and stmt[k + 1].upper == "CONFLICT"
                and (stmt[k + 2].upper == "DO" or stmt[k + 2].text == "(")
            )
        ):
            return k
    return n


def _key_position(info: KeyedTable, columns: list[str] | None) -> int | None:
    """Where the statement gives the key, if it does (None: SQLite would choose it)."""
    names = columns if columns is not None else list(info.columns)
    real = {c.lower() for c in info.columns}
    for pos, name in enumerate(names):
        lowered = name.lower()
        if lowered == info.key.lower() or (lowered in ROWID_NAMES and lowered not in real):
            return pos
    return None


def _call(info: KeyedTable) -> str:
    """The call that supplies a key: the table and the largest key it has had, read by SQLite itself (a
    subquery SQLite runs once per statement: the function keeps the keys it gave within one)."""
    largest = f"SELECT max({quote(info.key)}) FROM {quote(info.name)}"
    if info.autoincrement:
        seq = f"SELECT seq FROM sqlite_sequence WHERE name = {literal(info.name)}"
        largest = f"SELECT max(coalesce(({largest}), 0), coalesce(({seq}), 0))"
    return f"{FUNCTION}({literal(info.name)}, ({largest}))"


def literal(text: str) -> str:
    """``text`` as an SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
