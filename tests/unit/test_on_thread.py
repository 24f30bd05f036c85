"""``on_thread``: a cancelled caller stops the SQL its worker thread runs, even between two statements."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import apsw
import pytest

from sqlite_ha.db.runner import Deadline, on_thread

LONG = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) "
    "SELECT count(*) FROM c"
)


def test_a_cancel_between_statements_stops_the_next_one() -> None:
    conn = apsw.Connection(":memory:")
    deadline = Deadline()
    deadline.install(conn)
    between = threading.Event()

    def work() -> int:
        conn.execute("SELECT 1").fetchall()
        between.set()
        time.sleep(0.3)  # no statement runs now: an interrupt here alone would be lost
        return int(conn.execute(LONG).fetchall()[0][0])  # type: ignore[arg-type]

    async def scenario() -> float:
        with ThreadPoolExecutor(1) as executor:
            task = asyncio.create_task(on_thread(executor, conn, deadline, work))
            await asyncio.to_thread(between.wait, 5)
            started = time.monotonic()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return time.monotonic() - started

    assert asyncio.run(scenario()) < 3  # the long statement was refused, not run to its end
    assert deadline.stopped is False  # released: the connection serves the next request normally
    assert conn.execute("SELECT 2").fetchall() == [(2,)]
