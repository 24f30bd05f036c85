"""The tables of the emulated PostgreSQL catalog, as SQLite DDL, and the declared type of each column.

Columns are declared with PostgreSQL's type names (``oid``, ``int2vector``, ``_text``), which the front end
maps to OIDs when it announces result columns. Catalogs of features SQLite has not (extensions, operators,
text search, foreign data, publications, …) exist and stay empty, so tools that read them all (pg_dump) get
the answer PostgreSQL would give for a database that does not use them.
"""

from __future__ import annotations

import functools

import apsw

SCHEMA = """
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
  typnotnull BOOLEAN, typtypmod INTEGER, typcollation oid, typinput TEXT, typowner oid);
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
    conn.execute(SCHEMA)
    found: dict[tuple[str, str], str] = {}
    for schema in ("pg_catalog", "information_schema"):
        for (table,) in conn.execute(f"SELECT name FROM {schema}.sqlite_schema").fetchall():
            for name, declared in conn.execute(
                "SELECT name, type FROM pragma_table_info(?, ?)", (table, schema)
            ).fetchall():
                found[(str(table).lower(), str(name).lower())] = str(declared)
    conn.close()
    return found
