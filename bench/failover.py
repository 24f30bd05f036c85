"""Write availability while the JetStream stream leader's node goes away: the longest write gap per scenario.

    python bench/failover.py [--topology cluster,shared] [--nemesis term,kill,stop] [--rate 50]
                             [--down 12] [--json out.json]

Topologies (real ``sqlite-ha serve`` processes on loopback, file databases):

- ``cluster``: three nodes, each with its own embedded nats-server; the servers form one NATS cluster
  (``--nats-cluster-port``/``--nats-routes``) and the stream has three replicas (``--replicas 3``).
- ``shared``: node1 runs the embedded server, node2 and node3 use it through ``--replication-url``; the
  stream has one replica, so node1 is always the stream leader's node.

Nemeses, each applied to the node whose server leads the stream (read from stream info, ``cluster.leader``):

- ``term``: SIGTERM (a graceful stop), then start the node again at once: a rolling restart's step.
- ``kill``: SIGKILL the node and its nats-server; start it again after ``--down`` seconds.
- ``stop``: SIGSTOP the node and its nats-server for ``--down`` seconds, then SIGCONT.

One writer thread per node sends one-row INSERTs at ``--rate`` per second (each waits for its answer). The
gap is the longest interval between two successful (200) writes of one node, the worst of the nodes the
nemesis did not touch, from the nemesis until ``--settle`` seconds after the node is back (``merged_gap_s``
in the JSON merges their writes: one node still writing hides another's stall). With the election time (when
stream info first names a new leader, polled every 50 ms from a surviving server) the table shows how long
writes took to resume on every other node after the stream had a leader again (in the shared topology:
after node1's server answered again), and the same from the new leader's LEADER_ELECTED advisory (the
moment it serves: stream info can name a raft leader that does not take writes yet). The other nodes' 202
answers (committed, published later) and failures (no answer, 5xx: 503 while node1's server is away in the
shared topology) are counted apart; they are not successes here. Every process started is stopped in a
``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nats
import psutil

from sqlite_ha.testing import NodeProcess, free_port, nats_cluster_args, wait_for

STREAM = "ha_replication"
USER, PASSWORD = "ha", "bench-secret"


# ---------------------------------------------------------------------------------------- topologies
@dataclass
class Topology:
    name: str
    nodes: list[NodeProcess]
    nats_urls: dict[str, str]  # node name -> URL of the nats-server that node embeds (if any)

    def start(self, timeout: float = 90.0) -> None:
        for node in self.nodes:
            node.start(wait_ready=False)
        for node in self.nodes:
            node.wait_ready(timeout)

    def stop(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(Exception):
                if node.proc is not None and node.proc.poll() is None:
                    resume(node)  # a stopped process cannot handle SIGTERM
                    node.stop()
            node.kill()

    def node(self, name: str) -> NodeProcess:
        return next(n for n in self.nodes if n.name == name)


def cluster_topology(workdir: Path, extra: list[str]) -> Topology:
    ports = [free_port() for _ in range(3)]
    nodes = []
    for i in range(3):
        nodes.append(
            NodeProcess(
                workdir=workdir / f"node{i + 1}",
                name=f"node{i + 1}",
                nats_port=None,
                args=[
                    "app.db",
                    *nats_cluster_args(ports, i),
                    "--nats-user",
                    USER,
                    "--nats-pass",
                    PASSWORD,
                    "--log-level",
                    "info",
                    *extra,
                ],
            )
        )
    return Topology("cluster", nodes, {n.name: f"nats://127.0.0.1:{n.nats_port}" for n in nodes})


def shared_topology(workdir: Path, extra: list[str]) -> Topology:
    first = NodeProcess(
        workdir=workdir / "node1",
        name="node1",
        nats_port=None,
        args=["app.db", "--nats-user", USER, "--nats-pass", PASSWORD, *extra],
    )
    url = f"nats://127.0.0.1:{first.nats_port}"
    others = [
        NodeProcess(
            workdir=workdir / f"node{i}",
            name=f"node{i}",
            args=["app.db", "--replication-url", url, "--nats-user", USER, "--nats-pass", PASSWORD, *extra],
        )
        for i in (2, 3)
    ]
    return Topology("shared", [first, *others], {"node1": url})


# ---------------------------------------------------------------------------------------- nemeses
def nats_server_of(node: NodeProcess) -> psutil.Process | None:
    if node.proc is None or node.proc.poll() is not None:
        return None
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(node.proc.pid).children(recursive=True):
            if "nats-server" in child.name():
                return child
    return None


def pause(node: NodeProcess) -> None:
    """SIGSTOP the node and its nats-server (which runs in its own process group)."""
    server = nats_server_of(node)
    assert node.proc is not None
    node.proc.send_signal(signal.SIGSTOP)
    if server is not None:
        server.send_signal(signal.SIGSTOP)


def resume(node: NodeProcess) -> None:
    if node.proc is None or node.proc.poll() is not None:
        return
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(node.proc.pid).children(recursive=True):
            child.send_signal(signal.SIGCONT)
    node.proc.send_signal(signal.SIGCONT)


def kill_hard(node: NodeProcess) -> None:
    """SIGKILL the node and its nats-server at once (the server would otherwise get SIGTERM from the
    kernel when its parent dies, and step down gracefully)."""
    server = nats_server_of(node)
    if server is not None:
        with contextlib.suppress(psutil.Error):
            server.kill()
    node.kill()


# ---------------------------------------------------------------------------------------- observers
class Writers:
    """One thread per node writing unique rows; records (time, node, status) of every answer."""

    def __init__(self, nodes: list[NodeProcess], rate: float) -> None:
        self.nodes = nodes
        self.interval = 1.0 / rate
        self.events: list[tuple[float, str, int]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._run, args=(n, i), daemon=True) for i, n in enumerate(nodes)
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(40)

    def _run(self, node: NodeProcess, index: int) -> None:
        i = 0
        while not self.stopping.is_set():
            i += 1
            started = time.monotonic()
            try:
                resp = node.request(
                    "POST",
                    "/query",
                    {"sql": "INSERT INTO w(id, who) VALUES (?, ?)", "params": [index * 10**9 + i, node.name]},
                    timeout=30,
                )
                status = resp.status
            except OSError:
                status = 0
            now = time.monotonic()
            with self.lock:
                self.events.append((now, node.name, status))
            if status == 0:
                self.stopping.wait(0.05)  # the node is down: do not spin
            else:
                self.stopping.wait(max(0.0, self.interval - (now - started)))

    def ok_times(self, names: set[str], since: float, until: float) -> list[float]:
        with self.lock:
            return sorted(t for t, n, s in self.events if s == 200 and n in names and since <= t <= until)

    def count(self, status: int, since: float, until: float, names: set[str]) -> int:
        with self.lock:
            return sum(1 for t, n, s in self.events if s == status and n in names and since <= t <= until)


class LeaderWatch:
    """Polls stream info every 50 ms from the given servers; records when the leader changes."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.changes: list[tuple[float, str | None]] = []
        self.advisories: list[float] = []  # LEADER_ELECTED advisories: a leader that serves
        self.leader: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _run(self) -> None:
        async def quiet(_e: Exception) -> None:
            pass

        nc = await nats.connect(
            servers=self.urls,
            user=USER,
            password=PASSWORD,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.1,
            connect_timeout=1,
            error_cb=quiet,
        )

        async def advisory(_msg: object) -> None:
            self.advisories.append(time.monotonic())

        await nc.subscribe(f"$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.{STREAM}", cb=advisory)
        try:
            while not self._stop.is_set():
                leader: str | None
                try:
                    msg = await nc.request(f"$JS.API.STREAM.INFO.{STREAM}", b"", timeout=0.5)
                    info = json.loads(msg.data)
                    leader = (info.get("cluster") or {}).get("leader") or (
                        "single" if "config" in info else None
                    )
                except Exception:
                    leader = None
                if leader != self.leader:
                    self.leader = leader
                    self.changes.append((time.monotonic(), leader))
                await asyncio.sleep(0.05)
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    def elected_after(self, t: float, old: str) -> float | None:
        """When a leader other than ``old`` was first seen after ``t``."""
        return next((at for at, who in self.changes if at >= t and who is not None and who != old), None)

    def announced_after(self, t: float) -> float | None:
        """When a new leader first announced itself (the advisory) after ``t``."""
        return next((at for at in self.advisories if at >= t), None)

    def back_after(self, t: float) -> float | None:
        """When any leader was seen after ``t`` (the shared topology's one server coming back)."""
        return next((at for at, who in self.changes if at >= t and who is not None), None)


# ---------------------------------------------------------------------------------------- scenarios
@dataclass
class Result:
    topology: str
    nemesis: str
    victim: str
    gap_s: float  # the worst of the other nodes' longest gaps
    merged_gap_s: float = 0.0
    gap_per_node: dict[str, float] = field(default_factory=dict)
    election_s: float | None = None  # nemesis -> new leader seen
    resume_after_leader_s: float | None = None  # new leader seen -> every other node wrote again
    announced_s: float | None = None  # nemesis -> the new leader's LEADER_ELECTED advisory
    resume_after_announce_s: float | None = None  # that advisory -> every other node wrote again
    accepted_202: int = 0
    failed: int = 0


def longest_gap(times: list[float], start: float, end: float) -> tuple[float, float]:
    """(longest interval, where it ends) between successive times, counting the window's edges."""
    points = [start, *times, end]
    best, at = 0.0, start
    for a, b in itertools.pairwise(points):
        if b - a > best:
            best, at = b - a, b
    return best, at


def leader_of(topology: Topology, watch: LeaderWatch) -> str:
    if topology.name == "shared":
        return "node1"
    wait_for(lambda: watch.leader not in (None, "single"), 60, "the stream to have a leader", 0.05)
    assert watch.leader is not None
    return watch.leader


def run_scenario(topology: Topology, nemesis: str, args: argparse.Namespace) -> Result:
    urls = list(topology.nats_urls.values())
    probe = LeaderWatch(urls)
    probe.start()
    try:
        victim_name = leader_of(topology, probe)
    finally:
        probe.stop()
    # Watch through the other servers: a watch connected to a paused server would see nothing until SIGCONT.
    watch = LeaderWatch([u for n, u in topology.nats_urls.items() if n != victim_name] or urls)
    watch.start()
    writers = Writers(topology.nodes, args.rate)
    try:
        victim = topology.node(victim_name)
        others = {n.name for n in topology.nodes if n.name != victim_name}
        writers.start()
        wait_for(lambda: len(writers.ok_times(others, 0, time.monotonic())) >= 20, 60, "writes to flow", 0.05)
        time.sleep(args.warmup)
        began = time.monotonic()
        if nemesis == "term":
            victim.stop(timeout=60)
            victim.start(wait_ready=False)
        elif nemesis == "kill":
            kill_hard(victim)
            time.sleep(args.down)
            victim.start(wait_ready=False)
        elif nemesis == "stop":
            pause(victim)
            time.sleep(args.down)
            resume(victim)
        victim.wait_ready(90)
        back = time.monotonic()
        names = {n.name for n in topology.nodes}
        wait_for(
            lambda: {n for n in names if writers.ok_times({n}, back, time.monotonic())} == names,
            60,
            "every node to write again",
            0.05,
        )
        time.sleep(args.settle)
        end = time.monotonic()
    finally:
        writers.stop()
        watch.stop()
    merged, _ = longest_gap(writers.ok_times(others, began, end), began, end)
    per_node = {
        n: round(longest_gap(writers.ok_times({n}, began, end), began, end)[0], 3) for n in sorted(names)
    }
    if topology.name == "shared":
        elected = watch.back_after(began + 0.01) if nemesis != "stop" else None
    else:
        elected = watch.elected_after(began, victim_name)
    election = None if elected is None else elected - began

    def resumed(after: float | None) -> float | None:  # the slowest of the other nodes to write again
        if after is None:
            return None
        firsts = [next(iter(writers.ok_times({n}, after, end)), None) for n in others]
        return None if None in firsts else max(0.0, *(f - after for f in firsts if f is not None))

    resume_after = resumed(elected)
    announced = watch.announced_after(began) if topology.name == "cluster" else None
    resume_after_announce = resumed(announced)
    return Result(
        topology=topology.name,
        nemesis=nemesis,
        victim=victim_name,
        gap_s=max(per_node[n] for n in others),
        merged_gap_s=round(merged, 3),
        gap_per_node=per_node,
        election_s=None if election is None else round(election, 3),
        resume_after_leader_s=None if resume_after is None else round(resume_after, 3),
        announced_s=None if announced is None else round(announced - began, 3),
        resume_after_announce_s=None if resume_after_announce is None else round(resume_after_announce, 3),
        accepted_202=writers.count(202, began, end, others),
        failed=sum(writers.count(s, began, end, others) for s in (0, 500, 503, 504)),
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--topology", default="cluster,shared")
    parser.add_argument("--nemesis", default="term,kill,stop")
    parser.add_argument("--rate", type=float, default=50.0, help="writes per second per node")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--down", type=float, default=12.0, help="seconds a killed/stopped node stays down")
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--keep-logs", default=None, help="copy the nodes' logs into this directory")
    parser.add_argument("--node-arg", action="append", default=[], help="extra argument for every node")
    args = parser.parse_args()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="failover-", dir=args.dir) as tmp:
        for topo_name in args.topology.split(","):
            make: Callable[[Path, list[str]], Topology] = (
                cluster_topology if topo_name == "cluster" else shared_topology
            )
            topology = make(Path(tmp) / topo_name, args.node_arg)
            try:
                topology.start()
                first = topology.nodes[0]
                created = first.request(
                    "POST", "/query", {"sql": "CREATE TABLE w(id INTEGER PRIMARY KEY, who TEXT)"}
                )
                assert created.status in (200, 202), created.body  # 202: published by the relay soon
                for node in topology.nodes:
                    wait_for(
                        lambda node=node: (
                            node.request("POST", "/query", {"sql": "SELECT count(*) FROM w"}).status == 200
                        ),
                        30,
                        f"{node.name} to have the table",
                        0.05,
                    )
                for nemesis in args.nemesis.split(","):
                    result = run_scenario(topology, nemesis, args)
                    results.append(result)
                    print(json.dumps(asdict(result)), flush=True)
            finally:
                topology.stop()
                if args.keep_logs:
                    keep = Path(args.keep_logs) / topo_name
                    keep.mkdir(parents=True, exist_ok=True)
                    for node in topology.nodes:
                        shutil.copy(node.log_path, keep / node.log_path.name)
    print()
    header = (
        f"{'topology':<9} {'nemesis':<8} {'victim':<7} {'gap s':>7} {'election s':>11} {'resume s':>9} "
        f"{'announced s':>12} {'resume s':>9} {'202':>5} {'failed':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        election = "-" if r.election_s is None else f"{r.election_s:.2f}"
        resumed = "-" if r.resume_after_leader_s is None else f"{r.resume_after_leader_s:.2f}"
        announced = "-" if r.announced_s is None else f"{r.announced_s:.2f}"
        resumed2 = "-" if r.resume_after_announce_s is None else f"{r.resume_after_announce_s:.2f}"
        print(
            f"{r.topology:<9} {r.nemesis:<8} {r.victim:<7} {r.gap_s:>7.2f} {election:>11} {resumed:>9} "
            f"{announced:>12} {resumed2:>9} "
            f"{r.accepted_202:>5} {r.failed:>7}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
