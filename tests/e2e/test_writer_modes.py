"""Writer modes on real clusters: one history in one order, failover after SIGKILL, and the zombie writer.

Three real node processes on one external nats-server (``writer_cluster.WriterCluster``), short leases
(``--heartbeat-interval 200ms --lease-timeout 1s``). Clients are the chaos suite's: each write leaves a unique
id in the ``chain`` table and every answer is recorded; after the run every node must hold the same chain,
1..N without a hole, every acknowledged write in it at the link it was answered, in the order of its ``seq``,
and no refused write in it.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from pathlib import Path

import pytest

from sqlite_ha.chaos.history import Outcome
from sqlite_ha.chaos.nemesis import ELECTION
from sqlite_ha.testing import NodeProcess, wait_for
from tests.e2e.writer_cluster import (
    HEARTBEAT,
    LEASE,
    Chain,
    Load,
    Mode,
    Nats,
    WriterCluster,
    failover_bound,
    verdict,
    wait_acknowledged,
)

MODES: list[Mode] = ["static", "elected", "pinned"]
"""Every writer mode."""

FAILOVER_MODES: list[Mode] = ["elected", "pinned"]
"""The modes that replace a dead writer (static has no election: its writes wait for the one writer)."""

FAILOVER_CASES: list[tuple[Mode, Nats]] = [
    *[(m, "external") for m in FAILOVER_MODES],
    ("elected", "embedded"),
]
"""Every failover mode on one external nats-server; elected also with each node's own server (R3): its lease
lives in a NATS bucket whose leader may die with the writer (the other modes' failover does not use NATS)."""

ANY_NODE = True
"""Whether clients send writes to every node (followers forward them) or follow the writer themselves (False:
where a mode has no forwarding yet)."""

SLACK = 2.0
"""Seconds added to the documented failover bound: CI shares two cores with everything else."""

ZOMBIE_ROUNDS = 3
"""Writers stopped and resumed in turn in the zombie test (about 3 s each): each round is a chance for a build
without fencing to show it (a write in hand at the very moment of the pause)."""


def write_targets(cluster: WriterCluster) -> list[NodeProcess] | None:
    """Where the clients send writes: every node, or (None) the writer as the test last found it."""
    return list(cluster.nodes) if ANY_NODE else None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", MODES)
def test_writes_land_once_in_one_order(mode: Mode, tmp_path: Path) -> None:
    """Concurrent writers, one chain: every write is answered 200 with its link and seq, and every node ends
    with the same chain in the order of the seqs."""
    chain = Chain()
    with WriterCluster(tmp_path, mode) as cluster:
        writer = cluster.writer()
        cluster.create([chain], via=writer)
        with cluster.clients(chain, write_targets(cluster), per_node=2):
            wait_acknowledged(cluster.history, 60, timeout=60)
        snap = cluster.converge([chain])
        result = verdict(cluster.history, chain, snap)
        print(result)
        assert result.ok, result
        ops = [op for op in cluster.history.snapshot() if op.workload == chain.name]
        assert all(op.outcome is Outcome.OK for op in ops), result
        assert cluster.agreed_writer() is writer  # nobody took over in a calm cluster


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("mode", "nats"), FAILOVER_CASES, ids=[f"{m}-{n}" for m, n in FAILOVER_CASES])
def test_failover_after_sigkill_loses_no_acknowledged_write(mode: Mode, nats: Nats, tmp_path: Path) -> None:
    """SIGKILL the writer under load: another node writes within the bound, writes are acknowledged again
    through the surviving nodes, nothing acknowledged is lost, and once the old writer is back every node
    holds the same chain.

    ``embedded``: the writer dies with its own nats-server, one of the three that replicate the stream and the
    lease bucket; if it led either, NATS elects another leader first (up to ``ELECTION`` seconds)."""
    chain = Chain()
    bound = failover_bound(HEARTBEAT, LEASE) + (ELECTION if nats == "embedded" else 0.0)
    with WriterCluster(tmp_path, mode, nats=nats) as cluster:
        old = cluster.writer()
        cluster.create([chain], via=old)
        survivors = [n for n in cluster.nodes if n is not old]
        with cluster.clients(chain, write_targets(cluster), per_node=2):
            wait_acknowledged(cluster.history, 20, timeout=30)
            cluster.kill(old)
            killed_at = time.time()  # dead by now: kill() waited for it (writes sent before may be its)
            new = cluster.writer(bound + SLACK, other_than=old)
            elected = time.time() - killed_at
            first = wait_acknowledged(cluster.history, 1, bound + SLACK, after=killed_at, via=survivors)[0]
            resumed = first.end - killed_at
            print(
                f"{mode}: {new.name} writes {elected:.2f}s after the kill, "
                f"first write acknowledged after {resumed:.2f}s"
            )
            assert resumed <= bound + SLACK, f"writes resumed {resumed:.2f}s after the kill (bound {bound}s)"
            wait_acknowledged(cluster.history, 20, timeout=30, after=killed_at)
        cluster.cluster.revive(old)
        snap = cluster.converge([chain])
        result = verdict(cluster.history, chain, snap)
        print(result)
        assert result.ok, result
        assert cluster.agreed_writer() is not None


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", FAILOVER_MODES)
def test_zombie_writer_gets_no_write_acknowledged(mode: Mode, tmp_path: Path) -> None:
    """SIGSTOP the writer for longer than its lease while clients write, let another node take over and
    acknowledge writes, then SIGCONT the old writer with writes waiting in its sockets (sent before and while
    it was stopped); twice, the second time to the writer that took over. Every write a stopped writer
    answered with success is in the final chain at the link it was answered; the others got errors and are
    nowhere; every node ends with the one chain of the log.

    Without fencing the old writer commits what it had in hand on its stale chain: its links collide with
    the new writer's, last-writer-wins keeps one of each pair, and acknowledged writes disappear. Measured:
    a build that neither appends conditionally nor checks its lease before publishing fails 5 runs of 5
    (12-19 acknowledged writes lost); one that still checks the lease fails 4 of 6 (a write between the
    check and its publish at the moment of the pause)."""
    chain = Chain()
    bound = failover_bound(HEARTBEAT, LEASE)
    with WriterCluster(tmp_path, mode) as cluster:
        cluster.create([chain], via=cluster.writer())
        windows: list[tuple[NodeProcess, float, float]] = []
        with contextlib.ExitStack() as loads:
            loads.enter_context(cluster.clients(chain, write_targets(cluster), per_node=4))
            wait_acknowledged(cluster.history, 30, timeout=30)
            for _ in range(ZOMBIE_ROUNDS):
                zombie = cluster.settled_writer(bound)  # pinned: the resumed lowest id takes the role back
                others = [n for n in cluster.nodes if n is not zombie]
                paused_at = time.time()
                cluster.pause(zombie)
                stuck = loads.enter_context(cluster.clients(chain, [zombie], per_node=3))
                cluster.writer(bound + SLACK, other_than=zombie)
                loads.enter_context(cluster.clients(chain, write_targets(cluster), per_node=2))
                wait_acknowledged(cluster.history, 20, timeout=30, after=paused_at, via=others)
                resumed_at = time.time()
                cluster.resume(zombie)
                windows.append((zombie, paused_at, resumed_at))

                def stuck_answered(zombie: NodeProcess = zombie, stuck: Load = stuck) -> bool:
                    ops = cluster.history.snapshot()
                    return all(
                        any(op.write_id.startswith(f"{zombie.name}-{chain.name}{t.worker}-") for op in ops)
                        for t in stuck.threads
                    )

                wait_for(stuck_answered, 30, "the writes sent to the stopped writer to be answered")
                wait_acknowledged(cluster.history, 10, timeout=30, after=resumed_at)
        snap = cluster.converge([chain])
        result = verdict(cluster.history, chain, snap)
        print(result)
        assert result.ok, result
        final = {row[1] for row in snap.tables[chain.table][cluster.nodes[0].name]}
        for zombie, paused_at, resumed_at in windows:
            waiting = [
                op
                for op in cluster.history.snapshot()
                if op.node == zombie.name and op.start <= resumed_at and op.end >= paused_at
            ]
            assert waiting, f"no write was waiting in {zombie.name} while it was stopped"
            for op in waiting:
                assert op.outcome is not Outcome.OK or op.write_id in final, op
            answers = Counter(f"{op.status} {op.outcome.value}" for op in waiting)
            print(f"writes waiting in the stopped writer {zombie.name}: {dict(answers)}")
