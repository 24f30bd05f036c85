"""A primary key numbered by a sequence of its own name becomes the rowid-numbered key again.

pg_dump writes a SERIAL key as ``id integer NOT NULL``, ``CREATE SEQUENCE t_id_seq``, ``ALTER TABLE t ALTER
COLUMN id SET DEFAULT nextval('t_id_seq')`` and, after the rows and the sequence's ``setval``, ``ADD
CONSTRAINT t_pkey PRIMARY KEY (id)`` (an IDENTITY key as ``ADD GENERATED … AS IDENTITY``, which the PG front
end runs as the same sequence and default, its sequence marked ``/*pg:identity …*/``). Restored into a
node, that would leave a standalone sequence feeding a plain integer key. So when a table rebuild ends with
a one-column integer primary key whose default is ``nextval('<table>_<column>_seq')`` of such a standalone
sequence (``sql/sequences.py``), the key becomes what CREATE TABLE … SERIAL makes: ``INTEGER
/*pg:int4 serial*/`` (``always``/``default`` for IDENTITY), the rowid alias, without the default; and the
sequence table is dropped. New keys then follow the table's largest key, as the sequence's setval (the
dump's: the largest restored key) said; values the sequence handed out beyond the table's largest key
before this are not remembered. The rebuild runs on every node alike, so every node decides the same.
"""

from __future__ import annotations

import re

import apsw

from sqlite_ha.db.tabledef import TableDef, quote, unquote

MARKER = "/*pg:sequence*/"
_IDENTITY = re.compile(r"/\*pg:identity (always|default)\*/")
_NEXTVAL = re.compile(
    r"^DEFAULT\s*\(\s*nextval\s*\(\s*'(?:public\.)?((?:[^'.]|'')+)'\s*\)\s*\)$", re.IGNORECASE | re.DOTALL
)
_TABLE_KEY = re.compile(r'^(?:CONSTRAINT\s+\S+\s+)?PRIMARY\s+KEY\s*\(\s*("(?:[^"]|"")+"|[\w$]+)\s*\)$', re.I)
_INTEGER = re.compile(r"^\s*(INT[248]?|INTEGER|SMALLINT|BIGINT)\s*$", re.IGNORECASE)
_PG = {"BIGINT": "int8", "INT8": "int8", "SMALLINT": "int2", "INT2": "int2"}


def adopt(conn: apsw.Connection, table: str, definition: TableDef) -> str | None:
    """Make the key the rowid alias when it applies (see the module doc); the sequence to drop, or None."""
    key = _key(definition)
    if key is None:
        return None
    column = definition.column(key)
    at = column.constraint("DEFAULT")
    kind = _INTEGER.match(re.sub(r"/\*.*?\*/", "", column.type))
    if at is None or kind is None:
        return None
    found = _NEXTVAL.match(column.constraints[at].strip())
    if found is None:
        return None
    sequence = found.group(1).replace("''", "'")
    if sequence.lower() != f"{table}_{column.name}_seq".lower():
        return None
    created = conn.execute(
        "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ? COLLATE NOCASE", (sequence,)
    ).fetchall()
    text = str(created[0][0] or "") if created else ""
    if MARKER not in text:
        return None
    identity = _IDENTITY.search(text)
    numbering = identity.group(1) if identity else "serial"
    column.type = f"INTEGER /*pg:{_PG.get(kind.group(1).upper(), 'int4')} {numbering}*/"
    del column.constraints[at]
    return sequence


def _key(definition: TableDef) -> str | None:
    keyed = [c.name for c in definition.columns if c.constraint("PRIMARY") is not None]
    for constraint in definition.constraints:
        found = _TABLE_KEY.match(constraint.strip())
        if found is not None:
            keyed.append(unquote(found.group(1)) if found.group(1).startswith('"') else found.group(1))
        elif re.match(r"^(?:CONSTRAINT\s+\S+\s+)?PRIMARY\b", constraint.strip(), re.I):
            return None  # a key of several columns
    return keyed[0] if len(keyed) == 1 else None


def drop(conn: apsw.Connection, sequence: str) -> None:
    conn.execute(f"DROP TABLE {quote(sequence)}")
