"""Replicated writes: cluster throughput, replication lag, and the in-process cost of replication.

    python bench/replication.py [--duration 5] [--repeats 3] [--warmup 0.5] [--json out.json]

One run measures three things:

1. A three-node cluster of real ``sqlite-ha serve`` processes on loopback (node1 runs the embedded NATS,
   node2 and node3 join it with ``--replication-url``), file databases, default ``--synchronous``. A load
   generator in its own process sends one-row ``INSERT`` transactions over HTTP with 1 and 16 concurrent
   clients in total, each request to the next node round-robin. Every answer must be a 200 with a ``seq``.
2. Replication lag: a write on node A, then the time until node B shows it, sampled at a moderate rate with
   the cluster otherwise idle and under the 16-client write load.
3. In one process, no HTTP: one-row insert transactions on raw apsw against the same through
   ``ReplicatedDatabase`` on the local driver, on the in-memory hub (three in-process nodes) and on a real
   JetStream (an embedded ``nats-server`` started here).

Measurements are repeated and interleaved (repeat 1 of everything, then repeat 2, ...). Medians are shown.
Any failed request, write that never became visible, in-process error, parked change set or node that does
not converge is printed loudly and makes the exit status 1. Every process started here is stopped in a
``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import math
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import apsw
import orjson

from lean_http import Connection, HTTPError
from machine import child_pid, code_state, machine_info, median, print_table, proc_cpu_seconds, spread
from sqlite_ha.config import SETTINGS_BY_NAME
from sqlite_ha.db.database import Database
from sqlite_ha.db.dsn import parse_dsn
from sqlite_ha.db.statement import Statement
from sqlite_ha.errors import HAError
from sqlite_ha.natsd import NatsServer, NatsServerOptions
from sqlite_ha.replication.jetstream.connection import NatsConnection
from sqlite_ha.replication.jetstream.driver import JetStreamReplicator
from sqlite_ha.replication.memory import LocalReplicator, MemoryHub
from sqlite_ha.replication.replicated_database import ReplicatedDatabase
from sqlite_ha.replication.replicator import Replicator
from sqlite_ha.replication.seal import PLAIN, Sealer
from sqlite_ha.security.keys import ClusterKeys
from sqlite_ha.testing import NodeProcess, free_port

DB = "app.db"
CREATE = "CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)"
# Explicit, unique ids: with ``INSERT INTO kv(v)`` two nodes would pick the same rowid for two different rows
# at the same time, and last-writer-wins would keep one of them. Unique ids make every write its own row,
# so the end of the run can check that every node holds every acknowledged write.
INSERT = "INSERT INTO kv(id, v) VALUES(?, ?)"
SELECT = "SELECT v FROM kv WHERE id = ?"
FINGERPRINT = "SELECT count(*), coalesce(sum(id), 0), coalesce(sum(length(v)), 0) FROM kv"
CLIENTS = (1, 16)
LOAD_CLIENTS = 16  # the write load under which lag is sampled
REQUEST_TIMEOUT = 10.0  # per request: a stalled node shows up as timeouts instead of a hung benchmark
VISIBLE_TIMEOUT = 10.0  # a write not visible on the other node after this long counts as an error
SETTLE_TIMEOUT = 30.0  # after a measurement every node must have applied every acknowledged write by then
MAX_ERROR_SAMPLES = 5
DEFAULT_SYNCHRONOUS: str = SETTINGS_BY_NAME["synchronous"].default
GOAL_TPS = 2000.0
GOAL_LAG_P99_MS = 20.0
RAW = "raw apsw"
OTHER_BUSY = 0.2  # other processes using more than this (1.0 = a core) make the run noisy: say so
IDS_PER_MEASUREMENT = 100_000_000  # every measurement writes ids from its own range


def value_for(n: int) -> str:
    return f"value-{n:010d}"


# ------------------------------------------------------------------------------------------------ machine


def machine_seconds() -> tuple[float, float]:
    """CPU seconds the whole machine spent busy (not idle, not in iowait, not stolen), and in iowait (idle
    while a disk request was outstanding), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(fields[:7]) - fields[3] - fields[4]) / tick, fields[4] / tick


class CpuWatch:
    """CPU seconds per wall second of some processes between ``start`` and ``stop`` (1.0 = one core busy).

    ``"self"`` is this process (``time.process_time``: all its threads); ``"machine"`` is every process on
    the machine, ours included, so ``machine`` minus ours is what other work took; ``"iowait"`` is the time
    CPUs sat idle waiting for the disk (fsyncs: ours and anyone else's)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._t0 = 0.0
        self._cpu: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {name: proc_cpu_seconds(pid) for name, pid in self.pids.items()}
        now["self"] = time.process_time()
        now["machine"], now["iowait"] = machine_seconds()
        return now

    def start(self) -> None:
        self._t0, self._cpu = time.monotonic(), self._now()

    def stop(self) -> dict[str, float]:
        wall = time.monotonic() - self._t0
        now = self._now()
        return {name: (now[name] - self._cpu[name]) / wall if wall > 0 else float("nan") for name in now}


# ------------------------------------------------------------------------------------------------ stats
def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (the list need not be sorted)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


class Errors:
    """Failures counted by kind, with a few samples of each measurement for the report."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.samples: list[str] = []

    def add(self, kind: str, detail: str) -> None:
        self.counts[kind] += 1
        if len(self.samples) < MAX_ERROR_SAMPLES:
            self.samples.append(f"{kind}: {detail[:400]}")


def check_write(status: int, payload: bytes) -> tuple[int | None, str | None]:
    """The ``seq`` of a one-row insert's answer, or why the answer is not the expected one."""
    if status != 200:
        return None, f"HTTP {status}"
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None, "unreadable body"
    seq = body.get("seq")
    if not isinstance(seq, int) or seq <= 0:
        return None, "no seq"
    rows = body.get("rows")
    if not rows or rows[0][0] != 1:
        return None, "not one row affected"
    return seq, None


# -------------------------------------------------------------------------------------- part 1: write load
@dataclass(frozen=True, kw_only=True)
class LoadSpec:
    urls: tuple[str, ...]  # the /query URL of each node; request k goes to urls[k % len(urls)]
    clients: int
    begin: float  # time.monotonic() (system-wide on Linux) at which the warm-up starts
    warmup: float
    duration: float
    id_base: int
    pids: dict[str, int]  # processes whose CPU is measured over the window


@dataclass(kw_only=True)
class LoadResult:
    clients: int
    requests: int  # completed in the measured window
    seconds: float
    tps: float
    p50_ms: float
    p99_ms: float
    per_node: list[int]  # requests completed in the window, by node
    cpu: dict[str, float]  # CPU seconds / wall second over the window; "self" is the load generator
    acked: int  # 200s with a seq, warm-up included (they are all in the database)
    max_seq: int
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def run_load(spec: LoadSpec) -> LoadResult:
    """Entry point in the load-generator process."""
    return asyncio.run(_load(spec))


async def _load(spec: LoadSpec) -> LoadResult:
    ids = itertools.count(spec.id_base)
    turn = itertools.count()
    n_nodes = len(spec.urls)
    latencies: list[float] = []
    per_node = [0] * n_nodes
    seqs: set[int] = set()
    acked = [0]  # answered 200 with a seq (more than len(seqs): group commit shares seqs)
    errors = Errors()
    window_start = spec.begin + spec.warmup
    window_end = window_start + spec.duration
    last_done = 0.0
    watch = CpuWatch(spec.pids)

    async def mark_window() -> None:
        await asyncio.sleep(max(0.0, window_start - time.monotonic()))
        watch.start()

    async def client() -> None:
        # Each client keeps one connection to every node and writes to them in turn, as ``turn`` says.
        nonlocal last_done
        conns = [Connection(url) for url in spec.urls]
        try:
            while (t0 := time.monotonic()) < window_end:
                node = next(turn) % n_nodes
                n = next(ids)
                data = orjson.dumps({"sql": INSERT, "params": [n, value_for(n)]})
                try:
                    status, payload = await conns[node].post(data, REQUEST_TIMEOUT)
                except (OSError, HTTPError, TimeoutError) as e:
                    errors.add(type(e).__name__, f"node{node + 1}: {e or repr(e)}")
                    continue
                t1 = time.monotonic()
                seq, problem = check_write(status, payload)
                if problem is not None:
                    errors.add(problem, f"node{node + 1}: {payload.decode(errors='replace')}")
                    continue
                assert seq is not None
                seqs.add(seq)  # writes committed together (group commit) share their change set's seq
                acked[0] += 1
                if t0 >= window_start:
                    latencies.append((t1 - t0) * 1000)
                    per_node[node] += 1
                    last_done = max(last_done, t1)
        finally:
            for conn in conns:
                conn.close()

    await asyncio.sleep(max(0.0, spec.begin - time.monotonic()))
    marker = asyncio.create_task(mark_window())
    await asyncio.gather(*(client() for _ in range(spec.clients)))
    await marker
    cpu = watch.stop()
    seconds = max(last_done, time.monotonic()) - window_start
    return LoadResult(
        clients=spec.clients,
        requests=len(latencies),
        seconds=seconds,
        tps=len(latencies) / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
        per_node=per_node,
        cpu=cpu,
        acked=acked[0],
        max_seq=max(seqs, default=0),
        errors=dict(errors.counts),
        error_samples=errors.samples,
    )


# -------------------------------------------------------------------------------------------- part 2: lag
@dataclass(kw_only=True)
class LagSample:
    method: str  # "poll" or "min_seq"
    writer: int  # node index that took the write
    reader: int  # node index that was asked
    write_ms: float  # the write's own round trip
    lag_ms: float  # write answer received -> answer showing the row received
    from_send_ms: float  # write request sent -> answer showing the row received
    polls: int  # reads sent until the row showed (1 for min_seq)
    poll_rtts_ms: list[float] = field(default_factory=list)


@dataclass(kw_only=True)
class LagResult:
    scenario: str
    samples: list[LagSample]
    cpu: dict[str, float]
    acked: int
    max_seq: int
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


async def sample_lag(
    *,
    scenario: str,
    urls: list[str],
    start: float,
    duration: float,
    rate: float,
    id_base: int,
    pids: dict[str, int],
) -> LagResult:
    """One write at a time, at most ``rate`` per second, from ``start`` for ``duration`` (monotonic clock).

    Sample i writes on node i % 3 and reads on one of the other two (alternating), so six samples cover every
    ordered pair; the method alternates every six samples: "poll" reads the row back to back until it is
    there; "min_seq" sends one read with ``?min_seq=<seq of the write>``, which the node holds until it has
    applied that seq.
    """
    n_nodes = len(urls)
    samples: list[LagSample] = []
    errors = Errors()
    max_seq, acked = 0, 0
    watch = CpuWatch(pids)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=8), timeout=timeout, headers={"Content-Type": "application/json"}
    ) as session:

        async def post(url: str, body: dict[str, Any]) -> tuple[int, bytes]:
            async with session.post(url, data=orjson.dumps(body)) as resp:
                return resp.status, await resp.read()

        # one read on each node first, so that every connection is open before the first sample
        for url in urls:
            await post(url, {"sql": "SELECT 1"})
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        watch.start()
        end = start + duration
        for i in itertools.count():
            due = start + i / rate
            if due >= end:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            a = i % n_nodes
            b = (a + 1 + (i // n_nodes) % (n_nodes - 1)) % n_nodes
            method = "poll" if (i // 6) % 2 == 0 else "min_seq"  # each method: all 6 pairs in turn
            n = id_base + i
            t_send = time.monotonic()
            try:
                status, payload = await post(urls[a], {"sql": INSERT, "params": [n, value_for(n)]})
            except (aiohttp.ClientError, TimeoutError) as e:
                errors.add(f"write {type(e).__name__}", f"node{a + 1}: {e or repr(e)}")
                continue
            t_ack = time.monotonic()
            seq, problem = check_write(status, payload)
            if problem is not None:
                errors.add(f"write {problem}", f"node{a + 1}: {payload.decode(errors='replace')}")
                continue
            assert seq is not None
            acked += 1
            max_seq = max(max_seq, seq)
            read = {"sql": SELECT, "params": [n]}
            polls, rtts = 0, []
            try:
                if method == "min_seq":
                    polls = 1
                    status, payload = await post(f"{urls[b]}?min_seq={seq}", read)
                    t_vis = time.monotonic()
                    if status != 200 or b'"rows":[["' not in payload:
                        errors.add(
                            f"min_seq read HTTP {status}",
                            f"node{b + 1} seq {seq}: {payload.decode(errors='replace')}",
                        )
                        continue
                else:
                    while True:
                        polls += 1
                        t0 = time.monotonic()
                        status, payload = await post(urls[b], read)
                        t_vis = time.monotonic()
                        rtts.append((t_vis - t0) * 1000)
                        if status != 200:
                            errors.add(
                                f"poll HTTP {status}", f"node{b + 1}: {payload.decode(errors='replace')}"
                            )
                            break
                        if b'"rows":[["' in payload:
                            break
                        if t_vis - t_ack > VISIBLE_TIMEOUT:
                            errors.add(
                                "never visible",
                                f"id {n} (seq {seq}) written on node{a + 1} not on "
                                f"node{b + 1} after {VISIBLE_TIMEOUT:g}s",
                            )
                            break
                    if status != 200 or b'"rows":[["' not in payload:
                        continue
            except (aiohttp.ClientError, TimeoutError) as e:
                errors.add(f"read {type(e).__name__}", f"node{b + 1}: {e or repr(e)}")
                continue
            samples.append(
                LagSample(
                    method=method,
                    writer=a,
                    reader=b,
                    write_ms=(t_ack - t_send) * 1000,
                    lag_ms=(t_vis - t_ack) * 1000,
                    from_send_ms=(t_vis - t_send) * 1000,
                    polls=polls,
                    poll_rtts_ms=rtts,
                )
            )
    return LagResult(
        scenario=scenario,
        samples=samples,
        cpu=watch.stop(),
        acked=acked,
        max_seq=max_seq,
        errors=dict(errors.counts),
        error_samples=errors.samples,
    )


# ------------------------------------------------------------------------------------ part 3: in-process
@dataclass(kw_only=True)
class InprocResult:
    path: str
    writers: int
    tx: int  # writes completed in the measured window
    seconds: float  # window start -> every node has applied the last write
    tps: float
    catch_up_ms: float  # last write answered -> every node has applied it
    cpu: dict[str, float]  # "self" = this process; "nats-server" for the JetStream rows
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def open_raw(path: Path, synchronous: str) -> apsw.Connection:
    """A connection set up as the node's writer is: WAL, the same synchronous, a statement cache."""
    conn = apsw.Connection(str(path), statementcachesize=256)
    conn.execute("PRAGMA journal_mode=WAL").fetchall()
    conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
    conn.execute(CREATE)
    return conn


def raw_run(conn: apsw.Connection, duration: float, warmup: float, id_base: int) -> InprocResult:
    """Single-threaded one-row insert transactions on raw apsw, each ``BEGIN IMMEDIATE; INSERT; COMMIT``."""
    ids = itertools.count(id_base)

    def insert() -> None:
        n = next(ids)
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(INSERT, (n, value_for(n)))
        conn.execute("COMMIT")

    end = time.monotonic() + warmup
    while time.monotonic() < end:
        insert()
    watch = CpuWatch({})
    watch.start()
    tx = 0
    start = time.monotonic()
    end = start + duration
    while (now := time.monotonic()) < end:
        insert()
        tx += 1
    return InprocResult(
        path=RAW,
        writers=1,
        tx=tx,
        seconds=now - start,
        tps=tx / (now - start),
        catch_up_ms=0.0,
        cpu=watch.stop(),
    )


@dataclass
class InprocCluster:
    """In-process nodes of one database sharing one log; ``close`` releases all of it."""

    nodes: list[ReplicatedDatabase]
    replicators: list[Replicator]

    async def close(self) -> None:
        for rdb in self.nodes:
            with contextlib.suppress(Exception):
                await rdb.close()
        for rep in self.replicators:
            with contextlib.suppress(Exception):
                await rep.close()
        for rdb in self.nodes:
            rdb.db.close()


async def open_inproc(kind: str, root: Path, db_name: str, nats_conn: NatsConnection | None) -> InprocCluster:
    replicators: list[Replicator]
    names = ["n1", "n2", "n3"] if kind == "hub" else ["n1"]
    if kind == "local":
        replicators = [LocalReplicator("n1")]
    elif kind == "hub":
        hub = MemoryHub(auto=True)
        replicators = [hub.connect(name) for name in names]
    else:
        assert nats_conn is not None
        replicators = [JetStreamReplicator(nats_conn, node="n1", stream="bench_replication")]
    cluster = InprocCluster([], replicators)
    try:
        for name, rep in zip(names, replicators, strict=True):
            (root / name).mkdir(parents=True, exist_ok=True)
            await rep.start()
            rdb = ReplicatedDatabase(
                Database(parse_dsn(str(root / name / db_name), memory=False)), rep, node=name, sealer=SEALER
            )
            cluster.nodes.append(rdb)
            await rdb.start()
        _, seq = await cluster.nodes[0].execute([Statement(sql=CREATE)])
        for rdb in cluster.nodes:
            await rdb.wait_applied(seq or 0, SETTLE_TIMEOUT)
    except BaseException:
        await cluster.close()
        raise
    return cluster


async def inproc_run(
    cluster: InprocCluster,
    *,
    path: str,
    writers: int,
    duration: float,
    warmup: float,
    id_base: int,
    pids: dict[str, int],
) -> InprocResult:
    """``writers`` tasks send one-row inserts back to back, round-robin over the in-process nodes, each
    ``await rdb.execute([...])`` (so a JetStream write waits for its ack) and then yield to the event loop,
    as a node's request handler would. The window ends when every node has applied every write."""
    ids = itertools.count(id_base)
    turn = itertools.count()
    errors = Errors()
    max_seq = 0
    counting = False
    tx = 0

    async def writer(until: float) -> None:
        nonlocal max_seq, tx
        while time.monotonic() < until:
            n = next(ids)
            rdb = cluster.nodes[next(turn) % len(cluster.nodes)]
            try:
                _, seq = await rdb.execute([Statement(sql=INSERT, bindings=(n, value_for(n)))])
            except HAError as e:
                errors.add(type(e).__name__, e.message)
                await asyncio.sleep(0.01)
                continue
            if seq is None:
                errors.add("no seq", f"the write of id {n} returned no seq")
            else:
                max_seq = max(max_seq, seq)
                if counting:
                    tx += 1
            await asyncio.sleep(0)

    async def drain() -> None:
        for rdb in cluster.nodes:
            await rdb.wait_applied(max_seq, SETTLE_TIMEOUT)

    await asyncio.gather(*(writer(time.monotonic() + warmup) for _ in range(writers)))
    await drain()
    watch = CpuWatch(pids)
    counting = True
    watch.start()
    start = time.monotonic()
    await asyncio.gather(*(writer(start + duration) for _ in range(writers)))
    last_write = time.monotonic()
    try:
        await drain()
    except HAError as e:
        errors.add("not applied", e.message)
    done = time.monotonic()
    return InprocResult(
        path=path,
        writers=writers,
        tx=tx,
        seconds=done - start,
        tps=tx / (done - start),
        catch_up_ms=(done - last_write) * 1000,
        cpu=watch.stop(),
        errors=dict(errors.counts),
        error_samples=errors.samples,
    )


INPROC_PATHS = {
    "local": "ReplicatedDatabase + LocalReplicator",
    "hub": "ReplicatedDatabase x3 + MemoryHub",
    "jetstream": "ReplicatedDatabase + JetStream",
}


async def inproc_repeat(
    *, rep: int, root: Path, duration: float, warmup: float, id_base: int, log: Any
) -> list[InprocResult]:
    """Every replicated in-process row of one repeat; the JetStream rows on a nats-server started here."""
    results: list[InprocResult] = []
    server = NatsServer(NatsServerOptions(name=f"bench-{rep}", port=free_port(), store_dir=root / "nats"))
    conn: NatsConnection | None = None
    try:
        for kind in INPROC_PATHS:
            if kind == "jetstream" and conn is None:
                await server.start()
                conn = NatsConnection(server.url, name="bench")
                conn.start()
                if not await conn.wait_connected(10.0):
                    raise RuntimeError(f"cannot connect to the embedded nats-server at {server.url}")
            for writers in CLIENTS:
                db_name = f"{kind}-{writers}.db"
                cluster = await open_inproc(kind, root / f"{kind}-{writers}", db_name, conn)
                pids = {"nats-server": server.pid} if kind == "jetstream" and server.pid else {}
                try:
                    result = await inproc_run(
                        cluster,
                        path=INPROC_PATHS[kind],
                        writers=writers,
                        duration=duration,
                        warmup=warmup,
                        id_base=id_base,
                        pids=pids,
                    )
                finally:
                    await cluster.close()
                id_base += IDS_PER_MEASUREMENT
                results.append(result)
                log(result)
    finally:
        if conn is not None:
            quiet = logging.getLogger("sqlite_ha.replication.jetstream.connection")
            level = quiet.level
            quiet.setLevel(logging.ERROR)  # closing logs "disconnected from NATS", which is expected here
            try:
                await conn.close()
            finally:
                quiet.setLevel(level)
        await server.stop()
    return results


# ------------------------------------------------------------------------------------------ the cluster
def start_cluster(workdir: Path, synchronous: str) -> list[NodeProcess]:
    """node1 with the embedded NATS, node2 and node3 joined to it; returns them started (or raises)."""
    extra = ["--log-level", "warn"]
    # Without --cluster-secret the nodes run the channel plain, as before MACs existed (a baseline);
    # NodeProcess would otherwise give them its test secret.
    secret = os.environ.get("HA_CLUSTER_SECRET", "")
    if not secret:
        extra.append("--insecure-replication")
    if synchronous != DEFAULT_SYNCHRONOUS:
        extra += ["--synchronous", synchronous]
    env = {"HA_CLUSTER_SECRET": secret}  # "" removes it
    first = NodeProcess(workdir=workdir / "node1", name="node1", nats_port=None, args=[DB, *extra], env=env)
    url = f"nats://127.0.0.1:{first.nats_port}"
    others = [
        NodeProcess(
            workdir=workdir / f"node{i}",
            name=f"node{i}",
            args=[DB, "--replication-url", url, *extra],
            env=env,
        )
        for i in (2, 3)
    ]
    return [first, *others]


def stop_cluster(nodes: list[NodeProcess]) -> list[str]:
    problems = []
    for node in reversed(nodes):  # node1 last: it runs the NATS the others use
        try:
            code = node.stop()
            if code != 0:
                problems.append(f"{node.name} exited with {code} when stopped")
        except TimeoutError as e:
            problems.append(str(e).splitlines()[0])
    return problems


def check_alive(nodes: list[NodeProcess]) -> None:
    for node in nodes:
        if node.proc is not None and node.proc.poll() is not None:
            raise RuntimeError(
                f"{node.name} exited with {node.proc.returncode} during the benchmark:\n{node.logs()}"
            )


def replication_status(node: NodeProcess) -> dict[str, Any]:
    status: dict[str, Any] = node.request("GET", "/status", timeout=REQUEST_TIMEOUT).json()
    return status["replication"]["databases"][DB]  # type: ignore[no-any-return]


STATUS_KEYS = (
    "applied_seq",
    "last_seq",
    "lag_messages",
    "outbox",
    "published",
    "publish_failures",
    "applied",
    "parked",
    "last_error",
)


@dataclass(kw_only=True)
class Settle:
    """After a measurement: how long until every node applied the newest acknowledged write, and /status."""

    ms: float
    statuses: dict[str, dict[str, Any]]
    problems: list[str]


def settle(nodes: list[NodeProcess], max_seq: int) -> Settle:
    """Wait (one ``min_seq`` read on each node) until all applied ``max_seq``; then read ``/status``.

    Parked change sets, a replication ``last_error`` or a node that does not catch up are problems; the outbox
    is only recorded (a node drops the entries of its own change sets lazily, with a later transaction)."""
    problems: list[str] = []
    start = time.monotonic()
    for node in nodes:
        try:
            resp = node.request(
                "POST", f"/query?min_seq={max_seq}", {"sql": "SELECT 1"}, timeout=SETTLE_TIMEOUT + 5
            )
        except OSError as e:
            problems.append(f"{node.name}: {e}")
            continue
        if resp.status != 200:
            problems.append(
                f"{node.name} did not apply seq {max_seq}: HTTP {resp.status} {resp.body[:300]!r}"
            )
    ms = (time.monotonic() - start) * 1000
    statuses: dict[str, dict[str, Any]] = {}
    for node in nodes:
        try:
            st = replication_status(node)
        except (OSError, KeyError, ValueError) as e:
            problems.append(f"{node.name}: /status failed: {e}")
            continue
        statuses[node.name] = {k: st.get(k) for k in STATUS_KEYS}
        parked = {k: v for k, v in (st.get("parked") or {}).items() if v}
        if parked:
            problems.append(f"{node.name} has parked change sets: {parked}")
        if st.get("last_error"):
            problems.append(f"{node.name} reports replication last_error: {st['last_error']}")
    return Settle(ms=ms, statuses=statuses, problems=problems)


def node_pids(nodes: list[NodeProcess]) -> dict[str, int]:
    pids = {n.name: n.proc.pid for n in nodes if n.proc is not None}
    nats_pid = child_pid(pids["node1"], "nats-server")
    if nats_pid is not None:
        pids["nats-server"] = nats_pid
    return pids


# ------------------------------------------------------------------------------------------------ tables
def fmt_ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.2f}"


def fmt_cpu(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.0%}"


OURS = ("self", "node1", "node2", "node3", "nats-server")


def cpu_medians(cpus: list[dict[str, float]]) -> dict[str, float]:
    """Medians per process over the repeats, and ``other``: the machine minus the processes measured."""
    out = {name: median([c.get(name, float("nan")) for c in cpus]) for name in (*OURS, "machine", "iowait")}
    # CPU times tick in 10 ms, so the difference jitters by a few percent around 0 on a quiet machine
    out["other"] = max(0.0, median([c["machine"] - sum(c.get(n, 0.0) for n in OURS) for c in cpus]))
    return out


CLUSTER = ("node1", "node2", "node3", "nats-server")


def cpu_per_tx(runs: list[tuple[dict[str, float], float]]) -> dict[str, float]:
    """CPU milliseconds per write of each process, and of the cluster (nodes + nats-server); medians."""
    out = {
        name: median([cpu.get(name, float("nan")) / tps * 1000 for cpu, tps in runs if tps])
        for name in (*OURS, "machine")
    }
    out["cluster"] = median([sum(cpu.get(n, 0.0) for n in CLUSTER) / tps * 1000 for cpu, tps in runs if tps])
    return out


def summarize_load(
    runs: dict[int, list[LoadResult]], settles: dict[int, list[Settle]], raw_tps: float
) -> list[dict[str, Any]]:
    rows = []
    for clients, rs in runs.items():
        tps = [r.tps for r in rs]
        med = median(tps)
        rows.append(
            {
                "clients": clients,
                "tps": med,
                "p50_ms": median([r.p50_ms for r in rs]),
                "p99_ms": median([r.p99_ms for r in rs]),
                "spread": spread(tps),
                "ratio_to_raw": med / raw_tps if raw_tps else float("nan"),
                "per_node_tps": [median([r.per_node[i] / r.seconds for r in rs]) for i in range(3)],
                "cpu": cpu_medians([r.cpu for r in rs]),
                "cpu_ms_per_tx": cpu_per_tx([(r.cpu, r.tps) for r in rs]),
                "settle_ms": median([s.ms for s in settles[clients]]),
                "errors": sum(r.error_count for r in rs),
                "runs": [asdict(r) for r in rs],
                "settles": [asdict(s) for s in settles[clients]],
            }
        )
    return rows


def print_load(rows: list[dict[str, Any]], raw_tps: float, cpus: int) -> None:
    print("Part 1: one-row INSERT transactions over HTTP, 3 nodes, requests round-robin over the nodes")
    headers = [
        "clients",
        "write tx/s",
        "p50 ms",
        "p99 ms",
        "spread",
        "ratio to raw apsw",
        "per node tx/s",
        "loadgen CPU",
        "node1 CPU",
        "node2 CPU",
        "node3 CPU",
        "nats CPU",
        "other CPU",
        "iowait",
        "cluster CPU ms/tx",
        "settle ms",
        "errors",
    ]
    table = [
        [
            str(r["clients"]),
            f"{r['tps']:,.0f}",
            fmt_ms(r["p50_ms"]),
            fmt_ms(r["p99_ms"]),
            f"{r['spread']:.0%}",
            f"{r['ratio_to_raw']:.3f}",
            " / ".join(f"{x:,.0f}" for x in r["per_node_tps"]),
            *(fmt_cpu(r["cpu"][n]) for n in (*OURS, "other", "iowait")),
            f"{r['cpu_ms_per_tx']['cluster']:.2f}",
            f"{r['settle_ms']:.0f}",
            str(r["errors"]),
        ]
        for r in rows
    ]
    print_table(headers, table, left=0)
    print(f"""ratio = cluster write tx/s / raw apsw tx/s ({raw_tps:,.0f}, part 3: one process, no replication)
Latency is measured at the load generator, HTTP round trip included. A write is answered after its local
commit and its JetStream ack. settle = after the load stopped, until every node had applied the newest
acknowledged write (one min_seq read per node, sequentially). CPU = CPU seconds per wall second in the window
(100% = one core busy, the machine has {cpus} cores); nats = node1's embedded nats-server, which all three
nodes use; other = the rest of the machine (other processes, and the kernel work /proc/stat does not charge
to a process); iowait = CPU time idle while the disk had requests outstanding (fsyncs, anyone's): high
iowait with idle CPU means the disk, not the CPU, held the writes back. cluster CPU ms/tx = CPU of the
three nodes and nats-server per write (less noisy than tx/s on a shared machine).""")


def summarize_lag(runs: dict[str, list[LagResult]], loads: list[LoadResult]) -> list[dict[str, Any]]:
    rows = []
    for scenario, rs in runs.items():
        for method in ("poll", "min_seq"):
            per_rep = [[s for s in r.samples if s.method == method] for r in rs]
            pooled = [s for rep in per_rep for s in rep]
            lags = [s.lag_ms for s in pooled]
            rtts = [x for s in pooled for x in s.poll_rtts_ms]
            rows.append(
                {
                    "scenario": scenario,
                    "method": method,
                    "samples": len(pooled),
                    "lag_p50_ms": percentile(lags, 0.50),
                    "lag_p99_ms": percentile(lags, 0.99),
                    "lag_max_ms": max(lags, default=float("nan")),
                    "lag_p99_per_repeat_ms": [
                        percentile([s.lag_ms for s in rep], 0.99) for rep in per_rep if rep
                    ],
                    "from_send_p50_ms": percentile([s.from_send_ms for s in pooled], 0.50),
                    "from_send_p99_ms": percentile([s.from_send_ms for s in pooled], 0.99),
                    "write_p50_ms": percentile([s.write_ms for s in pooled], 0.50),
                    "first_poll": sum(s.polls == 1 for s in pooled) / len(pooled) if pooled else float("nan"),
                    "poll_rtt_p50_ms": percentile(rtts, 0.50),
                    "cpu_sampler_process": cpu_medians([r.cpu for r in rs]),
                    "cpu_load_process": cpu_medians([r.cpu for r in loads])
                    if scenario == "under load"
                    else None,
                    "errors": sum(r.error_count for r in rs),
                }
            )
    return rows


def print_lag(rows: list[dict[str, Any]], loads: list[LoadResult], rate: float) -> None:
    print("Part 2: replication lag, write on node A -> row visible on node B (samples of all repeats pooled)")
    headers = [
        "scenario",
        "method",
        "samples",
        "lag p50 ms",
        "lag p99 ms",
        "max ms",
        "p99 per repeat",
        "from send p50 / p99",
        "write p50 ms",
        "1st poll hit",
        "poll RTT p50",
        "errors",
    ]
    table = [
        [
            r["scenario"],
            r["method"],
            str(r["samples"]),
            fmt_ms(r["lag_p50_ms"]),
            fmt_ms(r["lag_p99_ms"]),
            fmt_ms(r["lag_max_ms"]),
            " ".join(f"{x:.1f}" for x in r["lag_p99_per_repeat_ms"]),
            f"{fmt_ms(r['from_send_p50_ms'])} / {fmt_ms(r['from_send_p99_ms'])}",
            fmt_ms(r["write_p50_ms"]),
            f"{r['first_poll']:.0%}" if r["method"] == "poll" else "-",
            fmt_ms(r["poll_rtt_p50_ms"]) if r["method"] == "poll" else "-",
            str(r["errors"]) if r["method"] == "poll" else '"',
        ]
        for r in rows
    ]
    print_table(headers, table, left=2)
    print(f"""Method: one write at a time (at most {rate:g}/s) on node A = sample % 3, then node B (the two
others in turn) is asked. The samples alternate between two ways of asking:
  poll     reads of the row (SELECT v FROM kv WHERE id = ?) on B, back to back, until it is there. lag = from
           the write's 200 reaching the client to the first read answer holding the row. Its resolution is one
           read round trip ("poll RTT"): a row already there at the first read ("1st poll hit") counts as
           about one RTT. This is what a client sees.
  min_seq  one read on B with ?min_seq=<the write's seq>, which B holds until it has applied that seq. lag =
           from the write's 200 to that answer: an upper bound that includes one HTTP round trip.
  "from send" counts from the write request being sent instead: it adds the write's commit and JetStream ack.
A write is answered after JetStream stored its change set, and B may apply it before the answer reaches the
client, so the true commit -> visible time lies between "lag" and "from send". idle = nothing else runs;
under load = during a {LOAD_CLIENTS}-client write load as in part 1 (run again, with the sampler inside its
measured window). "errors" counts failed writes, failed reads and writes never visible within
{VISIBLE_TIMEOUT:g}s, for both methods.""")
    for r in rows:
        if r["method"] != "poll":
            continue
        c = r["cpu_sampler_process"]
        line = (
            f"CPU while sampling {r['scenario']}: node1/2/3 {fmt_cpu(c['node1'])} / {fmt_cpu(c['node2'])} / "
            f"{fmt_cpu(c['node3'])}, nats {fmt_cpu(c['nats-server'])}, sampler {fmt_cpu(c['self'])}"
        )
        if r["cpu_load_process"] is not None:
            lc = r["cpu_load_process"]
            line += f", load generator {fmt_cpu(lc['self'])}, other {fmt_cpu(lc['other'] - c['self'])}"
            line += (
                f"; the load meanwhile: {median([x.tps for x in loads]):,.0f} write tx/s, p99 "
                f"{median([x.p99_ms for x in loads]):.2f} ms"
            )
        else:
            line += f", other {fmt_cpu(c['other'])}"
        print(line)


def summarize_inproc(runs: dict[tuple[str, int], list[InprocResult]]) -> list[dict[str, Any]]:
    raw = median([r.tps for r in runs[(RAW, 1)]])
    rows = []
    for (path, writers), rs in runs.items():
        tps = [r.tps for r in rs]
        med = median(tps)
        cpus = [r.cpu for r in rs]
        rows.append(
            {
                "path": path,
                "writers": writers,
                "tps": med,
                "ratio_to_raw": med / raw if raw else float("nan"),
                "spread": spread(tps),
                "catch_up_ms": median([r.catch_up_ms for r in rs]),
                "cpu": median([c["self"] for c in cpus]),
                "nats_cpu": median([c.get("nats-server", float("nan")) for c in cpus]),
                "other_cpu": max(
                    0.0, median([c["machine"] - c["self"] - c.get("nats-server", 0.0) for c in cpus])
                ),
                "errors": sum(r.error_count for r in rs),
                "runs": [asdict(r) for r in rs],
            }
        )
    return rows


def print_inproc(rows: list[dict[str, Any]]) -> None:
    print("Part 3: one-row INSERT transactions in one process, no HTTP")
    headers = [
        "path",
        "writers",
        "tx/s",
        "ratio to raw apsw",
        "spread",
        "catch-up ms",
        "process CPU",
        "nats-server CPU",
        "other CPU",
        "errors",
    ]
    table = [
        [
            r["path"],
            str(r["writers"]),
            f"{r['tps']:,.0f}",
            f"{r['ratio_to_raw']:.3f}",
            f"{r['spread']:.0%}",
            "-" if r["path"] == RAW else f"{r['catch_up_ms']:.0f}",
            fmt_cpu(r["cpu"]),
            fmt_cpu(r["nats_cpu"]),
            fmt_cpu(r["other_cpu"]),
            str(r["errors"]),
        ]
        for r in rows
    ]
    print_table(headers, table, left=1)
    print("""raw apsw: BEGIN IMMEDIATE; INSERT; COMMIT on one connection (WAL, the nodes' synchronous).
LocalReplicator: one node on the single-node driver (its change sets come back to it through the log).
MemoryHub: three nodes in this process and event loop, writes round-robin; every node applies the others'
change sets. JetStream: one node on a nats-server started here (file store, R1, sync_interval: always, as the
node configures it); each write waits for its ack, and the node reads the log back through its durable pull
consumer. writers = asyncio tasks sending writes back to back; each yields to the event loop after a write.
tx/s = the window's writes over the time until every node had applied the last of them (catch-up = the part
after the last write was answered). process CPU = this whole process; other = the rest of the machine.""")


def print_goals(load_rows: list[dict[str, Any]], lag_rows: list[dict[str, Any]], cpus: int) -> None:
    best = max(load_rows, key=lambda r: r["tps"])
    polls = {r["scenario"]: r for r in lag_rows if r["method"] == "poll"}
    waits = {r["scenario"]: r for r in lag_rows if r["method"] == "min_seq"}

    def verdict(ok: bool) -> str:
        return "MET" if ok else "NOT MET"

    print(f"goals: >= {GOAL_TPS:,.0f} write tx/s aggregate and lag p99 <= {GOAL_LAG_P99_MS:g} ms")
    print(
        f"  throughput: {best['tps']:,.0f} write tx/s with {best['clients']} clients (best row), "
        f"{best['tps'] / GOAL_TPS:.0%} of the goal -> {verdict(best['tps'] >= GOAL_TPS)}"
    )
    for scenario, r in polls.items():
        print(
            f"  lag p99 {scenario}: {r['lag_p99_ms']:.1f} ms by polling (min_seq upper bound "
            f"{waits[scenario]['lag_p99_ms']:.1f} ms) -> {verdict(r['lag_p99_ms'] <= GOAL_LAG_P99_MS)}"
        )
    c = best["cpu"]
    ours = sum(c[n] for n in OURS)
    print(
        f"  where the time goes at {best['clients']} clients (CPU per wall second, {cpus} cores = "
        f"{cpus:.0%}): node1 {fmt_cpu(c['node1'])}, node2 {fmt_cpu(c['node2'])}, "
        f"node3 {fmt_cpu(c['node3'])}, "
        f"nats-server {fmt_cpu(c['nats-server'])}, load generator {fmt_cpu(c['self'])} = {fmt_cpu(ours)}; "
        f"other {fmt_cpu(c['other'])}; machine busy {fmt_cpu(c['machine'])}, iowait {fmt_cpu(c['iowait'])}"
    )
    m = best["cpu_ms_per_tx"]
    ceiling = cpus * 1000 / m["cluster"] if m["cluster"] else float("nan")
    print(
        f"  CPU per write (ms, median of repeats): node1 {m['node1']:.2f}, node2 {m['node2']:.2f}, "
        f"node3 {m['node3']:.2f}, nats-server {m['nats-server']:.2f} = cluster {m['cluster']:.2f} ms; "
        f"load generator {m['self']:.2f}. With all {cpus} cores to itself and no load generator, CPU alone "
        f"would cap the cluster near {ceiling:,.0f} write tx/s"
    )


def print_logs(nodes: list[NodeProcess], logs: dict[str, str], log_sizes: dict[str, int]) -> None:
    """Each node's log (--log-level warn), split into what it said during the run and while stopping."""
    for node in nodes:
        text = logs[node.name]
        cut = log_sizes.get(node.name, len(text))
        during, shutdown = text[:cut].rstrip(), text[cut:].rstrip()
        if during:
            print(f"\n----- {node.name} log during the run (warnings and errors) -----\n{during}")
        if shutdown:
            print(
                f"----- {node.name} log while stopping (expected: it drops its NATS connection) -----\n"
                f"{shutdown}"
            )


def report_errors(sections: list[tuple[str, list[Any]]], problems: list[str]) -> int:
    failed = [(name, r) for name, rs in sections for r in rs if r.error_count]
    total: int = sum(r.error_count for _, r in failed) + len(problems)
    if not total:
        return 0
    bar = "!" * 100
    print(f"\n{bar}\n!!! {total} FAILURES: the numbers above are NOT valid measurements\n{bar}")
    for name, r in failed:
        print(f"{name}: {r.errors}")
        for sample in r.error_samples:
            print(f"    {sample}")
    for p in problems:
        print(f"cluster: {p}")
    print("the node logs are above")
    return total


# ------------------------------------------------------------------------------------------------ the run
SEALER = PLAIN  # with --cluster-secret: the in-process nodes seal and verify every message too


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per measurement [5]")
    p.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each measurement")
    p.add_argument("--repeats", type=int, default=3, help="repeats of each measurement; medians shown [3]")
    p.add_argument("--lag-rate", type=float, default=100.0, help="most lag samples per second [100]")
    p.add_argument(
        "--synchronous",
        choices=("full", "normal"),
        default=DEFAULT_SYNCHRONOUS,
        help=f"SQLite synchronous of the nodes and raw apsw [{DEFAULT_SYNCHRONOUS}, the default]",
    )
    p.add_argument("--dir", type=Path, default=None, help="where to make the temporary directory")
    p.add_argument("--json", type=Path, default=None, help="also write the results (every repeat) as JSON")
    p.add_argument(
        "--cluster-secret",
        default=None,
        help="run the nodes (HA_CLUSTER_SECRET) and the in-process databases with this cluster secret, so "
        "that every message carries a MAC; default: none (plain messages)",
    )
    return p.parse_args(argv)


@dataclass
class Run:
    """Everything one run collects."""

    load: dict[int, list[LoadResult]] = field(default_factory=lambda: {c: [] for c in CLIENTS})
    settles: dict[int, list[Settle]] = field(default_factory=lambda: {c: [] for c in CLIENTS})
    lag: dict[str, list[LagResult]] = field(default_factory=lambda: {"idle": [], "under load": []})
    lag_load: list[LoadResult] = field(default_factory=list)
    inproc: dict[tuple[str, int], list[InprocResult]] = field(
        default_factory=lambda: {(RAW, 1): [], **{(p, c): [] for p in INPROC_PATHS.values() for c in CLIENTS}}
    )
    problems: list[str] = field(default_factory=list)
    acked: int = 0
    max_seq: int = 0
    fingerprints: dict[str, Any] = field(default_factory=dict)
    final_status: dict[str, dict[str, Any]] = field(default_factory=dict)

    def wrote(self, acked: int, max_seq: int) -> None:
        self.acked += acked
        self.max_seq = max(self.max_seq, max_seq)


def measure(
    args: argparse.Namespace, workdir: Path, nodes: list[NodeProcess], raw: apsw.Connection, run: Run
) -> None:
    """Every measurement, repeats interleaved; the nodes are started here and stopped by the caller."""
    spawn = multiprocessing.get_context("spawn")  # no fork of a process holding SQLite connections
    ids = itertools.count(1, IDS_PER_MEASUREMENT)  # each measurement writes ids of its own range
    for node in nodes:
        node.start()
    pids = node_pids(nodes)
    urls = [f"http://127.0.0.1:{n.port}/query" for n in nodes]

    def after(label: str, seq: int) -> Settle:
        check_alive(nodes)
        s = settle(nodes, seq)
        run.problems.extend(f"after {label}: {p}" for p in s.problems)
        return s

    after("CREATE TABLE", nodes[0].query({"sql": CREATE})["seq"])
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        pool.submit(int).result()  # start the interpreter before the first measurement
        for rep in range(args.repeats):
            tag = f"repeat {rep + 1}/{args.repeats}"

            def log_inproc(r: InprocResult, tag: str = tag) -> None:
                flag = f"  {r.error_count} ERRORS" if r.error_count else ""
                print(
                    f"{tag} in-process {r.path}, {r.writers:>2} writers {r.tps:>8,.0f} tx/s  "
                    f"catch-up {r.catch_up_ms:.0f} ms{flag}",
                    flush=True,
                )

            # part 3 (the cluster idles meanwhile)
            r = raw_run(raw, args.duration, args.warmup, next(ids))
            run.inproc[(RAW, 1)].append(r)
            log_inproc(r)
            results = asyncio.run(
                inproc_repeat(
                    rep=rep,
                    root=workdir / f"inproc-{rep}",
                    duration=args.duration,
                    warmup=args.warmup,
                    id_base=1,
                    log=log_inproc,
                )
            )
            for r in results:
                run.inproc[(r.path, r.writers)].append(r)
            # part 1
            for clients in CLIENTS:
                spec = LoadSpec(
                    urls=tuple(urls),
                    clients=clients,
                    begin=time.monotonic() + 0.2,
                    warmup=args.warmup,
                    duration=args.duration,
                    id_base=next(ids),
                    pids=pids,
                )
                load = pool.submit(run_load, spec).result(timeout=args.warmup + args.duration + 120)
                run.wrote(load.acked, load.max_seq)
                run.load[clients].append(load)
                s = after(f"the {clients}-client load", load.max_seq)
                run.settles[clients].append(s)
                flag = f"  {load.error_count} ERRORS" if load.error_count else ""
                print(
                    f"{tag} cluster, {clients:>2} clients {load.tps:>8,.0f} tx/s  p50 {load.p50_ms:.2f} ms  "
                    f"p99 {load.p99_ms:.2f} ms  settle {s.ms:.0f} ms{flag}",
                    flush=True,
                )
            # part 2, idle
            lag = asyncio.run(
                sample_lag(
                    scenario="idle",
                    urls=urls,
                    start=time.monotonic() + 0.2,
                    duration=args.duration,
                    rate=args.lag_rate,
                    id_base=next(ids),
                    pids=pids,
                )
            )
            run.wrote(lag.acked, lag.max_seq)
            run.lag["idle"].append(lag)
            after("idle lag sampling", lag.max_seq)
            lags = [x.lag_ms for x in lag.samples]
            flag = f"  {lag.error_count} ERRORS" if lag.error_count else ""
            print(
                f"{tag} lag idle: {len(lags)} samples, p50 {percentile(lags, 0.5):.2f} ms, p99 "
                f"{percentile(lags, 0.99):.2f} ms{flag}",
                flush=True,
            )
            # part 2, under the write load: the sampler runs here, inside the load's measured window
            spec = LoadSpec(
                urls=tuple(urls),
                clients=LOAD_CLIENTS,
                begin=time.monotonic() + 0.5,
                warmup=args.warmup,
                duration=args.duration,
                id_base=next(ids),
                pids=pids,
            )
            future = pool.submit(run_load, spec)
            lag = asyncio.run(
                sample_lag(
                    scenario="under load",
                    urls=urls,
                    start=spec.begin + spec.warmup,
                    duration=spec.duration,
                    rate=args.lag_rate,
                    id_base=next(ids),
                    pids=pids,
                )
            )
            load = future.result(timeout=args.warmup + args.duration + 120)
            run.wrote(lag.acked, lag.max_seq)
            run.wrote(load.acked, load.max_seq)
            run.lag["under load"].append(lag)
            run.lag_load.append(load)
            after("lag sampling under load", max(lag.max_seq, load.max_seq))
            lags = [x.lag_ms for x in lag.samples]
            n_errors = lag.error_count + load.error_count
            flag = f"  {n_errors} ERRORS" if n_errors else ""
            print(
                f"{tag} lag under load: {len(lags)} samples, p50 {percentile(lags, 0.5):.2f} ms, p99 "
                f"{percentile(lags, 0.99):.2f} ms; load {load.tps:,.0f} tx/s{flag}",
                flush=True,
            )
    # every node must hold every acknowledged write, and the same rows
    for node in nodes:
        resp = node.request(
            "POST", f"/query?min_seq={run.max_seq}", {"sql": FINGERPRINT}, timeout=SETTLE_TIMEOUT + 5
        )
        run.fingerprints[node.name] = resp.json()["rows"][0] if resp.status == 200 else resp.body.decode()
    if len({str(fp) for fp in run.fingerprints.values()}) != 1:
        run.problems.append(f"the nodes differ: [count, sum(id), sum(length(v))] = {run.fingerprints}")
    elif any(not isinstance(fp, list) or fp[0] != run.acked for fp in run.fingerprints.values()):
        run.problems.append(f"{run.acked} writes were acknowledged but the nodes hold {run.fingerprints}")
    time.sleep(1.5)  # a node records its own last change sets with its next transaction or within a second
    run.final_status = settle(nodes, run.max_seq).statuses


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cluster_secret:
        global SEALER
        SEALER = Sealer(ClusterKeys.from_text(args.cluster_secret))
        os.environ["HA_CLUSTER_SECRET"] = args.cluster_secret  # the node processes inherit it
    logging.basicConfig(level=logging.WARNING, format="in-process %(levelname)s %(name)s: %(message)s")
    run = Run()
    with tempfile.TemporaryDirectory(prefix="sqlite-ha-bench-", dir=args.dir) as tmp:
        workdir = Path(tmp)
        machine = machine_info(workdir)
        machine["code"] = code_state()
        print(
            f"machine: {machine['nproc']} CPUs ({machine['usable_cpus']} usable), {machine['cpu']}, "
            f"{machine['platform']}"
        )
        print(
            f"python {machine['python']}, apsw {machine['apsw']}, SQLite {machine['sqlite']}, aiohttp "
            f"{machine['aiohttp']}, nats-py {machine['nats_py']}; database files and JetStream stores on "
            f"{machine['filesystem']}; load average at start "
            f"{', '.join(f'{x:.2f}' for x in machine['loadavg_at_start'])}"
        )
        print(f"code: {machine['code']}")
        print(
            f"settings: {args.duration:g}s measured after {args.warmup:g}s warm-up, {args.repeats} repeats "
            f"(median shown), synchronous={args.synchronous}, WAL; 3 nodes on loopback sharing node1's "
            "nats-server (stream R1, sync_interval always); load generator: a lean keep-alive HTTP client "
            "(bench/lean_http.py) in its own process; messages "
            + (
                "sealed (HMAC-SHA256, --cluster-secret)"
                if args.cluster_secret
                else "plain (no cluster secret)"
            )
            + "\n"
        )
        nodes = start_cluster(workdir / "cluster", args.synchronous)
        raw = open_raw(workdir / "raw.db", args.synchronous)
        log_sizes: dict[str, int] = {}
        aborted = ""
        try:
            measure(args, workdir, nodes, raw, run)
        except Exception as e:  # reported below with the node logs, after every process is stopped
            aborted = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            raw.close()
            log_sizes = {n.name: len(n.logs()) for n in nodes}
            run.problems.extend(stop_cluster(nodes))
        logs = {n.name: n.logs() for n in nodes}
        machine["loadavg_at_end"] = os.getloadavg()

    sections: list[tuple[str, list[Any]]] = [
        ("part 1 load", [r for rs in run.load.values() for r in rs]),
        ("part 2 lag", [r for rs in run.lag.values() for r in rs]),
        ("part 2 load", run.lag_load),
        ("part 3", [r for rs in run.inproc.values() for r in rs]),
    ]
    if aborted:
        print_logs(nodes, logs, log_sizes)
        report_errors(sections, [f"THE BENCHMARK STOPPED EARLY: {aborted}", *run.problems])
        return 1
    cpus = machine["usable_cpus"] or 1
    inproc_rows = summarize_inproc(run.inproc)
    raw_tps = inproc_rows[0]["tps"]
    load_rows = summarize_load(run.load, run.settles, raw_tps)
    lag_rows = summarize_lag(run.lag, run.lag_load)
    print()
    print_load(load_rows, raw_tps, cpus)
    print()
    print_lag(lag_rows, run.lag_load, args.lag_rate)
    print()
    print_inproc(inproc_rows)
    print()
    same = all(isinstance(fp, list) and fp[0] == run.acked for fp in run.fingerprints.values())
    print(
        f"convergence: {run.acked} writes acknowledged; every node holds all of them and the same rows: "
        + ("yes" if run.fingerprints and same else f"NO: {run.fingerprints}")
    )
    print(
        "replication status at the end: "
        + "; ".join(
            f"{name} applied_seq {st['applied_seq']}, lag_messages {st['lag_messages']}, "
            f"outbox {st['outbox']}, "
            f"parked {st['parked'] or 0}, publish_failures {st['publish_failures']}"
            for name, st in run.final_status.items()
        )
    )
    print_goals(load_rows, lag_rows, cpus)
    print(
        f"load average (1 min) at start {machine['loadavg_at_start'][0]:.2f}, at end "
        f"{machine['loadavg_at_end'][0]:.2f}"
    )
    others = max([r["cpu"]["other"] for r in load_rows] + [r["other_cpu"] for r in inproc_rows])
    if others > OTHER_BUSY:
        print(
            f"note: other work took up to {others:.0%} of a core during the measurements (the 'other CPU' "
            "columns): numbers are lower and noisier than on an otherwise idle machine"
        )
    print_logs(nodes, logs, log_sizes)
    failed = report_errors(sections, run.problems)
    if args.json:
        doc = {
            "machine": machine,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "cluster_writes": load_rows,
            "lag": lag_rows,
            "lag_samples": {sc: [[asdict(s) for s in r.samples] for r in rs] for sc, rs in run.lag.items()},
            "lag_load": [asdict(r) for r in run.lag_load],
            "in_process": inproc_rows,
            "acknowledged": run.acked,
            "fingerprints": run.fingerprints,
            "final_status": run.final_status,
            "problems": run.problems,
            "failures": failed,
        }
        args.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        print(f"\nwrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
