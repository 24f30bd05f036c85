"""The server TLS contexts (security/tls.py): the floor they set and the errors a bad file gives at start."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from sqlite_ha.errors import ConfigError
from sqlite_ha.security.tls import server_context


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path, trustme.CA]:
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key, cafile = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    ca.cert_pem.write_to_path(str(cafile))
    return cert, key, cafile, ca


def test_the_floor(files: tuple[Path, Path, Path, trustme.CA]) -> None:
    cert, key, cafile, _ = files
    context = server_context(str(cert), str(key), flag="--cert")
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.verify_mode == ssl.CERT_NONE
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12
    assert all(name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name) for name in tls12)
    assert context.options & ssl.OP_NO_COMPRESSION
    mutual = server_context(str(cert), str(key), flag="--cert", client_ca=str(cafile))
    assert mutual.verify_mode == ssl.CERT_REQUIRED


def test_bad_files_are_config_errors(files: tuple[Path, Path, Path, trustme.CA], tmp_path: Path) -> None:
    cert, key, _, ca = files
    with pytest.raises(ConfigError, match=r"^--pg-cert: cannot load the certificate .* No such file"):
        server_context(str(cert), str(tmp_path / "missing.pem"), flag="--pg-cert")
    other = tmp_path / "other-key.pem"
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(other))
    with pytest.raises(ConfigError, match="not a PEM certificate and its matching key"):
        server_context(str(cert), str(other), flag="--cert")
    with pytest.raises(ConfigError, match=r"^--client-ca: cannot load the CA"):
        server_context(str(cert), str(key), flag="--cert", client_ca=str(tmp_path / "missing-ca.pem"))


def test_an_encrypted_key_is_refused_not_prompted_for(
    files: tuple[Path, Path, Path, trustme.CA], tmp_path: Path
) -> None:
    cert, key, _, _ = files
    loaded = serialization.load_pem_private_key(key.read_bytes(), None)
    encrypted = tmp_path / "encrypted.pem"
    encrypted.write_bytes(
        loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"),
        )
    )
    with pytest.raises(ConfigError, match="protected by a passphrase"):
        server_context(str(cert), str(encrypted), flag="--cert")


def test_a_key_everyone_can_read_is_warned_about(
    files: tuple[Path, Path, Path, trustme.CA], caplog: pytest.LogCaptureFixture
) -> None:
    cert, key, _, _ = files
    with caplog.at_level(logging.WARNING):
        server_context(str(cert), str(key), flag="--cert")
        assert not caplog.records
        key.chmod(0o644)
        server_context(str(cert), str(key), flag="--cert")
    assert "--cert: the private key" in caplog.text
    assert "readable by other users" in caplog.text
