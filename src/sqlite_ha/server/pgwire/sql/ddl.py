"""PostgreSQL schema statements that SQLite's grammar lacks, taken apart into what SQLite can run.

``ALTER TABLE [IF EXISTS] [ONLY] t action, …`` is split into its actions. What SQLite's ALTER TABLE does
itself (ADD COLUMN, RENAME, SET/DROP NOT NULL, ADD CHECK) stays an ALTER TABLE, translated as any other
statement; the rest (ADD UNIQUE / PRIMARY KEY / FOREIGN KEY, DROP CONSTRAINT, ALTER COLUMN TYPE, SET/DROP
DEFAULT, DROP COLUMN, RENAME CONSTRAINT) becomes edits of a table rebuild (``sqlite_ha.db.rebuild``). A
statement with a rebuild, several actions or IF EXISTS becomes one rebuild statement holding all of them in
order (plain SQL actions as ``("sql", text)`` edits), so that it runs, and replicates, as one step.

Also here: storage parameters (``WITH (fillfactor=…)``) and operator classes (``varchar_pattern_ops``)
dropped from CREATE TABLE/INDEX (SQLite has no such things; its indexes serve LIKE prefixes as they are), and
``VACUUM``/``ANALYZE`` with table names.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlite_ha.db.rebuild import Edit, Rebuild
from sqlite_ha.db.tabledef import quote, split_top, tokens, unquote
from sqlite_ha.server.pgwire.sql.translation import TranslationError

Translate = Callable[[str], str]

_ALTER_TABLE = re.compile(
    r"^\s*ALTER\s+TABLE\s+(?P<if>IF\s+EXISTS\s+)?(?P<only>ONLY\s+)?"
    r"(?P<name>(?:(?:\"(?:[^\"]|\"\")+\"|[\w$]+)\s*\.\s*)?(?:\"(?:[^\"]|\"\")+\"|[\w$]+))\s*\*?\s+(?P<rest>.*?)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_REBUILD_ACTION = re.compile(
    r'^(?:ADD\s+(?:CONSTRAINT\s+(?:"(?:[^"]|"")+"|\S+)\s+)?(?:UNIQUE|PRIMARY\s+KEY|FOREIGN\s+KEY|EXCLUDE)\b'
    # a quoted constraint name may hold spaces: PostgreSQL names those of a table "Odd Name" so
    r"|DROP\s+CONSTRAINT\b|DROP\s+(?!CONSTRAINT\b)|RENAME\s+CONSTRAINT\b"
    r"|ALTER\s+(?:COLUMN\s+)?\S+\s+(?:(?:SET\s+DATA\s+)?TYPE\b|SET\s+DEFAULT\b|DROP\s+DEFAULT\b))",
    re.IGNORECASE | re.DOTALL,
)
_STORAGE = re.compile(r"\)\s*WITH\s*\(\s*\w+\s*=\s*[^()]*?\)", re.IGNORECASE)
_OPCLASS = re.compile(
    r"(?<=[\w\"\)])\s+(?:\w+_ops)\b(?=\s*(?:,|\)|\bASC\b|\bDESC\b|\bNULLS\b))", re.IGNORECASE
)
_CREATE = re.compile(r"^\s*CREATE\s+(?:UNIQUE\s+)?(?:INDEX|TABLE)\b", re.IGNORECASE)
_VACUUM = re.compile(r"^\s*(VACUUM|ANALYZE|ANALYSE)\b(.*?);?\s*$", re.IGNORECASE | re.DOTALL)
_VACUUM_OPTIONS = frozenset({"FULL", "FREEZE", "VERBOSE", "ANALYZE", "ANALYSE", "SKIP_LOCKED"})


def is_alter_table(sql: str) -> bool:
    return _ALTER_TABLE.match(sql) is not None


def needs_rebuild(sql: str) -> bool:
    """Whether an ALTER TABLE must be taken apart here (else it runs as SQLite's own, translated)."""
    found = _ALTER_TABLE.match(sql)
    if found is None:
        return False
    actions = split_top(found.group("rest"))
    return len(actions) > 1 or bool(found.group("if")) or any(_REBUILD_ACTION.match(a) for a in actions)


def alter_table(sql: str, translate: Translate) -> str:
    """The SQLite statement for a PostgreSQL ALTER TABLE that ``needs_rebuild``: one rebuild."""
    found = _ALTER_TABLE.match(sql)
    if found is None:
        raise TranslationError("not an ALTER TABLE statement")
    raw_name = found.group("name")
    parts = [unquote(p.strip()) for p in _split_qualified(raw_name)]
    if len(parts) == 2 and parts[0].lower() not in ("public", "main"):
        raise TranslationError(f'schema "{parts[0]}" does not exist')
    table = parts[-1]
    edits: list[Edit] = []
    for action in split_top(found.group("rest")):
        edits.extend(_action(table, action, translate))
    return Rebuild(table=table, edits=tuple(edits), if_exists=bool(found.group("if"))).sql()


def _split_qualified(name: str) -> list[str]:
    out: list[str] = []
    current = ""
    for tok in tokens(name):
        if tok[0] in '"`[':
            current += tok
            continue
        pieces = tok.split(".")  # an unquoted token holds its dots: public.t
        for piece in pieces[:-1]:
            out.append(current + piece.strip())
            current = ""
        current += pieces[-1].strip()
    out.append(current)
    return out


def _words(text: str) -> list[str]:
    return [t for t in tokens(text) if not t.isspace() and not t.startswith(("--", "/*"))]


def _action(table: str, action: str, translate: Translate) -> list[Edit]:
    words = _words(action)
    upper = [w.upper() for w in words]
    if not upper:
        raise TranslationError("ALTER TABLE with an empty action")
    native = f"ALTER TABLE {quote(table)} "
    if upper[0] == "ADD":
        body = action[action.upper().index("ADD") + 3 :].strip()
        body_words = [w.upper() for w in _words(body)]
        kind_at = 2 if body_words[:1] == ["CONSTRAINT"] else 0
        kind = body_words[kind_at] if len(body_words) > kind_at else ""
        if kind in ("UNIQUE", "PRIMARY", "FOREIGN"):
            return [("add_constraint", _constraint(body, translate))]
        if kind == "EXCLUDE":
            raise TranslationError("EXCLUDE constraints are not supported")
        return [("sql", translate(native + "ADD " + body))]  # a column, or a CHECK: SQLite's own
    if upper[0] == "DROP":
        if upper[1:2] == ["CONSTRAINT"]:
            rest = upper[2:]
            missing_ok = rest[:2] == ["IF", "EXISTS"]
            name = words[4] if missing_ok else words[2]
            return [("drop_constraint", unquote(name), missing_ok)]
        at = 2 if upper[1:2] == ["COLUMN"] else 1
        missing_ok = upper[at : at + 2] == ["IF", "EXISTS"]
        name = words[at + 2] if missing_ok else words[at]
        return [("drop_column", unquote(name), missing_ok, upper[-1] == "CASCADE")]
    if upper[0] == "RENAME":
        if upper[1:2] == ["CONSTRAINT"] and len(words) >= 5 and upper[3] == "TO":
            return [("rename_constraint", unquote(words[2]), unquote(words[4]))]
        return [("sql", translate(native + action))]
    if upper[0] == "ALTER":
        at = 2 if upper[1:2] == ["COLUMN"] else 1
        column = unquote(words[at])
        rest_words = upper[at + 1 :]
        tail = action[_offset(action, words, at + 1) :].strip()
        if rest_words[:2] == ["SET", "DATA"]:
            tail = tail.split(None, 2)[2]
            rest_words = rest_words[2:]
        if rest_words[:1] == ["TYPE"]:
            return [_set_type(table, column, tail.split(None, 1)[1], translate)]
        if rest_words[:2] == ["SET", "DEFAULT"]:
            expr = tail.split(None, 2)[2]
            return [("set_default", column, _expression(expr, translate))]
        if rest_words[:2] == ["DROP", "DEFAULT"]:
            return [("set_default", column, None)]
        if rest_words[:3] in (["SET", "NOT", "NULL"], ["DROP", "NOT", "NULL"]):
            return [("set_not_null", column, rest_words[0] == "SET")]
    return [("sql", translate(native + action))]


def _offset(text: str, words: list[str], index: int) -> int:
    """Where word ``index`` of ``text`` starts."""
    pos = 0
    for i, word in enumerate(words):
        pos = text.index(word, pos)
        if i == index:
            return pos
        pos += len(word)
    return len(text)


_USING = re.compile(r"\bUSING\b", re.IGNORECASE)
_COLLATE = re.compile(r"\bCOLLATE\s+(\"(?:[^\"]|\"\")+\"|\S+)", re.IGNORECASE)


def _set_type(table: str, column: str, text: str, translate: Translate) -> Edit:
    using: str | None = None
    split = _USING.split(text, maxsplit=1)
    type_text = split[0].strip()
    if len(split) == 2:
        using = _expression(split[1].strip(), translate)
    type_text = _COLLATE.sub("", type_text).strip()
    return ("set_type", column, _type(type_text, translate), using)


def _type(type_text: str, translate: Translate) -> str:
    """The type as a CREATE TABLE here declares it (serial → INTEGER, timestamp with time zone → …)."""
    created = translate(f"CREATE TABLE _t (_c {type_text})")
    found = re.search(r"\(\s*_c\s+(.*)\)\s*$", created, re.DOTALL)
    if found is None:
        raise TranslationError(f"cannot read the type {type_text!r}")
    return found.group(1).strip()


def _expression(expr: str, translate: Translate) -> str:
    selected = translate(f"SELECT {expr}")
    if not selected.upper().startswith("SELECT "):
        raise TranslationError(f"cannot read the expression {expr!r}")
    return selected[len("SELECT ") :]


_NOT_VALID = re.compile(r"\s+NOT\s+VALID\s*$", re.IGNORECASE)
_INDEX_OPTIONS = re.compile(
    r"\s+(?:USING\s+INDEX\s+TABLESPACE\s+\S+|INCLUDE\s*\([^)]*\)|WITH\s*\([^)]*\))", re.IGNORECASE
)


def _constraint(body: str, translate: Translate) -> str:
    """A UNIQUE, PRIMARY KEY or FOREIGN KEY constraint as SQLite writes it."""
    body = _NOT_VALID.sub("", body)
    body = _INDEX_OPTIONS.sub("", body)
    if re.search(r"\bNULLS\s+(?:NOT\s+)?DISTINCT\b", body, re.IGNORECASE):
        raise TranslationError("UNIQUE NULLS NOT DISTINCT is not supported")
    if re.search(r"\bUSING\s+INDEX\b", body, re.IGNORECASE):
        raise TranslationError("ADD CONSTRAINT … USING INDEX is not supported: give the columns")
    # the referenced table may be schema-qualified: public.x is x
    return re.sub(r"\bREFERENCES\s+(?:public|\"public\")\s*\.\s*", "REFERENCES ", body, flags=re.IGNORECASE)


_DROP_TABLE = re.compile(
    r"^\s*DROP\s+TABLE\s+(?P<if>IF\s+EXISTS\s+)?(?P<names>.*?)\s*(?:\b(?:CASCADE|RESTRICT)\s*)?;?\s*$",
    re.IGNORECASE | re.DOTALL,
)


def drop_tables(sql: str) -> str | None:
    """``DROP TABLE [IF EXISTS] a, b [CASCADE]`` as one DROP TABLE per table (SQLite drops one at a time);
    None when ``sql`` is not a DROP TABLE of several tables."""
    found = _DROP_TABLE.match(sql)
    if found is None:
        return None
    names = split_top(found.group("names"))
    if len(names) < 2:
        return None
    verb = "DROP TABLE IF EXISTS " if found.group("if") else "DROP TABLE "
    out = []
    for name in names:
        parts = [unquote(p) for p in _split_qualified(name.strip())]
        if len(parts) == 2 and parts[0].lower() not in ("public", "main"):
            raise TranslationError(f'schema "{parts[0]}" does not exist')
        out.append(verb + quote(parts[-1]))
    return "; ".join(out)


def strip_storage(sql: str) -> str:
    """CREATE TABLE/INDEX without ``WITH (fillfactor=…)`` and operator classes."""
    if _CREATE.match(sql) is None:
        return sql
    sql = _STORAGE.sub(")", sql)
    return _OPCLASS.sub("", sql)


def vacuum(sql: str) -> str | None:
    """``VACUUM [options] [t, …]`` and ``ANALYZE [VERBOSE] [t, …]`` as SQLite's ANALYZE of the tables (of
    all without names). SQLite's own VACUUM rewrites the whole file and cannot run in the node's
    transactions; space freed by deletes is reused by SQLite as PostgreSQL's VACUUM makes it reusable, and
    what remains of VACUUM, statistics for the planner, is ANALYZE. None when ``sql`` is neither."""
    found = _VACUUM.match(sql)
    if found is None:
        return None
    rest = found.group(2).strip()
    if rest.startswith("("):
        rest = rest[rest.find(")") + 1 :].strip()
    else:
        words = rest.split()
        while words and words[0].upper() in _VACUUM_OPTIONS:
            rest = rest[rest.upper().index(words[0].upper()) + len(words[0]) :].strip()
            words = words[1:]
    tables = [unquote(_words(t)[0].split(".")[-1]) for t in split_top(rest) if _words(t)]
    if not tables:
        return "ANALYZE"
    return "; ".join(f"ANALYZE {quote(t)}" for t in tables)
