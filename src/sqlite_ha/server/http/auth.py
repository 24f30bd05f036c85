"""Who sent an HTTP request, and whether they may: one check for the fast path and the aiohttp routes.

Credentials come in the ``Authorization`` header: ``Basic`` (a user of ``--auth-file`` and its password),
``Bearer <token>`` (``--token``, or a token of a user of the auth file), or the bare token as the ``ha``
command sends it. ``--token`` is a user with every permission on every database. Without either setting
every request is allowed, as before.
"""

from __future__ import annotations

import base64
import binascii
import hmac

from sqlite_ha.db.authorizer import Permission
from sqlite_ha.errors import PermissionDenied, Unauthorized
from sqlite_ha.security.users import ALL_DATABASES, User, Users, superuser

TOKEN_USER = "token"  # the name --token's user has in errors and logs
_TOKEN_ONLY = "missing or wrong token in the Authorization header"
_WITH_USERS = (
    "missing or wrong credentials in the Authorization header (Basic user:password, or Bearer token)"
)


class HttpAuth:
    """The login rules of one HTTP API; ``enabled`` is False when it has no token and no users."""

    def __init__(self, token: str, users: Users | None) -> None:
        self.token = token.encode()
        self.users = users
        self.enabled = bool(token) or users is not None
        self._token_user = superuser(TOKEN_USER)

    async def principal(self, header: str) -> User | None:
        """The user of an Authorization header; None when no login is configured. Raises Unauthorized."""
        if not self.enabled:
            return None
        users = self.users
        if users is not None:
            found = users.remembered(header)  # the common case: the same client's credentials again
            if found is not None:
                return found
        scheme, _, rest = header.partition(" ")
        if users is not None and scheme.lower() == "basic":
            name, password = _basic(rest)
            user = await users.check_basic(name, password, header)
            if user is not None:
                return user
            raise self._unauthorized()
        given = rest if scheme.lower() == "bearer" else header
        given = given.strip()
        if self.token and hmac.compare_digest(given.encode(), self.token):
            return self._token_user
        if self.users is not None and given:
            user = self.users.check_token(given)
            if user is not None:
                return user
        raise self._unauthorized()

    def _unauthorized(self) -> Unauthorized:
        if self.users is None:
            return Unauthorized(_TOKEN_ONLY)
        err = Unauthorized(_WITH_USERS)
        err.scheme = "Basic"
        return err


def _basic(value: str) -> tuple[str, str]:
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return "", ""
    name, _, password = decoded.partition(":")
    return name, password


def require(user: User | None, permission: Permission, database: str | None) -> None:
    """Raise PermissionDenied unless ``user`` (None: no login configured) has ``permission`` on
    ``database`` (None: on every database, for the node-wide routes)."""
    if user is None:
        return
    if permission not in user.grant(database or ALL_DATABASES):
        name = permission.name.lower() if permission.name else str(permission)
        raise PermissionDenied(name, database or ALL_DATABASES)


def sql_grant(user: User | None, database: str) -> Permission | None:
    """The grant a query runs with; PermissionDenied when the user may run nothing at all there."""
    if user is None:
        return None
    grant = user.sql_grant(database)
    if grant == Permission.NONE:
        raise PermissionDenied("read", database)
    return grant
