"""PEP 249's exceptions, and the one function that maps sqlite-ha's errors onto them.

The classes follow CPython's ``sqlite3`` (the same SQLite result code lands in the same class, and
``sqlite_errorcode`` / ``sqlite_errorname`` carry SQLite's extended code), so code written against
``sqlite3``'s exceptions keeps working. Errors of replication (no log, a write committed here but not yet in
the log, a stale node) are ``OperationalError`` like other conditions of the database, with sqlite-ha's own
``code`` (``replication_pending``, ``not_replicating``, …) and ``hint`` besides.
"""

from __future__ import annotations

from typing import Any

import apsw

from sqlite_ha.errors import (
    BadRequest,
    Busy,
    ConfigError,
    HAError,
    InvalidParams,
    PermissionDenied,
    SQLError,
    StatementNotAllowed,
    StorageFull,
)


class Warning(Exception):  # PEP 249's name
    """PEP 249: important warnings (never raised by this driver; defined for the API)."""


class Error(Exception):
    """Base of the driver's errors. ``sqlite_errorcode``/``sqlite_errorname``: SQLite's extended result code
    (None when SQLite did not report the error); ``code``/``hint``: sqlite-ha's error code and advice."""

    sqlite_errorcode: int | None = None
    sqlite_errorname: str | None = None
    code: str | None = None
    hint: str | None = None


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class DataError(DatabaseError):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


# SQLite's primary result code -> the sqlite3 module's class for it (CPython's _pysqlite_seterror)
_BY_PRIMARY: dict[str, type[Error]] = {
    "SQLITE_INTERNAL": InternalError,
    "SQLITE_NOTFOUND": InternalError,
    "SQLITE_ERROR": OperationalError,
    "SQLITE_PERM": OperationalError,
    "SQLITE_ABORT": OperationalError,
    "SQLITE_BUSY": OperationalError,
    "SQLITE_LOCKED": OperationalError,
    "SQLITE_READONLY": OperationalError,
    "SQLITE_INTERRUPT": OperationalError,
    "SQLITE_IOERR": OperationalError,
    "SQLITE_FULL": OperationalError,
    "SQLITE_CANTOPEN": OperationalError,
    "SQLITE_PROTOCOL": OperationalError,
    "SQLITE_EMPTY": OperationalError,
    "SQLITE_SCHEMA": OperationalError,
    "SQLITE_CORRUPT": DatabaseError,
    "SQLITE_TOOBIG": DataError,
    "SQLITE_CONSTRAINT": IntegrityError,
    "SQLITE_MISMATCH": IntegrityError,
    "SQLITE_MISUSE": InterfaceError,
    "SQLITE_RANGE": InterfaceError,
}


def sqlite_code(name: str) -> int | None:
    """The number of an SQLite result code name (``SQLITE_CONSTRAINT_UNIQUE`` -> 2067)."""
    code = apsw.mapping_extended_result_codes.get(name)
    if code is None:
        code = apsw.mapping_result_codes.get(name)
    return code if isinstance(code, int) else None


def _primary(name: str) -> str:
    code = sqlite_code(name)
    if code is None:
        return name
    primary = apsw.mapping_result_codes.get(code & 0xFF)
    return str(primary) if primary else name


def make(cls: type[Error], message: str, *, sqlite_name: str | None = None, **fields: Any) -> Error:
    err = cls(message)
    if sqlite_name is not None:
        err.sqlite_errorname = sqlite_name
        err.sqlite_errorcode = sqlite_code(sqlite_name)
    for key, value in fields.items():
        setattr(err, key, value)
    return err


def to_dbapi(exc: BaseException) -> BaseException:
    """The PEP 249 exception for an error of the node (anything else is returned as it is).

    The single mapping of the driver: SQLite's own errors by their result code as ``sqlite3`` does; bad
    parameters are ``ProgrammingError``; refused statements ``NotSupportedError``; everything else the
    node reports (busy, timeouts, full disk, replication) an ``OperationalError``."""
    if isinstance(exc, Error) or not isinstance(exc, HAError):
        return exc
    message = exc.message
    fields: dict[str, Any] = {"code": exc.code, "hint": exc.hint}
    cls: type[Error]
    name: str | None = None
    if isinstance(exc, SQLError):
        name = exc.sqlite_code
        cls = _BY_PRIMARY.get(_primary(name), DatabaseError)
        message = _without_statement_prefix(message)
    elif isinstance(exc, InvalidParams | ConfigError):
        cls = ProgrammingError if isinstance(exc, InvalidParams) else InterfaceError
        message = _without_statement_prefix(message)
    elif isinstance(exc, StatementNotAllowed | PermissionDenied):
        cls, name = NotSupportedError, "SQLITE_AUTH"
        message = _without_statement_prefix(message)
    elif isinstance(exc, Busy):
        cls, name = OperationalError, "SQLITE_BUSY"
    elif isinstance(exc, StorageFull):
        cls, name = OperationalError, str(exc.fields.get("sqlite_code") or "SQLITE_FULL")
    elif isinstance(exc, BadRequest):
        cls = ProgrammingError
    else:
        cls = OperationalError
        if exc.code == "query_timeout":
            name = "SQLITE_INTERRUPT"
    err = make(cls, message, sqlite_name=name, **fields)
    err.__cause__ = exc
    return err


def _without_statement_prefix(message: str) -> str:
    """The node numbers the statements of a request ("statement 1: …"); a DB-API call runs one."""
    head, sep, rest = message.partition(": ")
    return rest if sep and head.startswith("statement ") and head[10:].isdigit() else message
