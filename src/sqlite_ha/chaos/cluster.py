"""Three real node processes in one of the two topologies, and the faults a nemesis can inflict on them.

``shared``: node1 runs the embedded NATS server, node2 and node3 join it with ``--replication-url`` (the
README's cluster). ``raft3``: every node runs its own embedded server, the three form a NATS cluster and the
stream has three replicas. Every fault is recorded in the history with its wall-clock time, and a node that
is down on purpose is remembered as such, so that availability is measured only where a node could serve.
"""

from __future__ import annotations

import contextlib
import enum
import os
import signal
import time
from pathlib import Path

from sqlite_ha.chaos.history import History
from sqlite_ha.chaos.leader import stream_leader
from sqlite_ha.chaos.network import Network
from sqlite_ha.testing import NodeProcess, free_port, wait_for

NATS_USER = "chaos"
NATS_PASS = "chaos-secret"
STREAM = "ha_replication"
DB = "app.db"


class Topology(enum.Enum):
    SHARED = "shared"
    RAFT3 = "raft3"


class Cluster:
    """Start, fault, heal and stop three nodes. Never leaves a process behind (``close``)."""

    def __init__(
        self,
        workdir: Path,
        topology: Topology,
        history: History,
        size: int = 3,
        network: Network | None = None,
    ) -> None:
        """With ``network`` (created already), each node runs in its own namespace of it."""
        self.topology = topology
        self.history = history
        self.network = network
        hosts = network.hosts if network else ["127.0.0.1"] * size
        prefixes = [network.prefix(i) if network else [] for i in range(size)]
        self.nodes: list[NodeProcess] = []
        self.down: dict[str, list[list[float]]] = {}
        """Per node, the [start, end] wall-clock windows when it was down on purpose (end inf if still)."""
        self._nats_pids: set[int] = set()
        self.elections: list[float] = []
        """Seconds from a fault of the stream leader to another server leading it, per such fault."""
        common = [DB, "--nats-user", NATS_USER, "--nats-pass", NATS_PASS]
        if topology is Topology.SHARED:
            first = NodeProcess(
                workdir=workdir / "node1",
                name="node1",
                nats_port=None,
                args=common,
                host=hosts[0],
                prefix=prefixes[0],
            )
            self.nodes.append(first)
            url = f"nats://{first.host}:{first.nats_port}"
            for i in range(2, size + 1):
                self.nodes.append(
                    NodeProcess(
                        workdir=workdir / f"node{i}",
                        name=f"node{i}",
                        nats_port=0,
                        args=[*common, "--replication-url", url],
                        host=hosts[i - 1],
                        prefix=prefixes[i - 1],
                    )
                )
        else:
            ports = [free_port() for _ in range(size)]
            for i in range(size):
                routes = ",".join(f"{hosts[j]}:{p}" for j, p in enumerate(ports) if j != i)
                args = [*common, "--replicas", str(size), "--nats-cluster-port", str(ports[i])]
                self.nodes.append(
                    NodeProcess(
                        workdir=workdir / f"node{i + 1}",
                        name=f"node{i + 1}",
                        nats_port=None,
                        args=[*args, "--nats-routes", routes],
                        host=hosts[i],
                        prefix=prefixes[i],
                    )
                )
        for node in self.nodes:
            self.down[node.name] = []

    # ------------------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 90.0) -> None:
        for node in self.nodes:
            node.start(wait_ready=False)
        for node in self.nodes:
            node.wait_ready(timeout)
        self._remember_nats()

    def node(self, name: str) -> NodeProcess:
        return next(n for n in self.nodes if n.name == name)

    def close(self) -> None:
        """Stop every node (SIGCONT first, in case one is paused) and kill any nats-server left over."""
        for node in self.nodes:
            self._signal(node, signal.SIGCONT)
        for node in self.nodes:
            with contextlib.suppress(TimeoutError):  # stop() killed it then
                node.stop(timeout=15)
        self._remember_nats()
        for pid in sorted(self._nats_pids):
            _kill_if_nats(pid)
        if self.network is not None:
            self.network.close()

    # ------------------------------------------------------------------------------ faults
    def partition(self, node: NodeProcess) -> None:
        """Cut ``node`` off from the other nodes (its clients still reach it)."""
        assert self.network is not None, "a partition needs the cluster to run in network namespaces"
        i = self.nodes.index(node)
        self._mark_down(node)  # not meant to take writes: its availability is not measured meanwhile
        self.network.partition([i], [j for j in range(len(self.nodes)) if j != i])
        self.history.event(time.time(), f"partition: {node.name} | the others")

    def heal_partition(self, node: NodeProcess) -> None:
        assert self.network is not None
        self.network.heal()
        self.history.event(time.time(), "partition healed")
        self._mark_up(node)

    def kill(self, node: NodeProcess) -> None:
        """SIGKILL the node and its nats-server together, as a machine crash would."""
        self._mark_down(node)
        self._remember_nats()
        for pid in node.nats_pids():
            _signal_pid(pid, signal.SIGKILL)
        node.kill()
        self.history.event(time.time(), f"kill -9 {node.name} (and its nats-server)")

    def kill_nats(self, node: NodeProcess) -> None:
        """SIGKILL only the node's embedded nats-server; the node process keeps running."""
        pids = node.nats_pids()
        self._nats_pids.update(pids)
        for pid in pids:
            _signal_pid(pid, signal.SIGKILL)
        self.history.event(time.time(), f"kill -9 nats-server of {node.name} (pids {pids})")

    def pause(self, node: NodeProcess) -> None:
        self._mark_down(node)
        self._signal(node, signal.SIGSTOP)
        self.history.event(time.time(), f"SIGSTOP {node.name} (and its nats-server)")

    def resume(self, node: NodeProcess) -> None:
        self._signal(node, signal.SIGCONT)
        self.history.event(time.time(), f"SIGCONT {node.name}")
        self._mark_up(node)

    def restart(self, node: NodeProcess, timeout: float = 90.0) -> None:
        """Stop gracefully (SIGTERM; SIGKILL after 15 s) if running, start again, wait until ready."""
        self._mark_down(node)
        if node.pid is not None:
            self.history.event(time.time(), f"SIGTERM {node.name}")
            try:
                node.stop(timeout=15)
            except TimeoutError:
                self.history.event(time.time(), f"{node.name} ignored SIGTERM for 15 s: killed")
        self.revive(node, timeout)

    def revive(self, node: NodeProcess, timeout: float = 90.0, wait: bool = True) -> None:
        """Start a node that is not running; with ``wait``, until it is ready."""
        self._reap_nats(node)
        node.start(wait_ready=False)
        self.history.event(time.time(), f"start {node.name}")
        if wait:
            self.wait_ready(node, timeout)

    def wait_ready(self, node: NodeProcess, timeout: float = 90.0) -> None:
        node.wait_ready(timeout)
        self._remember_nats()
        windows = self.down[node.name]
        if windows and windows[-1][1] == float("inf"):
            self.history.event(time.time(), f"{node.name} ready")
            self._mark_up(node)

    def heal(self, timeout: float = 90.0) -> list[str]:
        """Undo every fault: resume paused nodes, start dead ones, restart nodes whose nats-server is gone.

        Returns what had to be done, for the report (e.g. a nats-server the node did not restart itself).
        """
        done: list[str] = []
        if self.network is not None:
            self.network.heal()
        for node in self.nodes:
            self._signal(node, signal.SIGCONT)
        for node in self.nodes:
            if node.pid is None:
                done.append(f"started {node.name}")
                self.revive(node, wait=False)
            elif self._embedded(node) and not node.nats_pids():
                done.append(f"restarted {node.name}: its nats-server was gone")
                self.history.event(time.time(), f"heal: {node.name} runs without its nats-server")
                self.restart(node, timeout)
        for node in self.nodes:
            self.wait_ready(node, timeout)
        return done

    # ------------------------------------------------------------------------------ observing
    def leader(self, timeout: float = 20.0) -> NodeProcess:
        """The node whose NATS server leads the stream (shared topology: node1, the only server)."""
        if self.topology is Topology.SHARED:
            return self.nodes[0]
        urls = [f"nats://{n.host}:{n.nats_port}" for n in self.nodes if n.pid is not None]
        deadline = time.monotonic() + timeout
        while True:
            name = stream_leader(urls, STREAM, NATS_USER, NATS_PASS)
            if name is not None:
                return self.node(name)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no leader of stream {STREAM} after {timeout:g}s")
            time.sleep(0.2)

    def wait_new_leader(self, old: NodeProcess, timeout: float) -> None:
        """After ``old`` lost the stream's leadership, poll until another server leads (log when it does)."""
        if self.topology is Topology.SHARED:
            return
        since = time.time()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            urls = [
                f"nats://{n.host}:{n.nats_port}" for n in self.nodes if n is not old and n.pid is not None
            ]
            name = stream_leader(urls, STREAM, NATS_USER, NATS_PASS, timeout=1.0)
            if name is not None and name != old.name:
                self.elections.append(time.time() - since)
                self.history.event(time.time(), f"{name} leads the stream ({self.elections[-1]:.1f}s after)")
                return
            time.sleep(0.1)

    # ------------------------------------------------------------------------------ internals
    def _embedded(self, node: NodeProcess) -> bool:
        return node.nats_port not in (0, None)

    def _mark_down(self, node: NodeProcess) -> None:
        windows = self.down[node.name]
        if not windows or windows[-1][1] != float("inf"):
            windows.append([time.time(), float("inf")])

    def _mark_up(self, node: NodeProcess) -> None:
        windows = self.down[node.name]
        if windows and windows[-1][1] == float("inf"):
            windows[-1][1] = time.time()

    def _signal(self, node: NodeProcess, sig: int) -> None:
        pids = [*node.nats_pids(), *([node.pid] if node.pid is not None else [])]
        for pid in pids:
            _signal_pid(pid, sig)

    def _remember_nats(self) -> None:
        for node in self.nodes:
            self._nats_pids.update(node.nats_pids())

    def _reap_nats(self, node: NodeProcess) -> None:
        """A SIGKILLed node's nats-server may outlive it (it holds the port and the store): kill it."""
        for pid in sorted(self._nats_pids):
            _kill_if_nats(pid, cwd_under=node.workdir)


def _signal_pid(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _kill_if_nats(pid: int, cwd_under: Path | None = None) -> None:
    """SIGKILL ``pid`` if it is (still) a nats-server (running in ``cwd_under``); wait until it is gone."""
    try:
        if Path(f"/proc/{pid}/comm").read_text().strip() != "nats-server":
            return
        if cwd_under is not None and not Path(os.readlink(f"/proc/{pid}/cwd")).is_relative_to(cwd_under):
            return
    except OSError:
        return
    _signal_pid(pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        wait_for(lambda: not Path(f"/proc/{pid}").exists() or _zombie(pid), 10, f"nats-server {pid} to exit")


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] == "Z"
