"""The replication channel's credentials and TLS, attacked with a raw NATS client: real node processes, real
nats-server, certificates made by trustme."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import ssl
import stat
from pathlib import Path
from typing import Any

import nats
import nkeys
import psutil
import pytest
import trustme
from nats.errors import Error as NatsError

from sqlite_ha.security.keys import generate_secret
from sqlite_ha.testing import (
    TEST_CLUSTER_SECRET,
    NodeProcess,
    free_port,
    nats_cluster_args,
    nats_credentials,
    wait_for,
)
from tests.conftest import NodeFactory

NO_SECRET = {"HA_CLUSTER_SECRET": ""}  # the node finds or makes its own


async def _quiet(_e: Exception) -> None:
    pass


async def _connect(port: int, **kw: Any) -> Any:
    return await nats.connect(
        f"nats://127.0.0.1:{port}",
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=5,
        error_cb=_quiet,
        **kw,
    )


def _refused(port: int, **kw: Any) -> str:
    """Connect and try to publish into the stream and read the object store; the error the client got."""

    async def attempt() -> str:
        try:
            nc = await _connect(port, **kw)
        except (NatsError, OSError, ssl.SSLError) as e:
            return str(e) or type(e).__name__
        try:
            await nc.jetstream().publish("ha_replication.app_db", b"forged")
            await nc.jetstream().object_store("ha_replication_snapshots")
        finally:
            await nc.close()
        return ""

    return asyncio.run(attempt())


def _can_use_jetstream(port: int, **kw: Any) -> bool:
    async def attempt() -> bool:
        nc = await _connect(port, **kw)
        try:
            await nc.jetstream().stream_info("ha_replication")
            return True
        finally:
            await nc.close()

    return asyncio.run(attempt())


def _secrets_shown(node: NodeProcess, *secrets: str) -> list[str]:
    """Where a node shows one of ``secrets``: its log, ``/status``, or the command line of it or its
    nats-server (what ``ps`` shows)."""
    places = {"log": node.logs(), "/status": node.request("GET", "/status").body.decode()}
    assert node.pid is not None
    for proc in [psutil.Process(node.pid), *(psutil.Process(p) for p in node.nats_pids())]:
        places[f"ps {proc.name()}"] = " ".join(proc.cmdline())
    return [where for where, text in places.items() for s in secrets if s in text]


def test_embedded_server_refuses_clients_without_the_cluster_credentials(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db"], nats_port=None)
    node.query({"sql": "CREATE TABLE t (x)"})
    node.query({"sql": "INSERT INTO t VALUES (1)"})
    assert node.nats_port
    assert "Authorization Violation" in _refused(node.nats_port)
    assert "Authorization Violation" in _refused(node.nats_port, **nats_credentials(generate_secret()))
    assert "Authorization Violation" in _refused(node.nats_port, user="sqlite-ha", password="sqlite-ha")
    assert _can_use_jetstream(node.nats_port, **nats_credentials())  # what the nodes of the cluster do
    assert node.query({"sql": "SELECT x FROM t"})["rows"] == [[1]]  # nothing forged arrived

    status = node.request("GET", "/status").json()["nats"]
    assert (status["auth"], status["tls"]) == ("cluster-secret", False)
    password = nats_credentials()["password"]
    assert _secrets_shown(node, TEST_CLUSTER_SECRET, password) == []
    assert node.nats_pids()
    assert "HA_CLUSTER_SECRET" not in psutil.Process(node.nats_pids()[0]).environ()


def test_first_node_makes_a_secret_keeps_it_private_and_reuses_it(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db"], nats_port=None, env=NO_SECRET)
    path = node.workdir / "cluster-secret"  # beside the NATS store (workdir/nats)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = path.read_text().strip()
    assert len(secret) >= 40
    assert f"stored it in {path}" in node.logs()
    assert "--cluster-secret-file" in node.logs()
    assert _secrets_shown(node, secret, nats_credentials(secret)["password"]) == []
    assert _can_use_jetstream(node.nats_port or 0, **nats_credentials(secret))
    assert "Authorization Violation" in _refused(node.nats_port or 0)

    node.stop()
    node.start()
    assert path.read_text().strip() == secret
    assert node.logs().count("made a new cluster secret") == 1
    assert _can_use_jetstream(node.nats_port or 0, **nats_credentials(secret))

    # A second node joins through the first one's server with a copy of the file.
    copy = node.workdir.parent / "copied-secret"
    copy.write_text(path.read_text())
    copy.chmod(0o600)
    url = f"nats://127.0.0.1:{node.nats_port}"
    second = node_factory(
        args=["app.db", "--replication-url", url, "--cluster-secret-file", str(copy)], env=NO_SECRET
    )
    node.query({"sql": "CREATE TABLE t (x)"})
    node.query({"sql": "INSERT INTO t VALUES (7)"})
    wait_for(lambda: _rows(second) == [[7]], 15, "the write to reach the second node")
    assert "chmod 600" not in second.logs()
    assert _secrets_shown(second, secret, nats_credentials(secret)["password"]) == []
    assert "kept in" in node.logs()  # the restart said where its secret is


def _rows(node: NodeProcess) -> Any:
    resp = node.request("POST", "/query", {"sql": "SELECT x FROM t"})
    return resp.json()["rows"] if resp.status == 200 else None


def test_external_nats_without_a_secret_is_refused_at_start(tmp_path: Path) -> None:
    node = NodeProcess(
        workdir=tmp_path / "n",
        args=["app.db", "--replication-url", f"nats://127.0.0.1:{free_port()}"],
        env=NO_SECRET,
    )
    node.start(wait_ready=False)
    assert node.proc is not None
    assert node.proc.wait(30) == 2
    log = node.logs()
    assert "error: --replication-url: a node that replicates through an external NATS server needs" in log
    assert "--cluster-secret-file" in log
    assert "--insecure-replication" in log


def test_a_loose_secret_file_is_warned_about(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(generate_secret() + "\n")
    secret_file.chmod(0o644)
    node = NodeProcess(workdir=tmp_path / "n", args=["app.db", "--cluster-secret-file", str(secret_file)])
    node.env.update(NO_SECRET)
    node.start()
    try:
        assert f"{secret_file} is readable by others (mode 0644)" in node.logs()
        assert f"chmod 600 {secret_file}" in node.logs()
    finally:
        node.stop()


def test_an_nkey_user_of_your_own_nats_config(node_factory: NodeFactory, tmp_path: Path) -> None:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "node.nk"
    seed_file.write_bytes(seed)
    seed_file.chmod(0o600)
    port = free_port()
    conf = tmp_path / "nats.conf"
    conf.write_text(
        f'server_name: "mine"\nlisten: "127.0.0.1:{port}"\n'
        f'jetstream {{ store_dir: "{tmp_path / "js"}" }}\n'
        f'authorization {{ users: [ {{ nkey: "{public}" }} ] }}\n'
    )
    node = node_factory(
        args=["app.db", "--nats-config", str(conf), "--nats-creds", str(seed_file)], nats_port=port
    )
    node.query({"sql": "CREATE TABLE t (x)"})
    status = node.request("GET", "/status").json()["nats"]
    assert (status["auth"], status["connected"]) == ("nkey", True)
    assert "Authorization Violation" in _refused(port, **nats_credentials())  # the secret is not a login
    assert _can_use_jetstream(port, nkeys_seed=str(seed_file))
    assert _secrets_shown(node, seed.decode()) == []


def test_insecure_replication_is_open_and_says_so(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db", "--insecure-replication"], nats_port=None, env=NO_SECRET)
    assert "--insecure-replication: the replication channel has no credentials" in node.logs()
    assert _can_use_jetstream(node.nats_port or 0)
    status = node.request("GET", "/status").json()["nats"]
    assert (status["auth"], status["tls"]) == ("none", False)
    assert not (node.workdir / "cluster-secret").exists()


def _cluster(
    node_factory: NodeFactory, secrets: list[str], extra: list[str], *, wait: bool
) -> list[NodeProcess]:
    ports = [free_port() for _ in secrets]
    nodes = [
        node_factory(
            args=["app.db", *nats_cluster_args(ports, i), *extra],
            nats_port=None,
            env={"HA_CLUSTER_SECRET": secret},
            start=False,
        )
        for i, secret in enumerate(secrets)
    ]
    for n in nodes:
        n.start(wait_ready=False)
    if wait:
        for n in nodes:
            n.wait_ready(60)
    return nodes


def test_a_node_with_another_secret_cannot_join_the_routes(node_factory: NodeFactory) -> None:
    nodes = _cluster(node_factory, [TEST_CLUSTER_SECRET, generate_secret()], [], wait=False)
    hint = "do the nodes share a cluster secret"
    wait_for(lambda: all(hint in n.logs().lower() for n in nodes), 30, "both nodes to name the likely cause")
    assert "refused a route from" in nodes[0].logs() or "refused this node's route" in nodes[0].logs()
    for n in nodes:  # still starting (waiting for a JetStream that cannot form): SIGTERM waits for that
        n.kill()


def test_routes_form_while_the_secret_is_rotated(node_factory: NodeFactory) -> None:
    """node1 already has the new secret first (its server requires it of incoming routes), node2 knows only
    the old one: node1's outgoing route with the old secret joins them. Written on node2, which signs with
    the old secret that both accept."""
    old, new = TEST_CLUSTER_SECRET, generate_secret()
    n1, n2 = _cluster(node_factory, [f"{new},{old}", old], [], wait=True)
    n2.query({"sql": "CREATE TABLE t (x)"})
    n2.query({"sql": "INSERT INTO t VALUES (5)"})
    wait_for(lambda: _rows(n1) == [[5]], 20, "the write to reach node1 during the rotation")
    assert _can_use_jetstream(n1.nats_port or 0, **nats_credentials(old))  # both secrets log in to node1
    assert _can_use_jetstream(n1.nats_port or 0, **nats_credentials(new))
    assert "Authorization Violation" in _refused(n2.nats_port or 0, **nats_credentials(new))


def _make_certs(d: Path) -> tuple[Path, Path, Path]:
    """A CA and one certificate for 127.0.0.1 (client and route ports of every test node), as files."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d.mkdir()
    cert.cert_chain_pems[0].write_to_path(d / "cert.pem")
    cert.private_key_pem.write_to_path(d / "key.pem")
    ca.cert_pem.write_to_path(d / "ca.pem")
    return d / "cert.pem", d / "key.pem", d / "ca.pem"


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return _make_certs(tmp_path / "tls")


def test_a_route_peer_with_a_certificate_of_another_ca_is_refused(
    node_factory: NodeFactory, tmp_path: Path
) -> None:
    ports = [free_port(), free_port()]
    nodes = []
    for i in range(2):
        cert, key, ca = _make_certs(tmp_path / f"tls{i}")  # each node its own CA: neither trusts the other
        tls = ["--nats-cert", str(cert), "--nats-key", str(key), "--nats-ca", str(ca)]
        node = node_factory(args=["app.db", *nats_cluster_args(ports, i), *tls], nats_port=None, start=False)
        nodes.append(node.start(wait_ready=False))
    hint = "TLS handshake of a NATS route with"
    wait_for(lambda: all(hint in n.logs() for n in nodes), 30, "both nodes to say why routes fail")
    assert "same --nats-ca" in nodes[0].logs()
    for n in nodes:  # still starting (waiting for a JetStream that cannot form): SIGTERM waits for that
        n.kill()


def test_a_cluster_over_tls_replicates_and_refuses_plaintext(
    node_factory: NodeFactory, certs: tuple[Path, Path, Path]
) -> None:
    cert, key, ca = certs
    tls = ["--nats-cert", str(cert), "--nats-key", str(key), "--nats-ca", str(ca)]
    n1, n2 = _cluster(node_factory, [TEST_CLUSTER_SECRET] * 2, tls, wait=True)
    n1.query({"sql": "CREATE TABLE t (x)"})
    n1.query({"sql": "INSERT INTO t VALUES (42)"})
    wait_for(lambda: _rows(n2) == [[42]], 20, "the write to reach node2 over TLS routes")
    status = n2.request("GET", "/status").json()["nats"]
    assert (status["auth"], status["tls"]) == ("cluster-secret", True)
    # A node without a server of its own joins node1's over tls://, trusting the CA.
    url = f"tls://127.0.0.1:{n1.nats_port}"
    n3 = node_factory(args=["app.db", "--replication-url", url, "--nats-ca", str(ca)])
    wait_for(lambda: _rows(n3) == [[42]], 20, "node3 to catch up over tls://")
    assert n3.request("GET", "/status").json()["nats"]["tls"] is True

    port = n1.nats_port or 0
    assert "PONG" not in _plaintext_connect(port)  # closed without an answer: it wanted a TLS handshake
    context = ssl.create_default_context(cafile=str(ca))
    assert _can_use_jetstream(port, tls=context, **nats_credentials())
    assert "Authorization Violation" in _refused(port, tls=context)  # TLS alone is not a credential
    assert "CERTIFICATE_VERIFY_FAILED" in _refused(port, tls=ssl.create_default_context())  # not our CA


def _plaintext_connect(port: int) -> str:
    """A client that ignores the server's TLS requirement and sends CONNECT in clear: what it hears before
    the server closes the connection (a server that accepted it would answer PONG)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        f = s.makefile("rb")
        info = json.loads(f.readline()[5:])
        assert info["tls_required"] is True
        s.sendall(b'CONNECT {"verbose":false}\r\nPING\r\n')
        return f.read().decode(errors="replace")
