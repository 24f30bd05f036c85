"""Stored passwords: PostgreSQL's SCRAM-SHA-256 verifier, one salted hash for every way a user logs in.

PostgreSQL stores ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (RFC 5802 / RFC 7677) and
checks a cleartext password against it by running the same PBKDF2-SHA256 (``scram_verify_plain_password``).
This module does the same, so one stored string lets a user log in over HTTP Basic (cleartext checked here)
and over the PostgreSQL wire's SCRAM exchange (which needs StoredKey and ServerKey, never the password). A
hash such as argon2 or bcrypt could serve only the first: SCRAM needs PBKDF2's keys.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass

PREFIX = "SCRAM-SHA-256"
DEFAULT_ITERATIONS = 4096  # PostgreSQL's scram_iterations default
MIN_ITERATIONS = 1000  # below this a stolen auth file is too cheap to brute-force
SALT_BYTES = 16


def saslprep(password: str) -> str:
    """RFC 4013 SASLprep as PostgreSQL applies it to passwords: a password it rejects is used as is.

    Clients (libpq, the JDBC driver, asyncpg) prepare the password the same way before hashing, so a
    non-ASCII password only authenticates if both sides agree on this.
    """
    if password.isascii():
        return password
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c)
    )
    text = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    if not text or any(check(c) for c in text for check in prohibited):
        return password
    if any(stringprep.in_table_d1(c) for c in text) and (
        any(stringprep.in_table_d2(c) for c in text)
        or not stringprep.in_table_d1(text[0])
        or not stringprep.in_table_d1(text[-1])
    ):
        return password
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class ScramVerifier:
    """What PostgreSQL stores in pg_authid instead of the password."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def __str__(self) -> str:
        b64 = base64.b64encode
        return (
            f"{PREFIX}${self.iterations}:{b64(self.salt).decode()}"
            f"${b64(self.stored_key).decode()}:{b64(self.server_key).decode()}"
        )


def derive_verifier(password: str, salt: bytes, iterations: int) -> ScramVerifier:
    """The verifier of ``password`` with this salt: one PBKDF2-SHA256 run, milliseconds."""
    salted = hashlib.pbkdf2_hmac("sha256", saslprep(password).encode("utf-8"), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return ScramVerifier(
        salt=salt,
        iterations=iterations,
        stored_key=hashlib.sha256(client_key).digest(),
        server_key=hmac.digest(salted, b"Server Key", "sha256"),
    )


@functools.lru_cache(maxsize=1024)
def scram_verifier(password: str, salt: bytes, iterations: int) -> ScramVerifier:
    """Cached: PBKDF2 with thousands of iterations costs milliseconds, too much to pay per connection."""
    return derive_verifier(password, salt, iterations)


def hash_password(password: str, *, iterations: int = DEFAULT_ITERATIONS) -> str:
    """A new verifier for ``password`` with a random salt, in PostgreSQL's text form."""
    if not password:
        raise ValueError("the password is empty")
    if iterations < MIN_ITERATIONS:
        raise ValueError(f"iterations must be at least {MIN_ITERATIONS}, not {iterations}")
    return str(derive_verifier(password, secrets.token_bytes(SALT_BYTES), iterations))


def parse_verifier(text: str) -> ScramVerifier:
    """Read ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>``; ValueError says what is wrong."""
    parts = text.split("$")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise ValueError(f"expected {PREFIX}$<iterations>:<salt>$<StoredKey>:<ServerKey>")
    iterations_text, sep1, salt_text = parts[1].partition(":")
    stored_text, sep2, server_text = parts[2].partition(":")
    if not sep1 or not sep2:
        raise ValueError(f"expected {PREFIX}$<iterations>:<salt>$<StoredKey>:<ServerKey>")
    if not iterations_text.isdigit() or int(iterations_text) < 1:
        raise ValueError(f"the iteration count {iterations_text!r} is not a positive integer")
    try:
        salt = base64.b64decode(salt_text, validate=True)
        stored_key = base64.b64decode(stored_text, validate=True)
        server_key = base64.b64decode(server_text, validate=True)
    except binascii.Error:
        raise ValueError("the salt and keys must be base64") from None
    if not salt:
        raise ValueError("the salt is empty")
    if len(stored_key) != 32 or len(server_key) != 32:
        raise ValueError("StoredKey and ServerKey must be 32 bytes each (SHA-256)")
    return ScramVerifier(
        salt=salt, iterations=int(iterations_text), stored_key=stored_key, server_key=server_key
    )


def verify_password(verifier: ScramVerifier, password: str) -> bool:
    """Whether ``password`` is the one behind ``verifier`` (PostgreSQL's scram_verify_plain_password).

    Costs one PBKDF2 run (milliseconds): callers that check a password per request cache the outcome."""
    salted = hashlib.pbkdf2_hmac(
        "sha256", saslprep(password).encode("utf-8"), verifier.salt, verifier.iterations
    )
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    return hmac.compare_digest(server_key, verifier.server_key)
