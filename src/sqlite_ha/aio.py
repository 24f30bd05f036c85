"""The driver for asyncio code, shaped like aiosqlite::

    async with sqlite_ha.aio.connect("app.db", replicationURL="nats://…") as conn:
        cursor = await conn.execute("SELECT id, name FROM users WHERE id = ?", (1,))
        row = await cursor.fetchone()
        await conn.execute("UPDATE users SET name = ? WHERE id = ?", ("ada", 1))
        await conn.commit()

It shares the runtime, connectors and semantics of the sync driver (``sqlite_ha.connect``): the same node
serves both, and each call runs on the driver's own loop while the caller's loop only awaits it, so it
never blocks. Starting a connector (opening the database, joining the log) happens on a worker thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Generator, Iterable, Mapping
from types import TracebackType
from typing import Any

from sqlite_ha.driver.connection import ConnectionBase, check_autocommit, check_isolation_level
from sqlite_ha.driver.connector import get_connector
from sqlite_ha.driver.cursor import Results, many_params_of, params_of
from sqlite_ha.driver.exceptions import InterfaceError, ProgrammingError, make, to_dbapi
from sqlite_ha.driver.runtime import RuntimeClosed, RuntimeThreadError, runtime
from sqlite_ha.driver.session import IDLE_TIMEOUT, LEGACY
from sqlite_ha.errors import HAError

__all__ = ["AsyncConnection", "AsyncCursor", "Connecting", "connect"]


def connect(
    dsn: str,
    *,
    timeout: float = 5.0,
    isolation_level: str | None = "",
    autocommit: int | bool = LEGACY,
    transaction_idle_timeout: float = IDLE_TIMEOUT,
    options: Mapping[str, Any] | None = None,
    **driver_options: Any,
) -> Connecting:
    """``sqlite_ha.connect``'s async twin: the same arguments; ``await`` it for an ``AsyncConnection``, or use
    it in ``async with`` (which closes the connection at the end), as aiosqlite's ``connect``."""
    merged = {**(options or {}), **driver_options}

    async def open_connection() -> AsyncConnection:
        try:
            connector = await asyncio.to_thread(get_connector, str(dsn), merged or None)
        except HAError as e:
            raise to_dbapi(e) from e
        return AsyncConnection(
            connector,
            timeout=timeout,
            isolation_level=isolation_level,
            autocommit=autocommit,
            transaction_idle_timeout=transaction_idle_timeout,
        )

    return Connecting(open_connection)


class Connecting:
    """What ``connect`` returns: awaitable (the connection) and an async context manager."""

    def __init__(self, opener: Callable[[], Coroutine[Any, Any, AsyncConnection]]) -> None:
        self._opener = opener
        self._connection: AsyncConnection | None = None

    def __await__(self) -> Generator[Any, None, AsyncConnection]:
        return self._opener().__await__()

    async def __aenter__(self) -> AsyncConnection:
        self._connection = await self._opener()
        return self._connection

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._connection is not None:
            await self._connection.__aexit__(exc_type, exc, tb)


class AsyncConnection(ConnectionBase):
    async def _run(self, coro: Any) -> Any:
        try:
            return await runtime().run(coro)
        except (RuntimeThreadError, RuntimeClosed) as e:
            raise make(InterfaceError, e.message, code=e.code, hint=e.hint) from e

    @property
    def isolation_level(self) -> str | None:
        return self._session.isolation_level

    async def set_isolation_level(self, level: str | None) -> None:
        """As setting ``sqlite3``'s attribute (None commits a pending transaction first)."""
        level = check_isolation_level(level)
        if level is None and self._session.autocommit == LEGACY:
            await self.commit()
        self._session.isolation_level = level

    @property
    def autocommit(self) -> int | bool:
        return self._session.autocommit

    async def set_autocommit(self, value: int | bool) -> None:
        value = check_autocommit(value)
        if value is True and self._session.in_transaction:
            await self.commit()
        self._session.autocommit = value

    async def cursor(self) -> AsyncCursor:
        self._check_open()
        return AsyncCursor(self)

    async def execute(self, sql: str, parameters: Any = ()) -> AsyncCursor:
        return await (await self.cursor()).execute(sql, parameters)

    async def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> AsyncCursor:
        return await (await self.cursor()).executemany(sql, seq_of_parameters)

    async def executescript(self, sql_script: str) -> AsyncCursor:
        return await (await self.cursor()).executescript(sql_script)

    async def execute_fetchall(self, sql: str, parameters: Any = ()) -> list[Any]:
        """aiosqlite's shortcut: run and return every row."""
        return await (await self.execute(sql, parameters)).fetchall()

    async def commit(self) -> None:
        self._check_open()
        if self._session.autocommit is not True:
            await self._run(self._session.commit())

    async def rollback(self) -> None:
        self._check_open()
        if self._session.autocommit is not True:
            await self._run(self._session.rollback())

    async def close(self) -> None:
        if self._session.closed:
            return
        self._finalizer.detach()
        await self._run(self._session.close())

    async def __aenter__(self) -> AsyncConnection:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Commit on success, roll back on an exception, then close (aiosqlite closes on exit)."""
        try:
            if not self._session.closed:
                if exc_type is None:
                    await self.commit()
                else:
                    await self.rollback()
        finally:
            await self.close()

    def __repr__(self) -> str:
        return f"<sqlite_ha.aio.AsyncConnection {self.connector.database!r}>"


class AsyncCursor(Results):
    def __init__(self, connection: AsyncConnection) -> None:
        super().__init__()
        self.connection = connection
        self.row_factory = connection.row_factory
        self.text_factory = connection.text_factory

    async def execute(self, sql: str, parameters: Any = ()) -> AsyncCursor:
        self._check()
        self._reset()
        self._take(await self.connection._run(self.connection._session.execute(sql, params_of(parameters))))
        return self

    async def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> AsyncCursor:
        self._check()
        self._reset()
        session = self.connection._session
        params = many_params_of(seq_of_parameters)
        self._take(await self.connection._run(session.execute(sql, params, many=True)))
        return self

    async def executescript(self, sql_script: str) -> AsyncCursor:
        self._check()
        self._reset()
        await self.connection._run(self.connection._session.executescript(sql_script))
        return self

    async def fetchone(self) -> Any:
        return self._one()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._next_rows(self.arraysize if size is None else size)

    async def fetchall(self) -> list[Any]:
        return self._next_rows(None)

    def __aiter__(self) -> AsyncCursor:
        return self

    async def __anext__(self) -> Any:
        if self._at >= len(self._rows):
            raise StopAsyncIteration
        return self._one()

    async def close(self) -> None:
        self._closed = True
        self._rows, self._at = [], 0

    async def __aenter__(self) -> AsyncCursor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check(self) -> None:
        if self._closed:
            raise ProgrammingError("Cannot operate on a closed cursor.")
        self.connection._check_open()
