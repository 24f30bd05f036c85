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
  relhassubclass BOOLEAN DEFAULT 0, relrewrite INTEGER DEFAULT 0, relfrozenxid INTEGER DEFAULT 0,
  relispopulated BOOLEAN DEFAULT 1, relminmxid INTEGER DEFAULT 0);
CREATE TABLE pg_catalog.pg_type(
  oid oid PRIMARY KEY, typname TEXT, typnamespace oid, typlen INTEGER, typtype TEXT,
  typarray oid, typdelim TEXT, typrelid oid, typelem oid, typbasetype oid,
  typnotnull BOOLEAN, typtypmod INTEGER, typcollation oid, typinput TEXT, typowner oid, typacl TEXT,
  typisdefined BOOLEAN DEFAULT 1, typstorage TEXT DEFAULT 'p', typalign TEXT DEFAULT 'i',
  typcategory TEXT DEFAULT 'U', typbyval BOOLEAN DEFAULT 0, typispreferred BOOLEAN DEFAULT 0);
CREATE TABLE pg_catalog.pg_attribute(
  attrelid oid, attname TEXT, atttypid oid, attnum INTEGER, attnotnull BOOLEAN, atthasdef BOOLEAN,
  attisdropped BOOLEAN, atttypmod INTEGER, attlen INTEGER, attidentity TEXT, attgenerated TEXT,
  attcollation oid, attndims INTEGER, attstorage TEXT, attcompression TEXT DEFAULT '',
  attstattarget INTEGER DEFAULT -1, attalign TEXT DEFAULT 'i', attislocal BOOLEAN DEFAULT 1,
  attinhcount INTEGER DEFAULT 0, attoptions "_text", attfdwoptions "_text", atthasmissing BOOLEAN DEFAULT 0,
  attmissingval TEXT, attacl "_aclitem", attbyval BOOLEAN DEFAULT 0);
CREATE TABLE pg_catalog.pg_database(
  oid oid PRIMARY KEY, datname TEXT, datdba oid, encoding INTEGER, datcollate TEXT, datctype TEXT,
  datistemplate BOOLEAN, datallowconn BOOLEAN, datacl TEXT, daticulocale TEXT, datlocprovider TEXT,
  dattablespace oid DEFAULT 1663, datconnlimit INTEGER DEFAULT -1, datfrozenxid INTEGER DEFAULT 0,
  datminmxid INTEGER DEFAULT 1, daticurules TEXT, datcollversion TEXT);
CREATE TABLE pg_catalog.pg_roles(
  oid oid PRIMARY KEY, rolname TEXT, rolsuper BOOLEAN, rolinherit BOOLEAN DEFAULT 1,
  rolcreaterole BOOLEAN DEFAULT 1, rolcreatedb BOOLEAN DEFAULT 1, rolcanlogin BOOLEAN DEFAULT 1,
  rolconnlimit INTEGER DEFAULT -1, rolvaliduntil TEXT, rolreplication BOOLEAN DEFAULT 0,
  rolbypassrls BOOLEAN DEFAULT 1, rolpassword TEXT DEFAULT '********', rolconfig "_text");
CREATE TABLE pg_catalog.pg_auth_members(roleid oid, member oid, grantor oid, admin_option BOOLEAN);
CREATE TABLE pg_catalog.pg_proc(
  oid oid PRIMARY KEY, proname TEXT, pronamespace oid, proowner oid, prokind TEXT, prorettype oid,
  proargtypes oidvector, proretset BOOLEAN, prolang oid, pronargs INTEGER, proacl "_aclitem");
CREATE TABLE pg_catalog.pg_am(oid oid PRIMARY KEY, amname TEXT, amtype TEXT, amhandler TEXT);
CREATE TABLE pg_catalog.pg_tablespace(
  oid oid PRIMARY KEY, spcname TEXT, spcowner oid, spcacl "_aclitem", spcoptions "_text");
CREATE TABLE pg_catalog.pg_description(objoid oid, classoid oid, objsubid INTEGER, description TEXT);
CREATE TABLE pg_catalog.pg_inherits(
  inhrelid oid, inhparent oid, inhseqno INTEGER, inhdetachpending BOOLEAN);
CREATE TABLE pg_catalog.pg_attrdef(oid oid PRIMARY KEY, adrelid oid, adnum INTEGER, adbin TEXT);
CREATE TABLE pg_catalog.pg_collation(
  oid oid PRIMARY KEY, collname TEXT, collnamespace oid, collowner oid, collencoding INTEGER);
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
  tgisinternal BOOLEAN, tgfoid oid);
CREATE TABLE pg_catalog.pg_policy(
  oid oid PRIMARY KEY, polname TEXT, polrelid oid, polcmd TEXT, polpermissive BOOLEAN,
  polroles "_oid", polqual TEXT, polwithcheck TEXT);
CREATE TABLE pg_catalog.pg_statistic_ext(
  oid oid PRIMARY KEY, stxrelid oid, stxname TEXT, stxnamespace oid, stxkind "_char",
  stxstattarget INTEGER, stxowner oid);
CREATE TABLE pg_catalog.pg_publication(
  oid oid PRIMARY KEY, pubname TEXT, puballtables BOOLEAN, pubowner oid, pubinsert BOOLEAN,
  pubupdate BOOLEAN, pubdelete BOOLEAN, pubtruncate BOOLEAN, pubviaroot BOOLEAN);
CREATE TABLE pg_catalog.pg_sequence(
  seqrelid oid PRIMARY KEY, seqtypid oid, seqstart INTEGER, seqincrement INTEGER, seqmax INTEGER,
  seqmin INTEGER, seqcache INTEGER, seqcycle BOOLEAN);
CREATE TABLE pg_catalog.pg_opclass(
  oid oid PRIMARY KEY, opcname TEXT, opcmethod oid, opcdefault BOOLEAN, opcnamespace oid, opcowner oid);
CREATE TABLE pg_catalog.pg_publication_namespace(oid oid PRIMARY KEY, pnpubid oid, pnnspid oid);
CREATE TABLE pg_catalog.pg_publication_rel(
  oid oid PRIMARY KEY, prpubid oid, prrelid oid, prqual TEXT, prattrs int2vector);
-- catalogs of what SQLite has not: always empty (pg_dump reads them all)
CREATE TABLE pg_catalog.pg_extension(
  oid oid PRIMARY KEY, extname TEXT, extowner oid, extnamespace oid, extrelocatable BOOLEAN,
  extversion TEXT, extconfig "_oid", extcondition "_text");
CREATE TABLE pg_catalog.pg_depend(
  classid oid, objid oid, objsubid INTEGER, refclassid oid, refobjid oid, refobjsubid INTEGER, deptype TEXT);
CREATE TABLE pg_catalog.pg_rewrite(
  oid oid PRIMARY KEY, rulename TEXT, ev_class oid, ev_type TEXT, ev_enabled TEXT, is_instead BOOLEAN,
  ev_qual TEXT, ev_action TEXT);
CREATE TABLE pg_catalog.pg_init_privs(objoid oid, classoid oid, objsubid INTEGER, privtype TEXT,
  initprivs "_aclitem");
CREATE TABLE pg_catalog.pg_language(
  oid oid PRIMARY KEY, lanname TEXT, lanowner oid, lanispl BOOLEAN, lanpltrusted BOOLEAN,
  lanplcallfoid oid, laninline oid, lanvalidator oid, lanacl "_aclitem");
CREATE TABLE pg_catalog.pg_operator(
  oid oid PRIMARY KEY, oprname TEXT, oprnamespace oid, oprowner oid, oprkind TEXT, oprleft oid,
  oprright oid, oprresult oid, oprcode TEXT);
CREATE TABLE pg_catalog.pg_opfamily(
  oid oid PRIMARY KEY, opfmethod oid, opfname TEXT, opfnamespace oid, opfowner oid);
CREATE TABLE pg_catalog.pg_amop(oid oid PRIMARY KEY, amopfamily oid);
CREATE TABLE pg_catalog.pg_amproc(oid oid PRIMARY KEY, amprocfamily oid);
CREATE TABLE pg_catalog.pg_ts_parser(
  oid oid PRIMARY KEY, prsname TEXT, prsnamespace oid, prsstart TEXT, prstoken TEXT, prsend TEXT,
  prsheadline TEXT, prslextype TEXT);
CREATE TABLE pg_catalog.pg_ts_template(
  oid oid PRIMARY KEY, tmplname TEXT, tmplnamespace oid, tmplinit TEXT, tmpllexize TEXT);
CREATE TABLE pg_catalog.pg_ts_dict(
  oid oid PRIMARY KEY, dictname TEXT, dictnamespace oid, dictowner oid, dicttemplate oid,
  dictinitoption TEXT);
CREATE TABLE pg_catalog.pg_ts_config(
  oid oid PRIMARY KEY, cfgname TEXT, cfgnamespace oid, cfgowner oid, cfgparser oid);
CREATE TABLE pg_catalog.pg_foreign_data_wrapper(
  oid oid PRIMARY KEY, fdwname TEXT, fdwowner oid, fdwhandler TEXT, fdwvalidator TEXT,
  fdwacl "_aclitem", fdwoptions "_text");
CREATE TABLE pg_catalog.pg_foreign_server(
  oid oid PRIMARY KEY, srvname TEXT, srvowner oid, srvfdw oid, srvtype TEXT, srvversion TEXT,
  srvacl "_aclitem", srvoptions "_text");
CREATE TABLE pg_catalog.pg_foreign_table(ftrelid oid PRIMARY KEY, ftserver oid, ftoptions "_text");
CREATE TABLE pg_catalog.pg_default_acl(
  oid oid PRIMARY KEY, defaclrole oid, defaclnamespace oid, defaclobjtype TEXT, defaclacl "_aclitem");
CREATE TABLE pg_catalog.pg_conversion(
  oid oid PRIMARY KEY, conname TEXT, connamespace oid, conowner oid);
CREATE TABLE pg_catalog.pg_cast(
  oid oid PRIMARY KEY, castsource oid, casttarget oid, castfunc oid, castcontext TEXT, castmethod TEXT);
CREATE TABLE pg_catalog.pg_transform(
  oid oid PRIMARY KEY, trftype oid, trflang oid, trffromsql TEXT, trftosql TEXT);
CREATE TABLE pg_catalog.pg_event_trigger(
  oid oid PRIMARY KEY, evtname TEXT, evtevent TEXT, evtowner oid, evtfoid oid, evtenabled TEXT,
  evttags "_text");
CREATE TABLE pg_catalog.pg_partitioned_table(
  partrelid oid PRIMARY KEY, partstrat TEXT, partnatts INTEGER, partclass oidvector);
CREATE TABLE pg_catalog.pg_largeobject_metadata(oid oid PRIMARY KEY, lomowner oid, lomacl "_aclitem");
CREATE TABLE pg_catalog.pg_seclabels(
  objoid oid, classoid oid, objsubid INTEGER, provider TEXT, label TEXT);
CREATE TABLE pg_catalog.pg_shdescription(objoid oid, classoid oid, description TEXT);
CREATE TABLE pg_catalog.pg_shseclabel(objoid oid, classoid oid, provider TEXT, label TEXT);
CREATE TABLE pg_catalog.pg_parameter_acl(oid oid PRIMARY KEY, parname TEXT, paracl "_aclitem");
-- the roles with what pg_dumpall reads; no password hash is shown (the node keeps none in the catalog)
CREATE VIEW pg_catalog.pg_authid AS
  SELECT oid, rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, rolreplication,
         rolbypassrls, rolconnlimit, NULL AS rolpassword, rolvaliduntil FROM pg_catalog.pg_roles;
CREATE TABLE pg_catalog.pg_db_role_setting(setdatabase oid, setrole oid, setconfig "_text");
CREATE TABLE pg_catalog.pg_subscription(
  oid oid PRIMARY KEY, subdbid oid, subname TEXT, subowner oid, subenabled BOOLEAN, subconninfo TEXT,
  subslotname TEXT, subsynccommit TEXT, subpublications "_text", subbinary BOOLEAN, substream TEXT,
  subtwophasestate TEXT, subdisableonerr BOOLEAN);
-- the server and its sessions (catalog/activity.py fills them when a query names them)
CREATE TABLE pg_catalog.pg_settings(
  name TEXT, setting TEXT, unit TEXT, category TEXT, short_desc TEXT, extra_desc TEXT, context TEXT,
  vartype TEXT, source TEXT, min_val TEXT, max_val TEXT, enumvals "_text", boot_val TEXT, reset_val TEXT,
  sourcefile TEXT, sourceline INTEGER, pending_restart BOOLEAN);
CREATE TABLE pg_catalog.pg_stat_activity(
  datid oid, datname TEXT, pid INTEGER, usesysid oid, usename TEXT, application_name TEXT, client_addr TEXT,
  client_hostname TEXT, client_port INTEGER, backend_start timestamptz, xact_start timestamptz,
  query_start timestamptz, state_change timestamptz, wait_event_type TEXT, wait_event TEXT, state TEXT,
  backend_xid TEXT, backend_xmin TEXT, query TEXT, backend_type TEXT);
CREATE TABLE pg_catalog.pg_stat_database(
  datid oid, datname TEXT, numbackends INTEGER, xact_commit INTEGER, xact_rollback INTEGER,
  blks_read INTEGER, blks_hit INTEGER, tup_returned INTEGER, tup_fetched INTEGER, tup_inserted INTEGER,
  tup_updated INTEGER, tup_deleted INTEGER, conflicts INTEGER, temp_files INTEGER, temp_bytes INTEGER,
  deadlocks INTEGER, stats_reset timestamptz);
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
-- sequences (catalog/sequences.py): the implicit ones of SERIAL and IDENTITY keys, and CREATE SEQUENCE's
CREATE TABLE pg_catalog.pg_sequences(
  schemaname TEXT, sequencename TEXT, sequenceowner TEXT, data_type regtype, start_value INT8,
  min_value INT8, max_value INT8, increment_by INT8, cycle BOOLEAN, cache_size INT8, last_value INT8);
CREATE TABLE information_schema.sequences(
  sequence_catalog TEXT, sequence_schema TEXT, sequence_name TEXT, data_type TEXT,
  numeric_precision INTEGER, numeric_precision_radix INTEGER, numeric_scale INTEGER, start_value TEXT,
  minimum_value TEXT, maximum_value TEXT, increment TEXT, cycle_option TEXT);
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


@functools.cache
def catalog_names() -> frozenset[str]:
    """The names of the catalog's tables and views (``pg_class``, ``tables``, …), lower-case."""
    return frozenset(table for table, _ in column_types() if table.startswith("pg_"))


# PostgreSQL's OIDs of its catalogs: ``tableoid`` of their rows, and ``'pg_class'::regclass``
CATALOG_OIDS = {
    "pg_class": 1259,
    "pg_attribute": 1249,
    "pg_proc": 1255,
    "pg_type": 1247,
    "pg_namespace": 2615,
    "pg_database": 1262,
    "pg_authid": 1260,
    "pg_roles": 1260,
    "pg_tablespace": 1213,
    "pg_am": 2601,
    "pg_amop": 2602,
    "pg_amproc": 2603,
    "pg_attrdef": 2604,
    "pg_cast": 2605,
    "pg_constraint": 2606,
    "pg_conversion": 2607,
    "pg_depend": 2608,
    "pg_description": 2609,
    "pg_index": 2610,
    "pg_inherits": 2611,
    "pg_language": 2612,
    "pg_largeobject_metadata": 2995,
    "pg_opclass": 2616,
    "pg_operator": 2617,
    "pg_opfamily": 2753,
    "pg_rewrite": 2618,
    "pg_trigger": 2620,
    "pg_event_trigger": 3466,
    "pg_collation": 3456,
    "pg_extension": 3079,
    "pg_foreign_data_wrapper": 2328,
    "pg_foreign_server": 1417,
    "pg_foreign_table": 3118,
    "pg_default_acl": 826,
    "pg_init_privs": 3394,
    "pg_policy": 3256,
    "pg_publication": 6104,
    "pg_publication_rel": 6106,
    "pg_publication_namespace": 6237,
    "pg_subscription": 6100,
    "pg_statistic_ext": 3381,
    "pg_transform": 3576,
    "pg_ts_config": 3602,
    "pg_ts_dict": 3600,
    "pg_ts_parser": 3601,
    "pg_ts_template": 3764,
    "pg_sequence": 2224,
    "pg_partitioned_table": 3350,
    "pg_range": 3541,
    "pg_auth_members": 1261,
}
