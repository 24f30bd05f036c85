"""HTTP writes in writer mode static: forwarded from followers to the writer, 307, ``?local=true``, no writer,
forged forwarding marks, ``GET /leader``.

Three real node processes share one external nats-server (so that stopping the writer leaves the log up);
every node gets ``--leader-static`` with node 1's URL, built from its port before any node starts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sqlite_ha.natsd import NatsServer, NatsServerOptions
from sqlite_ha.security.keys import ClusterKeys
from sqlite_ha.security.node_auth import HEADER as NODE_AUTH
from sqlite_ha.security.node_auth import sign
from sqlite_ha.testing import (
    TEST_CLUSTER_SECRET,
    NodeProcess,
    Response,
    free_port,
    nats_credentials,
    wait_for,
)
from tests.conftest import NodeFactory
from tests.e2e.test_https import make_tls
from tests.e2e.test_openapi import Conformance, load_spec

TOKEN = "forwarding-token"
WRITER_WAIT = 5.0
AUTH_HEADER = f"Authorization: Bearer {TOKEN}"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


SPEC = Conformance(load_spec())


class Cluster:
    def __init__(self, nodes: list[NodeProcess], nats_url: str) -> None:
        self.nodes = nodes
        self.nats_url = nats_url
        self.writer, self.follower, self.third = nodes

    def status(self, node: NodeProcess, db: str = "app.db") -> dict[str, Any]:
        doc = node.request("GET", "/status").json()
        return next(d for d in doc["databases"] if d["id"] == db)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("forwarding")
    with asyncio.Runner() as runner:
        server = NatsServer(
            NatsServerOptions(name="log", port=free_port(), store_dir=tmp / "nats", **nats_credentials())
        )
        runner.run(server.start())
        ports = [free_port() for _ in range(3)]
        leader = f"http://127.0.0.1:{ports[0]}"
        nodes = [
            NodeProcess(
                workdir=tmp / f"node{i + 1}",
                name=f"node{i + 1}",
                port=port,
                token=TOKEN,
                args=[
                    "app.db",
                    "load.db",
                    "--replication-url",
                    server.url,
                    "--leader-static",
                    leader,
                    "--writer-wait",
                    f"{WRITER_WAIT:g}s",
                    "--replication-timeout",
                    "5s",
                ],
            )
            for i, port in enumerate(ports)
        ]
        try:
            for node in nodes:
                node.start(wait_ready=False)
            for node in nodes:
                node.wait_ready()
            yield Cluster(nodes, server.url)
        finally:
            failed = request.session.testsfailed > 0
            for node in nodes:
                node.kill() if failed else node.stop()
                if failed:
                    print(f"\n----- log of {node.name} -----\n{node.logs()}")
            runner.run(server.stop())


def query(node: NodeProcess, body: Any, path: str = "/query", **kw: Any) -> Response:
    return node.request("POST", path, body, **kw)


def ok(resp: Response, status: int = 200) -> Any:
    assert resp.status == status, resp.body
    return resp.json()


def count(node: NodeProcess, table: str, min_seq: int = 0) -> int:
    doc = ok(query(node, {"sql": f"SELECT count(*) FROM {table}"}, f"/query?min_seq={min_seq}"))
    return int(doc["rows"][0][0])


def test_a_write_on_a_follower_lands_once_on_the_writer_and_everywhere(cluster: Cluster) -> None:
    w, f, third = cluster.writer, cluster.follower, cluster.third
    ok(query(f, {"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"}))  # DDL: forwarded too
    writes_on_writer = cluster.status(w)["writes"]
    writes_on_follower = cluster.status(f)["writes"]
    resp = query(f, {"sql": "INSERT INTO t(v) VALUES (?)", "params": ["from follower"]})
    doc = ok(resp)
    assert doc["rows"][0][0] == 1  # rows_affected (the rowid comes from the writer's slot)
    seq = doc["seq"]
    assert resp.headers["X-Sequence"] == str(seq)
    assert resp.headers["X-HA-Forwarded-To"] == w.url
    # a min_seq read on the third node sees it at once
    assert count(third, "t", seq) == 1
    assert count(w, "t", seq) == 1
    assert count(f, "t", seq) == 1
    # it ran once, on the writer; the follower wrote nothing itself
    assert cluster.status(w)["writes"] == writes_on_writer + 1
    assert cluster.status(f)["writes"] == writes_on_follower


def test_a_batch_with_one_write_is_forwarded_as_one_transaction(cluster: Cluster) -> None:
    w, f, third = cluster.writer, cluster.follower, cluster.third
    ok(query(w, {"sql": "CREATE TABLE b(id INTEGER PRIMARY KEY, v TEXT)"}))
    doc = ok(query(f, ["SELECT count(*) FROM b", "INSERT INTO b VALUES (1, 'a')", "SELECT count(*) FROM b"]))
    assert [r["rows"] for r in doc["results"]] == [[[0]], [[1, 1]], [[1]]]  # one transaction, at the writer
    # a batch that fails at its second statement leaves nothing behind anywhere
    resp = query(f, ["INSERT INTO b VALUES (2, 'b')", "INSERT INTO b VALUES (1, 'dup')"])
    assert resp.status == 400, resp.body
    assert "UNIQUE" in resp.json()["error"]["message"]
    seq = ok(query(f, {"sql": "INSERT INTO b VALUES (3, 'c')"}))["seq"]
    rows = ok(query(third, {"sql": "SELECT id FROM b ORDER BY id"}, f"/query?min_seq={seq}"))["rows"]
    assert rows == [[1], [3]]


def test_a_write_to_an_unknown_table_is_answered_by_the_writer(cluster: Cluster) -> None:
    resp = query(cluster.follower, {"sql": "INSERT INTO nowhere VALUES (1)"})
    assert resp.status == 400, resp.body
    assert "nowhere" in resp.json()["error"]["message"]
    assert resp.headers["X-HA-Forwarded-To"] == cluster.writer.url


def test_forward_false_answers_307_and_following_it_keeps_method_and_body(cluster: Cluster) -> None:
    w, f = cluster.writer, cluster.follower
    ok(query(w, {"sql": "CREATE TABLE r(id INTEGER PRIMARY KEY, v TEXT)"}))
    path = "/databases/app.db?forward=false&min_seq=1"
    resp = query(f, {"sql": "INSERT INTO r(v) VALUES ('redirected')"}, path)
    assert resp.status == 307, resp.body
    assert resp.headers["Location"] == w.url + path
    SPEC.check("POST", "/databases/{id}", resp)
    assert count(w, "r") == 0  # nothing written by the 307 itself

    # Clients keep method and body on a 307. They drop credentials on a redirect to another origin (the
    # writer's port): curl sends them again with --location-trusted.
    out = subprocess.run(
        [
            "curl", "-sS", "-L", "--location-trusted",
            "-H", AUTH_HEADER, "-H", "Content-Type: application/json",
            "-d", json.dumps({"sql": "INSERT INTO r(v) VALUES ('followed')"}),
            "-w", "\n%{http_code} %{url_effective} %{num_redirects}", f.url + path,
        ],
        capture_output=True, check=True, timeout=30, text=True,
    ).stdout  # fmt: skip
    body, _, tail = out.rpartition("\n")
    assert tail == f"200 {w.url + path} 1", out
    doc = json.loads(body)
    assert doc["rows"][0][0] == 1
    assert ok(query(f, {"sql": "SELECT v FROM r"}, f"/query?min_seq={doc['seq']}"))["rows"] == [["followed"]]
    # a read with forward=false is not redirected: reads are local
    assert ok(query(f, {"sql": "SELECT count(*) FROM r"}, "/query?forward=false"))["rows"] == [[1]]
    for bad in ("forward=maybe", "local=2"):
        resp = query(f, {"sql": "INSERT INTO r(v) VALUES ('bad')"}, f"/query?{bad}")
        assert resp.status == 400, resp.body
        assert query(f, {"sql": "SELECT 1"}, f"/query?{bad}").status == 400
    assert count(w, "r") == 1


def test_local_true_runs_the_write_on_the_follower(cluster: Cluster) -> None:
    w, f, third = cluster.writer, cluster.follower, cluster.third
    seq = ok(query(w, {"sql": "CREATE TABLE l(id INTEGER PRIMARY KEY, v TEXT)"}))["seq"]
    before = cluster.status(f)["writes"]
    resp = query(f, {"sql": "INSERT INTO l VALUES (1, 'local')"}, f"/query?local=true&min_seq={seq}")
    doc = ok(resp)
    assert "X-HA-Forwarded-To" not in resp.headers
    assert cluster.status(f)["writes"] == before + 1
    assert count(third, "l", doc["seq"]) == 1


def test_writes_on_one_keep_alive_connection_interleaved_with_reads(cluster: Cluster) -> None:
    """The fast path hands a write over to aiohttp with its connection; later requests are still served."""
    w, f = cluster.writer, cluster.follower
    ok(query(w, {"sql": "CREATE TABLE k(id INTEGER PRIMARY KEY)"}))
    conn = http.client.HTTPConnection("127.0.0.1", f.port, timeout=30)
    try:
        seqs = []
        for i in range(3):
            for sql in ("SELECT count(*) FROM k", f"INSERT INTO k VALUES ({i})"):
                conn.request("POST", "/query", body=json.dumps({"sql": sql}), headers=AUTH)
                resp = conn.getresponse()
                body = json.loads(resp.read())
                assert resp.status == 200, body
                if "seq" in body:
                    seqs.append(body["seq"])
    finally:
        conn.close()
    assert len(seqs) == 3
    assert count(w, "k", max(seqs)) == 3


def test_a_load_on_a_follower_is_forwarded_to_the_writer(cluster: Cluster, tmp_path: Path) -> None:
    f, third = cluster.follower, cluster.third
    src = tmp_path / "src.db"
    with sqlite3.connect(src) as c:
        c.execute("CREATE TABLE loaded(id INTEGER PRIMARY KEY, v TEXT)")
        c.executemany("INSERT INTO loaded VALUES (?, ?)", [(i, f"v{i}") for i in range(100)])
    c.close()
    resp = f.request("POST", "/databases/load.db/load", raw=src.read_bytes())
    doc = ok(resp)
    assert resp.headers["X-HA-Forwarded-To"] == cluster.writer.url
    rows = ok(
        query(third, {"sql": "SELECT count(*) FROM loaded"}, f"/databases/load.db?min_seq={doc['seq']}")
    )
    assert rows["rows"] == [[100]]


def test_a_forged_forwarding_mark_is_refused_a_signed_one_not_forwarded_again(
    cluster: Cluster,
) -> None:
    f = cluster.follower
    body = json.dumps({"sql": "INSERT INTO nowhere VALUES (1)"}).encode()
    # unsigned, or signed with another cluster's secret: refused, not taken as forwarded
    for extra in (
        {},
        sign(ClusterKeys.from_text("another-cluster-secret-0123456789"), "node9", "POST", "/query", body),
    ):
        resp = f.request("POST", "/query", raw=body, headers={**AUTH, "X-HA-Forwarded-By": "node9", **extra})
        assert resp.status == 401, resp.body
        assert resp.json()["error"]["code"] == "node_unauthorized"
    # signed by a node of this cluster: the follower does not forward it again, it answers not_writer
    keys = ClusterKeys.from_text(TEST_CLUSTER_SECRET)
    headers = {**AUTH, "X-HA-Forwarded-By": "node3", **sign(keys, "node3", "POST", "/query", body)}
    resp = f.request("POST", "/query", raw=body, headers=headers)
    assert resp.status == 503, resp.body
    assert resp.json()["error"]["code"] == "not_writer"
    assert resp.headers["Retry-After"] == "1"
    # the mark changes nothing on a read: it is served here
    read = json.dumps({"sql": "SELECT 1"}).encode()
    resp = f.request("POST", "/query", raw=read, headers={**AUTH, "X-HA-Forwarded-By": "node9"})
    assert resp.status == 200, resp.body


def test_a_node_that_takes_a_follower_for_the_writer_gets_not_writer_not_a_loop(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A fourth node configured with the wrong writer (node 2, a follower): node 2 does not forward the
    forwarded write again; node 4 retries within its --writer-wait, then answers node 2's not_writer."""
    f = cluster.follower
    args = ["app.db", "--replication-url", cluster.nats_url, "--writer-wait", "1s"]
    args += ["--leader-static", f.url]  # a follower
    wrong = NodeProcess(
        workdir=tmp_path / "node4",
        name="node4",
        token=TOKEN,
        args=args,
    ).start()
    try:
        started = time.monotonic()
        resp = query(wrong, {"sql": "CREATE TABLE never(x)"})
        elapsed = time.monotonic() - started
        assert resp.status == 503, resp.body
        assert resp.json()["error"]["code"] == "not_writer"
        assert resp.headers["X-HA-Forwarded-To"] == f.url
        assert resp.headers["Retry-After"] == "1"
        assert 0.9 <= elapsed < 4, elapsed
        forwarding = ok(wrong.request("GET", "/leader"))["forwarding"]
        assert forwarding["retries"] >= 2, forwarding
    finally:
        wrong.stop()
    resp = query(cluster.writer, {"sql": "SELECT count(*) FROM never"})
    assert resp.status == 400, resp.body  # nothing was written anywhere


def test_a_write_waits_for_the_writer_to_come_back(cluster: Cluster) -> None:
    """The writer restarts: a write sent to a follower meanwhile is refused a connection (nothing sent),
    retried, and lands once the writer is back, within --writer-wait."""
    w, f = cluster.writer, cluster.follower
    seq = ok(query(w, {"sql": "CREATE TABLE back(id INTEGER PRIMARY KEY)"}))["seq"]
    assert count(f, "back", seq) == 0
    retries = ok(f.request("GET", "/leader"))["forwarding"]["retries"]
    w.stop()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        pending = pool.submit(query, f, {"sql": "INSERT INTO back VALUES (1)"})
        # the first attempt is refused (nothing sent): the write waits and tries again, it does not fail
        wait_for(lambda: ok(f.request("GET", "/leader"))["forwarding"]["retries"] > retries, 5, "a retry")
        assert not pending.done()
        w.start()
        resp = pending.result(timeout=WRITER_WAIT + 5)
    assert resp.status == 200, resp.body
    assert time.monotonic() - started < WRITER_WAIT + 1
    assert count(cluster.third, "back", resp.json()["seq"]) == 1


def test_a_write_the_writer_does_not_answer_is_not_retried(cluster: Cluster, tmp_path: Path) -> None:
    """The writer is paused (SIGSTOP) after the follower connected: the write is sent and never answered. The
    follower does not retry it (it may have happened) and answers write_outcome_unknown after
    --replication-timeout and a margin; once the writer resumes, the write does land, once."""
    w = cluster.writer
    seq = ok(query(w, {"sql": "CREATE TABLE unknown(id INTEGER PRIMARY KEY)"}))["seq"]
    args = ["app.db", "--replication-url", cluster.nats_url, "--replication-timeout", "1s"]
    args += ["--leader-static", w.url]
    follower = NodeProcess(workdir=tmp_path / "node5", name="node5", token=TOKEN, args=args).start()
    try:
        assert count(follower, "unknown", seq) == 0
        assert w.proc is not None
        w.proc.send_signal(signal.SIGSTOP)
        try:
            started = time.monotonic()
            resp = query(follower, {"sql": "INSERT INTO unknown VALUES (1)"})
            elapsed = time.monotonic() - started
        finally:
            w.proc.send_signal(signal.SIGCONT)
        assert resp.status == 503, resp.body
        assert resp.json()["error"]["code"] == "write_outcome_unknown"
        assert "Retry-After" not in resp.headers
        assert 1 + 5 - 0.5 <= elapsed < 1 + 5 + 3, elapsed
        assert ok(follower.request("GET", "/leader"))["forwarding"]["retries"] == 0
        # the writer had the request: it runs it once it resumes
        wait_for(lambda: count(cluster.third, "unknown") == 1, 10, "the paused write to land")
    finally:
        follower.stop()


def test_leader_on_the_writer_and_a_follower(cluster: Cluster) -> None:
    w, f = cluster.writer, cluster.follower
    for node in (w, f):
        SPEC.check("GET", "/leader", node.request("GET", "/leader"))
        SPEC.check("GET", "/status", node.request("GET", "/status"))
    on_writer = ok(w.request("GET", "/leader"))
    assert on_writer["mode"] == "static"
    assert on_writer["role"] == "writer"
    assert on_writer["writer"]["url"] == w.url
    assert on_writer["writer"]["self"] is True
    assert on_writer["url"] == w.url
    assert on_writer["node"] == "node1"
    on_follower = ok(f.request("GET", "/leader"))
    assert on_follower["role"] == "follower"
    assert on_follower["node"] == "node2"
    assert on_follower["writer"]["url"] == w.url
    assert on_follower["writer"]["self"] is False
    assert on_follower["url"] == f.url
    assert on_follower["forwarding"]["forwarded"] > 0  # the tests before sent writes through it
    # like /status it needs the token, or a node signature of this cluster
    assert f.request("GET", "/leader", auth=False).status == 401
    signed = sign(ClusterKeys.from_text(TEST_CLUSTER_SECRET), "node3", "GET", "/leader")
    assert ok(f.request("GET", "/leader", auth=False, headers=signed))["writer"]["url"] == w.url
    forged = sign(ClusterKeys.from_text("another-cluster-secret-0123456789"), "node3", "GET", "/leader")
    resp = f.request("GET", "/leader", auth=False, headers=forged)
    assert resp.status == 401
    assert resp.json()["error"]["code"] == "node_unauthorized"
    assert NODE_AUTH in signed


def test_with_the_writer_stopped_reads_stay_local_and_writes_fail_no_writer(cluster: Cluster) -> None:
    """Last: it stops the writer."""
    w, f = cluster.writer, cluster.follower
    seq = ok(query(w, {"sql": "CREATE TABLE s(id INTEGER PRIMARY KEY)"}))["seq"]
    assert count(f, "s", seq) == 0
    w.stop()
    assert count(f, "s") == 0  # a read on a follower never needs the writer
    started = time.monotonic()
    resp = query(f, {"sql": "INSERT INTO s VALUES (1)"})
    elapsed = time.monotonic() - started
    assert resp.status == 503, resp.body
    SPEC.check("POST", "/query", resp)
    error = resp.json()["error"]
    assert error["code"] == "no_writer", error
    assert "unreachable" in error["message"]
    assert "nothing was written" in error["message"]
    assert resp.headers["Retry-After"] == "1"
    assert WRITER_WAIT - 0.2 <= elapsed < WRITER_WAIT + 3, elapsed
    assert count(f, "s") == 0


def test_forwarding_to_a_writer_over_https_with_client_certificates(
    node_factory: NodeFactory, tmp_path: Path
) -> None:
    """Nodes that serve HTTPS and require client certificates (``--client-ca``): the follower checks the
    writer's certificate against that CA and presents its own ``--cert``."""
    tls = make_tls(tmp_path / "tls")
    client = str(tls.client_cert(tmp_path / "client.pem"))
    port = free_port()
    flags = ["--cert", str(tls.cert), "--key", str(tls.key), "--client-ca", str(tls.ca)]
    flags += ["--leader-static", f"https://127.0.0.1:{port}", "--token", TOKEN]
    writer = node_factory(
        name="writer", port=port, nats_port=None, args=["app.db", *flags], ca=str(tls.ca), client_cert=client
    )
    follower = node_factory(
        name="follower",
        args=["app.db", "--replication-url", f"nats://127.0.0.1:{writer.nats_port}", *flags],
        ca=str(tls.ca),
        client_cert=client,
    )
    ok(query(follower, {"sql": "CREATE TABLE h(id INTEGER PRIMARY KEY)"}, headers=AUTH))
    resp = query(follower, {"sql": "INSERT INTO h VALUES (1)"}, headers=AUTH)
    doc = ok(resp)
    assert resp.headers["X-HA-Forwarded-To"] == writer.url
    assert writer.url.startswith("https://")
    rows = ok(query(follower, {"sql": "SELECT id FROM h"}, f"/query?min_seq={doc['seq']}", headers=AUTH))
    assert rows["rows"] == [[1]]
    assert ok(writer.request("GET", "/leader", headers=AUTH))["role"] == "writer"
