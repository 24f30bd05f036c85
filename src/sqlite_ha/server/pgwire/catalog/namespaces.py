"""What the catalog lists beyond ``public``'s tables: schemas, materialized views, comments, TEMP objects.

SQLite has one namespace; the PG front end keeps PostgreSQL's other objects in it under reserved names
(``sql/schemas.py``): a schema ``s`` is the view ``"s."`` and its tables ``"s.t"``; a materialized view
``v`` is the table ``v`` with its query in the view ``"pg_matview.v"``; the comments of ``t`` are the view
``"pg_comment:t"`` (``pgwire/comments.py``). A session's TEMP tables are on its own connection, in SQLite's
``temp`` schema (``pgwire/temp.py``). This module reads a connection's schema into ``Objects``: the tables
as the catalog shows them and what it needs to place them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import apsw

from sqlite_ha.db.schema import USER_OBJECTS
from sqlite_ha.server.pgwire.catalog.tables import Table
from sqlite_ha.server.pgwire.sql import schemas

# a session's TEMP objects, as PostgreSQL names the first backend's temporary schema
PG_TEMP, PG_TEMP_NAME = 16383, "pg_temp_3"

_USER_OBJECTS = (
    f"SELECT type, name FROM sqlite_schema WHERE type IN ('table', 'view') AND {USER_OBJECTS} ORDER BY rowid"
)
_TEMP_OBJECTS = "SELECT type, name FROM temp.sqlite_schema WHERE type IN ('table', 'view') ORDER BY rowid"


@dataclass
class Objects:
    tables: list[Table] = field(default_factory=list)
    temp: list[Table] = field(default_factory=list)  # the session's TEMP tables and views
    schemas: list[str] = field(default_factory=list)  # the schemas made with CREATE SCHEMA
    comments: dict[str, dict[str, str]] = field(default_factory=dict)  # table (lower) → column ('') → text


def version(conn: apsw.Connection, temp: bool) -> int:
    """The schema version of ``conn`` (with its TEMP schema's when ``temp``)."""
    main = int(conn.execute("PRAGMA schema_version").fetchall()[0][0])  # type: ignore[arg-type]
    if not temp:
        return main
    return (main << 32) + int(conn.execute("PRAGMA temp.schema_version").fetchall()[0][0])  # type: ignore[arg-type]


def read(conn: apsw.Connection, temp: bool = False) -> Objects:
    """The objects of ``conn``'s database (and its TEMP schema when ``temp``), as the catalog lists them."""
    found = [(str(kind), str(name)) for kind, name in conn.execute(_USER_OBJECTS).fetchall()]
    views = [name for kind, name in found if kind == "view"]
    user_schemas = sorted(name[:-1] for name in views if name.endswith("."))
    schemas.note({name.lower() for name in user_schemas})  # statements naming them go through sqlglot
    comments = {
        name[len(schemas.COMMENTS) :].lower(): {
            str(attname): str(text)
            for attname, text in conn.execute(f"SELECT attname, description FROM {_quoted(name)}")
        }
        for name in views
        if name.startswith(schemas.COMMENTS)
    }
    matviews = {name[len(schemas.MATVIEW) :].lower() for name in views if name.startswith(schemas.MATVIEW)}
    hidden = (schemas.MATVIEW, schemas.COMMENTS)
    tables = [
        _materialized(conn, table) if table.name.lower() in matviews else table
        for table in (
            _read(conn, kind, name)
            for kind, name in found
            if not name.endswith(".") and not name.startswith(hidden)
        )
    ]
    temp_tables = []
    if temp:
        temp_tables = [_read(conn, str(k), str(n), "temp") for k, n in conn.execute(_TEMP_OBJECTS)]
    return Objects(tables, temp_tables, user_schemas, comments)


def _materialized(conn: apsw.Connection, table: Table) -> Table:
    """The table of a materialized view, with its query (pg_get_viewdef) from the view that keeps it."""
    query = _read(conn, "view", schemas.MATVIEW + table.name)
    return dataclasses.replace(table, kind="m", query=query.query, uses=query.uses)


def _read(conn: apsw.Connection, kind: str, name: str, schema: str = "main") -> Table:
    """A table or view; a view over a table dropped since (SQLite allows that) has no columns, rather than
    failing every catalog query."""
    try:
        return Table.read(conn, kind, name, schema)
    except apsw.SQLError:
        if kind != "view":
            raise
        return Table(name, "v", ())


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
