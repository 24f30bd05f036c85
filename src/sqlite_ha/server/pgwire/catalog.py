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
from dataclasses import dataclass
from typing import Any

import apsw

from sqlite_ha import __version__
from sqlite_ha.db.schema import USER_OBJECTS
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

_USER_OBJECTS = (
    f"SELECT type, name FROM sqlite_schema WHERE type IN ('table', 'view') AND {USER_OBJECTS} ORDER BY rowid"
)
_PER_DATABASE = (
    "pg_class",
    "pg_attribute",
    "pg_attrdef",
    "pg_index",
    "pg_constraint",
    "pg_database",
    "information_schema.tables",
    "information_schema.columns",
)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    declared: str
    notnull: bool
    default: str | None


@dataclass(frozen=True, slots=True)
class Index:
    name: str
    columns: tuple[str, ...]
    unique: bool
    primary: bool
    constraint: bool  # made by a UNIQUE constraint (or the primary key), not CREATE INDEX


@dataclass(frozen=True, slots=True)
class ForeignKey:
    columns: tuple[str, ...]
    parent: str
    parent_columns: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    kind: str  # 'r' table, 'v' view
    columns: tuple[Column, ...]
    indexes: tuple[Index, ...]
    foreign_keys: tuple[ForeignKey, ...]

    @classmethod
    def read(cls, conn: apsw.Connection, kind: str, name: str) -> Table:
        info = conn.execute('SELECT name, type, "notnull", dflt_value, pk FROM pragma_table_info(?)', (name,))
        rows = info.fetchall()
        columns = tuple(
            Column(str(r[0]), str(r[1] or ""), bool(r[2]) or bool(r[4]), _opt(r[3])) for r in rows
        )
        if kind != "table":
            return cls(name, "v", columns, (), ())
        indexes: list[Index] = []
        has_pk_index = False
        for _, index, unique, origin, _partial in conn.execute(
            'SELECT seq, name, "unique", origin, partial FROM pragma_index_list(?)', (name,)
        ).fetchall():
            cols = tuple(
                str(r[0])
                for r in conn.execute(
                    "SELECT name FROM pragma_index_info(?) ORDER BY seqno", (index,)
                ).fetchall()
            )
            primary = origin == "pk"
            has_pk_index |= primary
            shown = (
                f"{name}_pkey"
                if primary
                else (f"{name}_{'_'.join(cols)}_key" if origin == "u" else str(index))
            )
            indexes.append(Index(shown, cols, bool(unique), primary, origin in ("pk", "u")))
        pk = tuple(str(r[0]) for r in sorted((r for r in rows if r[4]), key=lambda r: int(r[4])))  # type: ignore[arg-type]
        if pk and not has_pk_index:  # an INTEGER PRIMARY KEY is the rowid: SQLite lists no index for it
            indexes.insert(0, Index(f"{name}_pkey", pk, True, True, True))
        fks: dict[int, list[tuple[str, str, str]]] = {}
        for fk_id, _seq, parent, child_col, parent_col in conn.execute(
            'SELECT id, seq, "table", "from", "to" FROM pragma_foreign_key_list(?) ORDER BY id, seq', (name,)
        ).fetchall():
            fks.setdefault(int(fk_id), []).append((str(parent), str(child_col), str(parent_col or "")))  # type: ignore[arg-type]
        foreign_keys = tuple(
            ForeignKey(tuple(c for _, c, _ in parts), parts[0][0], tuple(pc for _, _, pc in parts))
            for parts in fks.values()
        )
        return cls(name, "r", columns, tuple(indexes), foreign_keys)


def _opt(value: Any) -> str | None:
    return None if value is None else str(value)


def _quote(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


_SCHEMA = """
CREATE TABLE pg_catalog.pg_namespace(oid INTEGER PRIMARY KEY, nspname TEXT, nspowner INTEGER, nspacl TEXT);
CREATE TABLE pg_catalog.pg_class(
  oid INTEGER PRIMARY KEY, relname TEXT, relnamespace INTEGER, reltype INTEGER, relowner INTEGER,
  relam INTEGER, relkind TEXT, relpersistence TEXT, relhasindex BOOLEAN, relispartition BOOLEAN,
  reltuples REAL, relchecks INTEGER, relhasrules BOOLEAN, relhastriggers BOOLEAN, relrowsecurity BOOLEAN,
  relforcerowsecurity BOOLEAN, reltablespace INTEGER, reloftype INTEGER, relreplident TEXT,
  relpartbound TEXT, relacl TEXT, reloptions TEXT, relnatts INTEGER, reltoastrelid INTEGER DEFAULT 0,
  relfilenode INTEGER DEFAULT 0, relpages INTEGER DEFAULT 0, relisshared BOOLEAN DEFAULT 0,
  relhassubclass BOOLEAN DEFAULT 0, relrewrite INTEGER DEFAULT 0, relfrozenxid INTEGER DEFAULT 0);
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
CREATE TABLE pg_catalog.pg_inherits(
  inhrelid INTEGER, inhparent INTEGER, inhseqno INTEGER, inhdetachpending BOOLEAN);
CREATE TABLE pg_catalog.pg_attrdef(oid INTEGER PRIMARY KEY, adrelid INTEGER, adnum INTEGER, adbin TEXT);
CREATE TABLE pg_catalog.pg_collation(oid INTEGER PRIMARY KEY, collname TEXT, collnamespace INTEGER);
CREATE TABLE pg_catalog.pg_index(
  indexrelid INTEGER PRIMARY KEY, indrelid INTEGER, indnatts INTEGER, indnkeyatts INTEGER,
  indisunique BOOLEAN, indisprimary BOOLEAN, indisexclusion BOOLEAN, indimmediate BOOLEAN,
  indisclustered BOOLEAN, indisvalid BOOLEAN, indcheckxmin BOOLEAN, indisready BOOLEAN, indislive BOOLEAN,
  indisreplident BOOLEAN, indkey TEXT, indcollation TEXT, indclass TEXT, indoption TEXT, indexprs TEXT,
  indpred TEXT, indnullsnotdistinct BOOLEAN);
CREATE TABLE pg_catalog.pg_constraint(
  oid INTEGER PRIMARY KEY, conname TEXT, connamespace INTEGER, contype TEXT, condeferrable BOOLEAN,
  condeferred BOOLEAN, convalidated BOOLEAN, conrelid INTEGER, contypid INTEGER, conindid INTEGER,
  conparentid INTEGER, confrelid INTEGER, confupdtype TEXT, confdeltype TEXT, confmatchtype TEXT,
  conislocal BOOLEAN, coninhcount INTEGER, connoinherit BOOLEAN, conkey TEXT, confkey TEXT, conbin TEXT);
CREATE TABLE pg_catalog.pg_trigger(
  oid INTEGER PRIMARY KEY, tgrelid INTEGER, tgname TEXT, tgisinternal BOOLEAN);
CREATE TABLE pg_catalog.pg_policy(
  oid INTEGER PRIMARY KEY, polname TEXT, polrelid INTEGER, polcmd TEXT, polpermissive BOOLEAN,
  polroles TEXT, polqual TEXT, polwithcheck TEXT);
CREATE TABLE pg_catalog.pg_statistic_ext(
  oid INTEGER PRIMARY KEY, stxrelid INTEGER, stxname TEXT, stxnamespace INTEGER, stxkind TEXT,
  stxstattarget INTEGER);
CREATE TABLE pg_catalog.pg_publication(oid INTEGER PRIMARY KEY, pubname TEXT, puballtables BOOLEAN);
CREATE TABLE pg_catalog.pg_sequence(
  seqrelid INTEGER PRIMARY KEY, seqtypid INTEGER, seqstart INTEGER, seqincrement INTEGER, seqmax INTEGER,
  seqmin INTEGER, seqcache INTEGER, seqcycle BOOLEAN);
CREATE TABLE pg_catalog.pg_opclass(
  oid INTEGER PRIMARY KEY, opcname TEXT, opcmethod INTEGER, opcdefault BOOLEAN);
CREATE TABLE pg_catalog.pg_publication_namespace(oid INTEGER PRIMARY KEY, pnpubid INTEGER, pnnspid INTEGER);
CREATE TABLE pg_catalog.pg_publication_rel(
  oid INTEGER PRIMARY KEY, prpubid INTEGER, prrelid INTEGER, prqual TEXT, prattrs TEXT);
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


# Catalogs of features SQLite has not (row security, extended statistics, publications, inheritance): always
# empty here. A query joining one of them cannot return rows; when its syntax is beyond the translator
# (psql's \\d uses arrays), it is answered with no rows rather than an error.
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
        self._definitions: dict[int, str] = {}  # index and constraint oid → its SQL, for pg_get_*def

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
        c_fn("pg_get_indexdef", lambda oid, *a: self._definitions.get(oid), -1)
        c_fn("pg_get_constraintdef", lambda oid, *a: self._definitions.get(oid), -1)
        c_fn("pg_relation_is_publishable", lambda oid: 0, 1)
        c_fn("to_regclass", self._regclass, 1)
        c_fn("to_regnamespace", self._regnamespace, 1)
        c_fn("json_build_object", _json_object, -1)
        c_fn("pg_get_serial_sequence", lambda *a: None, -1)
        c_fn("pg_collation_is_visible", lambda oid: 1, 1)
        c_fn("pg_get_statisticsobjdef_columns", lambda oid: None, 1)

    def _regclass(self, value: SQLiteValue) -> int | None:
        if isinstance(value, int) or value is None:
            return value
        name = str(value).strip().removeprefix("public.").strip('"')
        found = self.conn.execute("SELECT oid FROM pg_class WHERE relname = ?", (name,)).fetchall()
        return int(found[0][0]) if found else None  # type: ignore[arg-type]

    def _regnamespace(self, value: SQLiteValue) -> int | None:
        if isinstance(value, int) or value is None:
            return value
        found = self.conn.execute("SELECT oid FROM pg_namespace WHERE nspname = ?", (str(value),)).fetchall()
        return int(found[0][0]) if found else None  # type: ignore[arg-type]

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

    def sync(self, conn: apsw.Connection) -> None:
        """Rebuild the per-database tables from ``conn``'s schema if it changed since the last time."""
        version = int(conn.execute("PRAGMA schema_version").fetchall()[0][0])  # type: ignore[arg-type]
        if version == self.version:
            return
        tables = [
            Table.read(conn, str(kind), str(name)) for kind, name in conn.execute(_USER_OBJECTS).fetchall()
        ]
        with self.conn:
            self._fill(tables)
        self.version = version

    def _fill(self, tables: list[Table]) -> None:
        c = self.conn
        for name in _PER_DATABASE:
            c.execute(f"DELETE FROM {name}")
        self._definitions.clear()
        c.execute(
            "INSERT INTO pg_database(oid, datname, datdba, encoding, datcollate, datctype, "
            "datistemplate, datallowconn, datlocprovider) VALUES (16384, ?, 10, 6, 'C', 'C', 0, 1, 'c')",
            (self.database,),
        )
        oids = iter(range(FIRST_OID + 1, 2**31))
        table_oids = {table.name.lower(): next(oids) for table in tables}
        for table in tables:
            oid = table_oids[table.name.lower()]
            self._relation(oid, table.name, table.kind, len(table.columns), bool(table.indexes))
            c.execute(
                "INSERT INTO information_schema.tables VALUES (?, 'public', ?, ?)",
                (self.database, table.name, "BASE TABLE" if table.kind == "r" else "VIEW"),
            )
            positions = {col.name.lower(): n for n, col in enumerate(table.columns, start=1)}
            for n, col in enumerate(table.columns, start=1):
                type_oid = t.oid_for_declared(col.declared) or t.TEXT
                c.execute(
                    "INSERT INTO pg_attribute VALUES (?, ?, ?, ?, ?, ?, 0, -1, ?, '', '', 0, 0)",
                    (oid, col.name, type_oid, n, col.notnull, col.default is not None, t.type_size(type_oid)),
                )
                if col.default is not None:
                    c.execute("INSERT INTO pg_attrdef VALUES (?, ?, ?, ?)", (next(oids), oid, n, col.default))
                c.execute(
                    "INSERT INTO information_schema.columns VALUES (?, 'public', ?, ?, ?, ?, ?, ?, ?)",
                    (
                        self.database,
                        table.name,
                        col.name,
                        n,
                        col.default,
                        "NO" if col.notnull else "YES",
                        t.SQL_NAMES.get(type_oid, "text"),
                        t.TYPE_INFO.get(type_oid, ("text", -1))[0],
                    ),
                )
            for index in table.indexes:
                index_oid = next(oids)
                keys = " ".join(str(positions.get(col.lower(), 0)) for col in index.columns)
                self._relation(index_oid, index.name, "i", len(index.columns), False)
                c.execute(
                    "INSERT INTO pg_index VALUES "
                    "(?, ?, ?, ?, ?, ?, 0, 1, 0, 1, 0, 1, 1, 0, ?, '', '', '', NULL, NULL, 0)",
                    (
                        index_oid,
                        oid,
                        len(index.columns),
                        len(index.columns),
                        index.unique,
                        index.primary,
                        keys,
                    ),
                )
                cols = ", ".join(_quote(col) for col in index.columns)
                unique = "UNIQUE " if index.unique else ""
                self._definitions[index_oid] = (
                    f"CREATE {unique}INDEX {_quote(index.name)} ON public.{_quote(table.name)} "
                    f"USING btree ({cols})"
                )
                if index.primary or index.constraint:
                    con_oid = next(oids)
                    kind = "p" if index.primary else "u"
                    self._constraint(con_oid, index.name, kind, oid, index_oid, 0, keys, "")
                    self._definitions[con_oid] = f"{'PRIMARY KEY' if index.primary else 'UNIQUE'} ({cols})"
            for fk in table.foreign_keys:
                con_oid = next(oids)
                keys = " ".join(str(positions.get(col.lower(), 0)) for col in fk.columns)
                parent = table_oids.get(fk.parent.lower(), 0)
                name = f"{table.name}_{'_'.join(fk.columns)}_fkey"
                self._constraint(con_oid, name, "f", oid, 0, parent, keys, "")
                refs = ", ".join(_quote(col) for col in fk.parent_columns)
                self._definitions[con_oid] = (
                    f"FOREIGN KEY ({', '.join(_quote(col) for col in fk.columns)}) "
                    f"REFERENCES {_quote(fk.parent)}({refs})"
                )

    def _relation(self, oid: int, name: str, kind: str, natts: int, has_index: bool) -> None:
        self.conn.execute(
            "INSERT INTO pg_class(oid, relname, relnamespace, reltype, relowner, relam, relkind, "
            "relpersistence, relhasindex, relispartition, reltuples, relchecks, relhasrules, relhastriggers, "
            "relrowsecurity, relforcerowsecurity, reltablespace, reloftype, relreplident, relnatts) "
            "VALUES (?, ?, ?, 0, 10, ?, ?, 'p', ?, 0, -1, 0, 0, 0, 0, 0, 0, 0, 'd', ?)",
            (oid, name, PUBLIC, _AM.get(kind, 0), kind, has_index, natts),
        )

    def _constraint(
        self, oid: int, name: str, kind: str, table: int, index: int, parent: int, keys: str, parent_keys: str
    ) -> None:
        self.conn.execute(
            "INSERT INTO pg_constraint VALUES "
            "(?, ?, ?, ?, 0, 0, 1, ?, 0, ?, 0, ?, 'a', 'a', 's', 1, 0, 1, ?, ?, NULL)",
            (oid, name, PUBLIC, kind, table, index, parent, "{" + keys.replace(" ", ",") + "}", parent_keys),
        )

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


def _json_object(*args: SQLiteValue) -> str:
    import json

    return json.dumps({str(args[i]): args[i + 1] for i in range(0, len(args) - 1, 2)})


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
