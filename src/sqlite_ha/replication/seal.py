"""The MAC on every message of the replication log: sealing what a node publishes, opening what it receives.

Whoever reaches NATS can publish into the log; the MAC is what makes a node apply only what a node of its
cluster wrote. A sealed message is::

    #sig v1 <key_id> <mac>\\n<payload>

the 5 bytes ``#sig `` (neither a change set, a JSON object, nor a chunk, ``#chunk …``, starts so), the
format version, the 8 hex digits naming the key (derived from the cluster secret: see ``ClusterKeys``), the
HMAC-SHA256 in URL-safe base64 without padding, a newline, then the payload exactly as it would travel
unsealed. The MAC covers the format version, the kind of message, the database the message is for and the
payload bytes, each length-prefixed: a sealed change set of one database does not verify on another
database's subject, nor as another kind of message.

Sealing happens when a message is published (``outbound.publish_changeset``, every chunk on its own), so the
outbox keeps plain change sets and a node whose secret was rotated signs what it publishes again with the new
key. Opening happens on receipt before anything else reads the bytes (``replicated_database._incoming``).

A node without keys (``--insecure-replication``, or no secret configured) publishes plain messages and strips
the seal of a sealed one without checking it: it trusts its channel anyway, and a cluster can thus be moved
to sealed messages one node at a time. A node with keys refuses anything it cannot verify.

Sans-IO: no log, no network, no database here.
"""

from __future__ import annotations

import base64
import hmac
import re

from sqlite_ha.errors import HAError
from sqlite_ha.security.keys import ClusterKeys, MacKey

MAGIC = b"#sig "
VERSION = b"v1"
MAC_TEXT_LENGTH = 43  # 32 bytes in URL-safe base64, unpadded
KEY_ID_LENGTH = 8
# The longest first line: "#sig v1 <8> <43>\n"
OVERHEAD = len(MAGIC) + len(VERSION) + 1 + KEY_ID_LENGTH + 1 + MAC_TEXT_LENGTH + 1
_KEY_ID = re.compile(rb"[0-9a-f]{8}")

CHANGESET = b"changeset"  # a change set or a chunk of one, in the replication stream


class Unauthenticated(HAError):
    """A message that does not carry a valid MAC of this cluster: never applied, never installed."""

    code = "unauthenticated"


def _mac_text(key: MacKey, kind: bytes, database: str, payload: bytes) -> bytes:
    mac = key.mac(b"sqlite-ha/seal/" + VERSION, kind, database.encode(), payload)
    return base64.urlsafe_b64encode(mac).rstrip(b"=")


def seal(key: MacKey, database: str, payload: bytes, *, kind: bytes = CHANGESET) -> bytes:
    """The payload with its MAC line in front."""
    line = b"".join(
        (MAGIC, VERSION, b" ", key.key_id.encode(), b" ", _mac_text(key, kind, database, payload))
    )
    return b"".join((line, b"\n", payload))


def is_sealed(message: bytes) -> bool:
    return message[: len(MAGIC)] == MAGIC


def open_sealed(keys: ClusterKeys | None, database: str, message: bytes, *, kind: bytes = CHANGESET) -> bytes:
    """The payload of a message, checked: ``Unauthenticated`` (with why) when it is not sealed by a key of
    ``keys`` for ``database``. Without keys, a sealed message's seal is stripped unchecked and a plain one
    passes as it is."""
    if not is_sealed(message):
        if keys is None:
            return message
        raise Unauthenticated("the message carries no MAC (unsigned)")
    end = message.find(b"\n", 0, OVERHEAD + 16)
    if end < 0:
        raise Unauthenticated("the message's MAC line is malformed")
    fields = message[len(MAGIC) : end].split(b" ")
    payload = message[end + 1 :]
    if keys is None:
        return payload
    if len(fields) != 3:
        raise Unauthenticated("the message's MAC line is malformed")
    version, key_id, mac_text = fields
    if version != VERSION:
        raise Unauthenticated("the message's MAC format version is not supported")
    if not _KEY_ID.fullmatch(key_id):
        raise Unauthenticated("the message's MAC line is malformed")
    key = keys.verifying(key_id.decode())
    if key is None:
        raise Unauthenticated(
            f"the message is signed with key {key_id.decode()}, not one of this node's cluster secret(s)"
        )
    # compared as text: one MAC has exactly one encoding (base64 decoders accept variants of the last digit)
    if not hmac.compare_digest(mac_text, _mac_text(key, kind, database, payload)):
        raise Unauthenticated(
            f"the message's MAC does not match its bytes (altered, forged, or sealed for another database "
            f"than {database!r})"
        )
    return payload


class Sealer:
    """A node's sealing: with keys it seals and verifies, without it publishes plain and strips."""

    def __init__(self, keys: ClusterKeys | None) -> None:
        self.keys = keys

    @property
    def overhead(self) -> int:
        """Bytes a sealed message has more than its payload (for the log's max payload)."""
        return OVERHEAD if self.keys is not None else 0

    def seal(self, database: str, payload: bytes, *, kind: bytes = CHANGESET) -> bytes:
        if self.keys is None:
            return payload
        return seal(self.keys.signing, database, payload, kind=kind)

    def open(self, database: str, message: bytes, *, kind: bytes = CHANGESET) -> bytes:
        return open_sealed(self.keys, database, message, kind=kind)


PLAIN = Sealer(None)
