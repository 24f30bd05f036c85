"""Server-side TLS contexts of the client interfaces: HTTPS (``--cert/--key/--client-ca``) and PostgreSQL
(``--pg-cert/--pg-key``).

One function so both interfaces get the same floor: TLS 1.2 or newer, forward-secret AEAD ciphers for TLS 1.2
(TLS 1.3's suites are all of that kind), no compression, no renegotiation. A certificate or key that cannot
be loaded is a ``ConfigError`` naming the flag, at start, never a failure at the first handshake; an
encrypted key is refused rather than letting OpenSSL prompt for its passphrase on the terminal.
"""

from __future__ import annotations

import logging
import os
import ssl
import stat

from sqlite_ha.errors import ConfigError

log = logging.getLogger(__name__)

# Mozilla's "intermediate" TLS 1.2 suites: ECDHE key exchange (forward secrecy), AES-GCM or ChaCha20-Poly1305.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)


def _no_passphrase() -> str:
    raise ValueError("the private key is encrypted")


def server_context(
    cert: str,
    key: str,
    *,
    flag: str,
    client_ca: str = "",
    client_ca_flag: str = "--client-ca",
    alpn: tuple[str, ...] = (),
) -> ssl.SSLContext:
    """A server ``SSLContext`` for ``cert``/``key``; with ``client_ca``, clients must present a certificate
    signed by it (the handshake fails otherwise). ``flag`` names the setting in errors."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(cert, key, password=_no_passphrase)
    except ValueError as e:
        raise ConfigError(
            flag,
            f"{key}: the private key is protected by a passphrase; give an unencrypted "
            "key readable only by the node's user",
        ) from e
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(flag, f"cannot load the certificate {cert} with the key {key}: {_why(e)}") from e
    _warn_if_readable(key, flag)
    if client_ca:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError(client_ca_flag, f"cannot load the CA {client_ca}: {_why(e)}") from e
        context.verify_mode = ssl.CERT_REQUIRED
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def _why(e: OSError | ssl.SSLError) -> str:
    if isinstance(e, ssl.SSLError):  # OpenSSL's reason: PEM_LIB, KEY_VALUES_MISMATCH, …
        return f"not a PEM certificate and its matching key (OpenSSL: {e.reason or e})"
    return e.strerror or str(e)


def _warn_if_readable(key: str, flag: str) -> None:
    """PostgreSQL refuses a key file other users can read; a warning here, so a mounted secret still works."""
    try:
        mode = os.stat(key).st_mode
    except OSError:
        return
    if mode & stat.S_IROTH:
        log.warning("%s: the private key %s is readable by other users (chmod 600 it)", flag, key)
