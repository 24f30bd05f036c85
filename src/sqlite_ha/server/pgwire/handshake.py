"""The start of a PostgreSQL connection, up to its first ReadyForQuery: TLS or not, a CancelRequest for
another session, password authentication, and the database the session starts on.

It runs once per connection, before the session answers anything else, so it is apart from the message
loop in ``session.py``. ``wire/auth.py`` holds the password methods' checks, sans-IO; this holds the messages
around them. Every failure here is fatal (the connection ends), and a wrong user gets the same 28P01 as a
wrong password, so a client learns nothing about which it was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, NoReturn

from sqlite_ha import __version__
from sqlite_ha.db.authorizer import Permission
from sqlite_ha.security.passwords import ScramVerifier
from sqlite_ha.served import ServedDatabase
from sqlite_ha.server.pgwire.errors import PgError
from sqlite_ha.server.pgwire.forwarding import writer as forwarded
from sqlite_ha.server.pgwire.forwarding.upstream import FORWARDED_BY
from sqlite_ha.server.pgwire.wire import codec
from sqlite_ha.server.pgwire.wire.auth import (
    AuthFailed,
    ScramServer,
    check_cleartext,
    check_cleartext_verifier,
    check_md5,
    md5_salt,
    mock_verifier,
)

if TYPE_CHECKING:
    from sqlite_ha.server.pgwire.settings import PgNode
    from sqlite_ha.server.pgwire.state import SessionState

log = logging.getLogger(__name__)

SERVER_VERSION = "15.0"


async def startup(session: SessionState, cancel_registry: Mapping[tuple[int, int], SessionState]) -> bool:
    while True:
        msg = await session.next_message(timeout=30.0)
        if msg is None:
            return False
        if isinstance(msg, codec.SSLRequest):
            if session.tls is None:
                session.send(codec.ssl_refused())
                await session.flush()
                continue
            if session.parser.buffered:  # bytes sent before the handshake must not pass as encrypted
                raise PgError("08P01", "unencrypted data after the SSL request", fatal=True)
            session.send(codec.ssl_accepted())
            await session.flush()
            await session.conn.start_tls(session.tls)
            continue
        if isinstance(msg, codec.GSSENCRequest):
            session.send(codec.ssl_refused())
            await session.flush()
            continue
        if isinstance(msg, codec.CancelRequest):
            target = cancel_registry.get((msg.pid, msg.secret))
            if target is not None:
                target.cancel()
            return False
        if isinstance(msg, codec.StartupMessage):
            if session.refusal is not None:  # over the connection cap, told after TLS, as PostgreSQL does
                raise session.refusal
            refuse_plaintext(session)
            await authenticate(session, msg.params)
            return True
        raise PgError("08P01", f"unexpected {type(msg).__name__} before the startup message", fatal=True)


def refuse_plaintext(session: SessionState) -> None:
    """A session that did not start TLS ends here, before any password is asked, when the node requires
    TLS (``--pg-tls require``) or would otherwise ask for the password in clear (``--pg-auth password``
    without ``--pg-allow-cleartext``). 28000, as PostgreSQL answers a connection no ``hostssl`` line
    lets in."""
    if session.conn.encrypted:
        return
    settings = session.settings
    if settings.tls_required:
        log.info("PostgreSQL client refused: it did not start TLS (--pg-tls require)")
        raise PgError(
            "28000",
            "this server requires TLS (sslmode=require)",
            hint="connect with sslmode=require, verify-ca or verify-full",
            fatal=True,
        )
    if settings.auth == "password" and not settings.allow_cleartext:
        log.info("PostgreSQL client refused: cleartext password authentication without TLS")
        raise PgError(
            "28000",
            "this server refuses cleartext password authentication on a connection without TLS",
            hint="connect with sslmode=require, so the password does not cross the network in clear",
            fatal=True,
        )


async def authenticate(session: SessionState, params: dict[str, str]) -> None:
    user = params.get("user", "")
    session.user = user
    session.params = {"application_name": params.get("application_name", "")}
    settings = session.settings
    account = settings.users.get(user) if settings.users is not None else None
    by = params.get(FORWARDED_BY)
    if by is not None:  # another node, running its client's writes here: the node logs in, not the user
        await forwarded.login(session, params, by)
    elif account is not None and account.verifier is not None:
        await _login_with_verifier(session, user, account.verifier)
        session.principal = account
    elif settings.superuser:
        await _login_as_superuser(session, user)
    else:  # no such user: the same exchange, failing at the end, so a client learns nothing
        await _login_with_verifier(session, user, mock_verifier(user))
        _auth_failed(user)
    session.db = _startup_database(session, params.get("database") or user)
    check_connect(session, session.db, fatal=True)
    session.send(codec.authentication_ok())
    for name, value in (
        ("server_version", SERVER_VERSION),
        ("server_encoding", "UTF8"),
        ("client_encoding", "UTF8"),
        ("DateStyle", "ISO, MDY"),
        ("IntervalStyle", "postgres"),
        ("TimeZone", "UTC"),
        ("integer_datetimes", "on"),
        ("standard_conforming_strings", "on"),
        ("is_superuser", "off"),
        ("session_authorization", user),
        ("application_name", session.params["application_name"]),
        ("ha.node_version", __version__),
    ):
        session.send(codec.parameter_status(name, value))
    session.send(codec.backend_key_data(session.pid, session.secret))
    session.send(codec.ready_for_query("I"))


async def _login_as_superuser(session: SessionState, user: str) -> None:
    """``--pg-user``/``--pg-pass``: every permission, by the configured method."""
    method = session.settings.auth
    if method == "scram-sha-256":
        server_final = await _scram(session, user, ScramServer(session.settings.password))
        _check_user(session, user)
        session.send(codec.authentication_sasl_final(server_final))
    elif method == "md5":
        salt = md5_salt()
        session.send(codec.authentication_md5(salt))
        data = await session.password_message()
        try:
            check_md5(session.settings.user, session.settings.password, salt, data)
        except AuthFailed:
            _auth_failed(user)
        _check_user(session, user)
    else:
        session.send(codec.authentication_cleartext())
        data = await session.password_message()
        try:
            check_cleartext(session.settings.password, data)
        except AuthFailed:
            _auth_failed(user)
        _check_user(session, user)


async def _login_with_verifier(session: SessionState, user: str, verifier: ScramVerifier) -> None:
    """A user of the auth file. SCRAM for the scram-sha-256 and md5 methods alike: an MD5 exchange cannot
    be checked against a SCRAM verifier, and PostgreSQL too answers md5 with SCRAM for such a user.
    The cleartext method checks the password against the verifier."""
    if session.settings.auth == "password":
        session.send(codec.authentication_cleartext())
        data = await session.password_message()
        try:
            await asyncio.to_thread(check_cleartext_verifier, verifier, data)
        except AuthFailed:
            _auth_failed(user)
        return
    server_final = await _scram(session, user, ScramServer(verifier=verifier))
    session.send(codec.authentication_sasl_final(server_final))


async def _scram(session: SessionState, user: str, scram: ScramServer) -> bytes:
    """The SASL exchange up to the client's proof; the server's final message once the proof holds."""
    session.send(codec.authentication_sasl(scram.mechanisms()))
    first = await session.password_message()
    try:
        session.send(codec.authentication_sasl_continue(scram.initial(first)))
        final = await session.password_message()
        return scram.final(final)
    except AuthFailed:
        _auth_failed(user)


def check_connect(session: SessionState, db: ServedDatabase, *, fatal: bool) -> None:
    """A user of the auth file with no permission on ``db`` may not use it at all (PostgreSQL's CONNECT)."""
    principal = session.principal
    if principal is not None and principal.grant(db.id) & Permission.SQL == Permission.NONE:
        raise PgError(
            "42501",
            f'permission denied for database "{db.id}"',
            detail=f'User "{principal.name}" has no permission on it (read, write or ddl).',
            fatal=fatal,
        )


def _check_user(session: SessionState, user: str) -> None:
    if user != session.settings.user:
        _auth_failed(user)


def _auth_failed(user: str) -> NoReturn:
    log.warning("PostgreSQL client: password authentication failed for user %r", user)
    raise PgError("28P01", f'password authentication failed for user "{user}"', fatal=True)


def _startup_database(session: SessionState, name: str) -> ServedDatabase:
    """The database named at startup; clients default to the user's name, which means the default."""
    found = find_database(session.node, name)
    if found is not None:
        return found
    if name in (session.user, "postgres", "template1", ""):
        return session.node.database(None)
    raise PgError("3D000", f'database "{name}" does not exist', hint=databases_hint(session.node), fatal=True)


def find_database(node: PgNode, name: str) -> ServedDatabase | None:
    for ident in node.database_ids():
        if name in (ident, ident.rsplit(".", 1)[0]):
            return node.database(ident)
    return None


def databases_hint(node: PgNode) -> str:
    return "this node serves: " + ", ".join(node.database_ids())
