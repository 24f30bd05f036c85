"""The package's error hierarchy.

Every error a client can provoke is an ``HAError`` with a stable machine-readable ``code`` and structured
fields; each front end (HTTP, later PG wire) maps these to its own status codes in exactly one function, so
the mapping cannot drift between routes.
"""

from __future__ import annotations

import errno
from typing import Any


class HAError(Exception):
    """Base of every error raised on purpose by sqlite-ha."""

    code = "internal_error"

    def __init__(self, message: str, *, hint: str | None = None, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.fields = fields

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            out["hint"] = self.hint
        out.update({k: v for k, v in self.fields.items() if v is not None})
        return out


class ConfigError(HAError):
    """A setting has a value we cannot use; ``setting`` names it as the user wrote it."""

    code = "config_error"

    def __init__(self, setting: str, message: str, *, source: str | None = None) -> None:
        where = f"{setting} (from {source})" if source else setting
        super().__init__(f"{where}: {message}", setting=setting, source=source)
        self.setting = setting


class BadRequest(HAError):
    """The request itself is malformed: not JSON, wrong shape, bad parameter values."""

    code = "bad_request"


class InvalidJSON(BadRequest):
    code = "invalid_json"


class InvalidParams(BadRequest):
    code = "invalid_params"


class StatementNotAllowed(BadRequest):
    code = "statement_not_allowed"


class NotSupported(BadRequest):
    """A statement asks for something sqlite-ha does not do (PostgreSQL's feature_not_supported)."""

    code = "not_supported"


class SQLError(HAError):
    """SQLite refused a statement; ``sqlite_code`` is SQLite's extended error name."""

    code = "sql_error"

    def __init__(self, message: str, *, sqlite_code: str, index: int | None = None) -> None:
        super().__init__(message, sqlite_code=sqlite_code, index=index)
        self.sqlite_code = sqlite_code
        self.index = index


class Unauthorized(HAError):
    code = "unauthorized"
    scheme = "Bearer"  # the challenge of the WWW-Authenticate header: "Basic" where users log in


class PermissionDenied(HAError):
    """The user lacks ``permission`` (read, write, ddl, admin) on ``database`` (None: the whole node)."""

    code = "permission_denied"

    def __init__(self, permission: str, database: str | None, *, hint: str | None = None) -> None:
        where = f" on {database}" if database else ""
        super().__init__(
            f"permission denied: {permission}{where}", hint=hint, permission=permission, database=database
        )
        self.permission = permission
        self.database = database


class NotFound(HAError):
    code = "not_found"


class DatabaseNotFound(NotFound):
    code = "database_not_found"


class Conflict(HAError):
    code = "conflict"


class PayloadTooLarge(HAError):
    code = "payload_too_large"


class NotReady(HAError):
    code = "not_ready"


# OS errors that mean no room: a full disk, a quota, a file size limit
NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class StorageFull(HAError):
    """The node's disk (or the database's size limit) has no room: what failed wrote nothing, and retrying
    helps only once space is freed. A condition of the node, not of the request."""

    code = "disk_full"


class Busy(HAError):
    """The database stayed locked longer than the busy timeout; retrying is safe."""

    code = "busy"


class NatsServerError(HAError):
    """The embedded nats-server could not be started or died."""

    code = "nats_server_error"
