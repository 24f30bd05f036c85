"""``sqlite+ha_async``: SQLAlchemy's asyncio ORM over ``sqlite_ha.aio``, with the sync dialect's behaviour
(types, savepoints, AUTOCOMMIT), and queries that wait without blocking the application's event loop."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.orm import selectinload
from sqlalchemy.pool import AsyncAdaptedQueuePool

from sqlite_ha.sqlalchemy import SQLiteHAAsyncDialect
from tests.driver.sqla import LOCAL, ensure_registered, url
from tests.driver.sqla_models import COVER, JOINED, Author, Base, Book, a_book

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _dialect() -> None:
    ensure_registered()


def run(tmp_path: Path, body: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """``body(engine)`` on a fresh database, in an event loop of its own; the node is stopped after."""

    async def main() -> tuple[T, Any]:
        engine = create_async_engine(url(tmp_path / "app.db", driver="ha_async", **LOCAL))
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
                connector = (await conn.get_raw_connection()).driver_connection.connector
            return await body(engine), connector
        finally:
            await engine.dispose()

    result, connector = asyncio.run(main())
    connector.close()
    return result


def test_the_async_orm_round_trips_models(tmp_path: Path) -> None:
    async def body(engine: AsyncEngine) -> None:
        assert isinstance(engine.sync_engine.dialect, SQLiteHAAsyncDialect)
        assert isinstance(engine.pool, AsyncAdaptedQueuePool)
        async with AsyncSession(engine, expire_on_commit=False) as session:
            author = Author(name="Ursula", joined=JOINED, books=[a_book("Earthsea", "12.50")])
            session.add(author)
            await session.commit()
        async with AsyncSession(engine) as session:
            got = (
                await session.scalars(
                    select(Author).options(selectinload(Author.books)).where(Author.id == author.id)
                )
            ).one()
            assert (got.name, got.joined) == ("Ursula", JOINED)
            assert [(b.title, b.price, b.isbn, b.cover) for b in got.books] == [
                ("Earthsea", Decimal("12.50"), 2**62 + 7, COVER)
            ]
            got.books[0].price = Decimal("3.10")
            await session.commit()
            assert await session.scalar(select(Book.price)) == Decimal("3.10")

    run(tmp_path, body)


def test_rollback_and_a_savepoint_first(tmp_path: Path) -> None:
    async def body(engine: AsyncEngine) -> list[str]:
        async with AsyncSession(engine) as session:
            async with session.begin_nested():  # the first statement: BEGIN comes before it
                session.add(Author(name="in savepoint", joined=JOINED))
            await session.rollback()
            session.add(Author(name="kept", joined=JOINED))
            await session.commit()
            return list(await session.scalars(select(Author.name)))

    assert run(tmp_path, body) == ["kept"]


def test_autocommit(tmp_path: Path) -> None:
    async def body(engine: AsyncEngine) -> None:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            assert await conn.get_isolation_level() == "AUTOCOMMIT"
            await conn.execute(insert(Author).values(name="at once", joined=JOINED))
            await conn.rollback()
        async with engine.connect() as conn:
            assert await conn.get_isolation_level() == "SERIALIZABLE"
            assert await conn.scalar(select(Author.name)) == "at once"

    run(tmp_path, body)


def test_stream(tmp_path: Path) -> None:
    async def body(engine: AsyncEngine) -> list[str]:
        async with AsyncSession(engine) as session:
            session.add_all([Author(name=f"a{i}", joined=JOINED) for i in range(5)])
            await session.commit()
        async with engine.connect() as conn:
            result = await conn.stream(select(Author.name).order_by(Author.name))
            return [name async for (name,) in result]

    assert run(tmp_path, body) == ["a0", "a1", "a2", "a3", "a4"]


def test_waiting_for_the_writer_does_not_block_the_loop(tmp_path: Path) -> None:
    """One session holds the writer (an open transaction that wrote) while another session's write waits for
    it; meanwhile the loop keeps running other tasks, the holder's included, so both commit. A dialect that
    blocked the loop while waiting would stop the holder too, and the waiter would time out."""

    async def body(engine: AsyncEngine) -> tuple[int, int]:
        wrote = asyncio.Event()
        ticks = 0

        async def holder() -> None:
            async with AsyncSession(engine) as session:
                session.add(Author(name="holder", joined=JOINED))
                await session.flush()  # the transaction has begun: this session holds the writer
                wrote.set()
                await asyncio.sleep(0.5)
                await session.commit()

        async def waiter() -> int:
            await wrote.wait()
            async with AsyncSession(engine) as session:
                session.add(Author(name="waiter", joined=JOINED))
                await session.commit()  # waits for the holder's commit
            return ticks

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticking = asyncio.create_task(ticker())
        try:
            _, ticks_when_done = await asyncio.gather(holder(), waiter())
        finally:
            ticking.cancel()
        async with AsyncSession(engine) as session:
            count = await session.scalar(select(func.count()).select_from(Author))
        return ticks_when_done, count or 0

    ticks, count = run(tmp_path, body)
    assert count == 2
    assert ticks >= 20  # about 50 ticks of 10 ms in the holder's 0.5 s


def test_concurrent_sessions(tmp_path: Path) -> None:
    async def body(engine: AsyncEngine) -> int:
        async def worker(w: int) -> None:
            for i in range(10):
                async with AsyncSession(engine) as session:
                    session.add(Author(name=f"w{w}-{i}", joined=JOINED + dt.timedelta(seconds=i)))
                    await session.commit()

        await asyncio.gather(*(worker(w) for w in range(8)))  # more than the pool's 5 + overflow waits
        async with AsyncSession(engine) as session:
            return await session.scalar(select(func.count()).select_from(Author)) or 0

    assert run(tmp_path, body) == 80
