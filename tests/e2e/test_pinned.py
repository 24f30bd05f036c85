"""Writer mode pinned on three real node processes sharing one external nats-server: heartbeats on
``POST /_ha/heartbeat``, the lowest node id alive writes, a killed writer is replaced within the lease
timeout, a restarted one takes over again only after its start-up, and forged heartbeats change nothing.

Node ids are not the node names' order: node2 has the lowest id, so the writer is not the first node started.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from sqlite_ha.natsd import NatsServer, NatsServerOptions
from sqlite_ha.security.keys import ClusterKeys
from sqlite_ha.security.node_auth import HEADER, NodeVerifier, sign
from sqlite_ha.testing import TEST_CLUSTER_SECRET, NodeProcess, free_port, nats_credentials, wait_for
from sqlite_ha.writer.heartbeat import PATH, REPLY, Heartbeat
from tests.conftest import NodeFactory

IDS = ("hb-b", "hb-a", "hb-c")  # node1, node2, node3: node2 writes
INTERVAL, TIMEOUT = 0.2, 1.0
TOKEN = "pinned-client-token"


@pytest.fixture
def nats_url(tmp_path: Path) -> Iterator[str]:
    """One nats-server outside the nodes (killing a node must not take the log away), with the cluster's
    credentials. Ask for it before ``node_factory``: it then stops after the nodes."""
    with asyncio.Runner() as runner:
        options = NatsServerOptions(
            name="pinned", port=free_port(), store_dir=tmp_path / "nats", **nats_credentials()
        )
        server = NatsServer(options)
        runner.run(server.start())
        try:
            yield server.url
        finally:
            runner.run(server.stop())


def pinned_cluster(
    node_factory: NodeFactory, nats_url: str, *, base_env: bool = False, timeout: float = TIMEOUT
) -> list[NodeProcess]:
    """Three nodes in writer mode pinned, by flags or (``base_env``) by the BASE_* variables, all started
    at once."""
    ports = [free_port() for _ in IDS]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    nodes = []
    for i, node_id in enumerate(IDS):
        peers = ",".join(u for j, u in enumerate(urls) if j != i)
        args = ["app.db", "--replication-url", nats_url, "--heartbeat-interval", f"{INTERVAL}s"]
        args += ["--lease-timeout", f"{timeout}s"]
        env: dict[str, str] = {}
        if base_env:
            env = {"BASE_LOCAL_TARGET": urls[i], "BASE_PEERS": peers, "BASE_NODE_ID": node_id}
        else:
            args += ["--local-target", urls[i], "--peers", peers, "--node-id", node_id]
        nodes.append(
            node_factory(args=args, name=f"node{i + 1}", port=ports[i], env=env, token=TOKEN, start=False)
        )
    for node in nodes:
        node.start(wait_ready=False)
    for node in nodes:
        node.wait_ready(timeout=60)
    return nodes


def mode(node: NodeProcess) -> dict[str, Any]:
    resp = node.request("GET", "/status", timeout=5)
    assert resp.status == 200, resp.body
    writer: dict[str, Any] = resp.json()["writer"]
    return writer


def pins(node: NodeProcess) -> str | None:
    writer = mode(node)["writer"]
    return None if writer is None else writer["node"]  # type: ignore[no-any-return]


def redirected(node: NodeProcess, body: Any) -> str:
    """Where ``node`` sends a write: the ``Location`` of its 307."""
    resp = node.request("POST", "/query", body)
    assert resp.status == 307, (resp.status, resp.body)
    return resp.headers["Location"]


def wait_agree(nodes: list[NodeProcess], node_id: str, timeout: float = 15.0) -> float:
    """Seconds until every node pins ``node_id``, the writer says it writes and the others follow."""
    started = time.monotonic()

    def agree() -> bool:
        modes = [mode(n) for n in nodes]
        return all(
            m["writer"] is not None
            and m["writer"]["node"] == node_id
            and m["role"] == ("writer" if m["node_id"] == node_id else "follower")
            for m in modes
        )

    wait_for(agree, timeout, f"every node to pin {node_id}", interval=0.02)
    return time.monotonic() - started


def test_the_lowest_alive_node_id_writes_and_a_killed_writer_is_replaced(
    nats_url: str, node_factory: NodeFactory
) -> None:
    n1, n2, n3 = nodes = pinned_cluster(node_factory, nats_url)
    wait_agree(nodes, "hb-a")
    for node in nodes:
        status = mode(node)
        assert status["mode"] == "pinned"
        assert [a["node_id"] for a in status["alive"]] == ["hb-a", "hb-b", "hb-c"]
        assert status["writer"]["url"] == n2.url
        assert status["start_up"]["over"] is True
    assert mode(n2)["writer"]["self"] is True
    assert mode(n1)["writer"]["self"] is False
    seq = n2.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"})["seq"]
    assert n1.query({"sql": "SELECT count(*) FROM t"}, db=f"app.db?min_seq={seq}")["rows"] == [[0]]

    # A write sent to a follower is answered 307 to the writer, as the plugin does; following it (same
    # method, same body) writes once. Reads stay local; ?forward=true forwards instead.
    insert = {"sql": "INSERT INTO t(v) VALUES ('redirected')"}
    assert redirected(n1, insert) == n2.url + "/query"
    assert redirected(n3, insert) == n2.url + "/query"
    assert n2.query({"sql": "SELECT count(*) FROM t"})["rows"] == [[0]]  # the 307 wrote nothing
    seq = n2.query(insert)["seq"]
    assert n1.query({"sql": "SELECT v FROM t"}, db=f"app.db?min_seq={seq}")["rows"] == [["redirected"]]
    forwarded = n3.request("POST", "/query?forward=true", {"sql": "INSERT INTO t(v) VALUES ('forwarded')"})
    assert forwarded.status == 200, forwarded.body
    seq = forwarded.json()["seq"]
    assert n2.query({"sql": "SELECT v FROM t ORDER BY id"}, db=f"app.db?min_seq={seq}")["rows"] == [
        ["redirected"],
        ["forwarded"],
    ]

    # The writer dies without a word: its peers rank it out when its last heartbeat is older than the
    # lease timeout (heard at most one interval before the kill), not before.
    epoch = mode(n1)["writer"]["epoch"]
    n2.kill()
    took = wait_agree([n1, n3], "hb-b")
    assert TIMEOUT - 3 * INTERVAL < took < TIMEOUT + INTERVAL + 0.5, took
    assert mode(n1)["writer"]["epoch"] == epoch + 1  # this node's count of writer changes
    assert {p["node_id"]: p["alive"] for p in mode(n1)["peers"]} == {"hb-a": False, "hb-c": True}
    assert redirected(n3, {"sql": "INSERT INTO t(v) VALUES ('after')"}) == n1.url + "/query"
    assert n1.query({"sql": "INSERT INTO t(v) VALUES ('after')"})["seq"] > seq  # the new writer writes

    # node2 comes back while node3 is down: it must not rank itself before it has heard from every peer or
    # waited one lease timeout, and node1 writes on meanwhile (a starting node is not ranked by its peers).
    n3.kill()
    wait_agree([n1], "hb-b")
    n2.start(wait_ready=False)
    samples: list[tuple[dict[str, Any], str | None]] = []

    def n2_ready() -> bool:
        n1_pins = pins(n1)  # first: if node2 was still starting after this, it was when node1 answered
        try:
            status = mode(n2)
        except OSError:
            return False  # not listening yet
        samples.append((status, n1_pins))
        return bool(status["start_up"]["over"])

    wait_for(n2_ready, 20, "node2's start-up to end", interval=0.02)
    assert len(samples) > 1, "node2 answered only after its start-up: the window was not observed"
    for status, n1_pins in samples[:-1]:
        assert status["role"] != "writer", status
        assert n1_pins == "hb-b", "node1 gave the role up to a node still starting"
    start_up = mode(n2)["start_up"]
    assert start_up["took"] >= TIMEOUT, start_up
    assert start_up["why"] == "no answer from 1", start_up
    wait_agree([n1, n2], "hb-a", timeout=5)
    assert redirected(n1, {"sql": "INSERT INTO t(v) VALUES ('back')"}) == n2.url + "/query"

    # node3 comes back with every peer up: its start-up ends as soon as both answered.
    n3.start()
    wait_agree(nodes, "hb-a", timeout=10)
    start_up = mode(n3)["start_up"]
    assert start_up["why"] == "every peer answered", start_up
    assert start_up["took"] < TIMEOUT, start_up
    assert mode(n3)["peers"][0]["restarts"] + mode(n3)["peers"][1]["restarts"] == 0  # a new process: new view
    assert mode(n1)["heartbeats"]["refused"] == {}


# ------------------------------------------------------------------------------------ forged heartbeats
async def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(url + PATH, data=body, headers={"Content-Type": "application/json", **headers}) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


def post(node: NodeProcess, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], Heartbeat]:
    status, out_headers, data = asyncio.run(_post(node.url, body, headers))
    assert status == 200, data
    return status, out_headers, Heartbeat.decode(data)


def refused(node: NodeProcess, body: bytes, headers: dict[str, str], status: int, code: str) -> str:
    got, out_headers, data = asyncio.run(_post(node.url, body, headers))
    assert got == status, (got, data)
    error = orjson.loads(data)["error"]
    assert error["code"] == code, error
    if status == 401:
        assert out_headers["WWW-Authenticate"] == 'HA-Node realm="sqlite-ha"'
    return str(error["message"])


def test_forged_heartbeats_are_refused_and_change_nothing(nats_url: str, node_factory: NodeFactory) -> None:
    """Set by the BASE_* variables, behind a client token the nodes' heartbeats do without; then a graceful
    stop hands the role over at once (its leaving heartbeat), well before the lease timeout."""
    n1, n2, n3 = nodes = pinned_cluster(node_factory, nats_url, base_env=True, timeout=5.0)
    wait_agree(nodes, "hb-a")
    before = mode(n2)
    keys = ClusterKeys.from_text(TEST_CLUSTER_SECRET)
    other = ClusterKeys.from_text("another-cluster-secret-0123456789")
    # The lowest id of all, claimed for node3's URL: only the signature stands in the way.
    evil = Heartbeat(node_id="0-evil", target=n3.url, node="node3", boot="evil", seq=10**9).encode()
    client = {"Authorization": f"Bearer {TOKEN}"}

    message = refused(n2, evil, client, 401, "node_unauthorized")  # the client token is no node signature
    assert "X-HA-Node-Auth" in message
    refused(n2, evil, sign(other, "node3", "POST", PATH, evil), 401, "node_unauthorized")
    stranger = Heartbeat(node_id="0-evil", target="http://127.0.0.1:9", node="node3").encode()
    signed = sign(keys, "node3", "POST", PATH, stranger)
    refused(n2, stranger, signed, 403, "unknown_sender")
    assert "replay" in refused(n2, stranger, signed, 401, "node_unauthorized")
    refused(n2, evil, sign(keys, "node1", "POST", PATH, evil), 403, "unknown_sender")  # says node3
    bad = b'{"node_id": 7, "target": "http://127.0.0.1:9"}'
    refused(n2, bad, sign(keys, "node3", "POST", PATH, bad), 400, "bad_heartbeat")
    big = b" " * 5000
    refused(n2, big, sign(keys, "node3", "POST", PATH, big), 413, "payload_too_large")

    # A genuine heartbeat, as node3 sends them, is taken and answered with node2's own, signed; the same
    # request again is a replay.
    real = Heartbeat(node_id="hb-c", target=n3.url, node="node3", boot="test", seq=1).encode()
    signed = sign(keys, "node3", "POST", PATH, real)
    status, headers, answer = post(n2, real, signed)
    assert status == 200
    assert (answer.node_id, answer.target, answer.node, answer.writer) == ("hb-a", n2.url, "node2", "hb-a")
    assert NodeVerifier(keys).verify(headers[HEADER], REPLY, PATH, answer.encode()) == "node2"
    refused(n2, real, signed, 401, "node_unauthorized")

    after = mode(n2)
    assert after["writer"] == before["writer"]
    assert after["changes"] == before["changes"]
    assert [a["node_id"] for a in after["alive"]] == ["hb-a", "hb-b", "hb-c"]
    assert "0-evil" not in str(after)
    assert "0-evil" not in str(mode(n1))
    assert "0-evil" not in str(mode(n3))
    assert after["heartbeats"]["refused"] == {"node_unauthorized": 4, "unknown_sender": 2, "bad_heartbeat": 1}

    # A graceful stop: its peers drop it at once, not after the 5 s lease timeout.
    n2.stop()
    took = wait_agree([n1, n3], "hb-b", timeout=5)
    assert took < 1.0, took
    assert {p["node_id"]: p["leaving"] for p in mode(n1)["peers"]}["hb-a"] is True
