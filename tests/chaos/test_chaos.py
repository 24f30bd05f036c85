"""The short chaos subset: real clusters under load and faults; nothing acknowledged may be lost.

The full matrix (every nemesis in both topologies) runs on demand: ``python -m sqlite_ha.chaos``.
Loss, divergence, partial batches and refused writes that appear are asserted in every scenario, and the
longest write gap against the nemesis's own goal (1 s, or the stream's measured leader election + 1 s) with
``SLACK`` added: CI shares two cores with everything else, the on-demand matrix reports the strict goal.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sqlite_ha.chaos import Settings, Topology, run
from sqlite_ha.chaos.workloads import DEFAULT_WORKLOADS

WORKLOADS = DEFAULT_WORKLOADS  # "auto" included: keys SQLite chooses no longer collide across nodes

SETTINGS = Settings(workloads=WORKLOADS, warmup=2.0, hold=4.0, tail=4.0, pause=0.05)

SLACK = 2.0

SCENARIOS = [
    ("kill-node", Topology.SHARED),  # goal 1 s
    ("kill-leader", Topology.RAFT3),  # goal: the stream's leader election + 1 s
    ("rolling-restart", Topology.RAFT3),  # goal 1 s: every node hands its leaderships over before it stops
]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("nemesis", "topology"), SCENARIOS, ids=[f"{n}-{t.value}" for n, t in SCENARIOS])
def test_chaos(nemesis: str, topology: Topology, tmp_path: Path) -> None:
    result = run(nemesis, topology, tmp_path, SETTINGS)
    print(result.details())
    assert result.error is None, result.details()
    assert result.availability.ok > 0, result.details()
    assert result.safe(), result.details()
    assert result.gap_goal is not None
    assert result.availability.longest_gap[1] <= result.gap_goal + SLACK, result.details()
