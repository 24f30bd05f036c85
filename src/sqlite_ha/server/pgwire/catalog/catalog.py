"""PostgreSQL's system catalog over a SQLite database, for the queries clients send about the schema.

Drivers and tools ask ``pg_catalog`` (``pg_class``, ``pg_type``, ``pg_namespace``, …) whether a table exists,
which types there are, what the server is. These are answered from an in-memory SQLite database holding
those tables (in attached schemas named ``pg_catalog`` and ``information_schema``, so qualified and
unqualified names both resolve), filled from the served database's schema (``catalog_tables``) and rebuilt
when that schema changes. The query itself is rewritten (``catalog_query``), translated like any other
statement and runs there, with the catalog functions (``catalog_functions``) registered as SQLite functions.

Array columns (``indkey``, ``conkey``, ``reloptions``) hold PostgreSQL's text form and are declared with the
array type's name (``int2vector``, ``_int2``, ``_text``), which the front end maps to the array's OID; arrays
a query computes are JSON and are printed in PostgreSQL's form on the way out.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Iterator
from typing import Any

import apsw

from sqlite_ha import __version__
from sqlite_ha.db.schema import USER_OBJECTS
from sqlite_ha.db.statement import Result
from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.server.pgwire.catalog import functions as catalog_functions
from sqlite_ha.server.pgwire.catalog.tables import ForeignKey, Index, Table
from sqlite_ha.server.pgwire.sql import schemas
from sqlite_ha.server.pgwire.types import arrays
from sqlite_ha.server.pgwire.types import values as t

VERSION = f"PostgreSQL 15.0 (sqlite-ha {__version__}, SQLite {apsw.sqlite_lib_version()})"
PUBLIC, PG_CATALOG, INFORMATION_SCHEMA = 2200, 11, 13000
FIRST_OID = 16384
# a session's TEMP objects (pgwire/temp.py), as PostgreSQL names the first backend's temporary schema
PG_TEMP, PG_TEMP_NAME = 16383, "pg_temp_3"

_CATALOG = re.compile(
    r"\b(?:pg_catalog|information_schema|pg_class|pg_namespace|pg_type|pg_attribute|pg_index|pg_database|"
    r"pg_roles|pg_am|pg_tables|pg_settings|to_regtype|pg_table_is_visible|current_database|"
    r"pg_get_userbyid|has_table_privilege|current_setting|set_config|current_user|session_user|current_role)\b"
    r"|\bversion\s*\(\s*\)",
    re.I,
)
_REG_OPERATOR = re.compile(r"OPERATOR\s*\(\s*pg_catalog\.(~|~\*|!~|!~\*)\s*\)", re.I)
_COLLATE = re.compile(r"\bCOLLATE\s+pg_catalog\.\"?default\"?", re.I)
_OID_ARRAY = re.compile(r"::\s*(?:pg_catalog\.)?oid\s*\[\s*\]", re.I)  # sqlglot reads no oid[]; _oid it does
_VERSION_CALL = re.compile(r"\b(?:pg_catalog\.)?version\s*\(\s*\)", re.I)
_USER_KEYWORD = re.compile(r"\b(current_user|session_user|current_role)\b(?!\s*\()", re.I)  # no parentheses
# what catalog_query.rewrite puts before a translated query: the PostgreSQL types of the output columns
_TYPES_HEADER = re.compile(r"^/\* pg_types: ([^*]*) \*/ ")

_USER_OBJECTS = (
    f"SELECT type, name FROM sqlite_schema WHERE type IN ('table', 'view') AND {USER_OBJECTS} ORDER BY rowid"
)
_TEMP_OBJECTS = "SELECT type, name FROM temp.sqlite_schema WHERE type IN ('table', 'view') ORDER BY rowid"
_PER_DATABASE = (
    "pg_class",
    "pg_attribute",
    "pg_attrdef",
    "pg_index",
    "pg_constraint",
    "pg_database",
    "pg_description",
    "information_schema.tables",
    "information_schema.columns",
)
_SETTINGS = {
    "jit": "off",
    "default_table_access_method": "heap",
    "server_version": "15.0",
    "search_path": '"$user", public',
}


def _quote_always(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


_SCHEMA = """
CREATE TABLE pg_catalog.pg_namespace(oid oid PRIMARY KEY, nspname TEXT, nspowner oid, nspacl TEXT);
CREATE TABLE pg_catalog.pg_class(
  oid oid PRIMARY KEY, relname TEXT, relnamespace oid, reltype oid, relowner oid,
  relam oid, relkind TEXT, relpersistence TEXT, relhasindex BOOLEAN, relispartition BOOLEAN,
  reltuples REAL, relchecks INTEGER, relhasrules BOOLEAN, relhastriggers BOOLEAN, relrowsecurity BOOLEAN,
  relforcerowsecurity BOOLEAN, reltablespace oid, reloftype oid, relreplident TEXT,
  relpartbound TEXT, relacl TEXT, reloptions "_text", relnatts INTEGER, reltoastrelid oid DEFAULT 0,
  relfilenode oid DEFAULT 0, relpages INTEGER DEFAULT 0, relisshared BOOLEAN DEFAULT 0,
  relhassubclass BOOLEAN DEFAULT 0, relrewrite INTEGER DEFAULT 0, relfrozenxid INTEGER DEFAULT 0);
CREATE TABLE pg_catalog.pg_type(
  oid oid PRIMARY KEY, typname TEXT, typnamespace oid, typlen INTEGER, typtype TEXT,
  typarray oid, typdelim TEXT, typrelid oid, typelem oid, typbasetype oid,
  typnotnull BOOLEAN, typtypmod INTEGER, typcollation oid, typinput TEXT, typowner oid,
  typcategory TEXT DEFAULT 'U', typbyval BOOLEAN DEFAULT 0, typispreferred BOOLEAN DEFAULT 0);
CREATE TABLE pg_catalog.pg_attribute(
  attrelid oid, attname TEXT, atttypid oid, attnum INTEGER, attnotnull BOOLEAN, atthasdef BOOLEAN,
  attisdropped BOOLEAN, atttypmod INTEGER, attlen INTEGER, attidentity TEXT, attgenerated TEXT,
  attcollation oid, attndims INTEGER, attstorage TEXT, attcompression TEXT DEFAULT '',
  attstattarget INTEGER DEFAULT -1);
CREATE TABLE pg_catalog.pg_database(
  oid oid PRIMARY KEY, datname TEXT, datdba oid, encoding INTEGER, datcollate TEXT, datctype TEXT,
  datistemplate BOOLEAN, datallowconn BOOLEAN, datacl TEXT, daticulocale TEXT, datlocprovider TEXT,
  dattablespace oid DEFAULT 1663);
CREATE TABLE pg_catalog.pg_roles(
  oid oid PRIMARY KEY, rolname TEXT, rolsuper BOOLEAN, rolinherit BOOLEAN DEFAULT 1,
  rolcreaterole BOOLEAN DEFAULT 1, rolcreatedb BOOLEAN DEFAULT 1, rolcanlogin BOOLEAN DEFAULT 1,
  rolconnlimit INTEGER DEFAULT -1, rolvaliduntil TEXT, rolreplication BOOLEAN DEFAULT 0,
  rolbypassrls BOOLEAN DEFAULT 1);
CREATE TABLE pg_catalog.pg_auth_members(roleid oid, member oid, grantor oid, admin_option BOOLEAN);
CREATE TABLE pg_catalog.pg_proc(
  oid oid PRIMARY KEY, proname TEXT, pronamespace oid, proowner oid, prokind TEXT, prorettype oid,
  proargtypes oidvector, proretset BOOLEAN);
CREATE TABLE pg_catalog.pg_am(oid oid PRIMARY KEY, amname TEXT);
CREATE TABLE pg_catalog.pg_tablespace(oid oid PRIMARY KEY, spcname TEXT, spcowner oid);
CREATE TABLE pg_catalog.pg_description(objoid oid, classoid oid, objsubid INTEGER, description TEXT);
CREATE TABLE pg_catalog.pg_inherits(
  inhrelid oid, inhparent oid, inhseqno INTEGER, inhdetachpending BOOLEAN);
CREATE TABLE pg_catalog.pg_attrdef(oid oid PRIMARY KEY, adrelid oid, adnum INTEGER, adbin TEXT);
CREATE TABLE pg_catalog.pg_collation(oid oid PRIMARY KEY, collname TEXT, collnamespace oid);
CREATE TABLE pg_catalog.pg_range(
  rngtypid oid PRIMARY KEY, rngsubtype oid, rngmultitypid oid, rngcollation oid);
CREATE TABLE pg_catalog.pg_index(
  indexrelid oid PRIMARY KEY, indrelid oid, indnatts INTEGER, indnkeyatts INTEGER,
  indisunique BOOLEAN, indisprimary BOOLEAN, indisexclusion BOOLEAN, indimmediate BOOLEAN,
  indisclustered BOOLEAN, indisvalid BOOLEAN, indcheckxmin BOOLEAN, indisready BOOLEAN, indislive BOOLEAN,
  indisreplident BOOLEAN, indkey int2vector, indcollation oidvector, indclass oidvector,
  indoption int2vector, indexprs TEXT, indpred TEXT, indnullsnotdistinct BOOLEAN);
CREATE TABLE pg_catalog.pg_constraint(
  oid oid PRIMARY KEY, conname TEXT, connamespace oid, contype TEXT, condeferrable BOOLEAN,
  condeferred BOOLEAN, convalidated BOOLEAN, conrelid oid, contypid oid, conindid oid,
  conparentid oid, confrelid oid, confupdtype TEXT, confdeltype TEXT, confmatchtype TEXT,
  conislocal BOOLEAN, coninhcount INTEGER, connoinherit BOOLEAN, conkey "_int2", confkey "_int2",
  conbin TEXT);
CREATE TABLE pg_catalog.pg_trigger(
  oid oid PRIMARY KEY, tgrelid oid, tgparentid oid, tgname TEXT, tgenabled TEXT,
  tgisinternal BOOLEAN);
CREATE TABLE pg_catalog.pg_policy(
  oid oid PRIMARY KEY, polname TEXT, polrelid oid, polcmd TEXT, polpermissive BOOLEAN,
  polroles "_oid", polqual TEXT, polwithcheck TEXT);
CREATE TABLE pg_catalog.pg_statistic_ext(
  oid oid PRIMARY KEY, stxrelid oid, stxname TEXT, stxnamespace oid, stxkind "_char",
  stxstattarget INTEGER);
CREATE TABLE pg_catalog.pg_publication(oid oid PRIMARY KEY, pubname TEXT, puballtables BOOLEAN);
CREATE TABLE pg_catalog.pg_sequence(
  seqrelid oid PRIMARY KEY, seqtypid oid, seqstart INTEGER, seqincrement INTEGER, seqmax INTEGER,
  seqmin INTEGER, seqcache INTEGER, seqcycle BOOLEAN);
CREATE TABLE pg_catalog.pg_opclass(
  oid oid PRIMARY KEY, opcname TEXT, opcmethod oid, opcdefault BOOLEAN);
CREATE TABLE pg_catalog.pg_publication_namespace(oid oid PRIMARY KEY, pnpubid oid, pnnspid oid);
CREATE TABLE pg_catalog.pg_publication_rel(
  oid oid PRIMARY KEY, prpubid oid, prrelid oid, prqual TEXT, prattrs int2vector);
CREATE VIEW pg_catalog.pg_tables AS
  SELECT n.nspname AS schemaname, c.relname AS tablename,
         (SELECT rolname FROM pg_catalog.pg_roles WHERE oid = 10) AS tableowner, NULL AS tablespace,
         c.relhasindex AS hasindexes, 0 AS hasrules, c.relhastriggers AS hastriggers, 0 AS rowsecurity
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r';
CREATE TABLE information_schema.tables(
  table_catalog TEXT, table_schema TEXT, table_name TEXT, table_type TEXT);
CREATE TABLE information_schema.columns(
  table_catalog TEXT, table_schema TEXT, table_name TEXT, column_name TEXT, ordinal_position INTEGER,
  column_default TEXT, is_nullable TEXT, data_type TEXT, udt_name TEXT);
"""


@functools.cache
def column_types() -> dict[tuple[str, str], str]:
    """(table, column) → the declared type of every column of the catalog database, lower-case names."""
    conn = apsw.Connection(":memory:")
    conn.execute("ATTACH ':memory:' AS pg_catalog; ATTACH ':memory:' AS information_schema")
    conn.execute(_SCHEMA)
    found: dict[tuple[str, str], str] = {}
    for schema in ("pg_catalog", "information_schema"):
        for (table,) in conn.execute(f"SELECT name FROM {schema}.sqlite_schema").fetchall():
            for name, declared in conn.execute(
                "SELECT name, type FROM pragma_table_info(?, ?)", (table, schema)
            ).fetchall():
                found[(str(table).lower(), str(name).lower())] = str(declared)
    conn.close()
    return found


_AM = {"r": 2, "m": 2, "i": 403}  # heap, btree
# the catalogs' own OIDs (as PostgreSQL's): pg_description.classoid says which catalog an object is in
_SYSTEM_CLASSES = {
    "pg_class": 1259,
    "pg_type": 1247,
    "pg_proc": 1255,
    "pg_attribute": 1249,
    "pg_namespace": 2615,
    "pg_constraint": 2606,
    "pg_index": 2610,
    "pg_description": 2609,
    "pg_database": 1262,
    "pg_am": 2601,
    "pg_trigger": 2620,
    "pg_rewrite": 2618,
}


# Catalogs of features SQLite has not (row security, extended statistics, publications, inheritance): always
# empty here. A query joining one of them cannot return rows; when its syntax is beyond the translator,
# it is answered with no rows rather than an error.
_EMPTY = re.compile(
    r"\b(?:pg_catalog\.)?(?:pg_policy|pg_statistic_ext|pg_publication|pg_publication_namespace|"
    r"pg_publication_rel|pg_inherits|pg_trigger|pg_rewrite)\b",
    re.I,
)


def empty_answer(sql: str) -> int | None:
    """The number of columns of a query over an always-empty catalog (answered with no rows), else None."""
    if not _EMPTY.search(sql):
        return None
    depth, count, i = 0, 1, 0
    low = sql.lower()
    start = low.find("select")
    if start < 0:
        return None
    for i in range(start + 6, len(sql)):
        ch = sql[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            count += 1
        elif (
            depth == 0
            and low.startswith("from", i)
            and not low[i - 1].isalnum()
            and not low[i + 4 : i + 5].isalnum()
        ):
            return count
    return count


def is_catalog_query(sql: str) -> bool:
    return _CATALOG.search(sql) is not None


def prepare(sql: str) -> str:
    """The PostgreSQL catalog query with what sqlglot cannot read rewritten away."""
    sql = _VERSION_CALL.sub("pg_version()", sql)
    sql = _USER_KEYWORD.sub(lambda m: f"pg_{m.group(1).lower()}()", sql)
    sql = _OID_ARRAY.sub("::_oid", sql)
    sql = _REG_OPERATOR.sub(lambda m: "REGEXP" if m.group(1) == "~" else "NOT REGEXP", sql)
    return _COLLATE.sub("", sql)


class Catalog:
    """The catalog database of one served database, rebuilt when its schema version changes."""

    def __init__(self, database: str, user: str = "ha") -> None:
        self.database = database
        self.user = user  # --pg-user: the one role, owner of everything
        self.conn = apsw.Connection(":memory:")
        self.conn.execute("ATTACH ':memory:' AS pg_catalog; ATTACH ':memory:' AS information_schema")
        self.conn.execute(_SCHEMA)
        self._register()
        self._fill_fixed()
        self.version: int | None = None
        self._definitions: dict[int, str] = {}  # index and constraint oid → its SQL, for pg_get_*def
        self._index_keys: dict[int, list[str]] = {}  # index oid → its key columns and expressions
        # where the relation being filled lives: namespace oid, its name, relpersistence
        self._namespace: tuple[int, str, str] = (PUBLIC, "public", "p")
        self._comments: dict[str, dict[str, str]] = {}  # table (lower case) → column ('' the table) → text

    def _register(self) -> None:
        catalog_functions.register(self.conn)
        functions: dict[str, tuple[Any, int]] = {
            "pg_version": (lambda: VERSION, 0),
            "pg_current_user": (lambda: self.user, 0),
            "pg_session_user": (lambda: self.user, 0),
            "pg_current_role": (lambda: self.user, 0),
            "pg_get_userbyid": (lambda oid: self.user, 1),
            "pg_my_temp_schema": (lambda: PG_TEMP, 0),
            "pg_table_is_visible": (self._visible, 1),
            "obj_description": (lambda oid, *kind: self._description(oid, 0), -1),
            "col_description": (self._description, 2),
            "pg_is_other_temp_schema": (lambda oid: 0, 1),
            "current_database": (lambda: self.database, 0),
            "current_setting": (lambda name, *a: _SETTINGS.get(str(name)), -1),
            "set_config": (lambda name, value, local: value, 3),  # session settings are the session's
            "pg_get_indexdef": (self._indexdef, -1),
            "pg_get_constraintdef": (lambda oid, *a: self._definitions.get(oid), -1),
            "pg_get_triggerdef": (lambda *a: None, -1),
            "to_regclass": (lambda value: self._regoid("regclass", value), 1),
            "to_regnamespace": (lambda value: self._regoid("regnamespace", value), 1),
            "pg_regoid": (self._regoid, 2),
            "pg_regname": (self._regname, 2),
        }
        for name, (fn, nargs) in functions.items():
            self.conn.create_scalar_function(name, fn, nargs)

    def _indexdef(self, oid: SQLiteValue, column: SQLiteValue = 0, *pretty: SQLiteValue) -> str | None:
        """``pg_get_indexdef(index)``: CREATE INDEX …; with a column number, that key column only."""
        if not isinstance(oid, int):
            return None
        if isinstance(column, int) and column > 0:
            keys = self._index_keys.get(oid, [])
            return keys[column - 1] if column <= len(keys) else None
        return self._definitions.get(oid)

    def _lookup(self, sql: str, *values: SQLiteValue) -> SQLiteValue:
        found = self.conn.execute(sql, values).fetchall()
        return found[0][0] if found else None

    def _regclass(self, text: str, name: str) -> SQLiteValue:
        """The OID of a relation named as ``regclass`` input: ``t`` (the session's TEMP one first, then
        public), ``s.t`` in a schema, or one of the catalogs (``pg_catalog.pg_class``)."""
        schema, dot, relname = text.partition(".")
        schema = schema.strip('"')
        if dot and schema.lower() not in ("public", "pg_catalog"):
            return self._lookup(
                "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = ? AND c.relname = ?",
                schema,
                relname.strip('"'),
            )
        found = self._lookup(
            "SELECT oid FROM pg_class WHERE relname = ? AND relnamespace IN (?, ?) "
            "ORDER BY relnamespace = ? DESC",
            name,
            PG_TEMP,
            PUBLIC,
            PG_TEMP,
        )
        return _SYSTEM_CLASSES.get(name) if found is None else found

    def _regoid(self, kind: SQLiteValue, value: SQLiteValue) -> int | None:
        """``value::regclass`` (and the other reg* types) compared or joined: the object's OID."""
        if value is None or isinstance(value, int):
            return value
        text = str(value).strip()
        if text.isdigit():
            return int(text)
        name = text.removeprefix("public.").removeprefix("pg_catalog.").strip('"')
        if kind == "regclass":
            found = self._regclass(text, name)
        elif kind == "regnamespace":
            found = self._lookup("SELECT oid FROM pg_namespace WHERE nspname = ?", name)
        elif kind == "regrole":
            found = self._lookup("SELECT oid FROM pg_roles WHERE rolname = ?", name)
        elif kind == "regtype":
            found = catalog_functions.to_regtype(text)
        else:
            found = None
        return found if isinstance(found, int) else None

    def _regname(self, kind: SQLiteValue, value: SQLiteValue) -> str | None:
        """``value::regclass`` printed or cast to text: the object's name."""
        if value is None:
            return None
        if not isinstance(value, int) and not str(value).strip().isdigit():
            return str(value)  # a name already
        oid = int(str(value))
        if kind == "regclass":
            name = self._lookup("SELECT relname FROM pg_class WHERE oid = ?", oid)
            return _quote(str(name)) if name is not None else str(oid)
        if kind == "regtype":
            return catalog_functions.format_type(oid)
        queries = {
            "regnamespace": "SELECT nspname FROM pg_namespace WHERE oid = ?",
            "regrole": "SELECT rolname FROM pg_roles WHERE oid = ?",
        }
        name = self._lookup(queries[str(kind)], oid) if kind in queries else None
        return str(oid) if name is None else str(name)

    def _fill_fixed(self) -> None:
        c = self.conn
        c.executemany(
            "INSERT INTO pg_namespace(oid, nspname, nspowner) VALUES (?, ?, 10)",
            [(PG_CATALOG, "pg_catalog"), (PUBLIC, "public"), (INFORMATION_SCHEMA, "information_schema")],
        )
        c.execute("INSERT INTO pg_roles(oid, rolname, rolsuper) VALUES (10, ?, 1)", (self.user,))
        c.execute("INSERT INTO pg_am VALUES (2, 'heap'), (403, 'btree')")
        c.execute("INSERT INTO pg_tablespace VALUES (1663, 'pg_default', 10), (1664, 'pg_global', 10)")
        c.executemany(  # one row per record of the type registry
            "INSERT INTO pg_type(oid, typname, typnamespace, typlen, typtype, typarray, typdelim, typrelid, "
            "typelem, typbasetype, typnotnull, typtypmod, typcollation, typowner, typcategory, typbyval, "
            "typispreferred) VALUES (?, ?, ?, ?, ?, ?, ',', 0, ?, 0, 0, -1, ?, 10, ?, ?, ?)",
            [
                (
                    *(p.oid, p.name, PG_CATALOG, p.length, "p" if p.oid == t.UNKNOWN else "b", p.array),
                    *(p.element, 100 if p.category == "S" else 0, p.category, p.by_value),
                    p.oid in (t.TEXT, t.FLOAT8, t.BOOL, t.TIMESTAMPTZ, t.OID),
                )
                for p in t.REGISTRY
            ],
        )

    def sync(self, conn: apsw.Connection, *, temp: bool = False) -> None:
        """Rebuild the per-database tables from ``conn``'s schema if it changed since the last time.

        ``temp``: ``conn`` is a session's own connection, whose TEMP tables and views are listed too, in the
        schema ``pg_temp_3`` with ``relpersistence`` ``t``, as PostgreSQL shows a session its own."""
        version = int(conn.execute("PRAGMA schema_version").fetchall()[0][0])  # type: ignore[arg-type]
        if temp:
            version = (version << 32) + int(conn.execute("PRAGMA temp.schema_version").fetchall()[0][0])  # type: ignore[arg-type]
        if version == self.version:
            return
        objects = [(str(kind), str(name)) for kind, name in conn.execute(_USER_OBJECTS).fetchall()]
        # CREATE SCHEMA s made the view "s." (sql/schemas.py); its tables are "s.t"
        user_schemas = {name[:-1] for kind, name in objects if kind == "view" and name.endswith(".")}
        schemas.note({name.lower() for name in user_schemas})
        # comments of t: the view "pg_comment:t" (pgwire/comments.py)
        self._comments = {
            name[len(schemas.COMMENTS) :].lower(): {
                str(attname): str(text)
                for attname, text in conn.execute(f"SELECT attname, description FROM {_quote_always(name)}")
            }
            for kind, name in objects
            if kind == "view" and name.startswith(schemas.COMMENTS)
        }
        # a materialized view v is the table v, its query the view "pg_matview.v" (sql/rewrites.py)
        matviews = {
            name[len(schemas.MATVIEW) :].lower()
            for kind, name in objects
            if kind == "view" and name.startswith(schemas.MATVIEW)
        }
        tables = [
            dataclasses.replace(table, kind="m") if table.name.lower() in matviews else table
            for table in (
                _read(conn, kind, name)
                for kind, name in objects
                if not name.endswith(".") and not name.startswith((schemas.MATVIEW, schemas.COMMENTS))
            )
        ]
        temp_tables = (
            [_read(conn, str(kind), str(name), "temp") for kind, name in conn.execute(_TEMP_OBJECTS)]
            if temp
            else []
        )
        with self.conn:
            self._fill(tables, temp_tables, sorted(user_schemas))
        self.version = version

    def _fill(
        self,
        tables: list[Table],
        temp_tables: list[Table] | None = None,
        user_schemas: list[str] | None = None,
    ) -> None:
        c = self.conn
        for name in _PER_DATABASE:
            c.execute(f"DELETE FROM {name}")
        self._definitions.clear()
        self._index_keys.clear()
        c.execute(
            "INSERT INTO pg_database(oid, datname, datdba, encoding, datcollate, datctype, "
            "datistemplate, datallowconn, datlocprovider) VALUES (16384, ?, 10, 6, 'C', 'C', 0, 1, 'c')",
            (self.database,),
        )
        c.execute("DELETE FROM pg_namespace WHERE oid = ? OR oid > ?", (PG_TEMP, FIRST_OID))
        if temp_tables:
            c.execute(
                "INSERT INTO pg_namespace(oid, nspname, nspowner) VALUES (?, ?, 10)", (PG_TEMP, PG_TEMP_NAME)
            )
        temps = {id(table) for table in temp_tables or ()}
        tables = [*tables, *(temp_tables or ())]
        oids = iter(range(FIRST_OID + 1, 2**31))
        namespaces = {name.lower(): (next(oids), name) for name in user_schemas or ()}
        for oid, name in namespaces.values():
            c.execute("INSERT INTO pg_namespace(oid, nspname, nspowner) VALUES (?, ?, 10)", (oid, name))
        table_oids = {table.name.lower(): next(oids) for table in tables}
        by_name = {table.name.lower(): table for table in tables}
        referenced = {fk.parent.lower() for table in tables for fk in table.foreign_keys}
        for table in tables:
            oid = table_oids[table.name.lower()]
            self._namespace = (PG_TEMP, PG_TEMP_NAME, "t") if id(table) in temps else (PUBLIC, "public", "p")
            schema, _ = schemas.split(table.name, frozenset(namespaces))
            if schema is not None and id(table) not in temps:
                self._namespace = (namespaces[schema.lower()][0], namespaces[schema.lower()][1], "p")
            self._relation(
                oid,
                table.name,
                table.kind,
                len(table.columns),
                has_index=bool(table.indexes),
                has_triggers=bool(table.foreign_keys) or table.name.lower() in referenced,  # FKs are triggers
                checks=len(table.checks),
            )
            c.execute(
                "INSERT INTO information_schema.tables VALUES (?, ?, ?, ?)",
                (
                    self.database,
                    self._namespace[1],
                    self._local(table.name),
                    "BASE TABLE" if table.kind == "r" else "VIEW",
                ),
            )
            self._columns(oid, table, oids)
            positions = {col.name.lower(): n for n, col in enumerate(table.columns, start=1)}
            for column, text in self._comments.get(table.name.lower(), {}).items():
                sub = positions.get(column.lower()) if column else 0
                if sub is not None:
                    c.execute("INSERT INTO pg_description VALUES (?, 1259, ?, ?)", (oid, sub, text))
            for index in table.indexes:
                self._index(oid, table, index, positions, oids)
            for fk in table.foreign_keys:
                parent = by_name.get(fk.parent.lower())
                parent_positions = {
                    col.name.lower(): n for n, col in enumerate(parent.columns if parent else (), start=1)
                }
                con_oid = next(oids)
                self._constraint(
                    con_oid,
                    fk.name,
                    "f",
                    oid,
                    keys=[positions.get(col.lower(), 0) for col in fk.columns],
                    parent=table_oids.get(fk.parent.lower(), 0),
                    parent_keys=[parent_positions.get(col.lower(), 0) for col in fk.parent_columns],
                    actions=(fk.on_update, fk.on_delete),
                )
                self._definitions[con_oid] = _foreign_key_definition(fk, frozenset(namespaces))
            for check in table.checks:
                con_oid = next(oids)
                used = [
                    n
                    for name, n in positions.items()
                    if re.search(rf"\b{re.escape(name)}\b", check.expression, re.I)
                ]
                self._constraint(con_oid, check.name, "c", oid, keys=used, check=check.expression)
                self._definitions[con_oid] = f"CHECK ({check.expression})"

    def _columns(self, oid: int, table: Table, oids: Iterator[int]) -> None:
        c = self.conn
        for n, col in enumerate(table.columns, start=1):
            type_oid, typmod = t.declared_type(col.declared) if col.declared else (t.TEXT, -1)
            c.execute(
                "INSERT INTO pg_attribute VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, '', '', 0, 0, ?, '', -1)",
                (
                    *(oid, col.name, type_oid, n, col.notnull, col.default is not None, typmod),
                    *(t.type_size(type_oid), "p" if t.type_size(type_oid) > 0 else "x"),  # fixed or varlena
                ),
            )
            if col.default is not None:
                c.execute("INSERT INTO pg_attrdef VALUES (?, ?, ?, ?)", (next(oids), oid, n, col.default))
            c.execute(
                "INSERT INTO information_schema.columns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.database,
                    self._namespace[1],
                    self._local(table.name),
                    col.name,
                    n,
                    col.default,
                    "NO" if col.notnull else "YES",
                    t.SQL_NAMES.get(type_oid, "text"),
                    t.TYPE_INFO.get(type_oid, ("text", -1))[0],
                ),
            )

    def _index(
        self, oid: int, table: Table, index: Index, positions: dict[str, int], oids: Iterator[int]
    ) -> None:
        index_oid = next(oids)
        count = len(index.columns)
        keys = [positions.get(col.lower(), 0) if col is not None else 0 for col in index.columns]
        spelt = index.expressions or (None,) * count
        # each key as pg_get_indexdef(index, n) prints it: a column's name, or the expression
        texts = [_quote(col) if col is not None else (spelt[i] or "?") for i, col in enumerate(index.columns)]
        expressions = [text for text, col in zip(texts, index.columns, strict=True) if col is None]
        descending = index.descending or (False,) * count
        self._relation(index_oid, index.name, "i", count)
        self.conn.execute(
            "INSERT INTO pg_index VALUES (?, ?, ?, ?, ?, ?, 0, 1, 0, 1, 0, 1, 1, 0, ?, ?, ?, ?, ?, ?, 0)",
            (
                index_oid,
                oid,
                count,
                count,
                index.unique,
                index.primary,
                " ".join(map(str, keys)),
                " ".join("0" * count),
                " ".join("0" * count),
                " ".join("3" if desc else "0" for desc in descending),  # 3: DESC, NULLS FIRST (its default)
                ", ".join(expressions) or None,
                f"({index.predicate})" if index.predicate else None,  # as pg_get_expr prints it
            ),
        )
        self._index_keys[index_oid] = texts
        shown = ", ".join(
            text + (" DESC" if desc else "") for text, desc in zip(texts, descending, strict=False)
        )
        where = f" WHERE {index.predicate}" if index.predicate else ""  # as pretty-printed: psql shows it
        unique = "UNIQUE " if index.unique else ""
        self._definitions[index_oid] = (
            f"CREATE {unique}INDEX {_quote(self._local(index.name))} ON {self._namespace[1]}."
            f"{_quote(self._local(table.name))} "
            f"USING btree ({shown}){where}"
        )
        if index.primary or index.constraint:
            con_oid = next(oids)
            self._constraint(
                con_oid, index.name, "p" if index.primary else "u", oid, keys=keys, index=index_oid
            )
            self._definitions[con_oid] = (
                f"{'PRIMARY KEY' if index.primary else 'UNIQUE'} ({', '.join(texts)})"
            )

    def comments_of(self, table: str) -> dict[str, str]:
        """The comments of ``table`` (as SQLite names it): column name (``''`` the table's) → text."""
        return dict(self._comments.get(table.lower(), {}))

    def _description(self, oid: SQLiteValue, sub: SQLiteValue) -> SQLiteValue:
        found = self.conn.execute(
            "SELECT description FROM pg_description WHERE objoid = ? AND objsubid = ?", (oid, sub)
        ).fetchall()
        return found[0][0] if found else None

    def _local(self, name: str) -> str:
        """A name as its schema shows it: ``"s.t"`` of the schema ``s`` (sql/schemas.py) is ``t`` there."""
        if self._namespace[0] in (PUBLIC, PG_TEMP):
            return name
        prefix = self._namespace[1] + "."
        return name[len(prefix) :] if name.lower().startswith(prefix.lower()) else name

    def _visible(self, oid: SQLiteValue) -> int:
        """pg_table_is_visible: the search path is "$user", public (and the session's pg_temp)."""
        found = self.conn.execute("SELECT relnamespace FROM pg_class WHERE oid = ?", (oid,)).fetchall()
        return 1 if not found or found[0][0] in (PUBLIC, PG_TEMP, PG_CATALOG, INFORMATION_SCHEMA) else 0

    def _relation(
        self,
        oid: int,
        name: str,
        kind: str,
        natts: int,
        *,
        has_index: bool = False,
        has_triggers: bool = False,
        checks: int = 0,
    ) -> None:
        self.conn.execute(
            "INSERT INTO pg_class(oid, relname, relnamespace, reltype, relowner, relam, relkind, "
            "relpersistence, relhasindex, relispartition, reltuples, relchecks, relhasrules, relhastriggers, "
            "relrowsecurity, relforcerowsecurity, reltablespace, reloftype, relreplident, relnatts) "
            "VALUES (?, ?, ?, 0, 10, ?, ?, ?, ?, 0, -1, ?, 0, ?, 0, 0, 0, 0, 'd', ?)",
            (
                *(oid, self._local(name), self._namespace[0], _AM.get(kind, 0), kind, self._namespace[2]),
                *(has_index, checks, has_triggers, natts),
            ),
        )

    def _constraint(
        self,
        oid: int,
        name: str,
        kind: str,
        table: int,
        *,
        keys: list[int],
        index: int = 0,
        parent: int = 0,
        parent_keys: list[int] | None = None,
        actions: tuple[str, str] = ("a", "a"),
        check: str | None = None,
    ) -> None:
        self.conn.execute(
            "INSERT INTO pg_constraint VALUES "
            "(?, ?, ?, ?, 0, 0, 1, ?, 0, ?, 0, ?, ?, ?, 's', 1, 0, 0, ?, ?, ?)",
            (
                oid,
                self._local(name),
                self._namespace[0],
                kind,
                table,
                index,
                parent,
                actions[0] if kind == "f" else " ",
                actions[1] if kind == "f" else " ",
                "{" + ",".join(map(str, keys)) + "}",
                None if parent_keys is None else "{" + ",".join(map(str, parent_keys)) + "}",
                check,
            ),
        )

    def run(self, sql: str, params: tuple[SQLiteValue, ...]) -> Result:
        cursor = self.conn.cursor()
        rows: list[tuple[SQLiteValue, ...]] = []
        description: list[tuple[str, str | None]] = []

        def trace(cur: apsw.Cursor, text: str, bindings: Any) -> bool:
            description[:] = _typed(sql, cur.description)
            return True

        cursor.exec_trace = trace
        for row in cursor.execute(sql, params or None):
            rows.append(tuple(row))
        shown = [arrays.BY_NAME.get(decl or "") for _, decl in description]
        if any(shown):  # arrays in PostgreSQL's text form, whatever form the query made them in
            rows = [
                tuple(
                    arrays.literal(arrays.items(v), a) if a is not None and v is not None else v
                    for v, a in zip(row, shown, strict=True)
                )
                for row in rows
            ]
        return Result(columns=[d[0] for d in description], types=[d[1] for d in description], rows=rows)

    def describe(self, sql: str, params: int) -> list[tuple[str, str | None]]:
        seen: list[tuple[str, str | None]] = []

        def trace(cur: apsw.Cursor, text: str, bindings: Any) -> bool:
            seen[:] = _typed(sql, cur.description)
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


_ACTION_NAMES = {"r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def _read(conn: apsw.Connection, kind: str, name: str, schema: str = "main") -> Table:
    """A table or view as the catalog lists it; a view over a table dropped since (SQLite allows that)
    has no columns, rather than failing every catalog query."""
    try:
        return Table.read(conn, kind, name, schema)
    except apsw.SQLError:
        if kind != "view":
            raise
        return Table(name, "v", ())


def _foreign_key_definition(fk: ForeignKey, user_schemas: frozenset[str] = frozenset()) -> str:
    """pg_get_constraintdef of a foreign key: ``FOREIGN KEY (a) REFERENCES t(id) ON DELETE CASCADE``."""
    actions = "".join(
        f" ON {event} {_ACTION_NAMES[code]}"
        for event, code in (("UPDATE", fk.on_update), ("DELETE", fk.on_delete))
        if code != "a"
    )
    columns = ", ".join(_quote(col) for col in fk.columns)
    referenced = ", ".join(_quote(col) for col in fk.parent_columns)
    schema, parent = schemas.split(fk.parent, user_schemas)  # "s.t" is s.t, as PostgreSQL prints it
    shown = _quote(parent) if schema is None else f"{_quote(schema)}.{_quote(parent)}"
    return f"FOREIGN KEY ({columns}) REFERENCES {shown}({referenced}){actions}"


def _typed(sql: str, description: Any) -> list[tuple[str, str | None]]:
    """Result columns with their declared types: SQLite's, else the one the query rewrite inferred."""
    header = _TYPES_HEADER.match(sql)
    inferred = header.group(1).split(",") if header else []
    return [
        (str(d[0]), d[1] or (inferred[i] if i < len(inferred) and inferred[i] else None))
        for i, d in enumerate(description)
    ]
