"""Server side of PostgreSQL's password methods (cleartext, MD5, SCRAM-SHA-256), sans-IO.

Each check takes the body of the client's 'p' message and either returns or raises. The split between the
two errors follows PostgreSQL: a body that does not parse is a ``ProtocolError`` (08P01, "malformed SCRAM
message"); a body that parses but fails a check (wrong password or proof, tampered nonce, channel binding or
an option we do not offer) is ``AuthFailed``, which the session reports as 28P01 without the reason, so a
client learns nothing about why. Both end the connection.

SCRAM follows RFC 5802 and RFC 7677 the way PostgreSQL applies them: the user name inside the SCRAM
exchange is ignored (the StartupMessage's ``user`` counts), there is no -PLUS variant, and optional
extensions are ignored while the mandatory-extension attribute ``m=`` fails.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
import struct

from sqlite_ha.security.passwords import (
    DEFAULT_ITERATIONS,
    ScramVerifier,
    saslprep,
    scram_verifier,
    verify_password,
)
from sqlite_ha.server.pgwire.wire.codec import ProtocolError
from sqlite_ha.server.pgwire.wire.protocol import BodyReader

SCRAM_SHA_256 = "SCRAM-SHA-256"
SCRAM_SHA_256_PLUS = "SCRAM-SHA-256-PLUS"
__all__ = ["DEFAULT_ITERATIONS", "ScramVerifier", "saslprep", "scram_verifier"]  # kept importable from here

# One salt per process, so the PBKDF2 run behind a password's verifier happens once per node, as it
# happens once per password change in PostgreSQL; a client sees the same salt on every connection, as there.
_PROCESS_SALT = secrets.token_bytes(16)
_I32 = struct.Struct("!i")


class AuthFailed(Exception):
    """The credentials were wrong; the message is for the server log, never for the client."""


def _password_from_message(data: bytes) -> bytes:
    """The body of a PasswordMessage: one NUL-terminated string, nothing after it."""
    end = data.find(b"\0")
    if end < 0 or end != len(data) - 1:
        problem = "is not NUL-terminated" if end < 0 else f"has {len(data) - end - 1} bytes after its NUL"
        raise ProtocolError(f"PasswordMessage: the password {problem}", fatal=False)
    if end == 0:
        raise AuthFailed("the client sent an empty password")
    return data[:end]


def check_cleartext(expected_password: str, data: bytes) -> None:
    got = _password_from_message(data)
    if not hmac.compare_digest(got, expected_password.encode("utf-8")):
        raise AuthFailed("cleartext password does not match")


def check_cleartext_verifier(verifier: ScramVerifier, data: bytes) -> None:
    """A cleartext password checked against a stored verifier (PostgreSQL's scram_verify_plain_password):
    one PBKDF2 run, so run it off the event loop."""
    got = _password_from_message(data)
    try:
        password = got.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthFailed("the password is not valid UTF-8") from None
    if not verify_password(verifier, password):
        raise AuthFailed("cleartext password does not match the stored verifier")


def mock_verifier(user: str) -> ScramVerifier:
    """For a user that does not exist: the exchange goes on as for a real one, with a salt that is the same
    on every attempt for that name (as PostgreSQL's scram_mock_salt), and fails at the proof."""
    salt = hashlib.sha256(_PROCESS_SALT + user.encode("utf-8")).digest()[:16]
    return ScramVerifier(
        salt=salt,
        iterations=DEFAULT_ITERATIONS,
        stored_key=secrets.token_bytes(32),
        server_key=secrets.token_bytes(32),
    )


def md5_salt() -> bytes:
    return secrets.token_bytes(4)


def check_md5(user: str, password: str, salt: bytes, data: bytes) -> None:
    """The client sends "md5" + hex(md5(hex(md5(password + user)) + salt))."""
    got = _password_from_message(data)
    inner = hashlib.md5((password + user).encode("utf-8")).hexdigest().encode("ascii")
    expected = b"md5" + hashlib.md5(inner + salt).hexdigest().encode("ascii")
    if not hmac.compare_digest(got, expected):
        raise AuthFailed("MD5 password hash does not match")


# --- SCRAM-SHA-256 ---------------------------------------------------------------------------------------


def _malformed(problem: str) -> ProtocolError:
    return ProtocolError(f"malformed SCRAM message: {problem}", fatal=False)


def _attribute(part: str, name: str) -> str:
    if not part.startswith(f"{name}="):
        raise _malformed(f"expected attribute {name!r}, found {part[:2]!r}")
    return part[2:]


def _check_nonce(nonce: str, whose: str) -> None:
    if not nonce or any(not 0x21 <= ord(c) <= 0x7E or c == "," for c in nonce):
        raise _malformed(f"{whose} nonce must be non-empty printable ASCII without ','")


def _check_extension(part: str) -> None:
    if len(part) < 2 or not part[0].isascii() or not part[0].isalpha() or part[1] != "=":
        raise _malformed(f"expected an attribute (letter '=' value), found {part!r}")


def _b64decode(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise _malformed(f"{what} is not valid base64") from exc


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _malformed(f"not valid UTF-8 ({exc.reason} at byte {exc.start})") from exc


class ScramState(enum.Enum):
    EXPECT_CLIENT_FIRST = "expect client-first"
    EXPECT_CLIENT_FINAL = "expect client-final"
    DONE = "done"
    FAILED = "failed"


class ScramServer:
    """One SCRAM-SHA-256 exchange: ``initial`` answers the client-first message, ``final`` the client-final.

    ``salt`` and ``nonce`` (the server's part) exist for deterministic tests; by default the salt is the
    process's and the nonce 18 random bytes in base64, as in PostgreSQL. Any error leaves the exchange FAILED.
    A user of the auth file comes with a stored ``verifier`` instead of a password (then ``password`` is
    ignored): the exchange needs only its keys.
    """

    def __init__(
        self,
        password: str = "",
        *,
        salt: bytes | None = None,
        iterations: int = DEFAULT_ITERATIONS,
        nonce: str | None = None,
        verifier: ScramVerifier | None = None,
    ) -> None:
        if iterations < 1:
            raise ValueError(f"SCRAM iterations must be at least 1, not {iterations}")
        if nonce is not None:
            _check_nonce(nonce, "server")
        self.verifier = verifier or scram_verifier(
            password, _PROCESS_SALT if salt is None else salt, iterations
        )
        self.state = ScramState.EXPECT_CLIENT_FIRST
        self._server_nonce = (
            nonce if nonce is not None else base64.b64encode(secrets.token_bytes(18)).decode()
        )
        self._nonce = ""  # client nonce + server nonce, once known
        self._gs2_header = b""
        self._client_first_bare = ""
        self._server_first = ""

    @staticmethod
    def mechanisms() -> list[str]:
        """No -PLUS variant: channel binding would need the TLS layer, which the sans-IO core does not see."""
        return [SCRAM_SHA_256]

    def initial(self, data: bytes) -> bytes:
        """Take a SASLInitialResponse body and return the server-first-message (for SASLContinue)."""
        self._expect(ScramState.EXPECT_CLIENT_FIRST, "client-first")
        try:
            return self._initial(data)
        except BaseException:
            self.state = ScramState.FAILED
            raise

    def final(self, data: bytes) -> bytes:
        """Take a SASLResponse body and return the server-final-message (for SASLFinal) if the proof holds."""
        self._expect(ScramState.EXPECT_CLIENT_FINAL, "client-final")
        try:
            return self._final(data)
        except BaseException:
            self.state = ScramState.FAILED
            raise

    def _expect(self, state: ScramState, what: str) -> None:
        if self.state is not state:
            current, self.state = self.state, ScramState.FAILED
            raise AuthFailed(f"SCRAM exchange got a {what} message in state {current.value!r}")

    def _initial(self, data: bytes) -> bytes:
        r = BodyReader(data, "SASLInitialResponse")
        mechanism = r.cstring("mechanism name")
        if mechanism == SCRAM_SHA_256_PLUS:
            raise AuthFailed("client selected SCRAM-SHA-256-PLUS, which this server does not offer")
        if mechanism != SCRAM_SHA_256:
            raise r.fail(f"client selected an invalid SASL authentication mechanism {mechanism!r}")
        length = r.number(_I32, "response length")
        if length == -1:
            raise _malformed("SASLInitialResponse carries no client-first-message")
        if length != len(data) - r.pos:
            raise r.fail(f"response length {length} does not match the {len(data) - r.pos} bytes that follow")
        text = _text(data[r.pos :])

        flag, _, rest = text.partition(",")
        if flag.startswith("p="):
            raise AuthFailed("client requires channel binding, but this server offers no -PLUS mechanism")
        if flag not in ("n", "y"):
            raise _malformed(f"channel binding flag {flag!r} is not 'n', 'y' or 'p=...'")
        authzid, sep, bare = rest.partition(",")
        if not sep:
            raise _malformed("the GS2 header does not end with ','")
        if authzid:
            _attribute(authzid, "a")
            raise AuthFailed("client uses an authorization identity, which is not supported")
        parts = bare.split(",")
        if parts[0].startswith("m="):
            raise AuthFailed("client requires an unsupported SCRAM extension")
        if len(parts) < 2:
            raise _malformed("client-first-message lacks the user name or the nonce")
        _attribute(parts[0], "n")  # ignored: the StartupMessage's user is the one authenticated
        client_nonce = _attribute(parts[1], "r")
        _check_nonce(client_nonce, "client")
        for part in parts[2:]:
            _check_extension(part)

        v = self.verifier
        self._gs2_header = text[: len(text) - len(bare)].encode("ascii")
        self._client_first_bare = bare
        self._nonce = client_nonce + self._server_nonce
        self._server_first = f"r={self._nonce},s={base64.b64encode(v.salt).decode()},i={v.iterations}"
        self.state = ScramState.EXPECT_CLIENT_FINAL
        return self._server_first.encode("ascii")

    def _final(self, data: bytes) -> bytes:
        text = _text(data)
        without_proof, sep, proof_b64 = text.rpartition(",p=")
        if not sep:
            raise _malformed("client-final-message lacks the proof")
        parts = without_proof.split(",")
        if len(parts) < 2:
            raise _malformed("client-final-message lacks the channel binding or the nonce")
        binding = _b64decode(_attribute(parts[0], "c"), "channel binding")
        nonce = _attribute(parts[1], "r")
        for part in parts[2:]:
            _check_extension(part)
        proof = _b64decode(proof_b64, "client proof")
        if len(proof) != 32:
            raise _malformed(f"client proof is {len(proof)} bytes, not 32")
        if not hmac.compare_digest(binding, self._gs2_header):
            raise AuthFailed("SCRAM channel binding check failed")
        if not hmac.compare_digest(nonce.encode("utf-8"), self._nonce.encode("ascii")):
            raise AuthFailed("SCRAM nonce does not match")

        v = self.verifier
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        client_signature = hmac.digest(v.stored_key, auth_message, "sha256")
        client_key = bytes(a ^ b for a, b in zip(proof, client_signature, strict=True))
        if not hmac.compare_digest(hashlib.sha256(client_key).digest(), v.stored_key):
            raise AuthFailed("SCRAM client proof does not match: wrong password")
        self.state = ScramState.DONE
        server_signature = hmac.digest(v.server_key, auth_message, "sha256")
        return b"v=" + base64.b64encode(server_signature)
