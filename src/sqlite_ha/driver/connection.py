"""The DB-API connection (sync): ``sqlite3.Connection``'s interface over a ``Session`` on the driver's loop.

Thread safety (``threadsafety = 2``): threads may share the module and connections. A connection's calls are
serialised (its session runs one at a time on the driver's loop), so two threads can use one connection;
a cursor's result is its own state, so threads should not share a cursor. ``check_same_thread`` is
accepted and ignored: nothing here is tied to the thread that connected.
"""

from __future__ import annotations

import weakref
from collections.abc import Coroutine, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from sqlite_ha.driver import exceptions
from sqlite_ha.driver.cursor import Cursor, RowFactory
from sqlite_ha.driver.exceptions import ProgrammingError, to_dbapi
from sqlite_ha.driver.runtime import RuntimeClosed, RuntimeThreadError, runtime
from sqlite_ha.driver.session import IDLE_TIMEOUT, LEGACY, Session
from sqlite_ha.errors import HAError

if TYPE_CHECKING:
    from sqlite_ha.driver.connector import Connector

T = TypeVar("T")

_ISOLATION_LEVELS = ("", "DEFERRED", "IMMEDIATE", "EXCLUSIVE")


def check_isolation_level(level: str | None) -> str | None:
    if level is None:
        return None
    if not isinstance(level, str) or level.upper() not in _ISOLATION_LEVELS:
        raise ValueError("isolation_level string must be '', 'DEFERRED', 'IMMEDIATE', or 'EXCLUSIVE'")
    return level


def check_autocommit(value: Any) -> int | bool:
    if value is LEGACY or value is True or value is False:
        return value
    if value == LEGACY and isinstance(value, int) and not isinstance(value, bool):
        return LEGACY
    raise ValueError("autocommit must be True, False, or sqlite3.LEGACY_TRANSACTION_CONTROL")


def _abandon(session: Session) -> None:
    """A connection garbage-collected without ``close``: its transaction gives the writer back now."""
    rt = runtime()
    if rt.running:
        rt.loop.call_soon_threadsafe(session.abandon)


class ConnectionBase:
    """What the sync and async connections share: construction, attributes, the exception classes."""

    Warning = exceptions.Warning
    Error = exceptions.Error
    InterfaceError = exceptions.InterfaceError
    DatabaseError = exceptions.DatabaseError
    DataError = exceptions.DataError
    OperationalError = exceptions.OperationalError
    IntegrityError = exceptions.IntegrityError
    InternalError = exceptions.InternalError
    ProgrammingError = exceptions.ProgrammingError
    NotSupportedError = exceptions.NotSupportedError

    def __init__(
        self,
        connector: Connector,
        *,
        timeout: float = 5.0,
        isolation_level: str | None = "",
        autocommit: int | bool = LEGACY,
        transaction_idle_timeout: float = IDLE_TIMEOUT,
        detect_types: int = 0,
        check_same_thread: bool = True,
        cached_statements: int = 128,
        uri: bool = False,
    ) -> None:
        if detect_types:
            raise exceptions.NotSupportedError(
                "detect_types is not supported: values come back as SQLite stores them"
            )
        self.connector = connector
        try:
            connector._check_usable()
        except HAError as e:
            raise to_dbapi(e) from e
        self._session = Session(
            connector.served,
            isolation_level=check_isolation_level(isolation_level),
            autocommit=check_autocommit(autocommit),
            timeout=timeout,
            idle_timeout=transaction_idle_timeout,
        )
        connector._register(self._session)
        self._finalizer = weakref.finalize(self, _abandon, self._session)
        self.row_factory: RowFactory | None = None
        self.text_factory: Any = str

    # ------------------------------------------------------------------------------------ attributes
    @property
    def in_transaction(self) -> bool:
        return self._session.in_transaction

    @property
    def total_changes(self) -> int:
        """Rows inserted, updated or deleted through this connection since it was opened."""
        return self._session.total_changes

    @property
    def seq(self) -> int | None:
        """The log position of this connection's last replicated write (None before any, or without
        replication): what another node waits for to read it (``wait_applied``)."""
        return self._session.seq

    @property
    def closed(self) -> bool:
        return self._session.closed

    def _check_open(self) -> None:
        if self._session.closed:
            raise ProgrammingError("Cannot operate on a closed database.")


class Connection(ConnectionBase):
    """A DB-API 2.0 connection that behaves like ``sqlite3.Connection`` (see ``sqlite_ha.connect``)."""

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return runtime().call(coro)
        except (RuntimeThreadError, RuntimeClosed) as e:
            raise exceptions.make(exceptions.InterfaceError, e.message, code=e.code, hint=e.hint) from e

    @property
    def isolation_level(self) -> str | None:
        return self._session.isolation_level

    @isolation_level.setter
    def isolation_level(self, level: str | None) -> None:
        level = check_isolation_level(level)
        if level is None and self._session.autocommit == LEGACY:
            self.commit()  # as sqlite3: switching to autocommit commits what is pending
        self._session.isolation_level = level

    @property
    def autocommit(self) -> int | bool:
        """Python 3.12's ``sqlite3`` attribute: ``LEGACY`` (-1, the default: ``isolation_level`` rules),
        True (no implicit transactions), False (a transaction always open: here, from the first statement
        that writes, so that reads do not hold the database's writer)."""
        return self._session.autocommit

    @autocommit.setter
    def autocommit(self, value: int | bool) -> None:
        value = check_autocommit(value)
        if value is True and self._session.in_transaction:
            self.commit()
        self._session.autocommit = value

    # ------------------------------------------------------------------------------------ DB-API
    def cursor(self, factory: type[Cursor] = Cursor) -> Cursor:
        self._check_open()
        return factory(self)

    def execute(self, sql: str, parameters: Any = ()) -> Cursor:
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any]) -> Cursor:
        return self.cursor().executemany(sql, seq_of_parameters)

    def executescript(self, sql_script: str) -> Cursor:
        return self.cursor().executescript(sql_script)

    def commit(self) -> None:
        """Commit the open transaction (if any); returns once its change set is in the replication log. A
        write the log did not take raises ``OperationalError`` (code ``replication_pending``): it is
        committed here and published when the log answers; do not redo it."""
        self._check_open()
        if self._session.autocommit is True:
            return
        self._call(self._session.commit())

    def rollback(self) -> None:
        self._check_open()
        if self._session.autocommit is True:
            return
        self._call(self._session.rollback())

    def close(self) -> None:
        """Roll back an open transaction (as sqlite3, close never commits). The node keeps running for the
        connector's other connections (``connector.close()`` or ``sqlite_ha.shutdown()`` stop it)."""
        if self._session.closed:
            return
        self._finalizer.detach()
        self._call(self._session.close())

    def __enter__(self) -> Connection:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """As sqlite3: commit on success, roll back on an exception; the connection stays open."""
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def __repr__(self) -> str:
        return f"<sqlite_ha.Connection {self.connector.database!r}{' closed' if self.closed else ''}>"
