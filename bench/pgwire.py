"""The PostgreSQL wire protocol of a node against a real PostgreSQL 15, measured in the same run.

    python bench/pgwire.py [--duration 5] [--warmup 1] [--repeats 3] [--rows 10000] [--no-nats]
                           [--dir DIR] [--json out.json]

Why: a node that speaks the PostgreSQL protocol invites the comparison with PostgreSQL itself, and the goal
is that point reads by primary key are at least as fast as PostgreSQL's on the same machine. Inserts are
measured too, for the record: both sides wait for an fsync per commit, and the node's commit also waits for
JetStream to acknowledge the change set.

What runs: a PostgreSQL 15 from the Debian binaries (``/usr/lib/postgresql/15/bin``: ``initdb`` into the
temporary directory, then ``postgres`` on a free port of 127.0.0.1 with ``fsync=on``,
``synchronous_commit=on``, ``shared_buffers=128MB``, SCRAM-SHA-256 password authentication), and one
``sqlite-ha serve`` node (``sqlite_ha.testing.NodeProcess``, ``--pg-port``, SCRAM, ``--log-level warn``)
serving ``bench.db`` with an embedded NATS on a free port, so that every write is replicated through
JetStream as in production (``--no-nats``: ``--nats-port 0``, no replication). Both get the same table,
``CREATE TABLE kv(id BIGINT PRIMARY KEY, v TEXT)``, preloaded with ``--rows`` rows.

What is measured, on both systems alike:

* point read: ``SELECT v FROM kv WHERE id = $1`` with a random preloaded id; the answer must be the row's
  value;
* insert: ``INSERT INTO kv(id, v) VALUES ($1, $2)`` in autocommit, with ids no other request of the run uses;
  the answer must be ``INSERT 0 1``;

each with asyncpg over 1 and over 8 connections (``fetchval``/``execute``, which prepare and cache the
statement), psycopg over 1 connection (autocommit, ``prepare=True``) and ``pgbench -M prepared`` with a custom
script over 1 and 8 connections (``-j 2``; the read script checks a row came back with ``\\gset``, the insert
script makes ids from ``:client_id`` and a per-client counter). The asyncpg and psycopg clients run in a
separate load-generator process started with ``spawn``, so the client's CPU is not this script's and not the
server's. Each measurement runs ``--warmup`` seconds unmeasured, then ``--duration`` seconds measured
(pgbench: a separate warm-up invocation, then the measured one; both in whole seconds), and is repeated
``--repeats`` times, interleaved (repeat 1 of everything, then repeat 2, ...; the system measured first
alternates). Medians are shown, with the spread over the repeats. The server's CPU in the window is the CPU of
the process tree: the postmaster with every backend and auxiliary process (reaped backends included, through
the postmaster's children times), or the node with its ``nats-server``. Any failed request, a wrong answer, a
mismatch of the final row counts with the acknowledged inserts, or a server that dies makes the exit status 1.

Running as root: ``initdb`` and ``postgres`` refuse to run as root. Then the script runs them as the Debian
package's ``postgres`` user (``--pg-os-user``; ``nobody`` where there is no such user) through
``subprocess``'s ``user=``/``group=``/``extra_groups=[]`` (a setuid in the child; no ``su`` or ``runuser``
needed), chowns PostgreSQL's directory to that user and makes the temporary directory traversable (0711).
This is what works on the benchmark machine (root, with the ``postgresql-15`` package installed). Everything
is stopped (node with SIGTERM, PostgreSQL with SIGINT, its fast shutdown) and removed in a ``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import glob
import math
import multiprocessing
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
import psutil
import psycopg

from machine import code_state, machine_info, median, print_table, spread
from sqlite_ha.testing import NodeProcess, free_port
from sqlite_ha.testing_pg import PostgresServer, default_os_user, os_user

PG_BIN = Path("/usr/lib/postgresql/15/bin")
USER = "ha"
PASSWORD = "bench"
PG_DBNAME = "postgres"
NODE_DBNAME = "bench"
SYSTEMS = ("postgres", "node")
SYSTEM_LABEL = {"postgres": "PostgreSQL", "node": "node"}

CREATE = "CREATE TABLE kv(id BIGINT PRIMARY KEY, v TEXT)"
SELECT = "SELECT v FROM kv WHERE id = $1"
INSERT = "INSERT INTO kv(id, v) VALUES ($1, $2)"
SELECT_PSYCOPG = "SELECT v FROM kv WHERE id = %s"  # psycopg sends it as ... = $1
INSERT_PSYCOPG = "INSERT INTO kv(id, v) VALUES (%s, %s)"
PGBENCH_SCRIPTS = {
    "point read": "\\set id random(1, {rows})\nSELECT v FROM kv WHERE id = :id \\gset\n",
    # :n persists per client across transactions (-D n=0 starts it), so ids are unique per client and run
    "insert": (
        "\\set n :n + 1\n"
        "\\set id :base + :client_id * {per_conn} + :n\n"
        "INSERT INTO kv(id, v) VALUES (:id, :v);\n"
    ),
}

OPERATIONS = ("point read", "insert")
CLIENTS: tuple[tuple[str, int], ...] = (
    ("asyncpg", 1),
    ("asyncpg", 8),
    ("psycopg", 1),
    ("pgbench", 1),
    ("pgbench", 8),
)
PRELOAD_BATCH = 1000
ID_BASE = 1_000_000_000  # inserted ids start here; preloaded ids are 1..rows
SLOT = 1_000_000_000  # ids per measurement
PER_CONN = 10_000_000  # ids per connection within a slot (pgbench warm-up uses the upper half of the slot)
REQUEST_TIMEOUT = 10.0  # a stalled server shows up as errors instead of a hung benchmark
MAX_ERROR_SAMPLES = 5


def value_for(n: int) -> str:
    return f"value-{n:08d}"


# ------------------------------------------------------------------------------------------------ CPU
def tree_cpu(pid: int) -> tuple[float, float]:
    """CPU seconds of a process tree: (everything, the root process's own threads).

    Everything = the root's own time + its reaped children's (a backend that exited already) + the live
    descendants'. 0, 0 once the root is gone."""
    try:
        root = psutil.Process(pid)
        t = root.cpu_times()
        children = root.children(recursive=True)
    except psutil.Error:
        return 0.0, 0.0
    own = t.user + t.system
    total = own + t.children_user + t.children_system
    for child in children:
        with contextlib.suppress(psutil.Error):
            c = child.cpu_times()
            total += c.user + c.system
    return total, own


def client_cpu_seconds() -> float:
    """CPU seconds of this process and of its reaped children (pgbench)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# -------------------------------------------------------------------------------------------- load generator
@dataclass(frozen=True, kw_only=True)
class LoadSpec:
    system: str
    op: str
    client: str
    connections: int
    host: str
    port: int
    dbname: str
    duration: float
    warmup: float
    rows: int
    id_base: int
    seed: int
    server_pid: int
    workdir: str  # pgbench scripts and logs


@dataclass(kw_only=True)
class LoadResult:
    system: str
    op: str
    client: str
    connections: int
    ops: int  # completed in the measured window
    seconds: float
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    client_cpu: float  # CPU seconds / wall seconds of the load generator (and pgbench) in the window
    server_cpu: float  # the same for the server's process tree
    server_cpu_ms_per_op: float
    server_main_cpu_ms_per_op: float  # the root process alone (the node without its nats-server)
    inserted: int  # acknowledged inserts, warm-up included (for the final row count)
    errors: dict[str, int] = field(default_factory=dict)  # over warm-up and window alike
    error_samples: list[str] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class Tally:
    """What a measurement collects: latencies in the window, errors, acknowledged inserts, CPU marks."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.latencies: list[int] = []
        self.errors: Counter[str] = Counter()
        self.samples: list[str] = []
        self.inserted = 0
        self.last_done = 0
        start = time.perf_counter_ns()
        self.window_start = start + int(spec.warmup * 1e9)
        self.window_end = self.window_start + int(spec.duration * 1e9)
        self.marks: dict[str, float] = {}

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.samples) < MAX_ERROR_SAMPLES:
            self.samples.append(f"{kind}: {detail[:500]}")

    def done(self, t0: int) -> None:
        t1 = time.perf_counter_ns()
        if t0 >= self.window_start:
            self.latencies.append(t1 - t0)
            self.last_done = max(self.last_done, t1)

    def mark_start(self) -> None:
        self.marks["t"] = time.perf_counter()
        self.marks["client"] = client_cpu_seconds()
        self.marks["server"], self.marks["server_main"] = tree_cpu(self.spec.server_pid)

    def result(self) -> LoadResult:
        server, server_main = tree_cpu(self.spec.server_pid)
        client = client_cpu_seconds()
        now = time.perf_counter()
        wall = now - self.marks["t"] if self.marks else float("nan")
        seconds = (max(self.last_done, time.perf_counter_ns()) - self.window_start) / 1e9
        lat = sorted(self.latencies)
        ops = len(lat)
        return self._result(
            ops=ops,
            seconds=seconds,
            ops_per_s=ops / seconds if seconds > 0 else 0.0,
            p50_ms=percentile(lat, 0.50),
            p99_ms=percentile(lat, 0.99),
            mean_ms=statistics.fmean(lat) / 1e6 if lat else float("nan"),
            client_cpu=(client - self.marks.get("client", client)) / wall,
            server_cpu_s=server - self.marks.get("server", server),
            server_main_cpu_s=server_main - self.marks.get("server_main", server_main),
            wall=wall,
        )

    def _result(
        self,
        *,
        ops: int,
        seconds: float,
        ops_per_s: float,
        p50_ms: float,
        p99_ms: float,
        mean_ms: float,
        client_cpu: float,
        server_cpu_s: float,
        server_main_cpu_s: float,
        wall: float,
    ) -> LoadResult:
        s = self.spec
        return LoadResult(
            system=s.system,
            op=s.op,
            client=s.client,
            connections=s.connections,
            ops=ops,
            seconds=seconds,
            ops_per_s=ops_per_s,
            p50_ms=p50_ms,
            p99_ms=p99_ms,
            mean_ms=mean_ms,
            client_cpu=client_cpu,
            server_cpu=server_cpu_s / wall if wall > 0 else float("nan"),
            server_cpu_ms_per_op=server_cpu_s / ops * 1000 if ops else float("nan"),
            server_main_cpu_ms_per_op=server_main_cpu_s / ops * 1000 if ops else float("nan"),
            inserted=self.inserted,
            errors=dict(self.errors),
            error_samples=self.samples,
        )


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of an ascending list (ns in, ms out)."""
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[i] / 1e6


def run_load(spec: LoadSpec) -> LoadResult:
    """Entry point in the load-generator process."""
    if spec.client == "asyncpg":
        return asyncio.run(asyncpg_load(spec))
    if spec.client == "psycopg":
        return psycopg_load(spec)
    return pgbench_load(spec)


async def asyncpg_load(spec: LoadSpec) -> LoadResult:
    tally = Tally(spec)
    rnd = random.Random(spec.seed)
    try:
        conns = [
            await asyncpg.connect(
                host=spec.host,
                port=spec.port,
                user=USER,
                password=PASSWORD,
                database=spec.dbname,
                ssl=False,
                command_timeout=REQUEST_TIMEOUT,
            )
            for _ in range(spec.connections)
        ]
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as e:
        tally.error(f"connect {type(e).__name__}", str(e))
        return tally.result()

    async def reader(conn: Any) -> None:
        while (t0 := time.perf_counter_ns()) < tally.window_end:
            key = rnd.randint(1, spec.rows)
            try:
                v = await conn.fetchval(SELECT, key)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as e:
                tally.error(f"{type(e).__name__} {getattr(e, 'sqlstate', '')}".strip(), str(e))
                if conn.is_closed():
                    return
                continue
            if v != value_for(key):
                tally.error("wrong value", f"id {key}: {v!r}")
                continue
            tally.done(t0)

    async def writer(conn: Any, base: int) -> None:
        n = 0
        while (t0 := time.perf_counter_ns()) < tally.window_end:
            n += 1
            key = base + n
            try:
                status = await conn.execute(INSERT, key, value_for(key))
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as e:
                tally.error(f"{type(e).__name__} {getattr(e, 'sqlstate', '')}".strip(), str(e))
                if conn.is_closed():
                    return
                continue
            if status != "INSERT 0 1":
                tally.error("unexpected status", f"id {key}: {status!r}")
                continue
            tally.inserted += 1
            tally.done(t0)

    async def mark() -> None:
        await asyncio.sleep(max(0.0, (tally.window_start - time.perf_counter_ns()) / 1e9))
        tally.mark_start()

    marker = asyncio.create_task(mark())
    try:
        if spec.op == "point read":
            await asyncio.gather(*(reader(c) for c in conns))
        else:
            await asyncio.gather(*(writer(c, spec.id_base + i * PER_CONN) for i, c in enumerate(conns)))
        await marker
        return tally.result()  # before closing: the server's CPU is read while the connections live
    finally:
        marker.cancel()
        for c in conns:
            with contextlib.suppress(Exception):
                await c.close(timeout=5)


def psycopg_load(spec: LoadSpec) -> LoadResult:
    if spec.connections != 1:
        raise ValueError("the psycopg client runs one connection")
    tally = Tally(spec)
    rnd = random.Random(spec.seed)
    try:
        conn = psycopg.connect(
            host=spec.host,
            port=spec.port,
            user=USER,
            password=PASSWORD,
            dbname=spec.dbname,
            autocommit=True,
            sslmode="disable",
            gssencmode="disable",
            connect_timeout=int(REQUEST_TIMEOUT),
        )
    except psycopg.Error as e:
        tally.error(f"connect {type(e).__name__}", str(e))
        return tally.result()
    try:
        cur = conn.cursor()
        n = 0
        marked = False
        while (t0 := time.perf_counter_ns()) < tally.window_end:
            if not marked and t0 >= tally.window_start:
                tally.mark_start()
                marked = True
                t0 = time.perf_counter_ns()
            try:
                if spec.op == "point read":
                    key = rnd.randint(1, spec.rows)
                    cur.execute(SELECT_PSYCOPG, (key,), prepare=True)
                    row = cur.fetchone()
                    if row is None or row[0] != value_for(key):
                        tally.error("wrong value", f"id {key}: {row!r}")
                        continue
                else:
                    n += 1
                    key = spec.id_base + n
                    cur.execute(INSERT_PSYCOPG, (key, value_for(key)), prepare=True)
                    if cur.statusmessage != "INSERT 0 1":
                        tally.error("unexpected status", f"id {key}: {cur.statusmessage!r}")
                        continue
                    tally.inserted += 1
            except psycopg.Error as e:
                tally.error(f"{type(e).__name__} {e.sqlstate or ''}".strip(), str(e))
                if conn.closed:
                    break
                continue
            tally.done(t0)
        if not marked:
            tally.mark_start()
        return tally.result()
    finally:
        conn.close()


_TPS = re.compile(r"^tps = ([\d.]+)", re.MULTILINE)
_PROCESSED = re.compile(r"^number of transactions actually processed: (\d+)", re.MULTILINE)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.MULTILINE)
_LATENCY = re.compile(r"^latency average = ([\d.]+) ms", re.MULTILINE)


def pgbench_seconds(x: float) -> int:
    """pgbench's ``-T`` takes whole seconds."""
    return max(1, round(x))


def pgbench_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    return {**env, "PGPASSWORD": PASSWORD, "PGSSLMODE": "disable", "PGGSSENCMODE": "disable"}


def run_pgbench(
    spec: LoadSpec, script: Path, seconds: int, base: int, log_prefix: Path | None
) -> tuple[dict[str, float], list[str]]:
    """One pgbench invocation; returns the figures of its summary and its error lines."""
    cmd = ["pgbench", "-n", "-h", spec.host, "-p", str(spec.port), "-U", USER, "-M", "prepared"]
    cmd += ["-c", str(spec.connections), "-j", str(min(spec.connections, 2)), "-T", str(seconds)]
    cmd += ["-f", str(script)]
    if spec.op == "insert":
        cmd += ["-D", "n=0", "-D", f"base={base}", "-D", "v=pgbench"]
    if log_prefix is not None:
        cmd += ["-l", f"--log-prefix={log_prefix}"]
    cmd.append(spec.dbname)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=pgbench_env(), timeout=seconds + 60, cwd=spec.workdir
    )
    out = proc.stdout
    problems = [line for line in proc.stderr.splitlines() if "error" in line.lower() or "abort" in line]
    if proc.returncode != 0 and not problems:
        problems.append(f"pgbench exited with {proc.returncode}: {proc.stderr.strip()[:500]}")
    figures: dict[str, float] = {}
    for key, pattern in (("tps", _TPS), ("processed", _PROCESSED), ("failed", _FAILED), ("mean", _LATENCY)):
        found = pattern.search(out)
        if found is not None:
            figures[key] = float(found.group(1))
    if "tps" not in figures or "processed" not in figures:
        problems.append(f"pgbench printed no result: {out.strip()[-500:]} {proc.stderr.strip()[-500:]}")
    return figures, problems


def pgbench_load(spec: LoadSpec) -> LoadResult:
    tally = Tally(spec)
    workdir = Path(spec.workdir)
    script = workdir / ("select.sql" if spec.op == "point read" else "insert.sql")
    script.write_text(PGBENCH_SCRIPTS[spec.op].format(rows=spec.rows, per_conn=PER_CONN))

    def account(figures: dict[str, float], problems: list[str]) -> None:
        for p in problems:
            tally.error("pgbench", p)
        if figures.get("failed"):
            tally.error("pgbench failed transactions", f"{figures['failed']:.0f}")
        if spec.op == "insert":
            tally.inserted += int(figures.get("processed", 0))

    if spec.warmup > 0:
        account(*run_pgbench(spec, script, pgbench_seconds(spec.warmup), spec.id_base + SLOT // 2, None))
    before = len(server_children(spec.server_pid))
    tally.mark_start()
    log_prefix = workdir / f"pgbench-{os.getpid()}-{time.monotonic_ns()}"
    figures, problems = run_pgbench(spec, script, pgbench_seconds(spec.duration), spec.id_base, log_prefix)
    # the backends of pgbench's connections exit after it: wait until the postmaster reaped them, so that
    # their CPU is in its children's times
    deadline = time.monotonic() + 3
    while len(server_children(spec.server_pid)) > before and time.monotonic() < deadline:
        time.sleep(0.02)
    account(figures, problems)
    latencies: list[int] = []
    for path in glob.glob(f"{log_prefix}.*"):
        with open(path) as f:
            for line in f:
                fields = line.split()
                try:
                    latencies.append(int(fields[2]) * 1000)  # µs -> ns
                except (IndexError, ValueError):
                    tally.error("pgbench log", line.strip())
        os.unlink(path)
    latencies.sort()
    ops = int(figures.get("processed", 0))
    tps = figures.get("tps", 0.0)
    server, server_main = tree_cpu(spec.server_pid)
    wall = time.perf_counter() - tally.marks["t"]
    return tally._result(
        ops=ops,
        seconds=ops / tps if tps else float("nan"),
        ops_per_s=tps,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        mean_ms=figures.get("mean", float("nan")),
        client_cpu=(client_cpu_seconds() - tally.marks["client"]) / wall,
        server_cpu_s=server - tally.marks["server"],
        server_main_cpu_s=server_main - tally.marks["server_main"],
        wall=wall,
    )


def server_children(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


# ------------------------------------------------------------------------------------------------ PostgreSQL
def connect(port: int, dbname: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(
        host="127.0.0.1",
        port=port,
        user=USER,
        password=PASSWORD,
        dbname=dbname,
        autocommit=True,
        sslmode="disable",
        gssencmode="disable",
        connect_timeout=5,
    )


def wait_pg(port: int, dbname: str, timeout: float, alive: Any) -> None:
    """Poll until a session opens (``alive()`` raises when the server died)."""
    deadline = time.monotonic() + timeout
    while True:
        alive()
        try:
            connect(port, dbname).close()
            return
        except psycopg.OperationalError as e:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no PostgreSQL session on port {port} after {timeout:g}s: {e}") from None
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------------ the run
def preload(port: int, dbname: str, rows: int, analyze: bool) -> None:
    with connect(port, dbname) as conn:
        conn.execute(CREATE)
        for lo in range(1, rows + 1, PRELOAD_BATCH):
            values = ", ".join(
                f"({i}, '{value_for(i)}')" for i in range(lo, min(rows, lo + PRELOAD_BATCH - 1) + 1)
            )
            conn.execute(f"INSERT INTO kv(id, v) VALUES {values}")
        if analyze:
            conn.execute("ANALYZE kv")
            conn.execute("CHECKPOINT")
    count = count_rows(port, dbname)
    if count != rows:
        raise RuntimeError(f"preload on port {port}: expected {rows} rows, found {count}")


def count_rows(port: int, dbname: str) -> int:
    with connect(port, dbname) as conn:
        row = conn.execute("SELECT count(*) FROM kv").fetchone()
    return int(row[0]) if row else -1


def summarize(runs: dict[tuple[str, str, str, int], list[LoadResult]]) -> list[dict[str, Any]]:
    rows = []
    for op in OPERATIONS:
        for client, conns in CLIENTS:
            row: dict[str, Any] = {"operation": op, "client": client, "connections": conns}
            for system in SYSTEMS:
                rs = runs[(system, op, client, conns)]
                ops = [r.ops_per_s for r in rs]
                row[system] = {
                    "ops_per_s": median(ops),
                    "p50_ms": median([r.p50_ms for r in rs]),
                    "p99_ms": median([r.p99_ms for r in rs]),
                    "spread": spread(ops),
                    "server_cpu": median([r.server_cpu for r in rs]),
                    "server_cpu_ms_per_op": median([r.server_cpu_ms_per_op for r in rs]),
                    "server_main_cpu_ms_per_op": median([r.server_main_cpu_ms_per_op for r in rs]),
                    "client_cpu": median([r.client_cpu for r in rs]),
                    "errors": sum(r.error_count for r in rs),
                    "runs": [asdict(r) for r in rs],
                }
            pg, node = row["postgres"]["ops_per_s"], row["node"]["ops_per_s"]
            row["ratio"] = node / pg if pg else float("nan")
            rows.append(row)
    return rows


def fmt(v: float, spec: str) -> str:
    return "-" if math.isnan(v) else format(v, spec)


def print_tables(rows: list[dict[str, Any]]) -> None:
    def lat(s: dict[str, Any]) -> str:
        return f"{fmt(s['p50_ms'], '.3f')} / {fmt(s['p99_ms'], '.3f')}"

    print_table(
        [
            "operation",
            "client",
            "conns",
            "PostgreSQL ops/s",
            "node ops/s",
            "ratio node/PG",
            "PG p50 / p99 ms",
            "node p50 / p99 ms",
            "spread PG / node",
            "errors PG / node",
        ],
        [
            [
                r["operation"],
                r["client"],
                str(r["connections"]),
                fmt(r["postgres"]["ops_per_s"], ",.0f"),
                fmt(r["node"]["ops_per_s"], ",.0f"),
                fmt(r["ratio"], ".3f"),
                lat(r["postgres"]),
                lat(r["node"]),
                f"{fmt(r['postgres']['spread'], '.0%')} / {fmt(r['node']['spread'], '.0%')}",
                f"{r['postgres']['errors']} / {r['node']['errors']}",
            ]
            for r in rows
        ],
        left=2,
    )
    print()
    print_table(
        [
            "operation",
            "client",
            "conns",
            "PG CPU ms/op",
            "node CPU ms/op",
            "node alone",
            "ratio node/PG",
            "PG CPU",
            "node CPU",
            "client CPU PG / node",
        ],
        [
            [
                r["operation"],
                r["client"],
                str(r["connections"]),
                fmt(r["postgres"]["server_cpu_ms_per_op"], ".3f"),
                fmt(r["node"]["server_cpu_ms_per_op"], ".3f"),
                fmt(r["node"]["server_main_cpu_ms_per_op"], ".3f"),
                fmt(r["node"]["server_cpu_ms_per_op"] / r["postgres"]["server_cpu_ms_per_op"], ".2f"),
                fmt(r["postgres"]["server_cpu"], ".0%"),
                fmt(r["node"]["server_cpu"], ".0%"),
                f"{fmt(r['postgres']['client_cpu'], '.0%')} / {fmt(r['node']['client_cpu'], '.0%')}",
            ]
            for r in rows
        ],
        left=2,
    )


def node_replication_status(node: NodeProcess) -> dict[str, Any] | None:
    try:
        status = node.request("GET", "/status", timeout=REQUEST_TIMEOUT).json()
    except (OSError, ValueError):
        return None
    dbs = (status.get("replication") or {}).get("databases") or {}
    st = dbs.get("bench.db")
    return st if isinstance(st, dict) else None


def report_errors(rows: list[dict[str, Any]]) -> int:
    total = sum(r[s]["errors"] for r in rows for s in SYSTEMS)
    if not total:
        return 0
    bar = "!" * 100
    print(f"\n{bar}\n!!! {total} FAILED REQUESTS: the numbers above are NOT valid measurements\n{bar}")
    for r in rows:
        for system in SYSTEMS:
            for i, run in enumerate(r[system]["runs"], 1):
                if run["errors"]:
                    print(
                        f"{SYSTEM_LABEL[system]}, {r['operation']}, {r['client']} x{r['connections']}, "
                        f"repeat {i}: {run['errors']}"
                    )
                    for sample in run["error_samples"]:
                        print(f"    {sample}")
    return int(total)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per measurement [5]")
    p.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each measurement [1]")
    p.add_argument(
        "--repeats", type=int, default=3, help="repeats of each measurement; the median is shown [3]"
    )
    p.add_argument("--rows", type=int, default=10_000, help="rows preloaded into kv on both systems [10000]")
    p.add_argument(
        "--no-nats",
        action="store_true",
        help="run the node without NATS (--nats-port 0): no replication, for comparison",
    )
    p.add_argument("--pg-bin", type=Path, default=PG_BIN, help=f"PostgreSQL's binaries [{PG_BIN}]")
    p.add_argument(
        "--pg-os-user",
        default=None,
        help="when run as root, the OS user initdb and postgres run as [postgres, else nobody]",
    )
    p.add_argument(
        "--dir", type=Path, default=None, help="where to make the temporary directory [system temp]"
    )
    p.add_argument("--json", type=Path, default=None, help="also write the results (every repeat) as JSON")
    p.add_argument("--seed", type=int, default=1, help="random seed of the point-read ids [1]")
    args = p.parse_args(argv)
    if args.rows < 1 or args.rows >= ID_BASE:
        p.error(f"--rows must be between 1 and {ID_BASE - 1}")
    return args


def versions(pg_port: int) -> dict[str, str]:
    with connect(pg_port, PG_DBNAME) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        settings = {
            name: str((conn.execute(f"SHOW {name}").fetchone() or ["?"])[0])
            for name in (
                "fsync",
                "synchronous_commit",
                "wal_sync_method",
                "shared_buffers",
                "max_connections",
            )
        }
    pgbench = subprocess.run(["pgbench", "--version"], capture_output=True, text=True, check=False)
    return {
        "postgresql": str(row[0]) if row else "?",
        "postgresql_settings": ", ".join(f"{k}={v}" for k, v in settings.items()),
        "asyncpg": asyncpg.__version__,
        "psycopg": psycopg.__version__,
        "libpq": str(psycopg.pq.version()),
        "pgbench": pgbench.stdout.strip(),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="sqlite-ha-bench-pg-", dir=args.dir))
    run_as: tuple[int, int] | None = None
    if os.geteuid() == 0:
        run_as = os_user(args.pg_os_user or default_os_user())
        os.chmod(workdir, 0o711)  # the PostgreSQL user must reach its directory inside
    machine = machine_info(workdir)
    pg = PostgresServer(
        bindir=args.pg_bin,
        root=workdir / "postgres",
        port=free_port(),
        run_as=run_as,
        user=USER,
        password=PASSWORD,
    )
    node_pg_port = free_port()
    node = NodeProcess(
        workdir=workdir / "node",
        name="node1",
        nats_port=0 if args.no_nats else None,
        args=["bench.db", "--pg-port", str(node_pg_port), "--pg-pass", PASSWORD, "--log-level", "warn"],
    )
    loaddir = workdir / "load"
    loaddir.mkdir()
    ports = {"postgres": pg.port, "node": node_pg_port}
    dbnames = {"postgres": PG_DBNAME, "node": NODE_DBNAME}
    runs: dict[tuple[str, str, str, int], list[LoadResult]] = {
        (s, op, c, n): [] for s in SYSTEMS for op in OPERATIONS for c, n in CLIENTS
    }
    problems: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    node_status: dict[str, Any] | None = None
    info: dict[str, str] = {}
    spawn = multiprocessing.get_context("spawn")
    try:
        pg.init()
        pg.start()
        node.start(timeout=60)
        assert node.proc is not None
        assert pg.proc is not None

        def node_alive() -> None:
            if node.proc is not None and node.proc.poll() is not None:
                raise RuntimeError(f"the node exited with {node.proc.returncode}:\n{node.logs()}")

        def pg_alive() -> None:
            if pg.proc is not None and pg.proc.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited with {pg.proc.returncode}:\n{pg.logs()}")

        wait_pg(node_pg_port, NODE_DBNAME, 30, node_alive)
        info = versions(pg.port)
        preload(pg.port, PG_DBNAME, args.rows, analyze=True)
        preload(node_pg_port, NODE_DBNAME, args.rows, analyze=False)
        schema = node.query({"sql": "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'kv'"})[
            "rows"
        ]
        pids = {"postgres": pg.proc.pid, "node": node.proc.pid}

        print(
            f"machine: {machine['nproc']} CPUs ({machine['usable_cpus']} usable), {machine['cpu']}, "
            f"{machine['platform']}; files on {machine['filesystem']}; load average at start "
            f"{', '.join(f'{x:.2f}' for x in machine['loadavg_at_start'])}"
        )
        print(f"code: {code_state()}; python {machine['python']}, SQLite {machine['sqlite']}")
        print(
            f"PostgreSQL {info['postgresql']} ({info['postgresql_settings']}), pid {pg.proc.pid}, "
            f"run as uid {run_as[0] if run_as else os.geteuid()}"
        )
        print(
            f"node: pid {node.proc.pid}, "
            + ("no NATS, no replication" if args.no_nats else f"embedded NATS on {node.nats_port}, JetStream")
            + f", synchronous=full; kv in SQLite: {'; '.join(str(r[2] or f'{r[0]} {r[1]}') for r in schema)}"
        )
        print(
            f"clients: asyncpg {info['asyncpg']}, psycopg {info['psycopg']} (libpq {info['libpq']}), "
            f"{info['pgbench']}; load generator in its own process"
        )
        print(
            f"settings: {args.duration:g}s measured after {args.warmup:g}s warm-up (pgbench "
            f"{pgbench_seconds(args.duration)}s after {pgbench_seconds(args.warmup)}s), {args.repeats} "
            f"repeats (median shown), {args.rows} preloaded rows\n",
            flush=True,
        )

        slot = 0
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            pool.submit(int).result()  # start the interpreter before the first measurement
            for rep in range(args.repeats):
                for op in OPERATIONS:
                    for client, conns in CLIENTS:
                        for system in SYSTEMS if rep % 2 == 0 else tuple(reversed(SYSTEMS)):
                            slot += 1
                            spec = LoadSpec(
                                system=system,
                                op=op,
                                client=client,
                                connections=conns,
                                host="127.0.0.1",
                                port=ports[system],
                                dbname=dbnames[system],
                                duration=args.duration,
                                warmup=args.warmup,
                                rows=args.rows,
                                id_base=ID_BASE + slot * SLOT,
                                seed=args.seed + rep,
                                server_pid=pids[system],
                                workdir=str(loaddir),
                            )
                            budget = 2 * (pgbench_seconds(args.warmup) + pgbench_seconds(args.duration))
                            result = pool.submit(run_load, spec).result(
                                timeout=budget + REQUEST_TIMEOUT + 120
                            )
                            node_alive()
                            pg_alive()
                            runs[(system, op, client, conns)].append(result)
                            flag = f"  {result.error_count} ERRORS" if result.error_count else ""
                            print(
                                f"repeat {rep + 1}/{args.repeats} {op:<10} {client:<7} x{conns} "
                                f"{SYSTEM_LABEL[system]:<10} {result.ops_per_s:>9,.0f} ops/s  "
                                f"p50 {result.p50_ms:.3f} ms  p99 {result.p99_ms:.3f} ms  "
                                f"server {result.server_cpu_ms_per_op:.3f} CPU ms/op{flag}",
                                flush=True,
                            )
        for system in SYSTEMS:
            inserted = sum(r.inserted for (s, *_), rs in runs.items() if s == system for r in rs)
            found = count_rows(ports[system], dbnames[system])
            counts[system] = {"expected": args.rows + inserted, "found": found}
            if found != args.rows + inserted:
                problems.append(
                    f"{SYSTEM_LABEL[system]} holds {found} rows, expected {args.rows} preloaded + "
                    f"{inserted} acknowledged inserts = {args.rows + inserted}"
                )
        if not args.no_nats:
            node_status = node_replication_status(node)
            if node_status is None:
                problems.append("the node's /status has no replication status of bench.db")
            else:
                if node_status.get("last_error"):
                    problems.append(f"node replication last_error: {node_status['last_error']}")
                parked = {k: v for k, v in (node_status.get("parked") or {}).items() if v}
                if parked:
                    problems.append(f"node has parked change sets: {parked}")
                if node_status.get("publish_failures"):
                    problems.append(f"node publish_failures: {node_status['publish_failures']}")
    finally:
        try:
            code = node.stop()
            if code != 0:
                problems.append(f"the node exited with {code} when stopped")
        except TimeoutError as e:
            problems.append(str(e).splitlines()[0])
        try:
            code = pg.stop()
            if code != 0:
                problems.append(f"PostgreSQL exited with {code} when stopped")
        except TimeoutError as e:
            problems.append(str(e).splitlines()[0])
        node_log, pg_log = node.logs(), pg.logs()
        shutil.rmtree(workdir, ignore_errors=True)
    machine["loadavg_at_end"] = os.getloadavg()

    rows = summarize(runs)
    print()
    print_tables(rows)
    print(
        "\nops/s: medians over the repeats (pgbench: its tps without connection time); p50 / p99: medians of "
        "each repeat's latency percentiles, at the client;\nspread = (max - min) / median of ops/s over the "
        "repeats; CPU ms/op: the server's process tree (PostgreSQL: postmaster and all its processes; node: "
        "with its nats-server;\nnode alone: without it) per operation in the window; CPU: CPU seconds per "
        "wall second (100% = one core busy)"
    )
    print("\ngoal: point reads at least as fast as PostgreSQL")
    for r in rows:
        if r["operation"] == "point read":
            verdict = "MET" if r["ratio"] >= 1 else "NOT MET"
            print(
                f"  {r['client']} x{r['connections']}: node {r['node']['ops_per_s']:,.0f} vs PostgreSQL "
                f"{r['postgres']['ops_per_s']:,.0f} ops/s, ratio {r['ratio']:.3f} -> {verdict}"
            )
    for system in SYSTEMS:
        if system in counts:
            c = counts[system]
            print(f"rows in kv at the end, {SYSTEM_LABEL[system]}: {c['found']} (expected {c['expected']})")
    if node_status is not None:
        keys = ("applied_seq", "last_seq", "published", "publish_failures", "outbox", "parked", "last_error")
        print("node replication: " + ", ".join(f"{k}={node_status.get(k)}" for k in keys))
    print(
        f"load average (1 min) at start {machine['loadavg_at_start'][0]:.2f}, at end "
        f"{machine['loadavg_at_end'][0]:.2f}; the run took {time.monotonic() - started:.0f} s"
    )
    if node_log.strip():
        print(
            f"\n----- node log (warnings and errors) -----\n{node_log.rstrip()}\n----- end of node log -----"
        )
    pg_problems = [ln for ln in pg_log.splitlines() if re.search(r"\b(ERROR|FATAL|PANIC):", ln)]
    if pg_problems:
        print("\n----- PostgreSQL log: errors -----\n" + "\n".join(pg_problems[-30:]))
    failed = report_errors(rows)
    for p in problems:
        print(f"!!! {p}")
    if args.json:
        doc = {
            "machine": machine,
            "versions": info,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "results": rows,
            "row_counts": counts,
            "node_replication": node_status,
            "failed_requests": failed,
            "problems": problems,
        }
        args.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        print(f"\nwrote {args.json}")
    return 1 if failed or problems else 0


if __name__ == "__main__":
    sys.exit(main())
