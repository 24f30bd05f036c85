"""CREATE / ALTER / DROP SEQUENCE, as SQLite statements.

A standalone sequence is a one-row table marked ``/*pg:sequence*/`` (its name follows the CREATE TABLE
words, where sqlite_schema keeps it), with PostgreSQL's own column names (``last_value``, ``is_called``,
``start_value``, …): it replicates as DDL and a row like any table, ``SELECT last_value, is_called FROM s``
(pg_dump's query) works as it is, and the catalog shows it as a relation of kind ``S``
(``catalog/sequences.py``). Values come from ``nextval`` (``changes/sequences.py``), which numbers them
with the node's rowid allocator so that two nodes never hand out the same one.

Honoured: ``AS smallint|integer|bigint``, ``INCREMENT BY``, ``MINVALUE``/``MAXVALUE`` (nextval past them is
2200H), ``START WITH``, ``IF [NOT] EXISTS``, ``ALTER … RESTART [WITH]``, ``MINVALUE``/``MAXVALUE``/``START``
changes. Accepted and without effect, as nothing here depends on them: ``CACHE`` (a per-session
preallocation in PostgreSQL) and ``OWNED BY`` (only makes DROP TABLE drop the sequence too). Refused with
0A000: ``CYCLE``, ``TEMPORARY`` and ``UNLOGGED`` sequences, ``ALTER … INCREMENT BY`` of an existing one.
``ALTER SEQUENCE IF EXISTS`` of a missing sequence is an error (42P01), not PostgreSQL's notice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlite_ha.db.tabledef import quote, unquote
from sqlite_ha.server.pgwire.sql.translation import TranslationError

MARKER = "/*pg:sequence*/"
_NAME = r'(?:(?:"(?:[^"]|"")+"|[\w$]+)\s*\.\s*)?(?:"(?:[^"]|"")+"|[\w$]+)'
_CREATE = re.compile(
    rf"^\s*CREATE\s+(?P<kind>(?:TEMP|TEMPORARY|UNLOGGED)\s+)?SEQUENCE\s+(?P<if>IF\s+NOT\s+EXISTS\s+)?"
    rf"(?P<name>{_NAME})(?P<rest>.*?)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_ALTER = re.compile(
    rf"^\s*ALTER\s+SEQUENCE\s+(?P<if>IF\s+EXISTS\s+)?(?P<name>{_NAME})(?P<rest>.*?)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_DROP = re.compile(
    r"^\s*DROP\s+SEQUENCE\s+(?P<if>IF\s+EXISTS\s+)?(?P<names>.*?)\s*(?:CASCADE|RESTRICT)?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_OPTION = re.compile(
    r"\s*(?:(?P<as>AS\s+(?P<type>smallint|integer|int|int2|int4|int8|bigint))"
    r"|(?P<inc>INCREMENT\s+(?:BY\s+)?(?P<step>[-+]?\d+))"
    r"|(?P<nomin>NO\s+MINVALUE)|(?P<min>MINVALUE\s+(?P<low>[-+]?\d+))"
    r"|(?P<nomax>NO\s+MAXVALUE)|(?P<max>MAXVALUE\s+(?P<high>[-+]?\d+))"
    r"|(?P<start>START\s+(?:WITH\s+)?(?P<first>[-+]?\d+))"
    r"|(?P<restart>RESTART(?:\s+(?:WITH\s+)?(?P<again>[-+]?\d+))?)"
    r"|(?P<cache>CACHE\s+\d+)|(?P<nocycle>NO\s+CYCLE)|(?P<cycle>CYCLE)"
    rf"|(?P<owned>OWNED\s+BY\s+(?:NONE|{_NAME}(?:\s*\.\s*(?:\"(?:[^\"]|\"\")+\"|[\w$]+))?)))",
    re.IGNORECASE,
)
_TYPES = {"smallint": 16, "int2": 16, "integer": 32, "int": 32, "int4": 32, "bigint": 64, "int8": 64}
_TYPE_NAMES = {16: "smallint", 32: "integer", 64: "bigint"}
_HEAD = re.compile(r"^\s*(?:CREATE\s+(?:(?:TEMP|TEMPORARY|UNLOGGED)\s+)?|ALTER\s+|DROP\s+)SEQUENCE\b", re.I)


_STATE = re.compile(
    rf"^\s*SELECT\s+last_value\s*,\s*is_called\s+FROM\s+(?P<name>{_NAME})\s*;?\s*$", re.IGNORECASE
)


def state_query(sql: str) -> str | None:
    """pg_dump's ``SELECT last_value, is_called FROM s``, for any sequence: the implicit one of a SERIAL
    key is no table, so the state comes from functions (``changes/sequences.state``) — one form for both."""
    found = _STATE.match(sql)
    if found is None:
        return None
    literal = "'" + table_name(found.group("name")).replace("'", "''") + "'"
    return (
        f"SELECT pg_sequence_last_value({literal}) AS last_value, "
        f"pg_sequence_is_called({literal}) = 1 AS is_called"
    )


_ADD_IDENTITY = re.compile(
    rf"^\s*ALTER\s+TABLE\s+(?:ONLY\s+)?(?P<table>{_NAME})\s+ALTER\s+(?:COLUMN\s+)?"
    rf"(?P<column>\"(?:[^\"]|\"\")+\"|[\w$]+)\s+ADD\s+GENERATED\s+(?:ALWAYS|BY\s+DEFAULT)\s+AS\s+IDENTITY"
    r"\s*(?:\((?P<options>[^()]*)\))?\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_SEQUENCE_NAME = re.compile(rf"\bSEQUENCE\s+NAME\s+(?P<name>{_NAME})", re.IGNORECASE)


_IDENTITY_OPTIONS = re.compile(r"(\bAS\s+IDENTITY)\s*\(([^()]*)\)", re.IGNORECASE)


def identity_options(sql: str) -> str:
    """``GENERATED … AS IDENTITY (options)`` in a CREATE TABLE: the key is the rowid, numbered by the node's
    allocator, so options that are PostgreSQL's defaults (what SQLAlchemy and pg_dump spell out: START WITH
    1, INCREMENT BY 1, NO MINVALUE/MAXVALUE, CACHE) are dropped, and others refused (0A000) rather than
    ignored."""

    def check(found: re.Match[str]) -> str:
        options = _options(_SEQUENCE_NAME.sub("", found.group(2)))
        top = 2 ** (options.bits - 1) - 1
        if (
            options.step not in (None, 1)
            or options.start not in (None, 1)
            or options.low not in (None, 1)
            or options.high not in (None, top, 2**63 - 1)
            or options.restarted
        ):
            raise TranslationError(
                "identity options other than START WITH 1 INCREMENT BY 1 are not supported",
                hint="the key is numbered as the table's rowid; setval() after CREATE TABLE moves it on",
                sqlstate="0A000",
            )
        return found.group(1)

    return _IDENTITY_OPTIONS.sub(check, sql)


def identity_kind(sql: str) -> str:
    """``always`` or ``default``: how an ``ADD GENERATED … AS IDENTITY`` numbers (db/sequence_keys.py)."""
    return "always" if re.search(r"\bGENERATED\s+ALWAYS\b", sql, re.IGNORECASE) else "default"


def add_identity(sql: str) -> tuple[str, str] | None:
    """``ALTER TABLE t ALTER COLUMN c ADD GENERATED … AS IDENTITY (SEQUENCE NAME s …)`` (how pg_dump writes
    an identity column): ``CREATE SEQUENCE s …`` and the column's ``DEFAULT nextval('s')``, as PostgreSQL
    statements to translate. The key then takes its values from the sequence (unique across nodes), not
    from the rowid; GENERATED ALWAYS does not refuse a value given explicitly."""
    found = _ADD_IDENTITY.match(sql)
    if found is None:
        return None
    options = found.group("options") or ""
    named = _SEQUENCE_NAME.search(options)
    table = table_name(found.group("table"))
    column = (
        unquote(found.group("column")) if found.group("column").startswith('"') else found.group("column")
    )
    name = named.group("name") if named else quote(f"{table}_{column.lower()}_seq")
    rest = _SEQUENCE_NAME.sub("", options)
    return (
        f"CREATE SEQUENCE {name} {rest}",
        f"ALTER TABLE {found.group('table')} ALTER COLUMN {found.group('column')} "
        f"SET DEFAULT nextval('{table_name(name).replace(chr(39), chr(39) * 2)}')",
    )


_QUALIFIED_CALL = re.compile(r"\bpg_catalog\s*\.\s*(nextval|setval|currval|lastval)\s*\(", re.IGNORECASE)


def sequence_calls(sql: str) -> str:
    """``pg_catalog.setval(…)`` (pg_dump writes it so) as ``setval(…)``: the sequence functions run on the
    database's writer (changes/sequences.py), not on the catalog that ``pg_catalog.`` would send it to."""
    return _QUALIFIED_CALL.sub(r"\1(", sql)


def is_sequence_statement(sql: str) -> bool:
    return _HEAD.match(sql) is not None


def translate(sql: str) -> str:
    """The SQLite text for a CREATE, ALTER or DROP SEQUENCE statement."""
    if (found := _CREATE.match(sql)) is not None:
        return _create(found)
    if (found := _ALTER.match(sql)) is not None:
        return _alter(found)
    if (found := _DROP.match(sql)) is not None:
        names = [n.strip() for n in found.group("names").split(",") if n.strip()]
        exists = "IF EXISTS " if found.group("if") else ""
        return "; ".join(f"DROP TABLE {exists}{quote(table_name(n))}" for n in names)
    raise TranslationError("a SEQUENCE statement this front end does not read")


def table_name(name: str) -> str:
    """The table holding sequence ``name``: ``public.s`` and ``s`` are ``s``; ``x.s`` is ``"x.s"``."""
    parts = [unquote(p.strip()) if p.strip().startswith('"') else p.strip().lower() for p in _split(name)]
    if len(parts) == 2 and parts[0] != "public":
        return f"{parts[0]}.{parts[1]}"
    return parts[-1]


def _split(name: str) -> list[str]:
    return re.findall(r'"(?:[^"]|"")+"|[^.\s]+', name)


@dataclass
class _Options:
    bits: int = 64
    step: int | None = None
    low: int | None = None
    high: int | None = None
    start: int | None = None
    restart: int | None = None
    restarted: bool = False
    set_low: bool = False
    set_high: bool = False


def _options(rest: str) -> _Options:
    out = _Options()
    pos = 0
    rest = rest.rstrip()
    while pos < len(rest):
        m = _OPTION.match(rest, pos)
        if m is None or m.end() == pos:
            raise TranslationError(f"a sequence option this front end does not read: {rest[pos:].strip()!r}")
        pos = m.end()
        if m.group("as"):
            out.bits = _TYPES[m.group("type").lower()]
        elif m.group("inc"):
            out.step = int(m.group("step"))
            if out.step == 0:
                raise TranslationError("INCREMENT must not be zero", sqlstate="22023")
        elif m.group("nomin"):
            out.set_low = True
        elif m.group("min"):
            out.low, out.set_low = int(m.group("low")), True
        elif m.group("nomax"):
            out.set_high = True
        elif m.group("max"):
            out.high, out.set_high = int(m.group("high")), True
        elif m.group("start"):
            out.start = int(m.group("first"))
        elif m.group("restart"):
            out.restarted = True
            out.restart = int(m.group("again")) if m.group("again") else None
        elif m.group("cycle"):
            raise TranslationError(
                "CYCLE sequences are not supported", hint="values are handed out per node", sqlstate="0A000"
            )
    return out


def _bounds(bits: int, step: int, low: int | None, high: int | None) -> tuple[int, int]:
    top = 2 ** (bits - 1) - 1
    low = low if low is not None else (1 if step > 0 else -top - 1)
    high = high if high is not None else (top if step > 0 else -1)
    return low, high


def _create(found: re.Match[str]) -> str:
    if found.group("kind"):
        raise TranslationError(
            f"{found.group('kind').strip().upper()} sequences are not supported", sqlstate="0A000"
        )
    options = _options(found.group("rest"))
    if options.restarted:
        raise TranslationError("RESTART belongs to ALTER SEQUENCE")
    step = options.step or 1
    low, high = _bounds(options.bits, step, options.low, options.high)
    start = options.start if options.start is not None else (low if step > 0 else high)
    if not low <= start <= high:
        raise TranslationError(
            f"START value ({start}) cannot be outside the sequence's bounds ({low}..{high})", sqlstate="22023"
        )
    name = quote(table_name(found.group("name")))
    exists = "IF NOT EXISTS " if found.group("if") else ""
    literal = "'" + table_name(found.group("name")).replace("'", "''") + "'"
    # the options are the columns' defaults, and the row is inserted by the writer's function: an INSERT in
    # the text would have the rowid allocator refuse the text (an insert into a table it does not know yet)
    return (
        f"CREATE TABLE {exists}{name} {MARKER} (last_value INTEGER NOT NULL DEFAULT {start}, "
        "log_cnt INTEGER NOT NULL DEFAULT 0, is_called BOOLEAN NOT NULL DEFAULT 0, "
        f"start_value INTEGER NOT NULL DEFAULT {start}, "
        f"increment_by INTEGER NOT NULL DEFAULT {step}, "
        f"min_value INTEGER NOT NULL DEFAULT {low}, max_value INTEGER NOT NULL DEFAULT {high}, "
        "cache_size INTEGER NOT NULL DEFAULT 1, "
        f"data_type TEXT NOT NULL DEFAULT '{_TYPE_NAMES[options.bits]}', "
        f"origin INTEGER NOT NULL DEFAULT {start - step}); "
        f"SELECT 1 FROM (SELECT pg_sequence_init({literal}) AS done) WHERE done IS NOT NULL"  # no rows
    )


def _alter(found: re.Match[str]) -> str:
    options = _options(found.group("rest"))
    if options.step is not None:
        raise TranslationError(
            "ALTER SEQUENCE … INCREMENT BY is not supported",
            hint="create a new sequence with the increment and setval it",
            sqlstate="0A000",
        )
    name = quote(table_name(found.group("name")))
    sets: list[str] = []
    if options.start is not None:
        sets.append(f"start_value = {options.start}")
    if options.set_low:
        sets.append(
            f"min_value = {options.low}"
            if options.low is not None
            else "min_value = CASE WHEN increment_by > 0 THEN 1 ELSE -max_value - 1 END"
        )
    if options.set_high:
        top = 2 ** (options.bits - 1) - 1
        sets.append(
            f"max_value = {options.high}"
            if options.high is not None
            else f"max_value = CASE WHEN increment_by > 0 THEN {top} ELSE -1 END"
        )
    if options.bits != 64 and re.search(r"\bAS\b", found.group("rest"), re.I):
        sets.append(f"data_type = '{_TYPE_NAMES[options.bits]}'")
    statements = [f"UPDATE {name} SET {', '.join(sets)}"] if sets else []
    if options.restarted:
        value = str(options.restart) if options.restart is not None else f"(SELECT start_value FROM {name})"
        literal = "'" + table_name(found.group("name")).replace("'", "''") + "'"
        statements.append(f"SELECT 1 FROM (SELECT setval({literal}, {value}, false) AS v) WHERE v IS NULL")
    if not statements:  # OWNED BY, CACHE: nothing to change here; still fails on a missing sequence
        statements.append(f"SELECT 1 FROM {name} LIMIT 0")
    return "; ".join(statements)
