"""How a database's SQLite connections are opened, and the guards every one of them carries.

Every connection a client's SQL can reach is opened here, so that none misses a guard: defensive mode and
untrusted schemas (a database file cannot make the node run its SQL functions), the client authorizer, the
deadline of the progress handler and the node's SQL functions. Readers are query-only and cannot build a
value larger than the largest result a query may return.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import apsw

from sqlite_ha.db import functions
from sqlite_ha.db.authorizer import Authorizer
from sqlite_ha.db.dsn import DatabaseSpec
from sqlite_ha.db.runner import Deadline, Limits
from sqlite_ha.errors import ConfigError

log = logging.getLogger(__name__)

SQLITE_MAX_LENGTH = 1_000_000_000  # SQLite's compiled-in ceiling of a string or blob
SQLITE_VERSION: str = apsw.sqlite_lib_version()  # the SQLite library every connection runs, "3.54.1"
STATEMENT_CACHE = 256


@dataclass(slots=True)
class Guarded:
    """A connection with the per-connection guards installed on it."""

    conn: apsw.Connection
    authorizer: Authorizer
    deadline: Deadline
    synchronous: str = "off"  # of a file writer: "full" or "normal"
    described_schema: int = -1  # the schema version ``current_schema`` last brought this connection to

    def current_schema(self) -> int:
        """The database's schema version, with this connection's copy of the schema brought up to it.

        A connection reloads the schema only when a statement it runs reads the database, so one that only
        prepares (to describe a statement) would describe tables as another connection left them before it
        dropped and created them again. Run after such a change, a read of ``sqlite_schema`` reloads it."""
        self.authorizer.internal = True
        try:
            version = int(self.conn.execute("PRAGMA schema_version").fetchall()[0][0] or 0)
            if version != self.described_schema:
                self.conn.execute("SELECT 1 FROM sqlite_schema LIMIT 1").fetchall()
                self.described_schema = version
        finally:
            self.authorizer.internal = False
        return version

    def control(self, sql: str) -> None:
        """Run one of the node's own statements, which the client authorizer would refuse.

        SQLite asks the authorizer only when it prepares, so a cached ``COMMIT`` prepared here would run
        unchecked for a client that sends the same text, were the client's statement looked up in the same
        cache. It is not: client SQL is prepared with ``CLIENT_PREPARE`` flags, and apsw's statement cache is
        keyed by text and flags. So the node's own statements stay cached (re-preparing them, with an
        authorizer call per action, cost about 5% of a replicated write)."""
        self.authorizer.internal = True
        try:
            self.conn.execute(sql)
        finally:
            self.authorizer.internal = False


class Opener:
    """Opens the connections of one database."""

    def __init__(self, spec: DatabaseSpec, limits: Limits, busy_ms: int) -> None:
        self.spec = spec
        self.limits = limits
        self.busy_ms = busy_ms

    def _guard(self, conn: apsw.Connection, synchronous: str = "off") -> Guarded:
        conn.set_busy_timeout(self.busy_ms)
        conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 1)
        conn.config(apsw.SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0)
        if self.spec.foreign_keys:  # before the authorizer, which refuses to set pragmas
            conn.config(apsw.SQLITE_DBCONFIG_ENABLE_FKEY, 1)
        authorizer = Authorizer()
        conn.authorizer = authorizer
        deadline = Deadline()
        deadline.install(conn)
        functions.register(conn)
        return Guarded(conn, authorizer, deadline, synchronous)

    def writer(self, synchronous: str) -> Guarded:
        """The one writer of a file database, in WAL mode with the given ``synchronous``."""
        spec = self.spec
        flags = (
            apsw.SQLITE_OPEN_READONLY
            if spec.read_only
            else (apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
        )
        conn = apsw.Connection(spec.path, flags=flags, statementcachesize=STATEMENT_CACHE)
        if spec.read_only:
            return self._guard(conn)
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchall()[0][0]
        if str(mode).lower() != "wal":
            raise ConfigError(f"database {spec.path!r}", f"cannot switch to WAL (got {mode})")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        return self._guard(conn, synchronous)

    def reader(self) -> Guarded:
        conn = apsw.Connection(
            self.spec.path, flags=apsw.SQLITE_OPEN_READWRITE, statementcachesize=STATEMENT_CACHE
        )
        conn.execute("PRAGMA query_only=ON")
        # No single value larger than a whole result may be: SQLite refuses to make it (SQLITE_TOOBIG)
        # rather than hand it over, so one giant value never sits in memory either.
        conn.limit(apsw.SQLITE_LIMIT_LENGTH, max(1, min(self.limits.max_bytes, SQLITE_MAX_LENGTH)))
        return self._guard(conn)

    def memory(self) -> Guarded:
        """The single connection of an in-memory database, loaded from its file if there is one."""
        conn = apsw.Connection(":memory:", statementcachesize=STATEMENT_CACHE)
        if os.path.exists(self.spec.path):
            # Through the backup API rather than reading bytes, so a file with a live WAL loads whole.
            src = open_query_only(self.spec.path)
            try:
                with conn.backup("main", src, "main") as backup:
                    backup.step(-1)
            finally:
                src.close()
            log.info("loaded %s into memory", self.spec.path)
        return self._guard(conn)


def open_query_only(path: str) -> apsw.Connection:
    """A connection that reads without writing. Not SQLITE_OPEN_READONLY: a read-only connection cannot
    recover a WAL left by a crashed process, and then fails to open at all."""
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE)
    conn.execute("PRAGMA query_only=ON")
    return conn
