"""Requests one node makes of another (heartbeats, questions about the writer, forwarded PostgreSQL
sessions), signed with a key derived from the cluster secret.

A signature covers the method, the path with its query, the sending node, a timestamp, a nonce and the
body's SHA-256, so it cannot be moved to another request, and a receiver refuses one it has seen (nonces are
remembered as long as a timestamp is accepted) or one too old (clocks may differ by ``MAX_SKEW``). Without a
cluster secret (``--insecure-replication``) nothing can be signed and every node request is accepted, as
everything else on such a cluster is.

Header: ``X-HA-Node-Auth: v1 <key id> <node> <unix ms> <nonce> <mac, base64url>``.

Forwarded PostgreSQL sessions (``server/pgwire/forwarding/``) prove the same way that a node opened them: the
writer sends a random challenge (the 4-byte salt of AuthenticationMD5Password) and the node answers
``v1 <key id> <unix ms> <nonce> <mac>``, the MAC covering the node, the user and database the session acts
for, and the challenge (``sign_session`` / ``SessionVerifier``). The nonce is remembered as for requests, so
an answer seen on the wire cannot be used again, even were the writer to repeat a salt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict

from sqlite_ha.errors import Unauthorized
from sqlite_ha.security.keys import ClusterKeys, MacKey, derive

HEADER = "X-HA-Node-Auth"
MAX_SKEW = 30.0  # seconds a signed request's timestamp may differ from the receiver's clock
_NONCES_MAX = 100_000


class NodeUnauthorized(Unauthorized):
    code = "node_unauthorized"
    scheme = "HA-Node"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _mac(key: MacKey, method: str, target: str, node: str, stamp: str, nonce: str, body: bytes) -> bytes:
    return key.mac(
        b"node-request/v1",
        method.upper().encode(),
        target.encode(),
        node.encode(),
        stamp.encode(),
        nonce.encode(),
        hashlib.sha256(body).digest(),
    )


def sign(keys: ClusterKeys | None, node: str, method: str, target: str, body: bytes = b"") -> dict[str, str]:
    """The header that signs a request to ``target`` (its path and query) from ``node``; none without keys."""
    if keys is None:
        return {}
    key = keys.node_keys[0]
    stamp = str(int(time.time() * 1000))
    nonce = secrets.token_urlsafe(12)
    mac = _b64(_mac(key, method, target, node, stamp, nonce, body))
    return {HEADER: f"v1 {key.key_id} {node} {stamp} {nonce} {mac}"}


class _Nonces:
    """The nonces accepted within the allowed clock skew, so that nothing signed is accepted twice."""

    def __init__(self) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()

    def check(self, stamp: str, nonce: str) -> None:
        """Refuse a stale or future timestamp and a nonce already seen; remember this one."""
        now = time.time()
        if abs(now - int(stamp) / 1000) > MAX_SKEW:
            raise NodeUnauthorized(
                f"the node signature is {abs(now - int(stamp) / 1000):.0f}s old or ahead: clocks differ more "
                f"than {MAX_SKEW:g}s, or the request is replayed"
            )
        while self._seen and (
            len(self._seen) >= _NONCES_MAX or next(iter(self._seen.values())) < now - 2 * MAX_SKEW
        ):
            self._seen.popitem(last=False)
        if nonce in self._seen:
            raise NodeUnauthorized("this node request was already received (a replay)")
        self._seen[nonce] = now


class NodeVerifier:
    """Checks signed node requests; remembers the nonces it accepted so a request cannot be replayed."""

    def __init__(self, keys: ClusterKeys | None) -> None:
        self.keys = keys
        self._seen: OrderedDict[str, float] = OrderedDict()
        self.refused = 0

    def verify(self, header: str | None, method: str, target: str, body: bytes = b"") -> str | None:
        """The node that signed the request; ``NodeUnauthorized`` when the signature is missing, wrong,
        stale or replayed. None when the cluster has no secret (nothing to check against)."""
        if self.keys is None:
            return None
        try:
            return self._verify(header, method, target, body)
        except NodeUnauthorized:
            self.refused += 1
            raise

    def _verify(self, header: str | None, method: str, target: str, body: bytes) -> str:
        if not header:
            raise NodeUnauthorized(
                f"a node request needs the {HEADER} header (signed with the cluster secret)"
            )
        parts = header.split(" ")
        if len(parts) != 6 or parts[0] != "v1":
            raise NodeUnauthorized(f"malformed {HEADER} header")
        _, key_id, node, stamp, nonce, mac = parts
        assert self.keys is not None
        key = next((k for k in self.keys.node_keys if hmac.compare_digest(k.key_id, key_id)), None)
        if key is None:
            raise NodeUnauthorized("signed with a key of another cluster secret")
        if not stamp.isdigit() or not 8 <= len(nonce) <= 64:
            raise NodeUnauthorized(f"malformed {HEADER} header")
        if not hmac.compare_digest(_b64(_mac(key, method, target, node, stamp, nonce, body)), mac):
            raise NodeUnauthorized("the node signature does not match the request")
        now = time.time()
        if abs(now - int(stamp) / 1000) > MAX_SKEW:
            raise NodeUnauthorized(
                f"the node signature is {abs(now - int(stamp) / 1000):.0f}s old or ahead: clocks differ more "
                f"than {MAX_SKEW:g}s, or the request is replayed"
            )
        self._forget(now)
        if nonce in self._seen:
            raise NodeUnauthorized("this node request was already received (a replay)")
        self._seen[nonce] = now
        return node

    def _forget(self, now: float) -> None:
        while self._seen and (
            len(self._seen) >= _NONCES_MAX or next(iter(self._seen.values())) < now - 2 * MAX_SKEW
        ):
            self._seen.popitem(last=False)


# --- forwarded PostgreSQL sessions ----------------------------------------------------------------------


def session_keys(keys: ClusterKeys | None, password: str | None) -> tuple[MacKey, ...]:
    """The keys forwarded PostgreSQL sessions are signed and checked with: the cluster secret's node keys.

    Without a cluster secret (``--insecure-replication``), a key derived from the PostgreSQL superuser's
    password (``--pg-pass``, the same on every node), when that login is enabled (``password`` not None):
    whoever knows that password may do everything on every node anyway, so a forwarded session keyed from it
    grants nothing more. Otherwise none: such a cluster cannot forward PostgreSQL writes.
    """
    if keys is not None:
        return keys.node_keys
    if password is None:
        return ()
    key = derive(password, "pg-forward/v1")
    return (MacKey(key_id=hashlib.sha256(key).hexdigest()[:8], key=key),)


def _session_mac(
    key: MacKey, node: str, user: str, database: str, salt: bytes, stamp: str, nonce: str
) -> bytes:
    return key.mac(
        b"pg-session/v1",
        node.encode(),
        user.encode(),
        database.encode(),
        salt,
        stamp.encode(),
        nonce.encode(),
    )


def sign_session(key: MacKey, node: str, user: str, database: str, salt: bytes) -> str:
    """The answer of ``node`` to the writer's challenge ``salt`` for a session acting as ``user`` on
    ``database``: ``v1 <key id> <unix ms> <nonce> <mac>``."""
    stamp = str(int(time.time() * 1000))
    nonce = secrets.token_urlsafe(12)
    mac = _b64(_session_mac(key, node, user, database, salt, stamp, nonce))
    return f"v1 {key.key_id} {stamp} {nonce} {mac}"


class SessionVerifier:
    """Checks the answers of nodes opening forwarded PostgreSQL sessions; each answer is accepted once."""

    def __init__(self, keys: tuple[MacKey, ...]) -> None:
        self.keys = keys
        self._nonces = _Nonces()
        self.refused = 0

    def verify(self, answer: str, node: str, user: str, database: str, salt: bytes) -> None:
        """``NodeUnauthorized`` unless ``answer`` is a fresh, unseen proof for exactly these values."""
        try:
            self._verify(answer, node, user, database, salt)
        except NodeUnauthorized:
            self.refused += 1
            raise

    def _verify(self, answer: str, node: str, user: str, database: str, salt: bytes) -> None:
        if not self.keys:
            raise NodeUnauthorized(
                "this node accepts no forwarded sessions: it has no cluster secret and no --pg-pass login"
            )
        parts = answer.split(" ")
        if len(parts) != 5 or parts[0] != "v1":
            raise NodeUnauthorized("malformed answer to the node challenge")
        _, key_id, stamp, nonce, mac = parts
        key = next((k for k in self.keys if hmac.compare_digest(k.key_id, key_id)), None)
        if key is None:
            raise NodeUnauthorized("signed with a key of another cluster secret")
        if not stamp.isdigit() or not 8 <= len(nonce) <= 64:
            raise NodeUnauthorized("malformed answer to the node challenge")
        if not hmac.compare_digest(_b64(_session_mac(key, node, user, database, salt, stamp, nonce)), mac):
            raise NodeUnauthorized("the node's answer does not match the challenge")
        self._nonces.check(stamp, nonce)
