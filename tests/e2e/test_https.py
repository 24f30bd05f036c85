"""The HTTP API over TLS (``--cert/--key``, ``--client-ca``) with real clients: http.client, raw TLS sockets,
aiohttp, curl and the operator commands. Both the fast path (plain ``POST /query``) and aiohttp (everything
else, after the connection is handed over) must serve over one TLS connection, kept alive."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
import trustme

from sqlite_ha.admin import AdminError, NodeClient
from sqlite_ha.testing import NodeProcess, free_port
from tests.conftest import NodeFactory
from tests.e2e.test_cli import run_cli


@dataclass(frozen=True)
class TLSFiles:
    """A CA and a server certificate for 127.0.0.1/localhost, written as PEM files (keys 0600)."""

    ca: Path
    cert: Path
    key: Path
    authority: trustme.CA

    def client_cert(self, path: Path, name: str = "client@example.com") -> Path:
        """A client certificate signed by this CA, with its key, in one PEM file."""
        issued = self.authority.issue_cert(name)
        issued.private_key_and_cert_chain_pem.write_to_path(str(path))
        path.chmod(0o600)
        return path


def make_tls(directory: Path) -> TLSFiles:
    directory.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA()
    issued = authority.issue_cert("127.0.0.1", "localhost")
    ca, cert, key = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    authority.cert_pem.write_to_path(str(ca))
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    return TLSFiles(ca=ca, cert=cert, key=key, authority=authority)


@pytest.fixture
def tls(tmp_path: Path) -> TLSFiles:
    return make_tls(tmp_path / "tls")


@pytest.fixture
def https(node_factory: NodeFactory, tls: TLSFiles) -> NodeProcess:
    return node_factory(args=["app.db", "--cert", str(tls.cert), "--key", str(tls.key)], ca=str(tls.ca))


def _context(tls: TLSFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls.ca))
    context.set_alpn_protocols(["h2", "http/1.1"])  # as browsers and curl offer: the node picks http/1.1
    return context


def _post(conn: http.client.HTTPConnection, path: str, body: object) -> tuple[int, object]:
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp.status, json.loads(resp.read())


# two TLS transports (uvloop's and asyncio's), each handed over from the fast path to aiohttp
@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_fast_and_slow_paths_on_one_kept_alive_tls_connection(
    node_factory: NodeFactory, tls: TLSFiles, loop: str
) -> None:
    https = node_factory(
        args=["app.db", "--cert", str(tls.cert), "--key", str(tls.key), "--event-loop", loop], ca=str(tls.ca)
    )
    conn = http.client.HTTPSConnection("127.0.0.1", https.port, timeout=10, context=_context(tls))
    try:
        status, _ = _post(conn, "/query", ["CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"])
        assert status == 200
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        assert sock.version() in ("TLSv1.2", "TLSv1.3")
        assert sock.selected_alpn_protocol() == "http/1.1"
        for i in range(3):  # fast path, kept alive
            insert = {"sql": "INSERT INTO t(v) VALUES (?)", "params": [f"v{i}"]}
            assert _post(conn, "/query", insert)[0] == 200
        conn.request("GET", "/status")  # aiohttp takes the connection over
        resp = conn.getresponse()
        assert resp.status == 200
        assert json.loads(resp.read())["node"] == https.name
        conn.request("GET", "/download")  # a streamed body: the database file
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read().startswith(b"SQLite format 3\x00")
        status, body = _post(conn, "/databases/app.db", ["SELECT count(*) FROM t"])  # served by aiohttp now
        assert status == 200
        assert body["results"][0]["rows"] == [[3]]  # type: ignore[index]
        assert conn.sock is sock, "the TLS connection was not kept alive"
    finally:
        conn.close()
    # a client that ends its session properly (close_notify, as curl does) while on the fast path
    with (
        socket.create_connection(("127.0.0.1", https.port), timeout=10) as raw,
        _context(tls).wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        s.sendall(b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n" + b'["SELECT 1"]')
        assert s.recv(65536).startswith(b"HTTP/1.1 200 ")
        s.unwrap()  # returns once the node answered with its own close_notify
    assert "eof_received" not in https.logs()  # asyncio's warning when a protocol keeps a TLS transport


def test_pipelined_queries_over_raw_tls(https: NodeProcess, tls: TLSFiles) -> None:
    """Two requests written at once, then a hand-over in the same write: answered in order."""
    request = (
        b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n"
        b'["SELECT 7"]'
    )
    status = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    with (
        socket.create_connection(("127.0.0.1", https.port), timeout=10) as raw,
        _context(tls).wrap_socket(raw, server_hostname="127.0.0.1") as s,
    ):
        s.sendall(request + request + status)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    answers = data.split(b"HTTP/1.1 ")[1:]
    assert [a[:3] for a in answers] == [b"200", b"200", b"200"], data
    assert b"[[7]]" in answers[0]
    assert b"[[7]]" in answers[1]


def test_aiohttp_client_keeps_one_connection(https: NodeProcess, tls: TLSFiles) -> None:
    async def body() -> int:
        connections = 0

        async def created(*_: object) -> None:
            nonlocal connections
            connections += 1

        trace = aiohttp.TraceConfig()
        trace.on_connection_create_end.append(created)
        connector = aiohttp.TCPConnector(ssl=_context(tls), limit=1)
        async with aiohttp.ClientSession(connector=connector, trace_configs=[trace]) as session:
            for i in range(5):
                async with session.post(f"{https.url}/query", json=[f"SELECT {i}"]) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["results"][0]["rows"] == [[i]]
            async with session.get(f"{https.url}/status") as resp:
                assert resp.status == 200
            async with session.post(f"{https.url}/query", json=["SELECT 'after'"]) as resp:
                assert (await resp.json())["results"][0]["rows"] == [["after"]]
        return connections

    assert asyncio.run(body()) == 1


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl(https: NodeProcess, tls: TLSFiles) -> None:
    url = https.url
    out = subprocess.run(
        [
            *("curl", "-sS", "--cacert", str(tls.ca), "-H", "Content-Type: application/json"),
            *("-d", '["SELECT 40 + 2"]', "-w", r"\n%{http_code} %{num_connects} %{ssl_verify_result}\n"),
            f"{url}/query",
            f"{url}/query",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert (lines[1], lines[3]) == ("200 1 0", "200 0 0"), out.stdout  # the second reused the connection
    assert '"rows":[[42]]' in lines[0].replace(" ", "")
    status = subprocess.run(
        ["curl", "-sS", "--cacert", str(tls.ca), f"{url}/status"], capture_output=True, text=True, timeout=30
    )
    assert status.returncode == 0
    assert json.loads(status.stdout)["node"] == https.name
    untrusted = subprocess.run(["curl", "-sS", f"{url}/healthz"], capture_output=True, text=True, timeout=30)
    assert untrusted.returncode == 60, untrusted  # curl: peer certificate cannot be authenticated


def test_plaintext_request_to_the_https_port_is_refused(https: NodeProcess) -> None:
    with socket.create_connection(("127.0.0.1", https.port), timeout=10) as s:
        s.sendall(b"POST /query HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n" + b'["SELECT 1"]')
        received = b""
        try:
            while chunk := s.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass
    assert b"HTTP/" not in received
    assert b"SELECT" not in received
    conn = http.client.HTTPConnection("127.0.0.1", https.port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
            conn.getresponse()
    finally:
        conn.close()
    assert https.request("GET", "/healthz").status == 200  # the node serves on


def test_client_certificates_required_with_client_ca(
    node_factory: NodeFactory, tls: TLSFiles, tmp_path: Path
) -> None:
    client = tls.client_cert(tmp_path / "client.pem")
    node = node_factory(
        args=["app.db", "--cert", str(tls.cert), "--key", str(tls.key), "--client-ca", str(tls.ca)],
        ca=str(tls.ca),
        client_cert=str(client),
    )
    assert node.query(["SELECT 'with a certificate'"])["results"][0]["rows"] == [["with a certificate"]]
    assert node.request("GET", "/status").status == 200

    def refused(context: ssl.SSLContext) -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", node.port, timeout=10, context=context)
        try:
            with pytest.raises((ssl.SSLError, ConnectionError)):  # TLS 1.3: the verdict comes after the
                _post(conn, "/query", ["SELECT 1"])  # client's handshake, so at the request or its answer
        finally:
            conn.close()

    refused(_context(tls))  # no client certificate
    stranger = make_tls(tmp_path / "other")  # a certificate from another CA
    context = _context(tls)
    context.load_cert_chain(str(stranger.client_cert(tmp_path / "stranger.pem")))
    refused(context)
    assert node.request("GET", "/healthz").status == 200


def test_bad_certificate_files_stop_the_node_at_start(node_factory: NodeFactory, tls: TLSFiles) -> None:
    node = node_factory(
        args=["app.db", "--cert", str(tls.cert), "--key", str(tls.cert)], ca=str(tls.ca), start=False
    )
    node.start(wait_ready=False)
    assert node.proc is not None
    assert node.proc.wait(30) == 2
    assert "sqlite-ha: error: --cert: cannot load the certificate" in node.logs()
    missing = node_factory(
        args=["app.db", "--cert", str(tls.cert), "--key", str(tls.key), "--client-ca", "/nonexistent/ca.pem"],
        start=False,
    )
    missing.start(wait_ready=False)
    assert missing.proc is not None
    assert missing.proc.wait(30) == 2
    assert "--client-ca: cannot load the CA /nonexistent/ca.pem" in missing.logs()


def test_operator_commands_over_https(node_factory: NodeFactory, tls: TLSFiles, tmp_path: Path) -> None:
    client = tls.client_cert(tmp_path / "operator.pem")
    node = node_factory(
        args=["app.db", "--cert", str(tls.cert), "--key", str(tls.key), "--client-ca", str(tls.ca)],
        ca=str(tls.ca),
        client_cert=str(client),
        nats_port=None,
        token="t0k",
    )
    node.query(["CREATE TABLE t(x)", "INSERT INTO t VALUES (1)"])
    target = ["--url", node.url, "--token", "t0k"]
    untrusted = run_cli("snapshot", "take", *target, "--client-cert", str(client))
    assert untrusted.returncode == 1
    assert "certificate is not trusted" in untrusted.stderr
    assert "--cacert" in untrusted.stderr
    anonymous = run_cli("snapshot", "take", *target, "--cacert", str(tls.ca))  # no client certificate
    assert anonymous.returncode == 1
    assert "cannot reach the node" in anonymous.stderr
    assert "Traceback" not in anonymous.stderr
    taken = run_cli("snapshot", "take", *target, "--cacert", str(tls.ca), "--client-cert", str(client))
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout.startswith("took snapshot of app.db")
    out = tmp_path / "app.snapshot.db"
    env = {"HA_CACERT": str(tls.ca), "HA_CLIENT_CERT": str(client)}
    got = run_cli("snapshot", "download", *target, "-o", str(out), "--no-progress", env=env)
    assert got.returncode == 0, got.stderr
    assert out.read_bytes().startswith(b"SQLite format 3\x00")


def test_operator_tls_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(AdminError, match=r"--cacert .*nope\.pem: cannot load it"):
        NodeClient("https://127.0.0.1:1", cacert=str(tmp_path / "nope.pem"))
    with pytest.raises(AdminError, match=r"--client-cert .*: cannot load it"):
        NodeClient("https://127.0.0.1:1", client_cert=str(tmp_path / "nope.pem"))
    with pytest.raises(AdminError, match="--client-key needs --client-cert"):
        NodeClient("https://127.0.0.1:1", client_key=str(tmp_path / "key.pem"))


def test_a_stalled_handshake_is_dropped_after_the_header_timeout(
    node_factory: NodeFactory, tls: TLSFiles
) -> None:
    node = node_factory(
        args=["app.db", "--cert", str(tls.cert), "--key", str(tls.key), "--header-timeout", "1s"],
        ca=str(tls.ca),
    )
    with socket.create_connection(("127.0.0.1", node.port), timeout=15) as s:
        started = time.monotonic()
        s.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, then nothing
        with contextlib.suppress(ConnectionResetError):
            assert s.recv(4096) == b""
        waited = time.monotonic() - started
    assert 0.8 < waited < 8, waited
    assert node.request("GET", "/healthz").status == 200


def test_listening_beyond_loopback_without_tls_is_warned(node_factory: NodeFactory, tls: TLSFiles) -> None:
    plain = node_factory(args=["app.db", "--host", "0.0.0.0", "--token", "t", "--pg-port", str(free_port())])
    assert "the HTTP API listens on 0.0.0.0 without TLS" in plain.logs()
    assert "the PostgreSQL port listens on 0.0.0.0 without TLS" in plain.logs()
    certs = ["--cert", str(tls.cert), "--key", str(tls.key)]
    certs += ["--pg-cert", str(tls.cert), "--pg-key", str(tls.key)]
    secured = node_factory(
        args=["app.db", "--host", "0.0.0.0", "--pg-port", str(free_port()), *certs], ca=str(tls.ca), token="t"
    )
    assert "without TLS" not in secured.logs()
