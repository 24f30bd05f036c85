"""After the run: wait until every node has applied the whole log, read every node, and check.

Safety: every acknowledged (200 + seq) and pending (202) write is on every node, no refused write is on any,
no batch is partial, every table has the same checksum on every node. Availability: the share of failed
requests, and per node the longest time without an acknowledged write while the node was meant to be up.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

from sqlite_ha.chaos.cluster import DB, Cluster
from sqlite_ha.chaos.history import Op, Outcome
from sqlite_ha.chaos.result import Availability
from sqlite_ha.chaos.workloads import Findings, Rows, Workload, ops_by_workload
from sqlite_ha.testing import NodeProcess


@dataclass(kw_only=True)
class Snapshot:
    """Every workload table as each node holds it."""

    tables: dict[str, dict[str, Rows]]
    """table -> node -> rows (ordered by primary key)."""

    def divergent(self) -> list[str]:
        out = []
        for table, by_node in self.tables.items():
            sums = {node: checksum(rows) for node, rows in by_node.items()}
            if len(set(sums.values())) > 1:
                out.append(
                    f"{table}: " + ", ".join(f"{n} {s} ({len(by_node[n])} rows)" for n, s in sums.items())
                )
        return out


def checksum(rows: Rows) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:12]


def _db_status(node: NodeProcess) -> dict[str, Any] | None:
    try:
        resp = node.request("GET", "/status", timeout=5)
    except OSError:
        return None
    if resp.status != 200:
        return None
    db = (resp.json().get("replication") or {}).get("databases", {}).get(DB)
    return db if isinstance(db, dict) else None


def caught_up(cluster: Cluster) -> bool:
    """Every node answers, has an empty outbox and has applied the database's log up to its end."""
    states = [_db_status(n) for n in cluster.nodes]
    if any(s is None or s.get("last_seq") is None for s in states):
        return False
    end = max(int(s["last_seq"]) for s in states if s is not None)
    return all(s is not None and s.get("outbox") == 0 and int(s["applied_seq"]) >= end for s in states)


def read(cluster: Cluster, workloads: list[Workload]) -> Snapshot:
    tables: dict[str, dict[str, Rows]] = {}
    for w in workloads:
        sql = f"SELECT * FROM {w.table} ORDER BY {w.order_by}"
        tables[w.table] = {n.name: n.query({"sql": sql})["rows"] for n in cluster.nodes}
    return Snapshot(tables=tables)


def converge(cluster: Cluster, workloads: list[Workload], timeout: float) -> tuple[bool, Snapshot]:
    """Poll until the nodes are caught up and agree; after ``timeout``, what they hold then."""
    deadline = time.monotonic() + timeout
    while True:
        if caught_up(cluster):
            snap = read(cluster, workloads)
            if not snap.divergent():
                return True, snap
        if time.monotonic() > deadline:
            return False, read(cluster, workloads)
        time.sleep(0.5)


def check(ops: list[Op], workloads: list[Workload], snap: Snapshot) -> Findings:
    findings = Findings()
    grouped = ops_by_workload(ops)
    for w in workloads:
        findings.extend(w.check(grouped.get(w.name, []), snap.tables[w.table]))
    for op in ops:
        if op.outcome is Outcome.ANOMALY:
            findings.invalid.append(
                f"{op.workload} {op.write_id} via {op.node}: answer {op.status} {op.body!r}"
            )
    return findings


def availability(
    ops: list[Op], nodes: list[str], window: tuple[float, float], down: dict[str, list[list[float]]]
) -> Availability:
    a = Availability(requests=len(ops))
    for op in ops:
        match op.outcome:
            case Outcome.OK:
                a.ok += 1
            case Outcome.PENDING:
                a.pending += 1
            case Outcome.REFUSED:
                a.refused += 1
            case Outcome.UNKNOWN:
                a.unknown += 1
            case Outcome.ANOMALY:
                a.anomaly += 1
    for node in nodes:
        successes = sorted(op.end for op in ops if op.node == node and op.outcome is Outcome.OK)
        a.gaps[node] = longest_gap(successes, window, down.get(node, []))
    return a


def longest_gap(successes: list[float], window: tuple[float, float], down: list[list[float]]) -> float:
    """The longest stretch of ``window`` without a success, not counting the ``down`` windows."""
    start, end = window
    segments: list[tuple[float, float]] = []
    cursor = start
    for d0, d1 in sorted((max(d0, start), min(d1, end)) for d0, d1 in down):
        if d0 > cursor:
            segments.append((cursor, d0))
        cursor = max(cursor, d1)
    if cursor < end:
        segments.append((cursor, end))
    gap = 0.0
    for s0, s1 in segments:
        points = [s0, *(t for t in successes if s0 <= t <= s1), s1]
        gap = max(gap, *(b - a for a, b in itertools.pairwise(points)))
    return gap
