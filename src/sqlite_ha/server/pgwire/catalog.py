"""PostgreSQL's system catalog over a SQLite database, for the queries clients send about the schema.

Drivers and tools ask ``pg_catalog`` (``pg_class``, ``pg_type``, ``pg_namespace``, …) whether a table exists,
which types there are, what the server is. These are answered from an in-memory SQLite database holding
those tables (in attached schemas named ``pg_catalog`` and ``information_schema``, so qualified and
unqualified names both resolve), filled from the served database's schema and rebuilt when that schema
changes. The query itself is translated like any other statement and runs there, with the catalog functions
(``pg_table_is_visible``, ``format_type``, ``to_regtype``, …) registered as SQLite functions.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import apsw

from sqlite_ha import __version__
from sqlite_ha.db.statement import Result
from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.server.pgwire import types as t

VERSION = f"PostgreSQL 15.0 (sqlite-ha {__version__}, SQLite {apsw.sqlite_lib_version()})"
PUBLIC, PG_CATALOG, INFORMATION_SCHEMA = 2200, 11, 13000
FIRST_OID = 16384

_CATALOG = re.compile(
    r"\b(?:pg_catalog|information_schema|pg_class|pg_namespace|pg_type|pg_attribute|pg_index|pg_database|"
    r"pg_roles|pg_am|pg_tables|pg_settings|to_regtype|pg_table_is_visible|current_database|"
    r"pg_get_userbyid|has_table_privilege)\b|\bversion\s*\(\s*\)",
    re.I,
)
# casts to the reg* types name objects by OID; here an OID is used as it is, and typed text comes from
# format_type
_REG_TEXT = re.compile(r"::\s*(?:pg_catalog\.)?regtype\s*::\s*(?:pg_catalog\.)?text", re.I)
_REG_CAST = re.compile(r"::\s*(?:pg_catalog\.)?reg(?:class|type|namespace|proc|role)\b", re.I)
_REG_OPERATOR = re.compile(r"OPERATOR\s*\(\s*pg_catalog\.(~|~\*|!~|!~\*)\s*\)", re.I)
_COLLATE = re.compile(r"\bCOLLATE\s+pg_catalog\.\"?default\"?", re.I)
_VERSION_CALL = re.compile(r"\b(?:pg_catalog\.)?version\s*\(\s*\)", re.I)

Column = tuple[str, str, bool, bool]  # name, declared type, not null, has a default

_SCHEMA = """
CREATE TABLE pg_catalog.pg_namespace(oid INTEGER PRIMARY KEY, nspname TEXT, nspowner INTEGER, nspacl TEXT);
CREATE TABLE pg_catalog.pg_class(
  oid INTEGER PRIMARY KEY, relname TEXT, relnamespace INTEGER, reltype INTEGER, relowner INTEGER,
  relam INTEGER, relkind TEXT, relpersistence TEXT, relhasindex BOOLEAN, relispartition BOOLEAN,
  reltuples REAL, relchecks INTEGER, relhasrules BOOLEAN, relhastriggers BOOLEAN, relrowsecurity BOOLEAN,
  relforcerowsecurity BOOLEAN, reltablespace INTEGER, reloftype INTEGER, relreplident TEXT,
  relpartbound TEXT, relacl TEXT, reloptions TEXT, relnatts INTEGER);
CREATE TABLE pg_catalog.pg_type(
  oid INTEGER PRIMARY KEY, typname TEXT, typnamespace INTEGER, typlen INTEGER, typtype TEXT,
  typarray INTEGER, typdelim TEXT, typrelid INTEGER, typelem INTEGER, typbasetype INTEGER,
  typnotnull BOOLEAN, typtypmod INTEGER, typcollation INTEGER, typinput TEXT, typowner INTEGER);
CREATE TABLE pg_catalog.pg_attribute(
  attrelid INTEGER, attname TEXT, atttypid INTEGER, attnum INTEGER, attnotnull BOOLEAN, atthasdef BOOLEAN,
  attisdropped BOOLEAN, atttypmod INTEGER, attlen INTEGER, attidentity TEXT, attgenerated TEXT,
  attcollation INTEGER, attndims INTEGER);
CREATE TABLE pg_catalog.pg_database(
  oid INTEGER PRIMARY KEY, datname TEXT, datdba INTEGER, encoding INTEGER, datcollate TEXT, datctype TEXT,
  datistemplate BOOLEAN, datallowconn BOOLEAN, datacl TEXT, daticulocale TEXT, datlocprovider TEXT);
CREATE TABLE pg_catalog.pg_roles(oid INTEGER PRIMARY KEY, rolname TEXT, rolsuper BOOLEAN);
CREATE TABLE pg_catalog.pg_am(oid INTEGER PRIMARY KEY, amname TEXT);
CREATE TABLE pg_catalog.pg_description(objoid INTEGER, classoid INTEGER, objsubid INTEGER, description TEXT);
CREATE TABLE pg_catalog.pg_inherits(inhrelid INTEGER, inhparent INTEGER, inhseqno INTEGER);
CREATE VIEW pg_catalog.pg_tables AS
  SELECT n.nspname AS schemaname, c.relname AS tablename, 'ha' AS tableowner, NULL AS tablespace,
         c.relhasindex AS hasindexes, 0 AS hasrules, c.relhastriggers AS hastriggers, 0 AS rowsecurity
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r';
CREATE TABLE information_schema.tables(
  table_catalog TEXT, table_schema TEXT, table_name TEXT, table_type TEXT);
CREATE TABLE information_schema.columns(
  table_catalog TEXT, table_schema TEXT, table_name TEXT, column_name TEXT, ordinal_position INTEGER,
  column_default TEXT, is_nullable TEXT, data_type TEXT, udt_name TEXT);
"""


_AM = {"r": 2, "i": 403}  # heap, btree


def is_catalog_query(sql: str) -> bool:
    return _CATALOG.search(sql) is not None


def prepare(sql: str) -> str:
    """The PostgreSQL catalog query with what the translator cannot take rewritten away."""
    sql = _VERSION_CALL.sub("pg_version()", sql)
    sql = _REG_TEXT.sub("", sql)  # oid::regtype::text → the type name, via typname columns clients select too
    sql = _REG_CAST.sub("", sql)
    sql = _REG_OPERATOR.sub(lambda m: "REGEXP" if m.group(1) == "~" else "NOT REGEXP", sql)
    return _COLLATE.sub("", sql)


class Catalog:
    """The catalog database of one served database, rebuilt when its schema version changes."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.conn = apsw.Connection(":memory:")
        self.conn.execute("ATTACH ':memory:' AS pg_catalog; ATTACH ':memory:' AS information_schema")
        self.conn.execute(_SCHEMA)
        self._register()
        self._fill_fixed()
        self.version: int | None = None

    def _register(self) -> None:
        def c_fn(name: str, fn: Any, nargs: int, *, deterministic: bool = True) -> None:
            self.conn.create_scalar_function(name, fn, nargs, deterministic=deterministic)

        c_fn("pg_version", lambda: VERSION, 0, deterministic=True)
        c_fn("pg_table_is_visible", lambda oid: 1, 1, deterministic=True)
        c_fn("pg_type_is_visible", lambda oid: 1, 1, deterministic=True)
        c_fn("pg_get_userbyid", lambda oid: "ha", 1, deterministic=True)
        c_fn("current_database", lambda: self.database, 0, deterministic=True)
        c_fn("current_schema", lambda: "public", 0, deterministic=True)
        c_fn("to_regtype", _to_regtype, 1, deterministic=True)
        c_fn("format_type", _format_type, 2, deterministic=True)
        c_fn("pg_encoding_to_char", lambda n: "UTF8", 1, deterministic=True)
        c_fn("obj_description", lambda *a: None, -1, deterministic=True)
        c_fn("col_description", lambda *a: None, 2, deterministic=True)
        c_fn("shobj_description", lambda *a: None, 2, deterministic=True)
        c_fn("has_table_privilege", lambda *a: 1, -1, deterministic=True)
        c_fn("has_schema_privilege", lambda *a: 1, -1, deterministic=True)
        c_fn("pg_get_expr", lambda expr, *a: expr, -1, deterministic=True)
        c_fn("array_to_string", lambda a, sep, *r: a, -1, deterministic=True)
        c_fn("regexp", _regexp, 2, deterministic=True)

    def _fill_fixed(self) -> None:
        c = self.conn
        c.executemany(
            "INSERT INTO pg_namespace(oid, nspname, nspowner) VALUES (?, ?, 10)",
            [(PG_CATALOG, "pg_catalog"), (PUBLIC, "public"), (INFORMATION_SCHEMA, "information_schema")],
        )
        c.execute("INSERT INTO pg_roles VALUES (10, 'ha', 1)")
        c.execute("INSERT INTO pg_am VALUES (2, 'heap'), (403, 'btree')")
        arrays = {t.TEXT: t.TEXT_ARRAY, t.INT8: t.INT8_ARRAY, t.INT4: t.INT4_ARRAY}
        c.executemany(
            "INSERT INTO pg_type(oid, typname, typnamespace, typlen, typtype, typarray, typdelim, typrelid, "
            "typelem, typbasetype, typnotnull, typtypmod, typcollation, typowner) "
            "VALUES (?, ?, ?, ?, 'b', ?, ',', 0, 0, 0, 0, -1, 0, 10)",
            [(oid, name, PG_CATALOG, size, arrays.get(oid, 0)) for oid, (name, size) in t.TYPE_INFO.items()],
        )

    def refresh(
        self, version: int, tables: Sequence[tuple[str, str, list[tuple[str, str, bool, bool]]]]
    ) -> None:
        """Fill the per-database tables: ``tables`` is (name, kind 'r'/'v'/'i', [(column, declared type,
        not null, has default)]), for schema version ``version``."""
        if version == self.version:
            return
        c = self.conn
        with c:
            for table in ("pg_class", "pg_attribute", "pg_database", "information_schema.tables"):
                c.execute(f"DELETE FROM {table}")
            c.execute("DELETE FROM information_schema.columns")
            c.execute(
                "INSERT INTO pg_database(oid, datname, datdba, encoding, datcollate, datctype, "
                "datistemplate, datallowconn, datlocprovider) VALUES (16384, ?, 10, 6, 'C', 'C', 0, 1, 'c')",
                (self.database,),
            )
            for i, (name, kind, columns) in enumerate(tables):
                oid = FIRST_OID + 1 + i
                c.execute(
                    "INSERT INTO pg_class(oid, relname, relnamespace, reltype, relowner, relam, relkind, "
                    "relpersistence, relhasindex, relispartition, reltuples, relchecks, relhasrules, "
                    "relhastriggers, relrowsecurity, relforcerowsecurity, reltablespace, reloftype, "
                    "relreplident, relnatts) "
                    "VALUES (?, ?, ?, 0, 10, ?, ?, 'p', 0, 0, -1, 0, 0, 0, 0, 0, 0, 0, 'd', ?)",
                    (
                        oid,
                        name,
                        PUBLIC,
                        2 if kind == "r" else (403 if kind == "i" else 0),
                        kind,
                        len(columns),
                    ),
                )
                if kind == "i":
                    continue
                c.execute(
                    "INSERT INTO information_schema.tables VALUES (?, 'public', ?, ?)",
                    (self.database, name, "BASE TABLE" if kind == "r" else "VIEW"),
                )
                for n, (column, declared, notnull, has_default) in enumerate(columns, start=1):
                    oid_type = t.oid_for_declared(declared) or t.TEXT
                    c.execute(
                        "INSERT INTO pg_attribute VALUES (?, ?, ?, ?, ?, ?, 0, -1, ?, '', '', 0, 0)",
                        (oid, column, oid_type, n, notnull, has_default, t.type_size(oid_type)),
                    )
                    c.execute(
                        "INSERT INTO information_schema.columns VALUES (?, 'public', ?, ?, ?, NULL, ?, ?, ?)",
                        (
                            self.database,
                            name,
                            column,
                            n,
                            "NO" if notnull else "YES",
                            t.SQL_NAMES.get(oid_type, "text"),
                            t.TYPE_INFO.get(oid_type, ("text", -1))[0],
                        ),
                    )
        self.version = version

    def run(self, sql: str, params: tuple[SQLiteValue, ...]) -> Result:
        cursor = self.conn.cursor()
        rows: list[tuple[SQLiteValue, ...]] = []
        description: list[tuple[str, str | None]] = []

        def trace(cur: apsw.Cursor, text: str, bindings: Any) -> bool:
            description[:] = [(str(d[0]), d[1]) for d in cur.description]
            return True

        cursor.exec_trace = trace
        for row in cursor.execute(sql, params or None):
            rows.append(tuple(row))
        return Result(columns=[d[0] for d in description], types=[d[1] for d in description], rows=rows)

    def describe(self, sql: str, params: int) -> list[tuple[str, str | None]]:
        seen: list[tuple[str, str | None]] = []

        def trace(cur: apsw.Cursor, text: str, bindings: Any) -> bool:
            seen[:] = [(str(d[0]), d[1]) for d in cur.description]
            return False

        cursor = self.conn.cursor()
        cursor.exec_trace = trace
        try:
            cursor.execute(sql, (None,) * params if params else None)
        except apsw.ExecTraceAbort:
            pass
        finally:
            cursor.close(True)
        return seen


def _to_regtype(name: SQLiteValue) -> int | None:
    if not isinstance(name, str):
        return None
    wanted = name.strip().lower().removeprefix("pg_catalog.")
    for oid, (typname, _) in t.TYPE_INFO.items():
        if wanted == typname or wanted == t.SQL_NAMES.get(oid):
            return oid
    return None


def _format_type(oid: SQLiteValue, typmod: SQLiteValue) -> str | None:
    if not isinstance(oid, int):
        return None
    return t.SQL_NAMES.get(oid, t.TYPE_INFO.get(oid, ("???",))[0])


def _regexp(pattern: SQLiteValue, value: SQLiteValue) -> int | None:
    if pattern is None or value is None:
        return None
    return 1 if re.search(str(pattern), str(value)) else 0
