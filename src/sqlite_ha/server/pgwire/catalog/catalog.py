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

import re
from collections.abc import Iterator
from typing import Any

import apsw

from sqlite_ha import __version__
from sqlite_ha.db.runner import prepared_columns
from sqlite_ha.db.statement import Result
from sqlite_ha.db.values import SQLiteValue
from sqlite_ha.server.pgwire.catalog import functions as catalog_functions
from sqlite_ha.server.pgwire.catalog import namespaces, sequences
from sqlite_ha.server.pgwire.catalog.activity import Activity, SessionContext, search_path_schemas
from sqlite_ha.server.pgwire.catalog.names import Names, quote
from sqlite_ha.server.pgwire.catalog.namespaces import PG_TEMP, PG_TEMP_NAME
from sqlite_ha.server.pgwire.catalog.schema import SCHEMA, catalog_names
from sqlite_ha.server.pgwire.catalog.tables import ForeignKey, Index, Table
from sqlite_ha.server.pgwire.sql import schemas
from sqlite_ha.server.pgwire.types import arrays
from sqlite_ha.server.pgwire.types import values as t

VERSION = f"PostgreSQL 15.0 (sqlite-ha {__version__}, SQLite {apsw.sqlite_lib_version()})"
PUBLIC, PG_CATALOG, INFORMATION_SCHEMA = 2200, 11, 13000
FIRST_OID = 16384
DATABASE_OWNER = 6171  # pg_database_owner
PUBLIC_ACL = "{pg_database_owner=UC/pg_database_owner,=U/pg_database_owner}"

# a query naming a catalog table or one of these functions runs on the catalog database
_CATALOG_FUNCTIONS = (
    "to_regtype|pg_table_is_visible|current_database|pg_get_userbyid|has_table_privilege|current_setting|"
    "set_config|current_user|session_user|current_role|pg_is_in_recovery|pg_backend_pid|current_schemas|"
    "pg_get_viewdef|pg_postmaster_start_time|inet_server_port|inet_server_addr|txid_current|"
    "pg_current_xact_id|pg_get_keywords|pg_export_snapshot"
)
_CATALOG = re.compile(
    rf"\b(?:pg_catalog|information_schema|{'|'.join(sorted(catalog_names(), key=len, reverse=True))}|"
    rf"{_CATALOG_FUNCTIONS})\b|\bversion\s*\(\s*\)",
    re.I,
)
_REG_OPERATOR = re.compile(r"OPERATOR\s*\(\s*pg_catalog\.(~|~\*|!~|!~\*)\s*\)", re.I)
_OPERATOR = re.compile(r"OPERATOR\s*\(\s*pg_catalog\.(=|<>|!=|<=|>=|<|>)\s*\)", re.I)  # pg_dump -t
_COLLATE = re.compile(r"\bCOLLATE\s+pg_catalog\.\"?default\"?", re.I)
_CHAR_CAST = re.compile(r'::\s*(?:pg_catalog\.)?"char"', re.I)  # PostgreSQL's one-byte type: text here
_OID_ARRAY = re.compile(r"::\s*(?:pg_catalog\.)?oid\s*\[\s*\]", re.I)  # sqlglot reads no oid[]; _oid it does
_VERSION_CALL = re.compile(r"\b(?:pg_catalog\.)?version\s*\(\s*\)", re.I)
_USER_KEYWORD = re.compile(r"\b(current_user|session_user|current_role)\b(?!\s*\()", re.I)  # no parentheses
# what catalog_query.rewrite puts before a translated query: the PostgreSQL types of the output columns
_TYPES_HEADER = re.compile(r"^/\* pg_types: ([^*]*) \*/ ")

_PER_DATABASE = (
    "pg_class",
    "pg_attribute",
    "pg_attrdef",
    "pg_index",
    "pg_constraint",
    "pg_database",
    "pg_rewrite",
    "pg_depend",
    "pg_trigger",
    "information_schema.tables",
    "information_schema.columns",
    *sequences.PER_DATABASE,
)


_NEXTVAL = re.compile(r"^nextval\('((?:[^']|'')+)'::regclass\)$")
_AM = {"r": 2, "m": 2, "i": 403}  # heap, btree


# Catalogs of features SQLite has not (row security, extended statistics, publications, inheritance): always
# empty here. A query joining one of them cannot return rows; when its syntax is beyond the translator,
# it is answered with no rows rather than an error.
_EMPTY = re.compile(
    r"\b(?:pg_catalog\.)?(?:pg_policy|pg_statistic_ext|pg_publication|pg_publication_namespace|"
    r"pg_publication_rel|pg_inherits|pg_trigger)\b",
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
    sql = _CHAR_CAST.sub("", sql)
    sql = _OPERATOR.sub(lambda m: m.group(1), sql)
    sql = _REG_OPERATOR.sub(lambda m: "REGEXP" if m.group(1) == "~" else "NOT REGEXP", sql)
    return _COLLATE.sub("", sql)


class Catalog:
    """The catalog database of one served database, rebuilt when its schema version changes."""

    def __init__(self, database: str, user: str = "ha") -> None:
        self.database = database
        self.user = user  # --pg-user: the one role, owner of everything
        self.conn = apsw.Connection(":memory:")
        self.conn.execute("ATTACH ':memory:' AS pg_catalog; ATTACH ':memory:' AS information_schema")
        self.conn.execute(SCHEMA)
        self.names = Names(self.conn)
        self._register()
        self.activity = Activity(self.conn)
        self._fill_fixed()
        self.version: int | None = None
        self._definitions: dict[int, str] = {}  # index and constraint oid → its SQL, for pg_get_*def
        self._index_keys: dict[int, list[str]] = {}
        self._qualified: dict[int, str] = {}  # foreign keys' definitions naming "public.parent"
        # where the relation being filled lives: namespace oid, its name, relpersistence (namespaces.py)
        self._namespace: tuple[int, str, str] = (PUBLIC, "public", "p")
        self._comments: dict[str, dict[str, str]] = {}  # table (lower case) → column ('' the table) → text
        self._serials: dict[tuple[str, str], str] = {}  # (table, column), lower case → its implicit sequence

    def _register(self) -> None:
        catalog_functions.register(self.conn)
        functions: dict[str, tuple[Any, int]] = {
            "pg_version": (lambda: VERSION, 0),
            "pg_current_user": (lambda: self.user, 0),
            "pg_session_user": (lambda: self.user, 0),
            "pg_current_role": (lambda: self.user, 0),
            "pg_get_userbyid": (self.names.user_name, 1),
            "current_database": (lambda: self.database, 0),
            "pg_get_indexdef": (self._indexdef, -1),
            "pg_get_constraintdef": (self._constraintdef, -1),
            "pg_get_triggerdef": (
                lambda oid, *a: self._definitions.get(oid) if isinstance(oid, int) else None,
                -1,
            ),
            "pg_get_viewdef": (
                lambda oid, *a: self._definitions.get(self.names.regoid("regclass", oid) or 0),
                -1,
            ),
            "to_regclass": (lambda value: self.names.regoid("regclass", value), 1),
            "to_regnamespace": (lambda value: self.names.regoid("regnamespace", value), 1),
            "pg_regoid": (self.names.regoid, 2),
            "pg_regname": (self.names.regname, 2),
            "pg_table_is_visible": (self._visible, 1),
            "obj_description": (lambda oid, *kind: self._description(oid, 0), -1),
            "col_description": (self._description, 2),
            "pg_my_temp_schema": (lambda: PG_TEMP, 0),
            "pg_get_serial_sequence": (self._serial_sequence, 2),
            "pg_get_expr": (self._expression, -1),
            "pg_is_other_temp_schema": (lambda oid: 0, 1),
        }
        for name, (fn, nargs) in functions.items():
            self.conn.create_scalar_function(name, fn, nargs)

    def _constraintdef(self, oid: SQLiteValue, *pretty: SQLiteValue) -> str | None:
        """``pg_get_constraintdef``: a foreign key names its table with the schema unless the session's
        search_path has public (pg_dump empties it: its output must stand alone)."""
        if not isinstance(oid, int):
            return None
        context = self.activity.context
        if oid in self._qualified and context is not None:
            path = search_path_schemas(context.setting("search_path"), context.me.user)
            if "public" not in path:
                return self._qualified[oid]
        return self._definitions.get(oid)

    def _indexdef(self, oid: SQLiteValue, column: SQLiteValue = 0, *pretty: SQLiteValue) -> str | None:
        """``pg_get_indexdef(index)``: CREATE INDEX …; with a column number, that key column only."""
        if not isinstance(oid, int):
            return None
        if isinstance(column, int) and column > 0:
            keys = self._index_keys.get(oid, [])
            return keys[column - 1] if column <= len(keys) else None
        return self._definitions.get(oid)

    def _fill_fixed(self) -> None:
        c = self.conn
        c.executemany(
            "INSERT INTO pg_namespace(oid, nspname, nspowner, nspacl) VALUES (?, ?, ?, ?)",
            [
                (PG_CATALOG, "pg_catalog", 10, None),
                # as PostgreSQL 15 makes it: owned by the database's owner, usable by all
                (PUBLIC, "public", DATABASE_OWNER, PUBLIC_ACL),
                (INFORMATION_SCHEMA, "information_schema", 10, None),
            ],
        )
        c.execute("INSERT INTO pg_description VALUES (?, 2615, 0, 'standard public schema')", (PUBLIC,))
        c.execute("INSERT INTO pg_roles(oid, rolname, rolsuper) VALUES (10, ?, 1)", (self.user,))
        c.execute(  # PostgreSQL's predefined role that owns "public"; not a login
            "INSERT INTO pg_roles(oid, rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, "
            "rolcanlogin, rolbypassrls, rolpassword) VALUES (?, 'pg_database_owner', 0, 1, 0, 0, 0, 0, NULL)",
            (DATABASE_OWNER,),
        )
        c.execute(
            "INSERT INTO pg_am VALUES (2, 'heap', 't', 'heap_tableam_handler'), "
            "(403, 'btree', 'i', 'bthandler')"
        )
        c.execute(
            "INSERT INTO pg_tablespace(oid, spcname, spcowner) VALUES (1663, 'pg_default', 10), "
            "(1664, 'pg_global', 10)"
        )
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
        c.execute("UPDATE pg_type SET typstorage = CASE WHEN typlen < 0 THEN 'x' ELSE 'p' END")

    def sync(self, conn: apsw.Connection, *, temp: bool = False) -> None:
        """Rebuild the per-database tables from ``conn``'s schema if it changed since the last time.

        ``temp``: ``conn`` is a session's own connection, whose TEMP tables and views are listed too, in the
        schema ``pg_temp_3`` with ``relpersistence`` ``t``, as PostgreSQL shows a session its own."""
        version = namespaces.version(conn, temp)
        if version == self.version:
            return
        objects = namespaces.read(conn, temp)
        with self.conn:
            self._fill(objects)
        self.version = version

    def comments_of(self, table: str) -> dict[str, str]:
        """The comments of ``table`` (as SQLite names it): column name (``''`` the table's) → text."""
        return dict(self._comments.get(table.lower(), {}))

    def _description(self, oid: SQLiteValue, sub: SQLiteValue) -> SQLiteValue:
        found = self.conn.execute(
            "SELECT description FROM pg_description WHERE objoid = ? AND objsubid = ? AND classoid = 1259",
            (oid, sub),
        ).fetchall()
        return found[0][0] if found else None

    def _expression(self, expr: SQLiteValue, *args: SQLiteValue) -> SQLiteValue:
        """``pg_get_expr``: the text kept, but a SERIAL's ``nextval('t_id_seq'::regclass)`` names the sequence
        with its schema when the session's search_path lacks public, as PostgreSQL prints it (pg_dump)."""
        if isinstance(expr, str) and expr.startswith("nextval('") and self.activity.context is not None:
            context = self.activity.context
            if "public" not in search_path_schemas(context.setting("search_path"), context.me.user):
                found = _NEXTVAL.match(expr)
                if found is not None and "." not in found.group(1):
                    return f"nextval('public.{found.group(1)}'::regclass)"
        return expr

    def _serial_sequence(self, table: SQLiteValue, column: SQLiteValue) -> str | None:
        """``pg_get_serial_sequence('t', 'id')``: ``public.t_id_seq`` for a SERIAL or IDENTITY key."""
        name = str(table or "")
        if name.lower().startswith("public."):
            name = name[len("public.") :]
        return self._serials.get((name.strip('"').lower(), str(column or "").strip('"').lower()))

    def _visible(self, oid: SQLiteValue) -> int:
        """pg_table_is_visible: the search path is "$user", public (and the session's pg_temp)."""
        found = self.conn.execute("SELECT relnamespace FROM pg_class WHERE oid = ?", (oid,)).fetchall()
        return 1 if not found or found[0][0] in (PUBLIC, PG_TEMP, PG_CATALOG, INFORMATION_SCHEMA) else 0

    def _local(self, name: str) -> str:
        """A name as its schema shows it: ``"s.t"`` of the schema ``s`` (sql/schemas.py) is ``t`` there."""
        if self._namespace[0] in (PUBLIC, PG_TEMP):
            return name
        prefix = self._namespace[1] + "."
        return name[len(prefix) :] if name.lower().startswith(prefix.lower()) else name

    def _fill(self, objects: namespaces.Objects) -> None:
        c = self.conn
        for name in _PER_DATABASE:
            c.execute(f"DELETE FROM {name}")
        c.execute(
            "DELETE FROM pg_description WHERE classoid IN (1259, 2606)"
        )  # tables', columns', constraints'
        c.execute("DELETE FROM pg_namespace WHERE oid = ? OR oid > ?", (PG_TEMP, FIRST_OID))
        if objects.temp:
            c.execute(
                "INSERT INTO pg_namespace(oid, nspname, nspowner) VALUES (?, ?, 10)", (PG_TEMP, PG_TEMP_NAME)
            )
        self._comments = objects.comments
        self._serials.clear()
        temps = {id(table) for table in objects.temp}
        tables = [*objects.tables, *objects.temp]
        self._definitions.clear()
        self._qualified.clear()
        self._index_keys.clear()
        c.execute(
            "INSERT INTO pg_database(oid, datname, datdba, encoding, datcollate, datctype, "
            "datistemplate, datallowconn, datlocprovider) VALUES (16384, ?, 10, 6, 'C', 'C', 0, 1, 'c')",
            (self.database,),
        )
        oids = iter(range(FIRST_OID + 1, 2**31))
        spaces = {name.lower(): (next(oids), name) for name in objects.schemas}
        for oid, name in spaces.values():
            c.execute("INSERT INTO pg_namespace(oid, nspname, nspowner) VALUES (?, ?, 10)", (oid, name))
        table_oids = {table.name.lower(): next(oids) for table in tables}
        by_name = {table.name.lower(): table for table in tables}
        referenced = {fk.parent.lower() for table in tables for fk in table.foreign_keys}
        for table in tables:
            oid = table_oids[table.name.lower()]
            schema, _ = schemas.split(table.name, frozenset(spaces))
            if table.sequence is not None:  # a standalone sequence (catalog/sequences.py)
                self._namespace = (*spaces[schema.lower()], "p") if schema else (PUBLIC, "public", "p")
                self._relation(oid, table.name, "S", 3)
                options = sequences.Options(*table.sequence)
                shown = (self._namespace[1], self._local(table.name))
                sequences.fill(c, self.database, self.user, shown, options, oid, None)
                continue
            if id(table) in temps:
                self._namespace = (PG_TEMP, PG_TEMP_NAME, "t")
            elif schema is not None:
                self._namespace = (*spaces[schema.lower()], "p")
            else:
                self._namespace = (PUBLIC, "public", "p")
            self._relation(
                oid,
                table.name,
                table.kind,
                len(table.columns),
                has_index=bool(table.indexes),
                # PostgreSQL's foreign keys are triggers too
                has_triggers=bool(table.foreign_keys or table.triggers) or table.name.lower() in referenced,
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
                if sub is not None and not column.startswith(schemas.CONSTRAINT_KEY):
                    c.execute("INSERT INTO pg_description VALUES (?, 1259, ?, ?)", (oid, sub, text))
            if table.query is not None:
                self._definitions[oid] = table.query
            for name, sql in table.triggers:
                # SQLite's trigger, as SQLite keeps it: PostgreSQL has no such statement (its triggers call a
                # function), so a dump restores it into PostgreSQL only with an error, never silently without
                trigger = next(oids)
                c.execute("INSERT INTO pg_trigger VALUES (?, ?, 0, ?, 'O', 0, 0)", (trigger, oid, name))
                self._definitions[trigger] = sql.strip().rstrip(";")
            if table.kind == "v":
                uses = [table_oids[name.lower()] for name in table.uses if name.lower() in table_oids]
                self._view_rule(oid, uses, oids)
            positions = {col.name.lower(): n for n, col in enumerate(table.columns, start=1)}
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
                parent_schema, parent_name = schemas.split(fk.parent, frozenset(spaces))
                if parent_schema is None:
                    self._definitions[con_oid] = _foreign_key_definition(fk, "", fk.parent)
                    self._qualified[con_oid] = _foreign_key_definition(fk, "public.", fk.parent)
                else:  # "s.t" is s.t, as PostgreSQL prints a table outside the search path
                    prefix = quote(parent_schema) + "."
                    self._definitions[con_oid] = _foreign_key_definition(fk, prefix, parent_name)
            for check in table.checks:
                con_oid = next(oids)
                used = [
                    n
                    for name, n in positions.items()
                    if re.search(rf"\b{re.escape(name)}\b", check.expression, re.I)
                ]
                self._constraint(con_oid, check.name, "c", oid, keys=used, check=check.expression)
                self._definitions[con_oid] = f"CHECK ({check.expression})"
        self._namespace = (PUBLIC, "public", "p")
        self._link_foreign_keys()
        # constraints' comments (pgwire/comments.py), once the constraints have their OIDs
        for table in tables:
            for key, text in self._comments.get(table.name.lower(), {}).items():
                if key.startswith(schemas.CONSTRAINT_KEY):
                    c.execute(
                        "INSERT INTO pg_description SELECT oid, 2606, 0, ? FROM pg_constraint "
                        "WHERE conrelid = ? AND conname = ?",
                        (text, table_oids[table.name.lower()], key[len(schemas.CONSTRAINT_KEY) :]),
                    )

    def _link_foreign_keys(self) -> None:
        """A foreign key's ``conindid``: the referenced table's unique index on the referenced columns (JDBC's
        getImportedKeys joins it for PK_NAME)."""
        c = self.conn
        unique: dict[tuple[int, tuple[int, ...]], int] = {}
        for index, table, keys in c.execute(
            "SELECT indexrelid, indrelid, indkey FROM pg_index WHERE indisunique ORDER BY NOT indisprimary"
        ).fetchall():
            unique.setdefault((int(table), tuple(int(k) for k in str(keys).split())), int(index))  # type: ignore[arg-type]
        for oid, parent, keys in c.execute(
            "SELECT oid, confrelid, confkey FROM pg_constraint WHERE contype = 'f'"
        ).fetchall():
            wanted = tuple(int(k) for k in str(keys).strip("{}").split(",") if k)
            index = unique.get((int(parent), wanted)) or unique.get((int(parent), tuple(sorted(wanted))))  # type: ignore[arg-type]
            if index is not None:
                c.execute("UPDATE pg_constraint SET conindid = ? WHERE oid = ?", (index, oid))

    def _view_rule(self, oid: int, uses: list[int], oids: Iterator[int]) -> None:
        """A view's ``_RETURN`` rule and what it depends on, as PostgreSQL records them: pg_dump creates a
        view after the tables it reads by these."""
        rule = next(oids)
        c = self.conn
        c.execute("INSERT INTO pg_rewrite VALUES (?, '_RETURN', ?, '1', 'O', 1, NULL, NULL)", (rule, oid))
        c.executemany(
            "INSERT INTO pg_depend VALUES (2618, ?, 0, 1259, ?, ?, ?)",
            [(rule, oid, 0, "i")] + [(rule, used, 0, "n") for used in uses],
        )

    def _columns(self, oid: int, table: Table, oids: Iterator[int]) -> None:
        c = self.conn
        for n, col in enumerate(table.columns, start=1):
            type_oid, typmod = t.declared_type(col.declared) if col.declared else (t.TEXT, -1)
            default, identity = _default(col.default), ""
            if col.numbering:  # a SERIAL or IDENTITY key: its implicit sequence (catalog/sequences.py)
                local = self._local(table.name)
                sequence = sequences.implicit(
                    local, col.name, self._namespace[1], col.declared.lower(), col.numbering
                )
                default, identity = sequence.default or default, sequence.identity
                self._serials[(local.lower(), col.name.lower())] = sequence.qualified
                if self._namespace[0] != PUBLIC:
                    self._serials[(f"{self._namespace[1]}.{local}".lower(), col.name.lower())] = (
                        sequence.qualified
                    )
                seq_oid = next(oids)
                self._relation(seq_oid, sequence.name, "S", 3)
                sequences.fill(
                    c,
                    self.database,
                    self.user,
                    (sequence.schema, sequence.name),
                    sequences.Options.of_implicit(sequence),
                    seq_oid,
                    (oid, n, "a" if sequence.numbering == "serial" else "i"),
                )
            c.execute(
                "INSERT INTO pg_attribute(attrelid, attname, atttypid, attnum, attnotnull, atthasdef, "
                "attisdropped, atttypmod, attlen, attidentity, attgenerated, attcollation, attndims, "
                "attstorage) "
                "VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, '', 0, 0, ?)",
                (
                    *(
                        oid,
                        col.name,
                        type_oid,
                        n,
                        col.notnull,
                        default is not None,
                        typmod,
                        t.type_size(type_oid),
                    ),
                    *(identity, "p" if t.type_size(type_oid) > 0 else "x"),  # fixed or varlena
                ),
            )
            if default is not None:
                attrdef = next(oids)
                c.execute("INSERT INTO pg_attrdef VALUES (?, ?, ?, ?)", (attrdef, oid, n, default))
                if col.numbering == "serial":  # the default uses the sequence: pg_dump sets it after both
                    c.execute(
                        "INSERT INTO pg_depend VALUES (2604, ?, 0, 1259, ?, 0, 'n')", (attrdef, seq_oid)
                    )
            c.execute(
                "INSERT INTO information_schema.columns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.database,
                    self._namespace[1],
                    self._local(table.name),
                    col.name,
                    n,
                    default,
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
        texts = [quote(col) if col is not None else (spelt[i] or "?") for i, col in enumerate(index.columns)]
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
            f"CREATE {unique}INDEX {quote(self._local(index.name))} ON {self._namespace[1]}."
            f"{quote(self._local(table.name))} "
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

    def run(self, sql: str, params: tuple[SQLiteValue, ...], context: SessionContext | None = None) -> Result:
        self.activity.context = context
        self.activity.fill(sql.lower())
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
        return _typed(sql, prepared_columns(self.conn, sql, params))


_ACTION_NAMES = {"r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def _default(text: str | None) -> str | None:
    """A column default as PostgreSQL prints it (pg_get_expr): ``true``/``false`` in lower case."""
    if text is not None and text.upper() in ("TRUE", "FALSE"):
        return text.lower()
    return text


def _foreign_key_definition(fk: ForeignKey, schema: str, parent: str) -> str:
    """pg_get_constraintdef of a foreign key: ``FOREIGN KEY (a) REFERENCES t(id) ON DELETE CASCADE``."""
    actions = "".join(
        f" ON {event} {_ACTION_NAMES[code]}"
        for event, code in (("UPDATE", fk.on_update), ("DELETE", fk.on_delete))
        if code != "a"
    )
    columns = ", ".join(quote(col) for col in fk.columns)
    referenced = ", ".join(quote(col) for col in fk.parent_columns)
    return f"FOREIGN KEY ({columns}) REFERENCES {schema}{quote(parent)}({referenced}){actions}"


def _typed(sql: str, description: Any) -> list[tuple[str, str | None]]:
    """Result columns with their declared types: SQLite's, else the one the query rewrite inferred."""
    header = _TYPES_HEADER.match(sql)
    inferred = header.group(1).split(",") if header else []
    return [
        (str(d[0]), d[1] or (inferred[i] if i < len(inferred) and inferred[i] else None))
        for i, d in enumerate(description)
    ]
