"""pgbench's built-in TPC-B script against a sqlite-ha node and a real PostgreSQL 15, in the same run.

Both get ``pgbench -i -s SCALE`` and then, for each query mode (simple, prepared, extended), ``REPEATS`` runs
of ``pgbench -c CLIENTS -j THREADS -T SECONDS``, taking turns so that both see the same machine load. Printed:
the median tps and average latency of each, and the node's tps as a fraction of PostgreSQL's. The node is
one ``sqlite-ha serve`` with its embedded NATS (every commit is acknowledged by JetStream before the client
hears of it); PostgreSQL runs with its default durability (fsync on, synchronous_commit on).

    python bench/pgbench.py                      # -s 1, -c 4, 10 s runs, 3 repeats
    python bench/pgbench.py --seconds 3 --repeats 1 --modes simple
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import machine_info
from sqlite_ha.testing import NodeProcess, free_port
from sqlite_ha.testing_pg import PostgresServer, default_os_user, os_user

USER = "ha"
PASSWORD = "bench"
SYSTEMS = ("postgres", "node")


def pgbench(port: int, dbname: str, *args: str, timeout: float = 600) -> str:
    run = subprocess.run(
        ["pgbench", "-h", "127.0.0.1", "-p", str(port), "-U", USER, *args, dbname],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PGPASSWORD": PASSWORD},
    )
    if run.returncode != 0:
        raise RuntimeError(f"pgbench {' '.join(args)} failed on port {port}:\n{run.stdout}\n{run.stderr}")
    return run.stdout


def figures(out: str) -> tuple[float, float, int]:
    """(tps, average latency in ms, failed transactions) of a pgbench run's report."""
    tps = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    latency = re.search(r"latency average = ([\d.]+) ms", out)
    failed = re.search(r"number of failed transactions: (\d+)", out)
    if tps is None or latency is None:
        raise RuntimeError(f"cannot read pgbench's report:\n{out}")
    return float(tps.group(1)), float(latency.group(1)), int(failed.group(1)) if failed else 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--scale", type=int, default=1, help="pgbench -i -s (default 1: 100,000 accounts)")
    p.add_argument("--clients", type=int, default=4, help="pgbench -c (default 4)")
    p.add_argument("--threads", type=int, default=2, help="pgbench -j (default 2)")
    p.add_argument("--seconds", type=int, default=10, help="pgbench -T of each run (default 10)")
    p.add_argument("--repeats", type=int, default=3, help="runs per system and mode; medians (default 3)")
    p.add_argument("--modes", default="simple,prepared,extended", help="pgbench -M modes, comma-separated")
    p.add_argument("--pg-bin", type=Path, default=Path("/usr/lib/postgresql/15/bin"))
    p.add_argument("--dir", default=None, help="where the work directory goes (default: the system's temp)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("pgbench") is None:
        print("pgbench is not installed (Debian: postgresql-client)", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="sqlite-ha-bench-pgbench-", dir=args.dir))
    run_as: tuple[int, int] | None = None
    if os.geteuid() == 0:
        run_as = os_user(default_os_user())
        os.chmod(workdir, 0o711)
    machine = machine_info(workdir)
    pg = PostgresServer(
        bindir=args.pg_bin, root=workdir / "postgres", port=free_port(), run_as=run_as, user=USER,
        password=PASSWORD,
    )  # fmt: skip
    node_port = free_port()
    node = NodeProcess(
        workdir=workdir / "node",
        name="node1",
        nats_port=None,
        args=["bench.db", "--pg-port", str(node_port), "--pg-pass", PASSWORD, "--log-level", "warn"],
    )
    targets = {"postgres": (pg.port, "postgres"), "node": (node_port, "bench")}
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    results: dict[tuple[str, str], list[tuple[float, float, int]]] = {
        (s, m): [] for s in SYSTEMS for m in modes
    }
    try:
        pg.init()
        pg.start()
        node.start(timeout=60)
        print(
            f"machine: {machine['nproc']} CPUs ({machine['usable_cpus']} usable), {machine['cpu']}; "
            f"pgbench -s {args.scale} -c {args.clients} -j {args.threads} -T {args.seconds}, "
            f"{args.repeats} run(s) each, medians"
        )
        for system, (port, dbname) in targets.items():
            started = time.monotonic()
            pgbench(port, dbname, "-i", "-q", "-s", str(args.scale))
            print(f"  pgbench -i on {system}: {time.monotonic() - started:.1f} s")
        for mode in modes:
            for _ in range(args.repeats):
                for system, (port, dbname) in targets.items():
                    out = pgbench(
                        port, dbname, "-M", mode, "-c", str(args.clients), "-j", str(args.threads),
                        "-T", str(args.seconds), timeout=args.seconds * 10 + 60,
                    )  # fmt: skip
                    results[(system, mode)].append(figures(out))
        print()
        print(f"{'mode':<10} {'system':<10} {'tps':>10} {'latency ms':>11} {'failed':>7}")
        for mode in modes:
            medians = {}
            for system in SYSTEMS:
                runs = results[(system, mode)]
                tps = statistics.median(r[0] for r in runs)
                latency = statistics.median(r[1] for r in runs)
                medians[system] = tps
                failed = sum(r[2] for r in runs)
                print(f"{mode:<10} {system:<10} {tps:>10.1f} {latency:>11.2f} {failed:>7}")
            ratio = medians["node"] / medians["postgres"] if medians["postgres"] else float("nan")
            print(f"{mode:<10} {'node/pg':<10} {ratio:>10.2f}")
    finally:
        node.stop()
        pg.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
