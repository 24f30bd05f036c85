"""Loading an existing SQLite file into an empty served database, through the write path.

Each chunk of rows is one ordinary write transaction, so every node of the cluster ends with the content and
a load that stops part-way leaves whole chunks only (what was loaded stays: ``LoadInterrupted`` says how far
it went).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from sqlite_ha.db.load import open_source, read_chunk
from sqlite_ha.db.load import plan as make_plan
from sqlite_ha.db.schema import USER_OBJECTS
from sqlite_ha.db.statement import Statement
from sqlite_ha.errors import Conflict, HAError
from sqlite_ha.replication.replicated_database import ReplicationPending
from sqlite_ha.served import ServedDatabase

log = logging.getLogger(__name__)


class LoadInterrupted(HAError):
    """A load failed part-way: what was loaded stays (each chunk is its own committed transaction)."""

    code = "load_interrupted"


class Loader:
    def __init__(self) -> None:
        self._loading: dict[str, asyncio.Lock] = {}  # one load at a time per database

    async def load(self, db: ServedDatabase, path: str, size: int) -> dict[str, Any]:
        """Load a SQLite file into the empty database ``db`` through the write path, chunk by chunk, so
        every node ends with its content. Returns what was loaded and the seq of the last change set."""
        lock = self._loading.setdefault(db.id, asyncio.Lock())
        if lock.locked():
            raise Conflict(f"a load into {db.id!r} is already running", database=db.id)
        async with lock:
            started = time.monotonic()
            source = await asyncio.to_thread(open_source, path)
            try:
                plan = await asyncio.to_thread(make_plan, source, size)
                existing = await self._user_tables(db)
                if existing:
                    raise Conflict(
                        f"database {db.id!r} already has tables ({', '.join(existing[:5])}"
                        f"{', …' if len(existing) > 5 else ''}); load only fills an empty database",
                        hint="load into a new database (POST /databases, with --create-db-dir), or drop them",
                        database=db.id,
                    )
                seq, rows, changesets = None, 0, 0

                async def write(statements: list[Statement]) -> None:
                    nonlocal seq, changesets
                    try:
                        _, got = await db.execute(statements)
                    except HAError as e:
                        if not changesets:
                            raise  # nothing written yet: the plain error says it all
                        pending = isinstance(e, ReplicationPending)
                        raise LoadInterrupted(
                            f"the load into {db.id!r} stopped after {rows:,} rows: {e.message}"
                            + (
                                "; that last chunk is committed here and reaches the other nodes when the "
                                "log answers"
                                if pending
                                else ""
                            ),
                            hint="what was loaded stays; drop the tables and load the file again",
                            database=db.id,
                            rows=rows,
                            seq=seq,
                        ) from e
                    seq = got if got is not None else seq
                    changesets += 1

                if plan.tables:
                    await write([Statement(sql=t.sql) for t in plan.tables])
                for table in plan.tables:
                    after = None
                    while True:
                        statements, after, _ = await asyncio.to_thread(read_chunk, source, table, after)
                        if not statements:
                            break
                        await write(statements)
                        rows += len(statements)
                if plan.after_rows:
                    await write([Statement(sql=sql) for sql in plan.after_rows])
            finally:
                source.close()
        seconds = time.monotonic() - started
        log.info(
            "loaded %d bytes into %s: %d tables, %d rows, %d change sets in %.1fs",
            size,
            db.id,
            len(plan.tables),
            rows,
            changesets,
            seconds,
        )
        return {
            "database": db.id,
            "bytes": size,
            "tables": len(plan.tables),
            "rows": rows,
            "changesets": changesets,
            "seconds": round(seconds, 3),
            "seq": seq,
        }

    async def _user_tables(self, db: ServedDatabase) -> list[str]:
        execution, _ = await db.execute(
            [
                Statement(
                    sql="SELECT name FROM sqlite_schema "
                    f"WHERE type = 'table' AND {USER_OBJECTS} ORDER BY name"
                )
            ]
        )
        return [str(r[0]) for r in execution.results[0].rows]
