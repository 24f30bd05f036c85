"""One chaos run: a fresh cluster, clients on every node, a nemesis, heal, converge, check."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sqlite_ha.chaos import checker
from sqlite_ha.chaos.client import REQUEST_TIMEOUT, Client
from sqlite_ha.chaos.cluster import Cluster, Topology
from sqlite_ha.chaos.history import History
from sqlite_ha.chaos.nemesis import NEMESES
from sqlite_ha.chaos.network import Network, supported
from sqlite_ha.chaos.result import Availability, Result
from sqlite_ha.chaos.workloads import DEFAULT_WORKLOADS, WORKLOADS, Findings, Workload
from sqlite_ha.testing import NodeProcess, wait_for


@dataclass(frozen=True, kw_only=True)
class Settings:
    workloads: tuple[str, ...] = DEFAULT_WORKLOADS
    clients: int = 1
    """Client threads per workload per node."""
    pause: float = 0.05
    """Seconds a client waits between two requests: keeps the load modest on a small machine."""
    warmup: float = 3.0
    """Seconds of load before the fault."""
    hold: float = 5.0
    """Seconds a fault lasts (a node down, paused, ...)."""
    tail: float = 6.0
    """Seconds of load after the nemesis undid its fault."""
    converge_timeout: float = 90.0


def run(
    nemesis: str,
    topology: Topology,
    workdir: Path,
    settings: Settings | None = None,
    gap_goal: float | str | None = "default",
) -> Result:
    """Run one scenario in ``workdir`` (node files, logs and ``history.jsonl`` stay there).

    ``gap_goal`` overrides the nemesis's goal for this topology (a number, or None for none).
    """
    s = settings or Settings()
    nem = NEMESES[nemesis]
    goal = nem.gap_goal[topology] if gap_goal == "default" else gap_goal
    assert goal is None or isinstance(goal, float | int)
    workloads: list[Workload] = [WORKLOADS[name]() for name in s.workloads]
    history = History()
    network = None
    if nem.network:
        if not supported():
            raise RuntimeError(f"{nemesis} needs root and iproute2 (ip netns)")
        network = Network(3)
        network.create()
    cluster = Cluster(workdir, topology, history, network=network)
    result = Result(
        scenario=nemesis,
        topology=topology.value,
        gap_goal=goal,
        availability=Availability(),
        findings=Findings(),
        converged=False,
        divergent=[],
    )
    errors: list[str] = []
    try:
        cluster.start()
        _create_schema(cluster, workloads)
        stop = threading.Event()
        clients = [
            Client(
                node=node.name,
                host=node.host,
                port=node.port,
                workload=w,
                worker=i,
                history=history,
                stop=stop,
                pause=s.pause,
            )
            for node in cluster.nodes
            for w in workloads
            for i in range(s.clients)
        ]
        t0 = time.time()
        history.event(t0, "load starts")
        for c in clients:
            c.start()
        try:
            time.sleep(s.warmup)
            nem.act(cluster, s.hold)
            time.sleep(s.tail)
        except Exception as e:  # the nemesis failed (a node did not come back): still check what we have
            errors.append(f"nemesis: {type(e).__name__}: {e}")
        finally:
            stop.set()
            t1 = time.time()
            history.event(t1, "load stops")
            for c in clients:
                c.join(REQUEST_TIMEOUT + 5)
        if gap_goal == "default" and nem.election and goal is not None and cluster.elections:
            result.gap_goal = max(cluster.elections) + 1.0
        result.healed = cluster.heal()
        result.converged, snap = checker.converge(cluster, workloads, s.converge_timeout)
        ops = history.snapshot()
        result.findings = checker.check(ops, workloads, snap)
        result.divergent = snap.divergent()
        result.availability = checker.availability(
            ops, [n.name for n in cluster.nodes], (t0, t1), cluster.down
        )
        result.events = [f"+{at - t0:.1f}s {what}" for at, what in sorted(history.events)]
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
    finally:
        cluster.close()
        history.dump(workdir / "history.jsonl")
    if errors:
        result.error = "; ".join(errors) + f" (logs in {workdir})"
    return result


def _create_schema(cluster: Cluster, workloads: list[Workload]) -> None:
    first = cluster.nodes[0]
    answer = first.query([{"sql": w.schema} for w in workloads])
    seq = int(answer["seq"])
    for node in cluster.nodes:

        def has_schema(node: NodeProcess = node) -> bool:
            return node.request("POST", f"/query?min_seq={seq}", {"sql": "SELECT 1"}).status == 200

        wait_for(has_schema, 60, f"{node.name} to have the schema", interval=0.2)
