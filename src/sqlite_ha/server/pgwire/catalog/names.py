"""Names and OIDs of catalog objects: the reg* types (``'t'::regclass``, ``oid::regtype``) and role names.

``x::regclass`` is the table's OID where it is compared or joined and its name where it is printed
(``catalog_query`` chooses ``pg_regoid`` or ``pg_regname``); PostgreSQL's own catalogs have their fixed
OIDs (``'pg_class'::regclass`` is 1259), which pg_dump and JDBC compare ``classid`` columns with.
"""

from __future__ import annotations

import apsw

from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.server.pgwire.catalog import functions as catalog_functions
from sqlite_ha.server.pgwire.catalog.namespaces import PG_TEMP
from sqlite_ha.server.pgwire.catalog.schema import CATALOG_OIDS

PUBLIC = 2200


def quote(name: str) -> str:
    """An identifier as PostgreSQL prints it (quote_ident)."""
    return catalog_functions.quote_ident(name) or ""


class Names:
    """Looks names and OIDs up in one catalog database."""

    def __init__(self, conn: apsw.Connection) -> None:
        self.conn = conn

    def user_name(self, oid: SQLiteValue) -> str:
        """``pg_get_userbyid``: the role's name; PostgreSQL's ``unknown (OID=n)`` for one that is not."""
        found = self.lookup("SELECT rolname FROM pg_roles WHERE oid = ?", oid)
        return str(found) if found is not None else f"unknown (OID={oid!s})"

    def lookup(self, sql: str, value: SQLiteValue) -> SQLiteValue:
        found = self.conn.execute(sql, (value,)).fetchall()
        return found[0][0] if found else None

    def regoid(self, kind: SQLiteValue, value: SQLiteValue) -> int | None:
        """``value::regclass`` (and the other reg* types) compared or joined: the object's OID."""
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip()
        if text.isdigit():
            return int(text)
        name = text.removeprefix("public.").removeprefix("pg_catalog.").strip('"')
        found: SQLiteValue
        if kind == "regclass" and text.removeprefix("pg_catalog.") in CATALOG_OIDS:
            found = CATALOG_OIDS[text.removeprefix("pg_catalog.")]
        elif kind == "regclass":
            found = self._regclass(text, name)
        elif kind == "regnamespace":
            found = self.lookup("SELECT oid FROM pg_namespace WHERE nspname = ?", name)
        elif kind == "regrole":
            found = self.lookup("SELECT oid FROM pg_roles WHERE rolname = ?", name)
        elif kind == "regtype":
            found = catalog_functions.to_regtype(text)
        else:
            found = None
        return found if isinstance(found, int) else None

    def _regclass(self, text: str, name: str) -> SQLiteValue:
        """A relation named as ``regclass`` input: ``s.t`` in a schema (sql/schemas.py), else ``t`` on the
        search path: the session's TEMP one first, then public's."""
        schema, dot, relname = text.partition(".")
        schema = schema.strip('"')
        if dot and schema.lower() not in ("public", "pg_catalog"):
            found = self.conn.execute(
                "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = ? AND c.relname = ?",
                (schema, relname.strip('"')),
            ).fetchall()
            return found[0][0] if found else None
        found = self.conn.execute(
            "SELECT oid FROM pg_class WHERE relname = ? "
            "ORDER BY relnamespace = ? DESC, relnamespace = ? DESC",
            (name, PG_TEMP, PUBLIC),
        ).fetchall()
        return found[0][0] if found else None

    def regname(self, kind: SQLiteValue, value: SQLiteValue) -> str | None:
        """``value::regclass`` printed or cast to text: the object's name."""
        if value is None:
            return None
        if not isinstance(value, int) and not str(value).strip().isdigit():
            return str(value)  # a name already
        oid = int(str(value))
        if kind == "regclass":
            name = self.lookup("SELECT relname FROM pg_class WHERE oid = ?", oid)
            return quote(str(name)) if name is not None else str(oid)
        if kind == "regtype":
            return catalog_functions.format_type(oid)
        queries = {
            "regnamespace": "SELECT nspname FROM pg_namespace WHERE oid = ?",
            "regrole": "SELECT rolname FROM pg_roles WHERE oid = ?",
        }
        name = self.lookup(queries[str(kind)], oid) if kind in queries else None
        return str(oid) if name is None else str(name)
