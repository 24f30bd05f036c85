"""A session's TEMP tables and views over the PostgreSQL wire: which statements go to them, and how they run.

The objects live on a connection of the session's own (``db/temp_schema.py``: it never replicates, and dies
with the session). Here is the session's side: a statement that creates a TEMP table or view, or names one
the session made, is marked ``temp`` when it is prepared and then described and run there instead of on the
node's shared connections; and the catalog a session with TEMP objects sees lists them, in the schema
``pg_temp_3`` with ``relpersistence = 't'``, as PostgreSQL shows a session its own temporary tables
(SQLAlchemy's ``get_temp_table_names``, ``has_table``). Sessions without TEMP objects pay one attribute test
per statement prepared, nothing per execution.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlite_ha.db.temp_schema import TempSchema, creates_temp
from sqlite_ha.errors import HAError
from sqlite_ha.server.pgwire.catalog import catalog
from sqlite_ha.server.pgwire.errors import PgError
from sqlite_ha.server.pgwire.prepared import Outcome, Prepared
from sqlite_ha.server.pgwire.types import values as t

if TYPE_CHECKING:
    from sqlite_ha.db.values import SQLiteValue
    from sqlite_ha.server.pgwire.state import SessionState as Session


class SessionTemp:
    """The TEMP objects of one session on one database, with the catalog that shows them."""

    def __init__(self, session: Session) -> None:
        db = session._db()
        self.db = db
        self.schema = TempSchema(db.db.spec)
        self.catalog = catalog.Catalog(db.id, session.settings.user)

    def close(self) -> None:
        self.schema.close()


def is_temp(session: Session, sql: str, run_sql: str) -> bool:
    """Whether a statement being prepared belongs on the session's TEMP connection."""
    if creates_temp(sql):
        return True
    temp = session.temp
    return temp is not None and temp.db is session.db and temp.schema.mentions(run_sql)


def _temp(session: Session) -> SessionTemp:
    temp = session.temp
    if temp is None or temp.db is not session.db:  # first TEMP object, or SET DATABASE since
        close(session)
        temp = session.temp = SessionTemp(session)
    return temp


def describe(session: Session, prepared: Prepared) -> None:
    try:
        columns = _temp(session).schema.describe(prepared.run_sql, len(prepared.param_oids))
    except HAError as e:
        raise PgError.of(e) from e
    prepared.columns = [t.Column(name, t.oid_for_declared(decl) or t.TEXT, False) for name, decl in columns]
    prepared.param_oids = [oid or t.TEXT for oid in prepared.param_oids]


def run(session: Session, prepared: Prepared, params: tuple[SQLiteValue, ...]) -> Outcome:
    """Run a TEMP statement at once on the session's own connection (outside any transaction block)."""
    try:
        result = _temp(session).schema.run(prepared.run_sql, params)
    except HAError as e:
        raise PgError.of(e) from e
    if result.columns:
        columns = prepared.columns
        if columns is None or len(columns) != len(result.columns):
            columns = [
                t.Column(name, t.column_oid(decl, result.rows, i), False)
                for i, (name, decl) in enumerate(zip(result.columns, result.types, strict=True))
            ]
        return Outcome(prepared.row_tag(len(result.rows)), columns, result.rows)
    return Outcome(tag=prepared.change_tag(result.rows_affected))


def visible_catalog(session: Session) -> catalog.Catalog | None:
    """The catalog of a session that has TEMP objects (its own, listing them), else None."""
    temp = session.temp
    if temp is None or temp.db is not session.db or not temp.schema.names:
        return None
    with temp.schema.reading_schema() as conn:
        temp.catalog.sync(conn, temp=True)
    return temp.catalog


def close(session: Session) -> None:
    """Drop the session's TEMP objects (its end, or it moved to another database)."""
    if session.temp is not None:
        session.temp.close()
        session.temp = None
