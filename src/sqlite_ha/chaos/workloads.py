"""The four workloads: what each write sends, and what the database must show for it afterwards.

Every write is identified by a ``write_id`` that it leaves in the database (a key, a tag, a value, a batch
id), so the checker can tell, for each answer the client heard, whether the write is there on every node.
"""

from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sqlite_ha.chaos.history import Op, Outcome

Rows = list[list[Any]]
"""Rows as the HTTP API answers them."""

# answers after which a write must be on every node, and after which it must be on none
MUST_EXIST = (Outcome.OK, Outcome.PENDING)


@dataclass(kw_only=True)
class Findings:
    """Violations found by the checks, each a readable line naming the write and the node."""

    lost: list[str] = field(default_factory=list)
    """Acknowledged (200 with seq) writes missing on some node."""
    pending_lost: list[str] = field(default_factory=list)
    """202 writes still missing on some node after convergence."""
    phantom: list[str] = field(default_factory=list)
    """Writes refused (503, 4xx, connection refused) that appear on some node."""
    partial: list[str] = field(default_factory=list)
    """Batches with some but not all of their rows on some node."""
    invalid: list[str] = field(default_factory=list)
    """Anything else wrong: a value no write wrote, a ``last_insert_id`` that names another row."""
    unknown: Counter[str] = field(default_factory=Counter)
    """Writes whose outcome the client could not know (timeouts, broken connections), by what became of
    them: ``present`` on every node, ``absent`` from every node. Not violations: for the report."""

    def extend(self, other: Findings) -> None:
        for name in ("lost", "pending_lost", "phantom", "partial", "invalid"):
            getattr(self, name).extend(getattr(other, name))
        self.unknown.update(other.unknown)


def _missing(op: Op, present_on: dict[str, bool], findings: Findings) -> None:
    """File an op whose row is absent on the nodes marked False."""
    absent = sorted(n for n, ok in present_on.items() if not ok)
    if op.outcome is Outcome.UNKNOWN:
        findings.unknown[
            "absent" if len(absent) == len(present_on) else "present" if not absent else "some"
        ] += 1
    if op.outcome is Outcome.OK and absent:
        findings.lost.append(f"{op.workload} {op.write_id} (seq {op.seq}, via {op.node}) missing on {absent}")
    elif op.outcome is Outcome.PENDING and absent:
        findings.pending_lost.append(f"{op.workload} {op.write_id} (202 via {op.node}) missing on {absent}")
    elif op.outcome is Outcome.REFUSED and len(absent) < len(present_on):
        present = sorted(n for n, ok in present_on.items() if ok)
        findings.phantom.append(f"{op.workload} {op.write_id} (refused {op.status}) present on {present}")


class Workload:
    """One kind of write. Subclasses say what to send and what to check."""

    name: ClassVar[str]
    table: ClassVar[str]
    schema: ClassVar[str]
    order_by: ClassVar[str]

    def body(self, write_id: str, node: str) -> Any:
        raise NotImplementedError

    def note(self, write_id: str, answer: Any) -> Any:
        """What to keep of the answer for the check (None by default)."""
        return None

    def check(self, ops: list[Op], rows: dict[str, Rows]) -> Findings:
        """Compare the writes' outcomes with the rows each node holds once the cluster converged."""
        raise NotImplementedError


class UniqueInserts(Workload):
    """Inserts with an explicit, never reused key."""

    name = "unique"
    table = "uniq"
    schema = "CREATE TABLE uniq(k TEXT PRIMARY KEY, node TEXT NOT NULL)"
    order_by = "k"

    def body(self, write_id: str, node: str) -> Any:
        return {"sql": "INSERT INTO uniq(k, node) VALUES (?, ?)", "params": [write_id, node]}

    def check(self, ops: list[Op], rows: dict[str, Rows]) -> Findings:
        keys = {n: {r[0] for r in rs} for n, rs in rows.items()}
        findings = Findings()
        for op in ops:
            _missing(op, {n: op.write_id in ks for n, ks in keys.items()}, findings)
        return findings


class AutoKeyInserts(Workload):
    """Inserts that let SQLite choose the key (``AUTOINCREMENT``); the row carries the write's tag."""

    name = "auto"
    table = "auto"
    schema = "CREATE TABLE auto(id INTEGER PRIMARY KEY AUTOINCREMENT, tag TEXT NOT NULL)"
    order_by = "id"

    def body(self, write_id: str, node: str) -> Any:
        return {"sql": "INSERT INTO auto(tag) VALUES (?)", "params": [write_id]}

    def note(self, write_id: str, answer: Any) -> Any:
        try:
            return int(answer["rows"][0][1])  # last_insert_id
        except (KeyError, IndexError, TypeError, ValueError):
            return None

    def check(self, ops: list[Op], rows: dict[str, Rows]) -> Findings:
        ids_by_node = {n: {r[1]: r[0] for r in rs} for n, rs in rows.items()}  # tag -> id
        findings = Findings()
        for op in ops:
            _missing(op, {n: op.write_id in ids for n, ids in ids_by_node.items()}, findings)
            if op.outcome is Outcome.OK and op.result is not None:
                for n, ids in ids_by_node.items():
                    if op.write_id in ids and ids[op.write_id] != op.result:
                        findings.invalid.append(
                            f"auto {op.write_id}: answered last_insert_id {op.result}, "
                            f"row has id {ids[op.write_id]} on {n}"
                        )
        given = Counter(op.result for op in ops if op.outcome in MUST_EXIST and op.result is not None)
        for row_id, times in sorted(given.items()):
            if times > 1:
                findings.invalid.append(f"auto: last_insert_id {row_id} answered to {times} writes")
        return findings


class HotUpserts(Workload):
    """Many writers upserting a few keys; each write's value is its own id."""

    name = "upsert"
    table = "hot"
    schema = "CREATE TABLE hot(k INTEGER PRIMARY KEY, v TEXT NOT NULL)"
    order_by = "k"
    keys = 3

    def key_of(self, write_id: str) -> int:
        return zlib.crc32(write_id.encode()) % self.keys + 1

    def body(self, write_id: str, node: str) -> Any:
        return {
            "sql": "INSERT INTO hot(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
            "params": [self.key_of(write_id), write_id],
        }

    def check(self, ops: list[Op], rows: dict[str, Rows]) -> Findings:
        by_id = {op.write_id: op for op in ops}
        findings = Findings()
        for node, rs in rows.items():
            for k, v in rs:
                op = by_id.get(v)
                if op is None or self.key_of(v) != k:
                    findings.invalid.append(f"upsert key {k} = {v!r} on {node}: no write wrote that")
                elif op.outcome is Outcome.REFUSED:
                    findings.phantom.append(
                        f"upsert {v} (refused {op.status}) is the value of key {k} on {node}"
                    )
        # a key written by an acknowledged write can never vanish (nothing deletes)
        acked_keys = {self.key_of(op.write_id) for op in ops if op.outcome is Outcome.OK}
        for node, rs in rows.items():
            for k in sorted(acked_keys - {r[0] for r in rs}):
                findings.lost.append(f"upsert key {k} (acknowledged writes) missing on {node}")
        return findings


class BatchTransactions(Workload):
    """A list of statements (one transaction) inserting ``size`` rows tagged with the batch id."""

    name = "batch"
    table = "batch"
    schema = "CREATE TABLE batch(id TEXT PRIMARY KEY, b TEXT NOT NULL, i INTEGER NOT NULL)"
    order_by = "id"
    size = 3

    def body(self, write_id: str, node: str) -> Any:
        return [
            {
                "sql": "INSERT INTO batch(id, b, i) VALUES (?, ?, ?)",
                "params": [f"{write_id}/{i}", write_id, i],
            }
            for i in range(self.size)
        ]

    def check(self, ops: list[Op], rows: dict[str, Rows]) -> Findings:
        counts: dict[str, Counter[str]] = {n: Counter(r[1] for r in rs) for n, rs in rows.items()}
        findings = Findings()
        for node, c in counts.items():
            for b, n in sorted(c.items()):
                if n != self.size:
                    findings.partial.append(f"batch {b}: {n} of {self.size} rows on {node}")
        for op in ops:
            _missing(op, {n: c[op.write_id] == self.size for n, c in counts.items()}, findings)
        return findings


WORKLOADS: dict[str, type[Workload]] = {
    w.name: w for w in (UniqueInserts, AutoKeyInserts, HotUpserts, BatchTransactions)
}
DEFAULT_WORKLOADS = ("unique", "auto", "upsert", "batch")
"""Without ``auto``: inserts with SQLite-chosen keys on two nodes collide and lose writes today (issue 12,
point 7). Add it (``--workloads unique,auto,upsert,batch``) once that is fixed."""


def ops_by_workload(ops: Iterable[Op]) -> dict[str, list[Op]]:
    grouped: dict[str, list[Op]] = defaultdict(list)
    for op in ops:
        grouped[op.workload].append(op)
    return grouped
