"""Writes go on when the stream leader's node goes away, and a node's embedded nats-server is supervised.

Real node processes and real nats-servers: the 3-server topology (each node runs its own embedded server,
the servers form one NATS cluster, the stream has three replicas) and the shared one (node2 and node3 use
node1's server). A steady write load runs on the nodes the fault does not touch; every answer is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import signal
import socket
import threading
import time
from typing import Any

import nats
import psutil

from sqlite_ha.testing import NodeProcess, free_port, nats_cluster_args, wait_for
from tests.conftest import NodeFactory

USER, PASSWORD = "ha", "failover-secret"


def three_servers(node_factory: NodeFactory) -> list[NodeProcess]:
    ports = [free_port() for _ in range(3)]
    nodes = []
    for i in range(3):
        nodes.append(
            node_factory(
                args=[
                    "app.db",
                    *nats_cluster_args(ports, i),
                    "--nats-user",
                    USER,
                    "--nats-pass",
                    PASSWORD,
                ],
                nats_port=None,
                name=f"node{i + 1}",
                start=False,
            )
        )
    for node in nodes:
        node.start(wait_ready=False)
    for node in nodes:
        node.wait_ready(timeout=90)
    create_table(nodes)
    return nodes


def create_table(nodes: list[NodeProcess]) -> None:
    seq = nodes[0].query({"sql": "CREATE TABLE w(id INTEGER PRIMARY KEY, who TEXT)"})["seq"]
    for node in nodes:
        node.query({"sql": "SELECT 1"}, db=f"app.db?min_seq={seq}")


def nats_server_of(node: NodeProcess) -> psutil.Process:
    assert node.proc is not None
    return next(p for p in psutil.Process(node.proc.pid).children() if "nats-server" in p.name())


class StreamWatch:
    """Asks every 50 ms, through the given servers, who leads the stream; records each change."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.changes: list[tuple[float, str | None]] = []
        self.announced: list[float] = []  # the stream's LEADER_ELECTED advisories: a leader that serves
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> StreamWatch:
        self._thread.start()
        wait_for(lambda: self.leader() is not None, 30, "the stream to have a leader", 0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def leader(self) -> str | None:
        return self.changes[-1][1] if self.changes else None

    def elected_after(self, t: float, old: str) -> float | None:
        return next((at for at, who in self.changes if at >= t and who not in (None, old)), None)

    async def _run(self) -> None:
        async def quiet(_e: Exception) -> None:
            pass

        nc = await nats.connect(
            servers=self.urls,
            user=USER,
            password=PASSWORD,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.05,
            error_cb=quiet,
        )

        async def announced(_msg: object) -> None:
            self.announced.append(time.monotonic())

        await nc.subscribe("$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.ha_replication", cb=announced)
        try:
            while not self._stop.is_set():
                leader = None
                with contextlib.suppress(Exception):
                    msg = await nc.request("$JS.API.STREAM.INFO.ha_replication", b"", timeout=0.5)
                    leader = (json.loads(msg.data).get("cluster") or {}).get("leader")
                if not self.changes or self.changes[-1][1] != leader:
                    self.changes.append((time.monotonic(), leader))
                await asyncio.sleep(0.05)
        finally:
            await nc.close()


class Load:
    """One thread per node inserting rows, about ``rate`` a second each; every answer is recorded."""

    def __init__(self, nodes: list[NodeProcess], rate: float = 40.0) -> None:
        self.nodes = nodes
        self.interval = 1.0 / rate
        self.answers: list[tuple[float, str, int]] = []  # (when, node, HTTP status; 0 = no answer)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(n, i), daemon=True) for i, n in enumerate(nodes)
        ]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        wait_for(lambda: len(self.ok(0)) >= 10 * len(self.nodes), 30, "writes to flow", 0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(40)

    def _run(self, node: NodeProcess, index: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            started = time.monotonic()
            try:
                status = node.request(
                    "POST",
                    "/query",
                    {"sql": "INSERT INTO w VALUES (?, ?)", "params": [index * 10**9 + i, node.name]},
                    timeout=30,
                ).status
            except OSError:
                status = 0
            now = time.monotonic()
            with self._lock:
                self.answers.append((now, node.name, status))
            self._stop.wait(max(0.0, self.interval - (now - started)) if status else 0.05)

    def ok(self, since: float, until: float = float("inf")) -> list[float]:
        with self._lock:
            return sorted(t for t, _, s in self.answers if s == 200 and since <= t <= until)

    def not_ok(self, since: float) -> list[tuple[float, str, int]]:
        with self._lock:
            return [a for a in self.answers if a[2] != 200 and a[0] >= since]

    def longest_gap(self, since: float, until: float) -> float:
        points = [since, *self.ok(since, until), until]
        return max(b - a for a, b in itertools.pairwise(points))


def test_graceful_restart_of_the_stream_leaders_node_leaves_no_write_gap(node_factory: NodeFactory) -> None:
    """SIGTERM the node whose server leads the stream and start it again: it hands the stream (and the
    consumers its server leads) over before its server stops, so the other nodes' writes never wait for an
    election; none is answered 202."""
    nodes = three_servers(node_factory)
    with StreamWatch([f"nats://127.0.0.1:{n.nats_port}" for n in nodes]) as watch:
        leader = next(n for n in nodes if n.name == watch.leader())
        others = [n for n in nodes if n is not leader]
        with Load(others) as load:
            began = time.monotonic()
            leader.stop()
            stopped = time.monotonic()
            leader.start()  # waits until ready
            wait_for(lambda: len(load.ok(time.monotonic() - 0.5)) > 0, 10, "writes after the restart", 0.05)
            end = time.monotonic()
        gap = load.longest_gap(began, end)
        elected = watch.elected_after(began, leader.name)
    assert elected is not None
    assert elected <= stopped, "the stream was not handed over before the stop"
    assert gap < 1.0, f"writes stopped for {gap:.2f}s"
    assert load.not_ok(began) == []
    assert re.search(r"handed over .*\bstream ha_replication\b", leader.logs())  # with its KV, consumers


def test_writes_resume_within_a_second_of_a_new_leader_after_a_sigkill(node_factory: NodeFactory) -> None:
    """SIGKILL the stream leader's node and its server: no write can be acknowledged until the other two
    replicas elect a leader (raft's election timeout, 4-9 s), but then the writes waiting meanwhile are
    acknowledged at once; none is answered 202."""
    nodes = three_servers(node_factory)
    with StreamWatch([f"nats://127.0.0.1:{n.nats_port}" for n in nodes]) as watch:
        leader = next(n for n in nodes if n.name == watch.leader())
        others = [n for n in nodes if n is not leader]
        with Load(others) as load:
            server = nats_server_of(leader)
            began = time.monotonic()
            server.kill()
            leader.kill()
            wait_for(lambda: watch.elected_after(began, leader.name) is not None, 30, "a new leader", 0.05)
            seen = watch.elected_after(began, leader.name)
            assert seen is not None
            # The leader stream info names serves once it announced itself (usually the same instant).
            wait_for(lambda: any(t >= began for t in watch.announced), 10, "the new leader's advisory", 0.05)
            elected = max(seen, min(t for t in watch.announced if t >= began))
            wait_for(lambda: len(load.ok(elected)) >= 20, 30, "writes after the election", 0.05)
        first = load.ok(elected)[0]
        gap = load.longest_gap(began, first)
    print(
        f"stream info named a new leader after {seen - began:.2f}s, it served after {elected - began:.2f}s; "
        f"first write {first - elected:.3f}s after that, gap {gap:.2f}s"
    )
    assert first - elected <= 1.0, f"writes resumed {first - elected:.2f}s after the new leader"
    assert gap <= elected - began + 1.0
    assert load.not_ok(began) == []


def test_shared_nats_writes_resume_at_once_when_the_server_is_back(node_factory: NodeFactory) -> None:
    """node2 and node3 replicate through node1's server. Restart node1: while its server is down their
    writes wait (or are refused, 503), and once it is back they are acknowledged within a second, instead of
    a request lost with the old connection holding every write for the whole --replication-timeout."""
    first = node_factory(args=["app.db"], nats_port=None, name="node1")
    url = f"nats://127.0.0.1:{first.nats_port}"
    others = [node_factory(args=["app.db", "--replication-url", url], name=f"node{i}") for i in (2, 3)]
    create_table([first, *others])
    with Load(others) as load:
        began = time.monotonic()
        first.stop()
        first.start()
        back = time.monotonic()
        wait_for(lambda: len(load.ok(back)) >= 10, 30, "writes after node1 is back", 0.05)
    resumed = load.ok(back)[0]
    assert resumed - back <= 1.0, f"writes resumed {resumed - back:.2f}s after node1's server was back"
    assert [a for a in load.not_ok(began) if a[2] not in (503,)] == []  # refused while down, never 202


def test_a_killed_embedded_server_is_restarted_and_the_node_reports_degraded(
    node_factory: NodeFactory,
) -> None:
    """SIGKILL node3's own nats-server. The node goes on through a peer server: it stays ready but says it
    is degraded, /status shows the server restarting (and why restarts fail while its port is taken), then
    running again; writes on it succeed all along."""
    nodes = three_servers(node_factory)
    node = nodes[2]
    server = nats_server_of(node)
    port = node.nats_port
    assert port
    blocker = socket.socket()
    try:
        server.kill()
        server.wait(10)
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", port))  # the restart (0.5 s later) fails while the port is taken
        blocker.listen()

        def embedded() -> dict[str, Any]:
            return dict(node.request("GET", "/status").json()["nats"]["embedded_server"])

        wait_for(lambda: embedded()["last_error"] is not None, 30, "a failed restart to be reported", 0.05)
        state = embedded()
        assert state["state"] == "restarting"
        assert state["last_exit_code"] == -signal.SIGKILL
        assert state["restarts"] >= 1
        wait_for(lambda: node.request("GET", "/readyz").status == 200, 30, "the node to reach a peer", 0.05)
        ready = node.request("GET", "/readyz").json()
        assert ready["degraded"] is True
        assert ready["checks"]["embedded_nats"] is False
        assert ready["checks"]["jetstream"] is True
        wrote = node.query({"sql": "INSERT INTO w(who) VALUES ('through a peer')"})
        assert wrote["seq"] > 0
    finally:
        blocker.close()
    wait_for(lambda: embedded()["state"] == "running", 30, "the server to run again", 0.05)
    assert embedded()["pid"] != server.pid
    ready = node.request("GET", "/readyz").json()
    assert "degraded" not in ready
    assert "embedded_nats" not in ready["checks"]
    assert "exited unexpectedly (killed by SIGKILL" in node.logs()


def test_cluster_start_waits_for_jetstream_and_checks_the_log(node_factory: NodeFactory) -> None:
    """A node of a forming NATS cluster waits until JetStream answers (polling) instead of giving up on a
    request that timed out: the start-up comparison with the log runs."""
    nodes = three_servers(node_factory)
    for node in nodes:
        logs = node.logs()
        assert "cannot compare with the log yet" not in logs
        assert "JetStream answers for stream ha_replication" in logs


def test_a_node_whose_server_is_paused_moves_to_another_server(node_factory: NodeFactory) -> None:
    """node3's client sits on a peer's server (its own was killed, so it failed over). SIGSTOP that peer's
    server: the connection stays open but nothing answers. The client notices by its pings within seconds,
    moves to another server, and node3's writes succeed again while the peer is still paused."""
    nodes = three_servers(node_factory)
    node = nodes[2]
    own = nats_server_of(node)
    own.kill()

    def nats_status() -> dict[str, Any]:
        return dict(node.request("GET", "/status").json()["nats"])

    wait_for(
        lambda: nats_status()["server"] not in (None, f"127.0.0.1:{node.nats_port}"), 30, "a failover", 0.05
    )
    wait_for(lambda: nats_status()["embedded_server"]["state"] == "running", 30, "its server back", 0.05)
    peer_port = int(nats_status()["server"].rsplit(":", 1)[1])
    peer = next(n for n in nodes if n.nats_port == peer_port)
    paused = nats_server_of(peer)
    paused.suspend()
    try:
        began = time.monotonic()

        def wrote() -> bool:
            resp = node.request("POST", "/query", {"sql": "INSERT INTO w(who) VALUES ('x')"}, timeout=30)
            return resp.status == 200

        wait_for(wrote, 25, "a write while the peer's server is paused", 0.1)
        took = time.monotonic() - began
        assert nats_status()["server"] != f"127.0.0.1:{peer_port}"
    finally:
        paused.resume()
    print(f"node3 wrote again {took:.2f}s after its server's peer was paused")
