"""The keys a node derives from the cluster secret.

One secret, shared by every node of a cluster, is all an operator handles. Each use gets its own key derived
from it (HMAC-SHA256 of a label under the secret, as HKDF's expand step does with one block), so that a key
seen by one party (the NATS password, which the NATS server holds) says nothing about another (the MAC key
of change sets). During a rotation two secrets are configured: the first is used for what this node signs
and connects with, both are accepted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

NATS_USER = "sqlite-ha"
MIN_SECRET_LENGTH = 16  # characters; a generated secret has 43
_SEPARATORS = re.compile(r"[,\r\n]+")


def generate_secret() -> str:
    """A new random cluster secret: 256 bits, URL-safe, one word (easy to paste into an env variable)."""
    return secrets.token_urlsafe(32)


def split_secrets(text: str) -> tuple[str, ...]:
    """The secrets in a flag, variable or file: one, or two during a rotation (comma or newline)."""
    return tuple(part.strip() for part in _SEPARATORS.split(text) if part.strip())


def derive(secret: str, label: str) -> bytes:
    return hmac.new(secret.encode(), b"sqlite-ha/" + label.encode(), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class MacKey:
    key_id: str  # 8 hex digits naming the key, so a receiver picks the right one during a rotation
    key: bytes
    # The HMAC state after the key: copied for each message rather than keyed again (every change set a node
    # publishes or receives is MACed; this saves a third of the cost of a small one).
    _keyed: hmac.HMAC = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keyed", hmac.new(self.key, digestmod=hashlib.sha256))

    def mac(self, *parts: bytes) -> bytes:
        """HMAC-SHA256 over the parts, each length-prefixed so that no two splits of the bytes collide."""
        h = self._keyed.copy()
        for part in parts:
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
        return h.digest()


class ClusterKeys:
    """The cluster secret(s) and the keys derived from them. Never printed: ``repr`` shows key ids only."""

    def __init__(self, cluster_secrets: Sequence[str]) -> None:
        if not cluster_secrets:
            raise ValueError("no cluster secret")
        if len(cluster_secrets) > 2:
            raise ValueError(
                "at most two cluster secrets (the current one and, during a rotation, the previous)"
            )
        for s in cluster_secrets:
            if len(s) < MIN_SECRET_LENGTH:
                raise ValueError(f"a cluster secret must be at least {MIN_SECRET_LENGTH} characters long")
        self._secrets = tuple(cluster_secrets)
        self.mac_keys = tuple(_mac_key(s) for s in self._secrets)
        # Node-to-node requests (heartbeats, forwarded sessions): a key of their own, so that a signature
        # made for one use can never pass for a change set's MAC.
        self.node_keys = tuple(_mac_key(s, "node/v1") for s in self._secrets)

    @classmethod
    def from_text(cls, text: str) -> ClusterKeys:
        return cls(split_secrets(text))

    @property
    def signing(self) -> MacKey:
        """The key this node signs with: the first secret's."""
        return self.mac_keys[0]

    def verifying(self, key_id: str) -> MacKey | None:
        """The key a message names, if it is one of ours."""
        for k in self.mac_keys:
            if hmac.compare_digest(k.key_id, key_id):
                return k
        return None

    def nats_passwords(self) -> tuple[str, ...]:
        """The NATS password of each secret (the first is the one this node connects with)."""
        return tuple(_nats_password(s) for s in self._secrets)

    @property
    def nats_password(self) -> str:
        return _nats_password(self._secrets[0])

    def __repr__(self) -> str:
        return f"ClusterKeys({', '.join(k.key_id for k in self.mac_keys)})"


def _mac_key(secret: str, label: str = "mac/v1") -> MacKey:
    key = derive(secret, label)
    return MacKey(key_id=hashlib.sha256(key).hexdigest()[:8], key=key)


def _nats_password(secret: str) -> str:
    return base64.urlsafe_b64encode(derive(secret, "nats/v1")).decode().rstrip("=")
