"""PG wire password checks: SCRAM-SHA-256 against RFC 7677's vector and a test-side client, MD5, cleartext."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlite_ha.server.pgwire.wire.auth import (
    AuthFailed,
    ScramServer,
    ScramState,
    check_cleartext,
    check_md5,
    md5_salt,
    saslprep,
    scram_verifier,
)
from sqlite_ha.server.pgwire.wire.codec import ProtocolError

# RFC 7677, section 3
SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
CLIENT_FIRST = f"n,,n=user,r={CLIENT_NONCE}"
SERVER_FIRST = f"r={CLIENT_NONCE}{SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
CLIENT_FINAL = f"c=biws,r={CLIENT_NONCE}{SERVER_NONCE},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
SERVER_FINAL = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def initial_response(client_first: str | bytes, mechanism: bytes = b"SCRAM-SHA-256") -> bytes:
    """A SASLInitialResponse body: mechanism, int32 length, client-first-message."""
    raw = client_first.encode() if isinstance(client_first, str) else client_first
    return mechanism + b"\0" + struct.pack("!i", len(raw)) + raw


def rfc_server(password: str = "pencil") -> ScramServer:
    return ScramServer(password, salt=SALT, iterations=4096, nonce=SERVER_NONCE)


def client_final(
    password: str, client_first: str, server_first: str, *, gs2: str = "n,,", extensions: str = ""
) -> tuple[str, str]:
    """What a SCRAM client sends last, and the server signature it expects (RFC 5802, section 3)."""
    attrs = dict(part.split("=", 1) for part in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    without_proof = f"c={base64.b64encode(gs2.encode()).decode()},r={attrs['r']}{extensions}"
    auth_message = f"{client_first[len(gs2) :]},{server_first},{without_proof}".encode()
    signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    server_signature = hmac.digest(server_key, auth_message, "sha256")
    return (
        f"{without_proof},p={base64.b64encode(proof).decode()}",
        f"v={base64.b64encode(server_signature).decode()}",
    )


# --- SCRAM-SHA-256 ----------------------------------------------------------------------------------------


def test_rfc7677_vector() -> None:
    server = rfc_server()
    assert server.mechanisms() == ["SCRAM-SHA-256"]
    assert server.initial(initial_response(CLIENT_FIRST)) == SERVER_FIRST.encode()
    assert server.state is ScramState.EXPECT_CLIENT_FINAL
    assert server.final(CLIENT_FINAL.encode()) == SERVER_FINAL.encode()
    assert server.state is ScramState.DONE


def test_test_client_reproduces_the_rfc_vector() -> None:
    assert client_final("pencil", CLIENT_FIRST, SERVER_FIRST) == (CLIENT_FINAL, SERVER_FINAL)


def test_wrong_password_fails() -> None:
    server = rfc_server("pencil2")
    server.initial(initial_response(CLIENT_FIRST))
    with pytest.raises(AuthFailed, match="wrong password"):
        server.final(CLIENT_FINAL.encode())
    assert server.state is ScramState.FAILED


def test_full_exchange_with_default_salt_and_nonce_and_y_flag() -> None:
    password = "pässwörd ⅨX"
    server = ScramServer(password)
    client_first = "y,,n=,r=abcdef"
    server_first = server.initial(initial_response(client_first)).decode()
    assert server_first.startswith("r=abcdef")
    assert ",i=4096" in server_first
    final, expected = client_final(saslprep(password), client_first, server_first, gs2="y,,")
    assert server.final(final.encode()) == expected.encode()


def test_user_name_inside_scram_is_ignored() -> None:
    server = rfc_server()
    client_first = f"n,,n=someone=2Celse,r={CLIENT_NONCE}"
    server_first = server.initial(initial_response(client_first)).decode()
    final, expected = client_final("pencil", client_first, server_first)
    assert server.final(final.encode()) == expected.encode()


def test_optional_extensions_are_ignored() -> None:
    server = rfc_server()
    client_first = f"n,,n=user,r={CLIENT_NONCE},x=1"
    server_first = server.initial(initial_response(client_first)).decode()
    final, expected = client_final("pencil", client_first, server_first, extensions=",y=ext")
    assert server.final(final.encode()) == expected.encode()


def test_extension_is_part_of_the_signed_message() -> None:
    server = rfc_server()
    server.initial(initial_response(CLIENT_FIRST))
    with pytest.raises(AuthFailed, match="wrong password"):
        server.final(CLIENT_FINAL.replace(",p=", ",y=ext,p=").encode())


def test_each_server_uses_a_fresh_nonce_and_the_same_verifier() -> None:
    a, b = ScramServer("secret"), ScramServer("secret")
    first_a = a.initial(initial_response("n,,n=,r=xyz"))
    first_b = b.initial(initial_response("n,,n=,r=xyz"))
    assert first_a != first_b
    assert a.verifier is b.verifier


def test_replayed_final_message_fails_on_the_nonce() -> None:
    first = ScramServer("pencil", salt=SALT)
    client_first = f"n,,n=,r={CLIENT_NONCE}"
    final, _ = client_final("pencil", client_first, first.initial(initial_response(client_first)).decode())
    first.final(final.encode())
    replay = ScramServer("pencil", salt=SALT)
    replay.initial(initial_response(client_first))
    with pytest.raises(AuthFailed, match="nonce does not match"):
        replay.final(final.encode())


def test_tampered_nonce_fails() -> None:
    server = rfc_server()
    server.initial(initial_response(CLIENT_FIRST))
    with pytest.raises(AuthFailed, match="nonce does not match"):
        server.final(CLIENT_FINAL.replace("k0,p=", "k1,p=").encode())


def test_channel_binding_must_echo_the_gs2_header() -> None:
    server = rfc_server()
    server.initial(initial_response(CLIENT_FIRST))
    with pytest.raises(AuthFailed, match="channel binding"):
        server.final(CLIENT_FINAL.replace("c=biws", "c=eSws").encode())  # "y,," after sending "n,,"


def test_verifier_is_computed_once_per_password_and_salt() -> None:
    before = scram_verifier.cache_info().hits
    v1 = scram_verifier("pencil", SALT, 4096)
    v2 = scram_verifier("pencil", SALT, 4096)
    assert v1 is v2
    assert scram_verifier.cache_info().hits >= before + 1
    assert v1.iterations == 4096
    assert v1.salt == SALT
    assert len(v1.stored_key) == len(v1.server_key) == 32


def test_messages_out_of_order_fail() -> None:
    server = rfc_server()
    with pytest.raises(AuthFailed, match="client-final"):
        server.final(CLIENT_FINAL.encode())
    assert server.state is ScramState.FAILED
    with pytest.raises(AuthFailed):
        server.initial(initial_response(CLIENT_FIRST))
    again = rfc_server()
    again.initial(initial_response(CLIENT_FIRST))
    with pytest.raises(AuthFailed, match="client-first"):
        again.initial(initial_response(CLIENT_FIRST))


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="iterations"):
        ScramServer("x", iterations=0)
    with pytest.raises(ProtocolError, match="server nonce"):
        ScramServer("x", nonce="has,comma")


@pytest.mark.parametrize(
    ("data", "error", "problem"),
    [
        (b"SCRAM-SHA-256", ProtocolError, "mechanism name is not NUL-terminated"),
        (initial_response(CLIENT_FIRST, b"PLAIN"), ProtocolError, "invalid SASL authentication mechanism"),
        (initial_response(CLIENT_FIRST, b"SCRAM-SHA-256-PLUS"), AuthFailed, "does not offer"),
        (b"SCRAM-SHA-256\0\xff\xff\xff\xff", ProtocolError, "carries no client-first-message"),
        (b"SCRAM-SHA-256\0\0\0", ProtocolError, "ends inside response length"),
        (b"SCRAM-SHA-256\0\0\0\0\x09n,,", ProtocolError, "response length 9 does not match the 3 bytes"),
        (initial_response(b"n,,n=,r=\xff"), ProtocolError, "not valid UTF-8"),
        (initial_response("p=tls-server-end-point,,n=,r=abc"), AuthFailed, "channel binding"),
        (initial_response("x,,n=,r=abc"), ProtocolError, "channel binding flag 'x'"),
        (initial_response("n,"), ProtocolError, "GS2 header does not end with ','"),
        (initial_response("n,a=bob,n=,r=abc"), AuthFailed, "authorization identity"),
        (initial_response("n,bob,n=,r=abc"), ProtocolError, "expected attribute 'a'"),
        (initial_response("n,,m=ext,n=,r=abc"), AuthFailed, "unsupported SCRAM extension"),
        (initial_response("n,,r=abc"), ProtocolError, "lacks the user name or the nonce"),
        (initial_response("n,,r=abc,n=user"), ProtocolError, "expected attribute 'n'"),
        (initial_response("n,,n=,s=abc"), ProtocolError, "expected attribute 'r'"),
        (initial_response("n,,n=,r="), ProtocolError, "client nonce must be non-empty printable ASCII"),
        (initial_response("n,,n=,r=a\tb"), ProtocolError, "client nonce must be non-empty printable ASCII"),
        (initial_response("n,,n=,r=äb"), ProtocolError, "client nonce must be non-empty printable ASCII"),
        (initial_response("n,,n=,r=abc,junk"), ProtocolError, "expected an attribute"),
    ],
)
def test_malformed_client_first(data: bytes, error: type[Exception], problem: str) -> None:
    server = rfc_server()
    with pytest.raises(error) as info:
        server.initial(data)
    assert problem in str(info.value)
    assert server.state is ScramState.FAILED


NONCE = CLIENT_NONCE + SERVER_NONCE


@pytest.mark.parametrize(
    ("final", "error", "problem"),
    [
        (f"c=biws,r={NONCE}", ProtocolError, "lacks the proof"),
        ("p=abc", ProtocolError, "lacks the proof"),
        (f"r={NONCE},p=AAAA", ProtocolError, "lacks the channel binding or the nonce"),
        (f"r={NONCE},c=biws,p=AAAA", ProtocolError, "expected attribute 'c'"),
        (f"c=biws,x={NONCE},p=AAAA", ProtocolError, "expected attribute 'r'"),
        (f"c=b!ws,r={NONCE},p=AAAA", ProtocolError, "channel binding is not valid base64"),
        (f"c=biws,r={NONCE},p=not base64", ProtocolError, "client proof is not valid base64"),
        (f"c=biws,r={NONCE},p=AAAA", ProtocolError, "client proof is 3 bytes, not 32"),
        (f"c=biws,r={NONCE},?,p=AAAA", ProtocolError, "expected an attribute"),
        ("c=biws,r=\udcff", ProtocolError, "not valid UTF-8"),
    ],
)
def test_malformed_client_final(final: str, error: type[Exception], problem: str) -> None:
    server = rfc_server()
    server.initial(initial_response(CLIENT_FIRST))
    with pytest.raises(error) as info:
        server.final(final.encode("utf-8", "surrogateescape"))
    assert problem in str(info.value)
    assert server.state is ScramState.FAILED


def test_scram_errors_are_not_fatal_to_the_frame() -> None:
    """The message was read whole; the session decides to close, not the codec."""
    with pytest.raises(ProtocolError) as info:
        rfc_server().initial(initial_response("x,,"))
    assert info.value.code == "08P01"
    assert not info.value.fatal


@settings(max_examples=300)
@given(first=st.binary(max_size=60), final=st.binary(max_size=60))
def test_garbage_raises_only_auth_or_protocol_errors(first: bytes, final: bytes) -> None:
    server = rfc_server()
    for call, data in ((server.initial, initial_response(first)), (server.final, final)):
        try:
            call(data)
        except (AuthFailed, ProtocolError):
            return


@settings(max_examples=200)
@given(first=st.text(max_size=40))
def test_garbage_client_first_text_raises_only_auth_or_protocol_errors(first: str) -> None:
    with contextlib.suppress(AuthFailed, ProtocolError):
        rfc_server().initial(initial_response("n,,n=," + first))


@pytest.mark.parametrize(
    ("password", "prepared"),
    [
        ("pencil", "pencil"),
        ("\x07ascii control stays", "\x07ascii control stays"),  # pure ASCII is used as is
        ("I\u00adX", "IX"),  # RFC 4013 examples: soft hyphen mapped to nothing
        ("\u00aa", "a"),  # NFKC
        ("\u2168", "IX"),
        ("a\u00a0b", "a b"),  # non-ASCII space mapped to space
        ("a\u0007\u00e9", "a\u0007\u00e9"),  # prohibited control character: used as is
        ("\u0627a\u0627", "\u0627a\u0627"),  # RandALCat mixed with LCat: used as is
        ("\u0627\u0628", "\u0627\u0628"),
        ("\u00ad", "\u00ad"),  # empty after mapping: used as is
    ],
)
def test_saslprep(password: str, prepared: str) -> None:
    assert saslprep(password) == prepared


# --- MD5 and cleartext ------------------------------------------------------------------------------------


def md5_response(user: str, password: str, salt: bytes) -> bytes:
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return b"md5" + hashlib.md5(inner.encode() + salt).hexdigest().encode() + b"\0"


def test_md5_right_password() -> None:
    salt = md5_salt()
    assert len(salt) == 4
    check_md5("alice", "s3cret", salt, md5_response("alice", "s3cret", salt))


@pytest.mark.parametrize(
    ("user", "password", "salt"),
    [("alice", "wrong", b"salt"), ("bob", "s3cret", b"salt"), ("alice", "s3cret", b"tlas")],
)
def test_md5_wrong_password_user_or_salt(user: str, password: str, salt: bytes) -> None:
    with pytest.raises(AuthFailed, match="MD5"):
        check_md5("alice", "s3cret", b"salt", md5_response(user, password, salt))


def test_md5_rejects_a_cleartext_password() -> None:
    with pytest.raises(AuthFailed):
        check_md5("alice", "s3cret", b"salt", b"s3cret\0")


def test_cleartext_right_and_wrong() -> None:
    check_cleartext("s3cret ü", "s3cret ü".encode() + b"\0")
    with pytest.raises(AuthFailed, match="does not match"):
        check_cleartext("s3cret", b"s3crex\0")
    with pytest.raises(AuthFailed, match="does not match"):
        check_cleartext("s3cret", b"s3cret2\0")


@pytest.mark.parametrize(
    ("data", "error", "problem"),
    [
        (b"s3cret", ProtocolError, "is not NUL-terminated"),
        (b"s3\0cret\0", ProtocolError, "has 5 bytes after its NUL"),
        (b"s3cret\0\0", ProtocolError, "has 1 bytes after its NUL"),
        (b"\0", AuthFailed, "empty password"),
        (b"", ProtocolError, "is not NUL-terminated"),
    ],
)
def test_malformed_password_messages(data: bytes, error: type[Exception], problem: str) -> None:
    for check in (lambda: check_cleartext("s3cret", data), lambda: check_md5("u", "p", b"salt", data)):
        with pytest.raises(error) as info:
            check()
        assert problem in str(info.value)
