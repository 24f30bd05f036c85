"""sqlite_ha.aio: the driver from asyncio code, aiosqlite-shaped, never blocking the caller's loop."""

from __future__ import annotations

import asyncio

import pytest

import sqlite_ha
import sqlite_ha.aio


def test_execute_fetch_commit(dsn: str) -> None:
    async def main() -> list[tuple[object, ...]]:
        async with sqlite_ha.aio.connect(dsn) as conn:
            await conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)")
            cur = await conn.executemany("INSERT INTO t (name) VALUES (?)", [("a",), ("b",)])
            assert cur.rowcount == 2
            assert conn.in_transaction
            await conn.commit()
            cur = await conn.execute("SELECT id, name FROM t ORDER BY id")
            assert cur.description is not None
            assert [d[0] for d in cur.description] == ["id", "name"]
            assert await cur.fetchone() == (1, "a")
            rows = [row async for row in cur]
            assert rows == [(2, "b")]
            return await conn.execute_fetchall("SELECT name FROM t ORDER BY id")

    assert asyncio.run(main()) == [("a",), ("b",)]
    # the sync API shares the node and sees what was committed
    assert sqlite_ha.connect(dsn).execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_context_manager_rolls_back_on_error_and_closes(dsn: str) -> None:
    async def main() -> None:
        conn = await sqlite_ha.aio.connect(dsn)
        await conn.execute("CREATE TABLE t (x)")

        async def fail_inside() -> None:
            async with conn:
                await conn.execute("INSERT INTO t VALUES (1)")
                raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            await fail_inside()
        assert conn.closed
        async with sqlite_ha.aio.connect(dsn) as again:
            assert await again.execute_fetchall("SELECT count(*) FROM t") == [(0,)]

    asyncio.run(main())


def test_errors_are_the_same_classes(dsn: str) -> None:
    async def main() -> None:
        async with sqlite_ha.aio.connect(dsn) as conn:
            await conn.execute("CREATE TABLE t (a UNIQUE)")
            await conn.execute("INSERT INTO t VALUES (1)")
            with pytest.raises(sqlite_ha.IntegrityError) as e:
                await conn.execute("INSERT INTO t VALUES (1)")
            assert e.value.sqlite_errorname == "SQLITE_CONSTRAINT_UNIQUE"

    asyncio.run(main())


def test_the_callers_loop_keeps_running_while_a_transaction_waits(dsn: str) -> None:
    """A second connection waiting for the writer must not stall the caller's loop."""

    async def main() -> int:
        a = await sqlite_ha.aio.connect(dsn)
        b = await sqlite_ha.aio.connect(dsn, timeout=10)
        await a.execute("CREATE TABLE t (x)")
        await a.execute("INSERT INTO t VALUES (1)")  # a holds the writer
        waiting = asyncio.create_task(b.execute("INSERT INTO t VALUES (2)"))
        ticks = 0
        while ticks < 10:
            await asyncio.sleep(0.01)
            ticks += 1
        assert not waiting.done()
        await a.commit()
        await waiting
        await b.commit()
        rows = await a.execute_fetchall("SELECT count(*) FROM t")
        await a.close()
        await b.close()
        return int(rows[0][0])

    assert asyncio.run(main()) == 2


def test_concurrent_tasks_on_one_connection(dsn: str) -> None:
    async def main() -> int:
        async with sqlite_ha.aio.connect(dsn, isolation_level=None) as conn:
            await conn.execute("CREATE TABLE t (x)")
            await asyncio.gather(*(conn.execute("INSERT INTO t VALUES (?)", (i,)) for i in range(50)))
            return int((await conn.execute_fetchall("SELECT count(DISTINCT x) FROM t"))[0][0])

    assert asyncio.run(main()) == 50
