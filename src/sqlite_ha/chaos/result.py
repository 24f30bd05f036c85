"""A run's result, its verdict per criterion, and the table of a whole matrix."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlite_ha.chaos.workloads import Findings


@dataclass(kw_only=True)
class Availability:
    requests: int = 0
    ok: int = 0
    pending: int = 0
    refused: int = 0
    unknown: int = 0
    anomaly: int = 0
    gaps: dict[str, float] = field(default_factory=dict)
    """Per node, the longest time (s) without an acknowledged write while the node was meant to be up."""

    @property
    def failed(self) -> int:
        return self.refused + self.unknown + self.anomaly

    @property
    def failed_pct(self) -> float:
        return 100.0 * self.failed / self.requests if self.requests else 0.0

    @property
    def longest_gap(self) -> tuple[str, float]:
        if not self.gaps:
            return ("-", 0.0)
        node = max(self.gaps, key=lambda n: self.gaps[n])
        return node, self.gaps[node]


@dataclass(kw_only=True)
class Result:
    scenario: str
    topology: str
    gap_goal: float | None
    availability: Availability
    findings: Findings
    converged: bool
    divergent: list[str]
    """Tables whose checksum differs between nodes after convergence (with the per-node checksums)."""
    healed: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    error: str | None = None
    """Why the run could not be completed (then nothing else is trustworthy)."""

    @property
    def lost(self) -> int:
        return len(self.findings.lost) + len(self.findings.pending_lost)

    def criteria(self) -> dict[str, bool | None]:
        """Each criterion: True held, False broken, None no goal."""
        gap = self.availability.longest_gap[1]
        return {
            "completed": self.error is None,
            "lost": self.lost == 0,
            "phantom": not self.findings.phantom,
            "partial": not self.findings.partial,
            "invalid": not self.findings.invalid,
            "divergent": self.converged and not self.divergent,
            "gap": None if self.gap_goal is None else gap <= self.gap_goal,
        }

    def safe(self) -> bool:
        """No acknowledged write lost, nothing refused appeared, no partial batch, no divergence."""
        c = self.criteria()
        return all(c[k] for k in ("completed", "lost", "phantom", "partial", "invalid", "divergent"))

    def verdict(self) -> str:
        broken = [k for k, ok in self.criteria().items() if ok is False]
        return "PASS" if not broken else "FAIL: " + ",".join(broken)

    def details(self) -> str:
        """Every violation, one per line (at most 20 per kind), and what the nemesis and the heal did."""
        lines = [f"== {self.scenario} / {self.topology}: {self.verdict()}"]
        if self.error:
            lines.append(f"error: {self.error}")
        lines += [f"  event {e}" for e in self.events]
        lines += [f"  healed: {h}" for h in self.healed]
        f = self.findings
        for kind, items in (
            ("lost", f.lost),
            ("pending lost", f.pending_lost),
            ("phantom", f.phantom),
            ("partial", f.partial),
            ("invalid", f.invalid),
            ("divergent", self.divergent),
        ):
            lines += [f"  {kind}: {item}" for item in items[:20]]
            if len(items) > 20:
                lines.append(f"  {kind}: … {len(items) - 20} more")
        if f.unknown:
            lines.append(f"  writes of unknown outcome: {dict(sorted(f.unknown.items()))} (not violations)")
        if not self.converged:
            lines.append("  the nodes did not converge in time")
        gaps = ", ".join(f"{n} {g:.2f}s" for n, g in sorted(self.availability.gaps.items()))
        lines.append(f"  longest write gap per node: {gaps}")
        return "\n".join(lines)


HEADER = (
    "scenario",
    "topology",
    "requests",
    "ok",
    "pending",
    "failed %",
    "longest gap (goal)",
    "lost",
    "divergent",
    "partial",
    "verdict",
)


def row(r: Result) -> tuple[str, ...]:
    a = r.availability
    node, gap = a.longest_gap
    goal = "no goal" if r.gap_goal is None else f"≤ {r.gap_goal:.1f} s"
    return (
        r.scenario,
        r.topology,
        str(a.requests),
        str(a.ok),
        str(a.pending),
        f"{a.failed_pct:.1f}",
        f"{gap:.1f} s {node} ({goal})",
        str(r.lost),
        str(len(r.divergent)) if r.converged else "not converged",
        str(len(r.findings.partial)),
        r.verdict(),
    )


def table(results: list[Result]) -> str:
    """A Markdown table, one row per run."""
    rows = [HEADER, *(row(r) for r in results)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]

    def line(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(rows[0]), sep, *(line(r) for r in rows[1:])])
