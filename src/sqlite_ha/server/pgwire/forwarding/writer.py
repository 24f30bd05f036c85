"""The writer's side of forwarded PostgreSQL sessions: who may open one, and what such a session does more.

A node that is not the writer runs its clients' writes here, over a session it opens with the startup
parameter ``ha.forwarded_by=<its name>`` (``upstream.py``). That node already authenticated its client, so
the writer does not ask for the user's password (it could not: with SCRAM the node never saw it); it asks the
node to prove it is one of the cluster's nodes. The writer sends a random challenge as the salt of
AuthenticationMD5Password, and the node answers with a MAC over (node, user, database, challenge, time,
nonce) keyed from the cluster secret (``security/node_auth``). A wrong, stale or replayed answer is refused
with 28P01 like a wrong password; a client that sets ``ha.forwarded_by`` itself cannot answer. The session
then acts as ``user``, with that user's permissions on this node.

Such a session differs from a client's in two ways:

- after each write that reached the log it reports the write's position (ParameterStatus ``ha.seq``, which a
  client's session reports after COMMIT only), so that the forwarding node can make its client's next local
  read wait for it (read-your-writes);
- ``SET ha.read_seq = N`` before a block's first write says the block already read, on the forwarding node,
  the database as of position N: when the write takes the writer, the block fails with 40001 if the log has
  moved past N since, as what the block read may be stale (no lost update through a follower's reads).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlite_ha.errors import HAError
from sqlite_ha.security.node_auth import NodeUnauthorized
from sqlite_ha.served import ServedDatabase
from sqlite_ha.server.pgwire.errors import PgError
from sqlite_ha.server.pgwire.wire import codec
from sqlite_ha.server.pgwire.wire.auth import md5_salt

if TYPE_CHECKING:
    from sqlite_ha.server.pgwire.state import SessionState

log = logging.getLogger(__name__)


async def login(session: SessionState, params: dict[str, str], by: str) -> None:
    """Authenticate the node ``by`` that opened this session for its client (see the module's docstring)."""

    links = session.links
    user = params.get("user", "")
    database = params.get("database") or user
    salt = md5_salt()
    session.send(codec.authentication_md5(salt))
    data = await session.password_message()
    try:
        links.verifier.verify(data.rstrip(b"\0").decode("ascii", "replace"), by, user, database, salt)
    except NodeUnauthorized as e:
        log.warning("PostgreSQL session claiming to be forwarded by %r refused: %s", by, e.message)
        raise PgError("28P01", f'password authentication failed for user "{user}"', fatal=True) from e
    mode = session.node.writer
    if not mode.is_writer():
        writer = mode.current()
        raise PgError(
            "57P03",
            f"node {session.node.name} is not the writer (writer mode {mode.name})",
            hint=f"the writer is {writer.url}" if writer is not None and writer.url else None,
            fatal=True,
        )
    settings = session.settings
    account = settings.users.get(user) if settings.users is not None else None
    if account is not None:
        session.principal = account
    elif user != settings.user or not settings.superuser:
        raise PgError("28000", f'role "{user}" does not exist on the writer {session.node.name}', fatal=True)
    session.forwarded_by = by
    links.accepted += 1


def report_seq(session: SessionState, seq: int) -> None:
    """After a write in a forwarded session: its position, for the forwarding node's read-your-writes."""
    session.send(codec.parameter_status("ha.seq", str(seq)))


async def check_read_seq(session: SessionState, db: ServedDatabase) -> None:
    """The block's first write has just taken the writer: refuse it (40001) if the database changed in the
    log after the position its earlier reads saw on the forwarding node."""
    seen, session.read_seq = session.read_seq, None
    if seen is None:
        return
    try:
        last = await db.log_last_seq()
    except HAError as e:
        _abort(session)
        raise PgError.of(e) from e
    if last is not None and last > seen:
        _abort(session)
        raise PgError(
            "40001",
            "could not serialize access due to concurrent update",
            detail=f"This transaction read {db.id} on node {session.forwarded_by} as of position {seen}; "
            f"the log has moved on to {last} since, so what it read may be stale.",
            hint="retry the transaction",
        )


def _abort(session: SessionState) -> None:
    tx = session.block.abandon()
    if tx is not None:
        tx.rollback()
