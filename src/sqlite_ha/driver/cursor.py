"""The DB-API cursor: a statement's result, fetched as ``sqlite3``'s cursor fetches it.

A statement's rows come back whole from the node (the node's ``--max-result-rows`` and
``--max-result-bytes`` bound them), so fetching is local and never blocks; ``Results`` holds that state and
is shared with the async cursor of ``sqlite_ha.aio``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from sqlite_ha.driver.exceptions import ProgrammingError
from sqlite_ha.driver.session import Outcome
from sqlite_ha.driver.types import Row, bindings

if TYPE_CHECKING:
    from sqlite_ha.db.params import Bindings
    from sqlite_ha.driver.connection import Connection

Description = tuple[tuple[str, None, None, None, None, None, None], ...]
RowFactory = Callable[[Any, tuple[Any, ...]], Any]


def row_factory_of(factory: Any) -> RowFactory | None:
    """``sqlite3.Row`` accepts only sqlite3's own cursors: taken to mean ``sqlite_ha.Row``."""
    return Row if factory is sqlite3.Row else factory


def params_of(parameters: Any) -> list[Bindings]:
    return [bindings(parameters if parameters is not None else ())]


def many_params_of(seq_of_parameters: Iterable[Any]) -> list[Bindings]:
    if isinstance(seq_of_parameters, str | bytes):
        raise ProgrammingError("executemany() expects an iterable of parameter sets")
    return [bindings(p) for p in seq_of_parameters]


class Results:
    """A cursor's current result: ``description``, ``rowcount``, ``lastrowid`` and the unread rows."""

    arraysize: int
    row_factory: RowFactory | None
    text_factory: Any

    def __init__(self) -> None:
        self.arraysize = 1
        self.description: Description | None = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.row_factory = None
        self.text_factory = str
        self._rows: list[tuple[Any, ...]] = []
        self._at = 0
        self._closed = False

    def _take(self, outcome: Outcome) -> None:
        self.description = (
            tuple((name, None, None, None, None, None, None) for name in outcome.columns)
            if outcome.columns is not None
            else None
        )
        self._rows, self._at = outcome.rows, 0
        self.rowcount = outcome.rowcount
        if outcome.lastrowid is not None:
            self.lastrowid = outcome.lastrowid

    def _reset(self) -> None:
        self.description = None
        self._rows, self._at = [], 0
        self.rowcount = -1

    def _convert(self, row: tuple[Any, ...]) -> Any:
        text = self.text_factory
        if text is not str:
            row = tuple(text(v.encode()) if type(v) is str else v for v in row)
        factory = row_factory_of(self.row_factory)
        return factory(self, row) if factory is not None else row

    def _next_rows(self, n: int | None) -> list[Any]:
        if self._closed:
            raise ProgrammingError("Cannot operate on a closed cursor.")
        start = self._at
        end = len(self._rows) if n is None else min(start + max(n, 0), len(self._rows))
        self._at = end
        rows = self._rows[start:end]
        if end >= len(self._rows):
            self._rows, self._at = [], 0  # read: let the memory go
        return [self._convert(r) for r in rows]

    def _one(self) -> Any:
        rows = self._next_rows(1)
        return rows[0] if rows else None

    # PEP 249 no-ops
    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass


class Cursor(Results):
    """A cursor of a sync ``Connection``; methods may be called from any thread, one at a time per cursor
    (the connection's own calls are serialised, a cursor's result state is not shared safely)."""

    def __init__(self, connection: Connection) -> None:
        super().__init__()
        self.connection = connection
        self.row_factory = connection.row_factory
        self.text_factory = connection.text_factory

    def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        self._check()
        self._reset()
        outcome = self.connection._call(self.connection._session.execute(sql, params_of(parameters)))
        self._take(outcome)
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> Cursor:
        self._check()
        self._reset()
        session = self.connection._session
        outcome = self.connection._call(session.execute(sql, many_params_of(seq_of_parameters), many=True))
        self._take(outcome)
        return self

    def executescript(self, sql_script: str) -> Cursor:
        self._check()
        self._reset()
        if not isinstance(sql_script, str):
            raise ValueError("script argument must be unicode.")
        self.connection._call(self.connection._session.executescript(sql_script))
        return self

    def fetchone(self) -> Any:
        return self._one()

    def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._next_rows(self.arraysize if size is None else size)

    def fetchall(self) -> list[Any]:
        return self._next_rows(None)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if self._at >= len(self._rows):
            if self._closed:
                raise ProgrammingError("Cannot operate on a closed cursor.")
            raise StopIteration
        return self._one()

    def close(self) -> None:
        self._closed = True
        self._rows, self._at = [], 0

    def _check(self) -> None:
        if self._closed:
            raise ProgrammingError("Cannot operate on a closed cursor.")
        self.connection._check_open()
