"""The one place that turns apsw exceptions into sqlite-ha errors."""

from __future__ import annotations

import apsw

from sqlite_ha.errors import NO_ROOM, Busy, HAError, InvalidParams, SQLError, StatementNotAllowed, StorageFull


def sqlite_code_name(exc: apsw.Error) -> str:
    """SQLite's extended result code name (``SQLITE_CONSTRAINT_UNIQUE``), or the primary one."""
    ext = getattr(exc, "extendedresult", None)
    name = apsw.mapping_extended_result_codes.get(ext) if ext is not None else None
    if not name:
        res = getattr(exc, "result", None)
        name = apsw.mapping_result_codes.get(res) if res is not None else None
    return str(name or "SQLITE_ERROR")


def result_code(name: str) -> int | None:
    """The number of an SQLite result code name (``SQLITE_CONSTRAINT_UNIQUE`` -> 2067), None if unknown."""
    code = apsw.mapping_extended_result_codes.get(name)
    if code is None:
        code = apsw.mapping_result_codes.get(name)
    return code if isinstance(code, int) else None


def primary_code_name(name: str) -> str:
    """The primary result code an extended one belongs to (``SQLITE_CONSTRAINT_UNIQUE`` ->
    ``SQLITE_CONSTRAINT``)."""
    code = result_code(name)
    primary = apsw.mapping_result_codes.get(code & 0xFF) if code is not None else None
    return str(primary) if primary else name


def translate(
    exc: BaseException, statement: int | None = None, conn: apsw.Connection | None = None
) -> HAError:
    """Map an exception raised while preparing, binding or stepping a statement (on ``conn``, where known:
    it tells an I/O error that is a full disk, a quota or a file size limit from others)."""
    if isinstance(exc, HAError):
        return exc
    where = f"statement {statement + 1}: " if statement is not None else ""
    if isinstance(exc, apsw.BindingsError):
        return InvalidParams(f"{where}{exc}")
    if isinstance(exc, KeyError):
        return InvalidParams(f"{where}missing parameter {exc.args[0]!r}")
    if isinstance(exc, OverflowError):
        return InvalidParams(f"{where}{exc}")
    if isinstance(exc, apsw.AuthError):
        return StatementNotAllowed(f"{where}{exc}")
    if isinstance(exc, apsw.BusyError | apsw.LockedError):
        return Busy(f"{where}{_sqlite_words(exc)}", hint="retry the request")
    if isinstance(exc, apsw.FullError) or (
        isinstance(exc, apsw.IOError) and conn is not None and conn.system_errno in NO_ROOM
    ):
        return StorageFull(
            f"{where}{_sqlite_words(exc)}; nothing was written",
            hint="free space on the node's disk, then retry",
            sqlite_code=sqlite_code_name(exc),
        )
    if isinstance(exc, apsw.Error):
        return SQLError(f"{where}{_sqlite_words(exc)}", sqlite_code=sqlite_code_name(exc), index=statement)
    if isinstance(exc, UnicodeError | ValueError | TypeError):
        # a SQL function's refusal may name its SQLSTATE (pg_timestamp: 22007), which the PG front end uses
        sqlstate = getattr(exc, "sqlstate", None)
        if isinstance(sqlstate, str):
            return InvalidParams(f"{where}{exc}", sqlstate=sqlstate)
        return InvalidParams(f"{where}{exc}")
    raise exc


def _sqlite_words(exc: apsw.Error) -> str:
    """SQLite's message without the exception class apsw puts in front ("ConstraintError: ...")."""
    message = str(exc)
    prefix, sep, rest = message.partition(": ")
    return rest if sep and prefix.endswith("Error") else message
