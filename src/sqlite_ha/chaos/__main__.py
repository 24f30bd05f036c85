"""``python -m sqlite_ha.chaos``: run chaos scenarios and print the table (exit 1 if any is unsafe)."""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
from pathlib import Path

from sqlite_ha.chaos.cluster import Topology
from sqlite_ha.chaos.nemesis import NEMESES
from sqlite_ha.chaos.network import supported
from sqlite_ha.chaos.result import Result, table
from sqlite_ha.chaos.runner import Settings, run
from sqlite_ha.chaos.workloads import DEFAULT_WORKLOADS, WORKLOADS


def _names(value: str, known: list[str], what: str) -> list[str]:
    names = known if value == "all" else [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what}: {', '.join(unknown)} (known: {', '.join(known)})")
    return names


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so that every cluster is closed (its processes stopped) on the way out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sqlite_ha.chaos", description=__doc__)
    p.add_argument("--scenarios", default="all", help=f"comma-separated: {', '.join(NEMESES)} (default all)")
    p.add_argument("--topologies", default="all", help="shared, raft3 (default all)")
    p.add_argument(
        "--workloads",
        default=",".join(DEFAULT_WORKLOADS),
        help=f"comma-separated: {', '.join(WORKLOADS)} (default {','.join(DEFAULT_WORKLOADS)})",
    )
    p.add_argument("--hold", type=float, default=5.0, help="seconds a fault lasts (default 5)")
    p.add_argument("--tail", type=float, default=6.0, help="seconds of load after the fault (default 6)")
    p.add_argument("--pause", type=float, default=0.05, help="seconds between a client's requests")
    p.add_argument("--repeat", type=int, default=1, help="run each scenario this many times (default 1)")
    p.add_argument("--workdir", type=Path, help="keep node files, logs and histories here")
    p.add_argument("-v", "--verbose", action="store_true", help="print every violation and event")
    a = p.parse_args(argv)
    try:
        scenarios = _names(a.scenarios, list(NEMESES), "scenario")
        if a.scenarios == "all" and not supported():
            print("no partition scenario: it needs root and iproute2 (ip netns)", file=sys.stderr)
            scenarios = [s for s in scenarios if not NEMESES[s].network]
        topologies = [Topology(t) for t in _names(a.topologies, [t.value for t in Topology], "topology")]
        workloads = tuple(_names(a.workloads, list(WORKLOADS), "workload"))
    except argparse.ArgumentTypeError as e:
        p.error(str(e))
    if a.workdir is not None and a.workdir.exists() and any(a.workdir.iterdir()):
        p.error(f"--workdir {a.workdir} is not empty: a run starts from new nodes")
    signal.signal(signal.SIGTERM, _interrupt)
    settings = Settings(workloads=workloads, hold=a.hold, tail=a.tail, pause=a.pause)
    base = a.workdir or Path(tempfile.mkdtemp(prefix="sqlite-ha-chaos-"))
    results: list[Result] = []
    for scenario in scenarios:
        for topology in topologies:
            for i in range(a.repeat):
                print(f"running {scenario} / {topology.value} ...", file=sys.stderr, flush=True)
                suffix = f"-{i + 1}" if a.repeat > 1 else ""
                r = run(scenario, topology, base / f"{scenario}-{topology.value}{suffix}", settings)
                results.append(r)
                verdict = r.details() if a.verbose or not r.safe() else f"  {r.verdict()}"
                print(verdict, file=sys.stderr, flush=True)
    print(table(results))
    print(f"\nnode logs and histories: {base}", file=sys.stderr)
    return 0 if all(r.safe() for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
