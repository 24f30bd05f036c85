"""Writer modes: write throughput on the writer against through a follower, and failover time after SIGKILL.

    python bench/writer_modes.py [--duration 5] [--clients 16] [--repeats 5] [--modes elected,pinned]
                                 [--nats external,embedded] [--skip throughput|failover] [--json out.json]

Three real ``sqlite-ha serve`` processes on loopback, by default on one external nats-server started here (so
that killing a node kills no NATS server: what is measured is the writer's own failover, not a JetStream
leader election; ``--nats embedded``: each node runs its own server, R3, as well), file databases, built with
``tests/e2e/writer_cluster.py`` as the tests are.

1. Throughput. One cluster in mode elected. One-row ``INSERT`` transactions with unique ids from ``--clients``
   concurrent keep-alive clients (``bench/lean_http.py``, in this process), sent to the writer, then to the
   two followers (half the clients each), which forward them to the writer. Measurements interleaved,
   ``--repeats`` times; medians of requests/s and latency, and the followers' share of the writer's rate.
   Every answer must be a 200 with a ``seq``.
2. Failover. Per mode (elected; pinned where this build has it) and per lease setting (the defaults,
   ``--heartbeat-interval 1s --lease-timeout 3s``, and short ones, ``200ms``/``1s``): one cluster, a client
   on every node writing back to back; SIGKILL the writer, and measure until the surviving nodes agree on a
   new writer (``GET /status``, polled every 50 ms) and until the first write acknowledged through a
   surviving node (200 with ``seq``, sent after the kill). The killed node is started again and the cluster
   converges before the next repeat (``--repeats`` kills per setting). Median and max, next to the bound
   docs/writer-modes.md states: ``--lease-timeout`` + 2 x ``--heartbeat-interval``.

Afterwards every node must hold every acknowledged write (the chaos checker's rules). A failed request in
part 1, a lost write, a missing new writer or nodes that do not converge make the exit status 1. Every
process started is stopped in a ``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import itertools
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from lean_http import Connection, HTTPError
from machine import code_state, machine_info, median, print_table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' cluster harness

from tests.e2e.writer_cluster import (
    DEFAULT_HEARTBEAT,
    DEFAULT_LEASE,
    HEARTBEAT,
    LEASE,
    Chain,
    Mode,
    Nats,
    WriterCluster,
    failover_bound,
    verdict,
    wait_acknowledged,
)

CREATE = "CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)"
INSERT = "INSERT INTO kv(id, v) VALUES(?, ?)"
REQUEST_TIMEOUT = 20.0
FAILOVER_MODES: tuple[Mode, ...] = ("elected", "pinned")
SETTINGS = {
    "defaults": (DEFAULT_HEARTBEAT, DEFAULT_LEASE),
    "short": (HEARTBEAT, LEASE),
}


def timing_flags(heartbeat: float, lease: float) -> tuple[str, ...]:
    return ("--heartbeat-interval", f"{int(heartbeat * 1000)}ms", "--lease-timeout", f"{int(lease * 1000)}ms")


# ---------------------------------------------------------------------------------------- 1: throughput
@dataclass(kw_only=True)
class Throughput:
    target: str  # "writer" or "followers"
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)

    @property
    def tps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0


async def _load(
    urls: list[str], clients: int, warmup: float, duration: float, ids: itertools.count[int]
) -> Throughput:
    """``clients`` clients, client k on ``urls[k % len(urls)]``, back to back for warm-up + duration."""
    start = time.monotonic()
    window = (start + warmup, start + warmup + duration)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    samples: list[str] = []

    def error(kind: str, sample: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1
        if len(samples) < 5:
            samples.append(sample[:300])

    async def client(url: str) -> None:
        conn = Connection(url)
        try:
            while (t0 := time.monotonic()) < window[1]:
                n = next(ids)
                try:
                    status, payload = await conn.post(
                        orjson.dumps({"sql": INSERT, "params": [n, f"v{n}"]}), REQUEST_TIMEOUT
                    )
                except (OSError, HTTPError, TimeoutError) as e:
                    error(type(e).__name__, f"{url}: {e!r}")
                    continue
                body = orjson.loads(payload) if payload[:1] == b"{" else {}
                if status != 200 or not isinstance(body.get("seq"), int):
                    error(f"HTTP {status}", f"{url}: {payload.decode(errors='replace')}")
                    continue
                if t0 >= window[0]:
                    latencies.append((time.monotonic() - t0) * 1000)
        finally:
            conn.close()

    await asyncio.gather(*(client(urls[k % len(urls)]) for k in range(clients)))
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return Throughput(
        target="",
        requests=len(latencies),
        seconds=duration,
        p50_ms=pct(0.5),
        p99_ms=pct(0.99),
        errors=errors,
        samples=samples,
    )


def throughput(args: argparse.Namespace, workdir: Path, problems: list[str]) -> list[Throughput]:
    results: list[Throughput] = []
    ids = itertools.count(1)
    with WriterCluster(workdir, "elected", timing=timing_flags(*SETTINGS["defaults"])) as cluster:
        writer = cluster.writer()
        writer.query({"sql": CREATE})
        cluster.converge([])
        followers = [n for n in cluster.nodes if n is not writer]
        for _ in range(args.repeats):
            for target, nodes in (("writer", [writer]), ("followers", followers)):
                urls = [f"{n.url}/query" for n in nodes]
                r = asyncio.run(_load(urls, args.clients, args.warmup, args.duration, ids))
                r.target = target
                results.append(r)
                if r.errors:
                    problems.append(f"throughput to the {target}: {r.errors} e.g. {r.samples}")
        if cluster.agreed_writer() is not writer:
            problems.append("throughput: the writer changed during the measurement")
        counts = {n.name: n.query({"sql": "SELECT count(*) FROM kv"})["rows"][0][0] for n in cluster.nodes}
        wanted = sum(r.requests for r in results)
        if min(counts.values()) < wanted:
            problems.append(f"throughput: {wanted} writes measured, the nodes hold {counts}")
    return results


def print_throughput(results: list[Throughput], clients: int) -> None:
    print(f"## Write throughput: one-row inserts, {clients} clients, mode elected (3 nodes, medians)\n")
    writer_tps = median([r.tps for r in results if r.target == "writer"])
    rows = []
    for target, label in (
        ("writer", "sent to the writer"),
        ("followers", "sent to the followers (forwarded)"),
    ):
        rs = [r for r in results if r.target == target]
        tps = median([r.tps for r in rs])
        rows.append(
            [
                label,
                f"{tps:.0f}",
                f"{median([r.p50_ms for r in rs]):.2f}",
                f"{median([r.p99_ms for r in rs]):.2f}",
                f"{tps / writer_tps:.2f}" if writer_tps else "-",
                str(sum(sum(r.errors.values()) for r in rs)),
            ]
        )
    print_table(["writes", "tx/s", "p50 ms", "p99 ms", "x writer", "errors"], rows, left=1)


# ---------------------------------------------------------------------------------------- 2: failover
@dataclass(kw_only=True)
class Failover:
    mode: str
    nats: str
    setting: str
    heartbeat: float
    lease: float
    elected_s: list[float] = field(default_factory=list)  # kill -> survivors agree on a new writer
    first_write_s: list[float] = field(default_factory=list)  # kill -> first acknowledged write on a survivor
    refused: list[int] = field(default_factory=list)  # writes answered with an error meanwhile, per kill

    @property
    def bound(self) -> float:
        return failover_bound(self.heartbeat, self.lease)


def failover(
    mode: Mode, nats: Nats, setting: str, args: argparse.Namespace, workdir: Path, problems: list[str]
) -> Failover:
    heartbeat, lease = SETTINGS[setting]
    result = Failover(mode=mode, nats=nats, setting=setting, heartbeat=heartbeat, lease=lease)
    chain = Chain()
    with WriterCluster(workdir, mode, nats=nats, timing=timing_flags(heartbeat, lease)) as cluster:
        cluster.create([chain], via=cluster.writer())
        for repeat in range(args.repeats):
            # the revived node may take the role back (pinned: the lowest id writes): wait until it settled
            writer = cluster.settled_writer(result.bound)
            survivors = [n for n in cluster.nodes if n is not writer]
            with cluster.clients(chain, list(cluster.nodes), pause=0.01):
                wait_acknowledged(cluster.history, 10, timeout=30, after=time.time())
                cluster.kill(writer)
                killed_at = time.time()  # dead by now: kill() waited for it
                new = cluster.writer(max(30.0, 4 * result.bound), other_than=writer)
                result.elected_s.append(time.time() - killed_at)
                first = wait_acknowledged(cluster.history, 1, 60, after=killed_at, via=survivors)[0]
                result.first_write_s.append(first.end - killed_at)
                wait_acknowledged(cluster.history, 10, timeout=30, after=killed_at, via=survivors)
            result.refused.append(
                sum(
                    1
                    for op in cluster.history.snapshot()
                    if op.start > killed_at and op.node != writer.name and op.status != 200
                )
            )
            print(
                f"  {mode}/{nats}/{setting} kill {repeat + 1}: {writer.name} killed, {new.name} writes after "
                f"{result.elected_s[-1]:.2f}s, first write acknowledged after "
                f"{result.first_write_s[-1]:.2f}s",
                flush=True,
            )
            cluster.cluster.revive(writer)
        snap = cluster.converge([chain])
        found = verdict(cluster.history, chain, snap)
        if not found.ok:
            problems.append(f"failover {mode}/{nats}/{setting}: {found}")
    return result


def print_failover(results: list[Failover]) -> None:
    print("## Failover: SIGKILL the writer under load (3 nodes)\n")
    rows = []
    for r in results:
        rows.append(
            [
                r.mode,
                "one external server" if r.nats == "external" else "embedded, R3",
                f"{r.setting} ({r.heartbeat:g}s / {r.lease:g}s)",
                f"{r.bound:.1f}",
                f"{median(r.elected_s):.2f}",
                f"{max(r.elected_s):.2f}",
                f"{median(r.first_write_s):.2f}",
                f"{max(r.first_write_s):.2f}",
                str(sum(r.refused)),
                str(len(r.elected_s)),
            ]
        )
    print_table(
        [
            "mode",
            "NATS",
            "settings (interval / lease)",
            "bound s",
            "new writer: median s",
            "max s",
            "first write: median s",
            "max s",
            "errors",
            "kills",
        ],
        rows,
        left=3,
    )
    print(
        "\nbound: --lease-timeout + 2 x --heartbeat-interval (docs/writer-modes.md). new writer: kill until "
        "the surviving nodes agree on another writer in GET /status. first write: kill until the first "
        "write sent after it was acknowledged (200 with seq) through a surviving node. errors: writes the "
        "surviving nodes answered with an error meanwhile (all kills). embedded, R3: every node runs its own "
        "nats-server, the writer dies with its server, and NATS may have to elect a new leader of the stream "
        "or of the lease bucket first (4-9 s, docs/operations.md)."
    )


# ---------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per throughput run [5]")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each run [0.5]")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients for throughput [16]")
    p.add_argument(
        "--repeats", type=int, default=5, help="repeats of each measurement (kills per setting) [5]"
    )
    p.add_argument(
        "--modes", default="elected,pinned", help="failover modes, those this build has [elected,pinned]"
    )
    p.add_argument(
        "--nats",
        default="external",
        help="failover topologies: external (one nats-server outside the nodes), embedded (each node its "
        "own, R3) [external]",
    )
    p.add_argument("--skip", choices=("throughput", "failover"), default=None, help="leave one part out")
    p.add_argument("--dir", type=Path, default=None, help="where to make the temporary directory")
    p.add_argument("--json", type=Path, default=None, help="also write the results (every repeat) as JSON")
    return p.parse_args(argv)


def available(mode: str) -> bool:
    module = {"elected": "sqlite_ha.writer.lease", "pinned": "sqlite_ha.writer.pinned"}.get(mode)
    return module is not None and importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    modes = [m for m in FAILOVER_MODES if m in args.modes.split(",") and available(m)]
    problems: list[str] = []
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sqlite-ha-bench-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        machine = machine_info(workdir)
        print(f"machine: {machine['nproc']} CPUs ({machine['usable_cpus']} usable), {machine['cpu']}")
        print(
            f"code: {code_state()}; load average at start "
            + ", ".join(f"{x:.2f}" for x in machine["loadavg_at_start"])
        )
        print(f"failover modes in this build: {', '.join(modes) or 'none'}\n")
        runs = itertools.count()
        if args.skip != "throughput":
            results = throughput(args, workdir / f"run{next(runs)}", problems)
            print_throughput(results, args.clients)
            print()
            out["throughput"] = [asdict(r) | {"tps": r.tps} for r in results]
        if args.skip != "failover":
            fails = []
            topologies: list[Nats] = [t for t in ("external", "embedded") if t in args.nats.split(",")]
            for mode, nats, setting in itertools.product(modes, topologies, SETTINGS):
                try:
                    fails.append(failover(mode, nats, setting, args, workdir / f"run{next(runs)}", problems))
                except Exception as e:  # reported below; the other settings still run
                    problems.append(f"failover {mode}/{nats}/{setting}: {type(e).__name__}: {e}")
            if fails:
                print()
                print_failover(fails)
            out["failover"] = [asdict(f) | {"bound": f.bound} for f in fails]
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))
    if problems:
        print("\n" + "=" * 30 + " PROBLEMS: the figures above are not valid " + "=" * 30)
        for p in problems:
            print(f"- {p[:3000]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
