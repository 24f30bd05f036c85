"""A table's ``CREATE TABLE`` text taken apart into columns and table constraints, edited, and put together.

SQLite keeps a table's definition as the text of its ``CREATE TABLE``; changes SQLite's ``ALTER TABLE``
cannot make (a UNIQUE or PRIMARY KEY constraint, a column's type or default) are made by editing that text
and rebuilding the table from it (``rebuild``). The text is split only where SQLite's own grammar puts
boundaries (top-level commas, constraint keywords), so what is not edited stays byte for byte as written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlite_ha.errors import HAError

# Words that start a table constraint, and words that start a column constraint.
_TABLE_CONSTRAINT = frozenset({"CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"})
_COLUMN_CONSTRAINT = frozenset(
    {"CONSTRAINT", "PRIMARY", "NOT", "NULL", "UNIQUE", "CHECK", "DEFAULT", "COLLATE", "REFERENCES",
     "GENERATED", "AS"}
)  # fmt: skip
_TOKEN = re.compile(
    r"""\s+|--[^\n]*|/\*.*?(?:\*/|$)|'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\]|[(),]|[^\s(),'"`\[]+""",
    re.DOTALL,
)


class TableDefError(HAError):
    """The edit does not fit the table (no such column or constraint, a second primary key, …)."""

    code = "bad_table_change"

    def __init__(self, message: str, *, sqlstate: str = "42704") -> None:
        super().__init__(message, sqlstate=sqlstate)  # PostgreSQL's SQLSTATE for it, read by the PG wire


def tokens(sql: str) -> list[str]:
    return [m.group() for m in _TOKEN.finditer(sql)]


def unquote(name: str) -> str:
    if name[:1] == '"' and name[-1:] == '"':
        return name[1:-1].replace('""', '"')
    if name[:1] in ("`", "[") and len(name) >= 2:
        return name[1:-1]
    return name


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def split_top(text: str) -> list[str]:
    """``text`` split at commas outside parentheses, strings and quoted names; pieces stripped."""
    out: list[str] = []
    depth = 0
    start = 0
    pos = 0
    for tok in tokens(text):
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        elif tok == "," and depth == 0:
            out.append(text[start:pos].strip())
            start = pos + 1
        pos += len(tok)
    tail = text[start:].strip()
    if tail or out:
        out.append(tail)
    return out


def _words(text: str) -> list[str]:
    return [t for t in tokens(text) if not t.isspace() and not t.startswith(("--", "/*"))]


@dataclass(slots=True)
class Column:
    name: str
    type: str  # as written, may be ""
    constraints: list[str] = field(default_factory=list)  # each column constraint's text, in order

    def sql(self) -> str:
        return " ".join(p for p in (quote(self.name), self.type, *self.constraints) if p)

    def constraint(self, kind: str) -> int | None:
        """Index of the first constraint of ``kind`` (its first word after an optional CONSTRAINT name)."""
        for i, text in enumerate(self.constraints):
            words = [w.upper() for w in _words(text)]
            if words[:1] == ["CONSTRAINT"]:
                words = words[2:]
            if words[:1] == [kind] or (kind == "NOT" and words[:2] == ["NOT", "NULL"]):
                return i
        return None


@dataclass(slots=True)
class TableDef:
    """``CREATE TABLE name (columns…, constraints…) options``."""

    name: str
    columns: list[Column]
    constraints: list[str]  # table constraints' text
    options: str  # what follows the closing parenthesis (WITHOUT ROWID, STRICT)

    @classmethod
    def parse(cls, name: str, sql: str) -> TableDef:
        toks = tokens(sql)
        pos = 0
        open_at = close_at = -1
        depth = 0
        for tok in toks:
            if tok == "(":
                if depth == 0 and open_at < 0:
                    open_at = pos
                depth += 1
            elif tok == ")":
                depth -= 1
                if depth == 0 and open_at >= 0:
                    close_at = pos
                    break
            pos += len(tok)
        if open_at < 0 or close_at < 0:
            raise TableDefError(f'table "{name}" is not defined by a column list (CREATE TABLE … AS?)')
        columns: list[Column] = []
        constraints: list[str] = []
        for item in split_top(sql[open_at + 1 : close_at]):
            words = _words(item)
            if not words:
                continue
            if words[0].upper() in _TABLE_CONSTRAINT:
                constraints.append(item)
            else:
                columns.append(_column(item))
        return cls(name=name, columns=columns, constraints=constraints, options=sql[close_at + 1 :].strip())

    def sql(self, name: str) -> str:
        items = [c.sql() for c in self.columns] + self.constraints
        return f"CREATE TABLE {quote(name)} ({', '.join(items)}){' ' + self.options if self.options else ''}"

    @property
    def without_rowid(self) -> bool:
        return "WITHOUT" in [w.upper() for w in _words(self.options)]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name.lower() == name.lower():
                return c
        raise TableDefError(f'column "{name}" of relation "{self.name}" does not exist', sqlstate="42703")

    def has_primary_key(self) -> bool:
        return any(c.constraint("PRIMARY") is not None for c in self.columns) or any(
            _kind(x) == "PRIMARY" for x in self.constraints
        )

    # ------------------------------------------------------------------------------------ edits
    def add_constraint(self, text: str) -> None:
        if _kind(text) == "PRIMARY" and self.has_primary_key():
            raise TableDefError(
                f'multiple primary keys for table "{self.name}" are not allowed', sqlstate="42P16"
            )
        name = _name(text)
        if name is not None and self.find_constraint(name) is not None:
            raise TableDefError(
                f'constraint "{name}" for relation "{self.name}" already exists', sqlstate="42710"
            )
        self.constraints.append(text)

    def find_constraint(self, name: str) -> tuple[Column | None, int] | None:
        """Where the constraint called ``name`` is: (None, index) among the table's constraints, (column,
        index) among a column's. Unnamed ones go by the names PostgreSQL gives them (t_pkey, t_a_key,
        t_a_fkey, t_a_check), as the catalog shows them."""
        wanted = name.lower()
        for i, text in enumerate(self.constraints):
            if (_name(text) or self._default_name(text)).lower() == wanted:
                return None, i
        for col in self.columns:
            for i, text in enumerate(col.constraints):
                kind = _kind(text)
                given = _name(text)
                if given is None:
                    suffix = {"PRIMARY": "pkey", "UNIQUE": "key", "REFERENCES": "fkey", "CHECK": "check"}
                    if kind not in suffix:
                        continue
                    given = (
                        f"{self.name}_pkey" if kind == "PRIMARY" else f"{self.name}_{col.name}_{suffix[kind]}"
                    )
                if given.lower() == wanted:
                    return col, i
        return None

    def _default_name(self, text: str) -> str:
        kind = _kind(text)
        if kind == "PRIMARY":
            return f"{self.name}_pkey"
        cols = _paren_names(text)
        suffix = {"UNIQUE": "key", "FOREIGN": "fkey", "CHECK": "check"}.get(kind, "")
        return "_".join([self.name, *cols[: 1 if kind == "FOREIGN" else None], suffix])

    def drop_constraint(self, name: str, *, missing_ok: bool = False) -> None:
        found = self.find_constraint(name)
        if found is None:
            if missing_ok:
                return
            raise TableDefError(f'constraint "{name}" of relation "{self.name}" does not exist')
        col, i = found
        if col is None:
            del self.constraints[i]
        else:
            del col.constraints[i]

    def rename_constraint(self, old: str, new: str) -> None:
        found = self.find_constraint(old)
        if found is None:
            raise TableDefError(f'constraint "{old}" for table "{self.name}" does not exist')
        col, i = found
        holder = self.constraints if col is None else col.constraints
        text = holder[i]
        body = _without_name(text)
        holder[i] = f"CONSTRAINT {quote(new)} {body}"

    def set_type(self, column: str, type_sql: str) -> None:
        self.column(column).type = type_sql

    def set_default(self, column: str, default_sql: str | None) -> None:
        col = self.column(column)
        i = col.constraint("DEFAULT")
        if i is not None:
            del col.constraints[i]
        if default_sql is not None:
            col.constraints.append(f"DEFAULT ({default_sql})")

    def set_not_null(self, column: str, on: bool) -> None:
        col = self.column(column)
        i = col.constraint("NOT")
        if on and i is None:
            col.constraints.append("NOT NULL")
        elif not on and i is not None:
            del col.constraints[i]

    def drop_column(self, column: str) -> list[str]:
        """Drops the column and the table constraints that name it (as PostgreSQL's DROP COLUMN … CASCADE);
        returns the names of what went."""
        col = self.column(column)
        self.columns.remove(col)
        gone: list[str] = []
        kept: list[str] = []
        for text in self.constraints:
            names = _mentioned(text) if _kind(text) == "CHECK" else _paren_names(text)
            if column.lower() in (n.lower() for n in names):
                gone.append(_name(text) or self._default_name(text))
            else:
                kept.append(text)
        self.constraints = kept
        return gone


def _column(item: str) -> Column:
    toks = [t for t in tokens(item) if not t.startswith(("--", "/*"))]
    words = [t for t in toks if not t.isspace()]
    name = unquote(words[0])
    # the type: words up to the first column constraint (with its parenthesised arguments)
    rest = item[item.index(words[0]) + len(words[0]) :].strip()
    type_parts: list[str] = []
    parts = _constraint_parts(rest)
    if parts and _words(parts[0])[0].upper() not in _COLUMN_CONSTRAINT:
        type_parts.append(parts.pop(0))
    return Column(name=name, type=" ".join(type_parts), constraints=parts)


def _constraint_parts(text: str) -> list[str]:
    """``int NOT NULL DEFAULT 0 REFERENCES p(id)`` → ["int", "NOT NULL", "DEFAULT 0", "REFERENCES p(id)"]."""
    parts: list[str] = []
    depth = 0
    start = 0
    pos = 0
    previous = ""
    for tok in tokens(text):
        word = tok.upper()
        # NULL after NOT, and a constraint after CONSTRAINT name, continue the same part
        if (
            depth == 0
            and word in _COLUMN_CONSTRAINT
            and pos > start
            and not (word == "NULL" and previous == "NOT")
            and not _named_only(text[start:pos])
        ):
            parts.append(text[start:pos].strip())
            start = pos
        if tok == "(":
            depth += 1
        elif tok == ")":
            depth -= 1
        if not tok.isspace():
            previous = word
        pos += len(tok)
    tail = text[start:].strip()
    if tail:
        parts.append(tail)
    return [p for p in parts if p]


def _named_only(text: str) -> bool:
    words = _words(text)
    return len(words) <= 2 and bool(words) and words[0].upper() == "CONSTRAINT"


def _kind(text: str) -> str:
    words = [w.upper() for w in _words(text)]
    if words[:1] == ["CONSTRAINT"]:
        words = words[2:]
    return words[0] if words else ""


def _name(text: str) -> str | None:
    words = _words(text)
    if len(words) >= 2 and words[0].upper() == "CONSTRAINT":
        return unquote(words[1])
    return None


def _without_name(text: str) -> str:
    words = _words(text)
    if len(words) >= 2 and words[0].upper() == "CONSTRAINT":
        at = text.index(words[1]) + len(words[1])
        return text[at:].strip()
    return text.strip()


def _paren_names(text: str) -> list[str]:
    """The names in the first parenthesised list of a constraint (its columns)."""
    body = _without_name(text)
    start = body.find("(")
    if start < 0:
        return []
    depth = 0
    for i, ch in enumerate(body[start:], start):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return [unquote(_words(p)[0]) for p in split_top(body[start + 1 : i]) if _words(p)]
    return []


def _mentioned(text: str) -> list[str]:
    """Every name a table constraint's text mentions (its columns, and for CHECK its expression's names)."""
    return [unquote(t) for t in _words(text) if t not in "(),"]
