"""The error a PostgreSQL client is answered with (ErrorResponse), apart from the session so that each part
of it (startup, session commands, COPY) raises the same one and the session reports it in one place."""

from __future__ import annotations

from sqlite_ha.errors import HAError
from sqlite_ha.server.pgwire.sqlstate import sqlstate


class PgError(Exception):
    """An error answered with ErrorResponse; ``fatal`` closes the connection afterwards."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        hint: str | None = None,
        detail: str | None = None,
        fatal: bool = False,
        context: str | None = None,
        raw: bytes | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.detail = detail
        self.fatal = fatal
        self.context = context  # the error's CONTEXT line (``COPY t, line 3``)
        self.raw = raw  # the ErrorResponse as the writer sent it, for a forwarded statement: sent unchanged

    @classmethod
    def of(cls, e: HAError) -> PgError:
        return cls(sqlstate(e), e.message, hint=e.hint)
