"""HTTP API throughput and latency of one node, against raw apsw measured in the same run.

    python bench/http_api.py [--duration 5] [--repeats 3] [--warmup 0.5] [--json out.json]

A real ``sqlite-ha serve`` process (no NATS, file database, default ``--synchronous``) serves
``bench.db`` with a preloaded table ``kv``. A load generator in a separate process (its own interpreter, so
it does not share the node's GIL) sends ``POST /query`` over keep-alive connections with aiohttp for a fixed
time: one-row inserts and point reads by random id, with 1 and 16 concurrent clients. The baseline runs the
same statements on raw apsw in this process, single-threaded, with the node's pragmas (WAL, same synchronous,
one transaction per insert, statement cache). Each measurement is repeated and the median is reported;
repeats are interleaved so that drift on a noisy machine hits every row alike. Every response must be a 200
with the expected row; any other answer, connection error or timeout is counted, printed loudly, and makes
the exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import os
import random
import ssl
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import apsw
import orjson

from machine import machine_info, proc_cpu_seconds
from sqlite_ha.config import SETTINGS_BY_NAME
from sqlite_ha.testing import NodeProcess

CREATE = "CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)"
INSERT = "INSERT INTO kv(v) VALUES(?)"
SELECT = "SELECT v FROM kv WHERE id = ?"
OPERATIONS = ("insert", "point read")
CLIENTS = (1, 16)
PRELOAD_BATCH = 1000
REQUEST_TIMEOUT = 10.0  # a stalled node shows up as timeouts instead of a hung benchmark
MAX_ERROR_SAMPLES = 5
DEFAULT_SYNCHRONOUS: str = SETTINGS_BY_NAME["synchronous"].default

# Check that the answer is the expected one, not only a 200: an insert affected one row, a read found it.
EXPECTED_BODY = {"insert": b'"rows":[[1,', "point read": b'"rows":[["'}


def value_for(n: int) -> str:
    return f"value-{n:08d}"


# ------------------------------------------------------------------------------------------------ machine


# -------------------------------------------------------------------------------------------- load generator
@dataclass(frozen=True, kw_only=True)
class LoadSpec:
    url: str
    op: str
    clients: int
    duration: float
    warmup: float
    max_id: int
    node_pid: int
    seed: int
    cafile: str = ""  # HTTPS: the CA that signed the node's certificate


@dataclass(kw_only=True)
class LoadResult:
    op: str
    clients: int
    requests: int  # completed in the measured window
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    client_cpu: float  # CPU seconds / wall seconds of the load generator during the window
    node_cpu: float  # the same for the node process
    errors: dict[str, int] = field(default_factory=dict)  # over warm-up and window alike
    error_samples: list[str] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of an ascending list (ns in, ms out)."""
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i] / 1e6


def run_load(spec: LoadSpec) -> LoadResult:
    """Entry point in the load-generator process."""
    return asyncio.run(_load(spec))


async def _load(spec: LoadSpec) -> LoadResult:
    rnd = random.Random(spec.seed)
    counter = iter(range(1_000_000_000))

    def body() -> bytes:
        if spec.op == "insert":
            return orjson.dumps({"sql": INSERT, "params": [value_for(next(counter))]})
        return orjson.dumps({"sql": SELECT, "params": [rnd.randint(1, spec.max_id)]})

    expected = EXPECTED_BODY[spec.op]
    latencies: list[int] = []
    last_done = 0
    errors: Counter[str] = Counter()
    samples: list[str] = []

    def error(kind: str, detail: str) -> None:
        errors[kind] += 1
        if len(samples) < MAX_ERROR_SAMPLES:
            samples.append(f"{kind}: {detail[:500]}")

    loop_start = time.perf_counter_ns()
    window_start = loop_start + int(spec.warmup * 1e9)
    window_end = window_start + int(spec.duration * 1e9)
    cpu: dict[str, float] = {}

    async def mark_window_start() -> None:
        await asyncio.sleep(max(0.0, (window_start - time.perf_counter_ns()) / 1e9))
        cpu["client"], cpu["node"] = time.process_time(), proc_cpu_seconds(spec.node_pid)

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal last_done
        while (t0 := time.perf_counter_ns()) < window_end:
            data = body()
            try:
                async with session.post(spec.url, data=data) as resp:
                    payload = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError) as e:
                error(type(e).__name__, str(e) or repr(e))
                continue
            t1 = time.perf_counter_ns()
            if status != 200:
                error(f"HTTP {status}", payload.decode(errors="replace"))
            elif expected not in payload:
                error("unexpected body", payload.decode(errors="replace"))
            elif t0 >= window_start:
                latencies.append(t1 - t0)
                last_done = max(last_done, t1)

    tls = ssl.create_default_context(cafile=spec.cafile) if spec.cafile else None
    connector = aiohttp.TCPConnector(limit=spec.clients, limit_per_host=spec.clients, ssl=tls or True)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers={"Content-Type": "application/json"}
    ) as session:
        marker = asyncio.create_task(mark_window_start())
        await asyncio.gather(*(client(session) for _ in range(spec.clients)))
        await marker
    client_cpu = time.process_time() - cpu["client"]
    node_cpu = proc_cpu_seconds(spec.node_pid) - cpu["node"]
    seconds = max(last_done, time.perf_counter_ns()) / 1e9 - window_start / 1e9
    latencies.sort()
    return LoadResult(
        op=spec.op,
        clients=spec.clients,
        requests=len(latencies),
        seconds=seconds,
        rps=len(latencies) / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        client_cpu=client_cpu / seconds,
        node_cpu=node_cpu / seconds,
        errors=dict(errors),
        error_samples=samples,
    )


# ------------------------------------------------------------------------------------------------ baseline
def open_raw(path: Path, synchronous: str, rows: int) -> apsw.Connection:
    """A connection set up as the node's writer is: WAL, the same synchronous, a statement cache."""
    conn = apsw.Connection(str(path), statementcachesize=256)
    conn.execute("PRAGMA journal_mode=WAL").fetchall()
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute(CREATE)
    with conn:
        conn.executemany(INSERT, ((value_for(i),) for i in range(rows)))
    return conn


def raw_ops_per_second(
    conn: apsw.Connection, op: str, duration: float, warmup: float, max_id: int, seed: int
) -> float:
    """Single-threaded ops/s of ``op`` on raw apsw: each insert its own transaction, as the node runs it."""
    rnd = random.Random(seed)
    n = 0

    def insert() -> None:
        nonlocal n
        n += 1
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(INSERT, (value_for(n),))
        conn.execute("COMMIT")

    def point_read() -> None:
        if not conn.execute(SELECT, (rnd.randint(1, max_id),)).fetchall():
            raise AssertionError("raw point read found no row")

    one: Callable[[], None] = insert if op == "insert" else point_read
    end = time.perf_counter() + warmup
    while time.perf_counter() < end:
        one()
    ops = 0
    start = time.perf_counter()
    end = start + duration
    while (now := time.perf_counter()) < end:
        one()
        ops += 1
    return ops / (now - start)


# ------------------------------------------------------------------------------------------------ the run
def preload(node: NodeProcess, rows: int) -> None:
    node.query({"sql": CREATE})
    for lo in range(0, rows, PRELOAD_BATCH):
        batch = [{"sql": INSERT, "params": [value_for(i)]} for i in range(lo, min(rows, lo + PRELOAD_BATCH))]
        node.query(batch)
    count = node.query({"sql": "SELECT count(*) FROM kv"})["rows"][0][0]
    if count != rows:
        raise RuntimeError(f"preload: expected {rows} rows, the node has {count}")


def check_alive(node: NodeProcess) -> None:
    if node.proc is not None and node.proc.poll() is not None:
        raise RuntimeError(
            f"the node exited with {node.proc.returncode} during the benchmark:\n{node.logs()}"
        )


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summarize(
    node_runs: dict[tuple[str, int], list[LoadResult]], raw_runs: dict[str, list[float]]
) -> list[dict[str, Any]]:
    rows = []
    for op in OPERATIONS:
        raw = median(raw_runs[op])
        for clients in CLIENTS:
            runs = node_runs[(op, clients)]
            rps = [r.rps for r in runs]
            med = median(rps)
            rows.append(
                {
                    "operation": op,
                    "clients": clients,
                    "node_rps": med,
                    "p50_ms": median([r.p50_ms for r in runs]),
                    "p99_ms": median([r.p99_ms for r in runs]),
                    "spread": (max(rps) - min(rps)) / med if med else float("nan"),
                    "raw_ops": raw,
                    "ratio": med / raw if raw else float("nan"),
                    "client_cpu": median([r.client_cpu for r in runs]),
                    "node_cpu": median([r.node_cpu for r in runs]),
                    "errors": sum(r.error_count for r in runs),
                    "runs": [asdict(r) for r in runs],
                    "raw_runs": raw_runs[op],
                }
            )
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    headers = [
        "operation",
        "clients",
        "node req/s",
        "p50 ms",
        "p99 ms",
        "raw apsw ops/s",
        "ratio (node/raw)",
        "spread",
        "client CPU",
        "node CPU",
        "errors",
    ]
    table = [
        [
            r["operation"],
            str(r["clients"]),
            f"{r['node_rps']:,.0f}",
            f"{r['p50_ms']:.3f}",
            f"{r['p99_ms']:.3f}",
            f"{r['raw_ops']:,.0f}",
            f"{r['ratio']:.3f}",
            f"{r['spread']:.0%}",
            f"{r['client_cpu']:.0%}",
            f"{r['node_cpu']:.0%}",
            str(r["errors"]),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if i < 1 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )
            + " |"
        )

    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for t in table:
        print(line(t))


def report_errors(rows: list[dict[str, Any]], node_log: str) -> int:
    total = int(sum(r["errors"] for r in rows))
    if not total:
        return 0
    bar = "!" * 100
    print(f"\n{bar}\n!!! {total} FAILED REQUESTS: the numbers above are NOT valid measurements\n{bar}")
    for r in rows:
        for i, run in enumerate(r["runs"], 1):
            if run["errors"]:
                print(f"{r['operation']}, {r['clients']} clients, repeat {i}: {run['errors']}")
                for sample in run["error_samples"]:
                    print(f"    {sample}")
    print("the node log is above" if node_log.strip() else "the node log (--log-level warn) is empty")
    return total


def make_certificates(directory: Path, node_args: list[str]) -> str:
    """A CA and a certificate for 127.0.0.1 (trustme, a test dependency); adds --cert/--key to the node's
    arguments and returns the CA file the load generator trusts."""
    import trustme

    directory.mkdir(parents=True)
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    cert, key, cafile = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    issued.cert_chain_pems[0].write_to_path(str(cert))
    issued.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    ca.cert_pem.write_to_path(str(cafile))
    node_args += ["--cert", str(cert), "--key", str(key)]
    return str(cafile)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per measurement [5]")
    p.add_argument(
        "--warmup", type=float, default=0.5, help="unmeasured seconds before each measurement [0.5]"
    )
    p.add_argument(
        "--repeats", type=int, default=3, help="repeats of each measurement; the median is shown [3]"
    )
    p.add_argument("--rows", type=int, default=10_000, help="rows preloaded into kv [10000]")
    p.add_argument(
        "--synchronous",
        choices=("full", "normal"),
        default=DEFAULT_SYNCHRONOUS,
        help=f"SQLite synchronous mode of the node and the baseline [{DEFAULT_SYNCHRONOUS}, "
        "the node's default]",
    )
    p.add_argument(
        "--dir", type=Path, default=None, help="where to make the temporary directory [system temp]"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results (every repeat) as JSON")
    p.add_argument("--seed", type=int, default=1, help="random seed of the point-read ids [1]")
    p.add_argument(
        "--https", action="store_true", help="serve and load over HTTPS (a certificate made with trustme)"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sqlite-ha-bench-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        machine = machine_info(workdir)
        print(
            f"machine: {machine['nproc']} CPUs ({machine['usable_cpus']} usable), {machine['cpu']}, "
            f"{machine['platform']}"
        )
        print(
            f"python {machine['python']}, apsw {machine['apsw']}, SQLite {machine['sqlite']}, "
            f"aiohttp {machine['aiohttp']}; database files on {machine['filesystem']}; "
            f"load average at start {', '.join(f'{x:.2f}' for x in machine['loadavg_at_start'])}"
        )
        print(
            f"settings: {args.duration:g}s measured after {args.warmup:g}s warm-up, {args.repeats} repeats "
            f"(median shown), {args.rows} preloaded rows, synchronous={args.synchronous}, WAL; "
            f"load generator: aiohttp in its own process; {'HTTPS (TLS)' if args.https else 'plain HTTP'}\n"
        )

        node_args = ["bench.db", "--log-level", "warn"]
        if args.synchronous != DEFAULT_SYNCHRONOUS:
            node_args += ["--synchronous", args.synchronous]
        cafile = make_certificates(workdir / "tls", node_args) if args.https else ""
        node = NodeProcess(workdir=workdir / "node", name="bench", nats_port=0, args=node_args, ca=cafile)
        raw = open_raw(workdir / "raw.db", args.synchronous, args.rows)
        node_runs: dict[tuple[str, int], list[LoadResult]] = {
            (op, c): [] for op in OPERATIONS for c in CLIENTS
        }
        raw_runs: dict[str, list[float]] = {op: [] for op in OPERATIONS}
        spawn = multiprocessing.get_context("spawn")  # no fork of a process holding SQLite connections
        try:
            node.start()
            assert node.proc is not None
            preload(node, args.rows)
            url = f"{node.url}/query"
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
                pool.submit(int).result()  # start the interpreter before the first measurement
                for rep in range(args.repeats):
                    for op in OPERATIONS:
                        seed = args.seed + rep
                        ops = raw_ops_per_second(raw, op, args.duration, args.warmup, args.rows, seed)
                        raw_runs[op].append(ops)
                        print(f"repeat {rep + 1}/{args.repeats} {op:<10} raw apsw        {ops:>10,.0f} ops/s")
                        for clients in CLIENTS:
                            spec = LoadSpec(
                                url=url,
                                op=op,
                                clients=clients,
                                duration=args.duration,
                                warmup=args.warmup,
                                max_id=args.rows,
                                node_pid=node.proc.pid,
                                seed=seed,
                                cafile=cafile,
                            )
                            result = pool.submit(run_load, spec).result(
                                timeout=args.warmup + args.duration + REQUEST_TIMEOUT + 60
                            )
                            check_alive(node)
                            node_runs[(op, clients)].append(result)
                            flag = f"  {result.error_count} ERRORS" if result.error_count else ""
                            print(
                                f"repeat {rep + 1}/{args.repeats} {op:<10} node, {clients:>2} clients "
                                f"{result.rps:>10,.0f} req/s  p50 {result.p50_ms:.3f} ms  "
                                f"p99 {result.p99_ms:.3f} ms{flag}",
                                flush=True,
                            )
        finally:
            raw.close()
            try:
                code = node.stop()
                if code != 0:
                    print(f"!!! the node exited with {code} when stopped:\n{node.logs()}", file=sys.stderr)
            except TimeoutError as e:
                print(f"!!! {e}", file=sys.stderr)
        node_log = node.logs()
        machine["loadavg_at_end"] = os.getloadavg()

    rows = summarize(node_runs, raw_runs)
    print()
    print_table(rows)
    print(
        "\nratio = node req/s / raw apsw ops/s (single-threaded, in-process); "
        "spread = (max - min) / median of node req/s over the repeats;\n"
        "CPU = CPU seconds per wall second in the measured window (100% = one core busy)"
    )
    busy = max(machine["loadavg_at_start"][0], machine["loadavg_at_end"][0])
    print(
        f"load average (1 min) at start {machine['loadavg_at_start'][0]:.2f}, at end "
        f"{machine['loadavg_at_end'][0]:.2f}"
    )
    if busy > 0.5 * (machine["usable_cpus"] or 1):
        print(
            "note: other processes were using the CPUs during the run: numbers are lower and noisier "
            "than on an idle machine"
        )
    if node_log.strip():
        print(
            f"\n----- node log (warnings and errors) -----\n{node_log.rstrip()}\n----- end of node log -----"
        )
    failed = report_errors(rows, node_log)
    if args.json:
        doc = {
            "machine": machine,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "results": rows,
            "failed_requests": failed,
        }
        args.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        print(f"\nwrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
