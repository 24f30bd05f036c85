"""TLS on the PostgreSQL port: ``--pg-tls require`` refuses sessions that do not start TLS, and cleartext
passwords never cross a connection without TLS unless ``--pg-allow-cleartext``. Real clients: psql, psycopg,
asyncpg, and raw sockets for the GSSENCRequest path."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from pathlib import Path

import asyncpg
import psycopg
import pytest

from sqlite_ha.testing import NodeProcess, free_port
from tests.conftest import NodeFactory
from tests.e2e.test_https import TLSFiles, make_tls
from tests.e2e.test_pgwire import PASSWORD, dsn, psql

REQUIRES_TLS = "this server requires TLS (sslmode=require)"
GSSENC_REQUEST = struct.pack("!ii", 8, 80877104)
SSL_REQUEST = struct.pack("!ii", 8, 80877103)


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    return make_tls(tmp_path / "tls")


def pg_node(node_factory: NodeFactory, tls: TLSFiles | None, *flags: str, start: bool = True) -> NodeProcess:
    port = free_port()
    certs = ["--pg-cert", str(tls.cert), "--pg-key", str(tls.key)] if tls is not None else []
    node = node_factory(
        args=["app.db", "--pg-port", str(port), "--pg-pass", PASSWORD, *certs, *flags], start=start
    )
    node.pg_port = port  # type: ignore[attr-defined]
    return node


def startup_message(user: str = "ha", database: str = "app") -> bytes:
    body = struct.pack("!i", 196608) + f"user\0{user}\0database\0{database}\0\0".encode()
    return struct.pack("!i", len(body) + 4) + body


def read_error(sock: socket.socket | ssl.SSLSocket) -> dict[str, str]:
    """The fields of the ErrorResponse the server answers with, then checks that it closed the connection."""
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    assert data[:1] == b"E", data
    length = struct.unpack("!i", data[1:5])[0]
    fields = {}
    for part in data[5 : 1 + length].split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode()
    assert len(data) == 1 + length, "the server sent more than the error"
    return fields


def test_require_refuses_plaintext_sessions(node_factory: NodeFactory, tls: TLSFiles) -> None:
    node = pg_node(node_factory, tls, "--pg-tls", "require")

    # psql: sslmode=disable refused with the reason, sslmode=require served
    refused = psql(node, "-c", "SELECT 1", env_extra={"PGSSLMODE": "disable"})
    assert refused.returncode != 0
    assert REQUIRES_TLS in refused.stderr
    served = psql(node, "-A", "-t", "-c", "SELECT 'psql over tls'", env_extra={"PGSSLMODE": "require"})
    assert served.returncode == 0, served.stderr
    assert served.stdout.strip() == "psql over tls"

    # psycopg: the same, and the error is 28000
    with pytest.raises(psycopg.OperationalError, match=r"requires TLS \(sslmode=require\)"):
        psycopg.connect(dsn(node, sslmode="disable"))
    for mode in ("require", "prefer"):
        with psycopg.connect(dsn(node, sslmode=mode), autocommit=True) as conn:
            assert conn.info.pgconn.ssl_in_use
            assert conn.execute("SELECT 'psycopg'").fetchone() == ("psycopg",)
    verified = dsn(node, sslmode="verify-full", sslrootcert=str(tls.ca))
    with psycopg.connect(verified, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)

    # asyncpg: ssl=False refused with InvalidAuthorizationSpecificationError (28000); a context is served
    async def body() -> None:
        common = {"host": "127.0.0.1", "port": node.pg_port, "user": "ha", "password": PASSWORD}  # type: ignore[attr-defined]
        with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="requires TLS"):
            await asyncpg.connect(database="app", ssl=False, **common)
        conn = await asyncpg.connect(
            database="app", ssl=ssl.create_default_context(cafile=str(tls.ca)), **common
        )
        try:
            assert await conn.fetchval("SELECT 'asyncpg'") == "asyncpg"
        finally:
            await conn.close()

    asyncio.run(body())

    # raw: a GSSENCRequest is declined, and the plaintext startup that follows is refused (FATAL 28000)
    with socket.create_connection(("127.0.0.1", node.pg_port), timeout=10) as s:  # type: ignore[attr-defined]
        s.sendall(GSSENC_REQUEST)
        assert s.recv(1) == b"N"
        s.sendall(startup_message())
        error = read_error(s)
    assert (error["S"], error["C"], error["M"]) == ("FATAL", "28000", REQUIRES_TLS)
    assert "sslmode=require" in error["H"]
    # a CancelRequest stays accepted in plaintext (libpq before 17 never encrypts it): closed, no error
    with socket.create_connection(("127.0.0.1", node.pg_port), timeout=10) as s:  # type: ignore[attr-defined]
        s.sendall(struct.pack("!iiii", 16, 80877102, 1, 2))
        assert s.recv(100) == b""


def test_cleartext_password_needs_tls(node_factory: NodeFactory, tls: TLSFiles) -> None:
    node = pg_node(node_factory, tls, "--pg-auth", "password")  # --pg-tls allow (the default)
    with pytest.raises(psycopg.OperationalError, match="refuses cleartext password authentication") as info:
        psycopg.connect(dsn(node, sslmode="disable"))
    assert PASSWORD not in str(info.value)
    with psycopg.connect(dsn(node, sslmode="require"), autocommit=True) as conn:
        assert conn.execute("SELECT 'password over tls'").fetchone() == ("password over tls",)
    # the refusal comes before the password is asked for: the server never sees it in clear
    with socket.create_connection(("127.0.0.1", node.pg_port), timeout=10) as s:  # type: ignore[attr-defined]
        s.sendall(startup_message())
        error = read_error(s)
    assert error["C"] == "28000"
    assert "without TLS" in error["M"]
    # over TLS, the same raw start-up is asked for the password (R, AuthenticationCleartextPassword)
    with socket.create_connection(("127.0.0.1", node.pg_port), timeout=10) as raw:  # type: ignore[attr-defined]
        raw.sendall(SSL_REQUEST)
        assert raw.recv(1) == b"S"
        context = ssl.create_default_context(cafile=str(tls.ca))
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(startup_message())
            assert s.recv(9) == b"R\0\0\0\x08\0\0\0\x03"

    # under --pg-tls allow, SCRAM (which never sends the password) still works without TLS
    scram = pg_node(node_factory, tls)
    with psycopg.connect(dsn(scram, sslmode="disable"), autocommit=True) as conn:
        assert not conn.info.pgconn.ssl_in_use


def test_cleartext_without_any_certificate_is_a_config_error(node_factory: NodeFactory) -> None:
    node = pg_node(node_factory, None, "--pg-auth", "password", start=False)
    node.start(wait_ready=False)
    assert node.proc is not None
    assert node.proc.wait(30) == 2
    assert "--pg-auth: password sends the password in clear" in node.logs()
    allowed = pg_node(node_factory, None, "--pg-auth", "password", "--pg-allow-cleartext")
    with psycopg.connect(dsn(allowed, sslmode="disable"), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_md5_is_warned_at_start(node_factory: NodeFactory) -> None:
    node = pg_node(node_factory, None, "--pg-auth", "md5")
    assert "--pg-auth md5 is weak" in node.logs()
    assert PASSWORD not in node.logs()
