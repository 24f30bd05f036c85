"""The faults, each a ``Nemesis``: what it does to the cluster, and the longest write gap it may cause.

A nemesis runs while the clients write, and undoes its own fault before it returns (the runner heals
whatever is left, e.g. a nats-server the node did not restart by itself).

Gap goals (issue 12): after a SIGKILL, writes resume within 1 s of the stream having a leader again, and
NATS's raft elects a new one 4-9 s after its leader falls silent, so a fault that silences the stream leader
may cost up to ``ELECTION + 1`` s; a graceful restart, or a fault that leaves the stream its leader, no more
than 1 s. ``None`` is "no goal": the topology cannot keep writing through that fault (the shared topology's
only NATS server is gone, or two of three stream replicas are).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlite_ha.chaos.cluster import Cluster, Topology
from sqlite_ha.testing import NodeProcess

ELECTION = 9.0
"""nats-server's longest raft election timeout: followers campaign 4-9 s after the leader falls silent."""


@dataclass(frozen=True, kw_only=True)
class Nemesis:
    name: str
    description: str
    act: Callable[[Cluster, float], None]
    """Inflict the fault, hold it for the given seconds, undo it."""
    gap_goal: dict[Topology, float | None]
    """The longest write gap (seconds) a node may see, per topology; None: no goal."""
    network: bool = False
    """Needs the nodes in network namespaces (root and ``ip netns``)."""
    election: bool = False
    """The fault silences the stream leader: where the run measured how long the election took, the goal
    is that plus 1 s instead of ``ELECTION + 1``."""


def _follower(cluster: Cluster) -> NodeProcess:
    """A node whose NATS server does not lead the stream (and, shared, that does not run the NATS server)."""
    leader = cluster.leader()
    return next(n for n in reversed(cluster.nodes) if n is not leader)


def _hold_watching_leader(cluster: Cluster, old: NodeProcess, hold: float) -> None:
    """Hold the fault at least until the stream can have elected a new leader (``ELECTION`` s), whatever
    ``hold`` says, so that the run sees the election; note in the history when another server took over."""
    hold = max(hold, ELECTION + 1.0)
    end = time.monotonic() + hold
    cluster.wait_new_leader(old, hold)
    time.sleep(max(0.0, end - time.monotonic()))


def _nothing(cluster: Cluster, hold: float) -> None:
    time.sleep(hold)


def _kill_node(cluster: Cluster, hold: float) -> None:
    node = _follower(cluster)
    cluster.kill(node)
    time.sleep(hold)
    cluster.revive(node)


def _kill_leader(cluster: Cluster, hold: float) -> None:
    node = cluster.leader()
    cluster.kill(node)
    _hold_watching_leader(cluster, node, hold)
    cluster.revive(node)


def _nats_victim(cluster: Cluster) -> NodeProcess:
    return cluster.nodes[0] if cluster.topology is Topology.SHARED else _follower(cluster)


def _kill_nats(cluster: Cluster, hold: float) -> None:
    node = _nats_victim(cluster)
    cluster.kill_nats(node)
    time.sleep(hold)
    if not node.nats_pids():  # not restarted by the node itself: restart the node
        cluster.history.event(time.time(), f"{node.name} did not restart its nats-server: restart the node")
        cluster.restart(node)


def _kill_leader_nats(cluster: Cluster, hold: float) -> None:
    node = cluster.leader()
    cluster.kill_nats(node)
    _hold_watching_leader(cluster, node, hold)
    if not node.nats_pids():
        cluster.history.event(time.time(), f"{node.name} did not restart its nats-server: restart the node")
        cluster.restart(node)


def _pause_leader(cluster: Cluster, hold: float) -> None:
    node = cluster.leader()
    cluster.pause(node)
    _hold_watching_leader(cluster, node, hold)
    cluster.resume(node)


def _partition(cluster: Cluster, hold: float) -> None:
    """Cut the stream leader's node (shared: a node without the NATS server) off from the others."""
    node = cluster.leader() if cluster.topology is Topology.RAFT3 else cluster.nodes[-1]
    cluster.partition(node)
    _hold_watching_leader(cluster, node, hold)
    cluster.heal_partition(node)


def _rolling_restart(cluster: Cluster, hold: float) -> None:
    for node in cluster.nodes:
        cluster.restart(node)
        time.sleep(1.0)


def _two_down(cluster: Cluster, hold: float) -> None:
    leader = cluster.leader()
    victims = [n for n in cluster.nodes if n is not leader][:2]
    for node in victims:
        cluster.kill(node)
    time.sleep(hold)
    for node in victims:
        cluster.revive(node, wait=False)
    for node in victims:
        cluster.wait_ready(node)


S, R = Topology.SHARED, Topology.RAFT3
NEMESES: dict[str, Nemesis] = {
    n.name: n
    for n in (
        Nemesis(
            name="none",
            description="no fault: the control run",
            act=_nothing,
            gap_goal={S: 1.0, R: 1.0},
        ),
        Nemesis(
            name="kill-node",
            description="kill -9 a node that neither leads the stream nor runs the shared NATS server",
            act=_kill_node,
            gap_goal={S: 1.0, R: 1.0},
        ),
        Nemesis(
            name="kill-nats",
            description="kill -9 one embedded nats-server alone (shared: the only one; raft3: a follower's)",
            act=_kill_nats,
            gap_goal={S: None, R: 1.0},
        ),
        Nemesis(
            name="kill-leader",
            description="kill -9 the node whose NATS server leads the stream, with its nats-server",
            act=_kill_leader,
            gap_goal={S: None, R: ELECTION + 1.0},
            election=True,
        ),
        Nemesis(
            name="kill-leader-nats",
            description="kill -9 the nats-server that leads the stream alone; its node keeps running",
            act=_kill_leader_nats,
            gap_goal={S: None, R: ELECTION + 1.0},
            election=True,
        ),
        Nemesis(
            name="pause-leader",
            description="SIGSTOP the stream leader's node and its nats-server, SIGCONT after the hold",
            act=_pause_leader,
            gap_goal={S: None, R: ELECTION + 1.0},
            election=True,
        ),
        Nemesis(
            name="rolling-restart",
            description="SIGTERM and start again each node in turn, waiting until it is ready",
            act=_rolling_restart,
            gap_goal={S: None, R: 1.0},
        ),
        Nemesis(
            name="partition",
            description="cut the stream leader's node (shared: node3) off from the other nodes, clients "
            "still reach it; its own availability is not measured meanwhile",
            act=_partition,
            gap_goal={S: 1.0, R: ELECTION + 1.0},
            network=True,
            election=True,
        ),
        Nemesis(
            name="two-down",
            description="kill -9 the two nodes that do not lead the stream, start both after the hold",
            act=_two_down,
            gap_goal={S: 1.0, R: None},
        ),
    )
}
