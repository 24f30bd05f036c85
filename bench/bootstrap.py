"""A new node from a snapshot of a large database, against a plain file copy of the same file (issue 4).

    python bench/bootstrap.py [--size-mb 500] [--repeats 3] [--dir DIR] [--json out.json]

What it measures, on one database of about ``--size-mb`` MB (10^6 bytes) built here with apsw:

- **file copy + fsync** (the physical floor): ``shutil.copyfile`` of node1's database file to a new file on
  the same filesystem, then ``os.fsync`` of the copy. The same copy without the fsync is shown too.
- **backup API copy**: SQLite's online backup (``apsw`` ``Connection.backup``) of the same file into a new
  database, as a node makes a snapshot file; SQLite fsyncs the copy when the backup commits.
- **snapshot take**: ``POST /snapshot`` on node1, which backs the database up to a temporary file, hashes it
  and stores it in the JetStream object store of node1's embedded NATS.
- **new node ready**: a fresh ``sqlite-ha serve --from-latest-snapshot`` process (node2) in an empty
  directory, joining node1's NATS with ``--replication-url``, timed from process start until ``/readyz``
  answers 200. That covers Python start-up, connecting to NATS, downloading the snapshot, verifying it
  (sha256, ``PRAGMA integrity_check``, the recorded position), installing it (a rename) and joining the log.

The goal of issue 4 is a new node ready within 3x the file copy. To show where the bootstrap's time goes,
each repeat also times, in this process and with the node's own code, the object-store download of the
snapshot, ``bootstrap.verify`` and the sha256 alone, and an object-store upload of the same file into a
bucket of its own; node2 runs with ``--log-level info``, and its log says when the snapshot was installed.

Every measurement is repeated ``--repeats`` times, interleaved (repeat 1 of everything, then repeat 2, ...),
and the table shows medians. ``os.sync()`` runs (untimed) before each timed step, so one step's dirty pages
are not written back during the next. Each new node must hold the same rows as node1, checked with a
fingerprint query on both; a node that does not start, a snapshot that is not taken, or a mismatch makes
the exit status 1. Nodes are stopped and the temporary directory removed in a ``finally``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import apsw
import orjson

from machine import child_pid, code_state, machine_info, median, proc_cpu_seconds, spread
from sqlite_ha.replication.bootstrap import verify
from sqlite_ha.replication.jetstream.connection import NatsConnection
from sqlite_ha.replication.jetstream.snapshots import JetStreamSnapshotStore
from sqlite_ha.replication.snapshot import SnapshotMeta
from sqlite_ha.testing import NodeProcess, nats_credentials

DB = "bench.db"
MB = 1_000_000
VALUE_BYTES = 4000  # one row of ``t`` fills one 4 KiB page: no overflow pages
U_ROW_BYTES = 110  # about what a row of ``u`` and its index entry take on disk
SCHEMA = """
CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE u(id INTEGER PRIMARY KEY, name TEXT NOT NULL, t_id INTEGER NOT NULL);
CREATE TABLE marks(id INTEGER PRIMARY KEY, at REAL NOT NULL);
"""
SERIES = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
FILL_T = SERIES + "INSERT INTO t(v) SELECT randomblob(?) FROM c"
FILL_U = SERIES + "INSERT INTO u(name, t_id) SELECT hex(randomblob(16)), abs(random() % ?) + 1 FROM c"
T_BATCH = 10_000  # rows of ``t`` per transaction while building (40 MB)
MARK = "INSERT INTO marks(at) VALUES(?)"
# Content, not only counts: instr() reads every value of t.
FINGERPRINT = (
    "SELECT (SELECT count(*) FROM t), (SELECT coalesce(sum(length(v)), 0) FROM t), "
    "(SELECT coalesce(sum(instr(v, x'ff')), 0) FROM t), (SELECT count(*) FROM u), "
    "(SELECT coalesce(sum(length(name) * t_id), 0) FROM u), (SELECT count(*) FROM marks), "
    "(SELECT coalesce(max(id), 0) FROM marks)"
)
QUERY_TIMEOUT = 300.0
NODE1_TIMEOUT = 300.0  # node1 opens the database it was started on: no download
GOAL_RATIO = 3.0
BREAKDOWN_BUCKET_STREAM = "bench_bootstrap"  # in-process upload goes to bucket bench_bootstrap_SNAPSHOTS

COPY = "file copy + fsync (floor)"
COPY_NOSYNC = "file copy, no fsync"
BACKUP = "backup API copy"
TAKE = "snapshot take (POST /snapshot)"
READY = "new node ready from snapshot (--from-latest-snapshot)"
STEPS = (COPY, COPY_NOSYNC, BACKUP, TAKE, READY)
N2_CONNECTED = "node2: start -> connected to NATS (its log)"
N2_INSTALLED = "node2: connected -> snapshot installed (its log)"
N2_AFTER = "node2: installed -> ready"
GET = "object store get (download), in-process"
VERIFY = "bootstrap.verify (sha256 + integrity_check), in-process"
SHA = "sha256 of the file alone, in-process"
PUT = "object store put (upload), in-process"
PARTS = (N2_CONNECTED, N2_INSTALLED, N2_AFTER, GET, VERIFY, SHA, PUT)

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z (\w+)\s+(\S+): (.*)$")
INSTALLED = re.compile(r"installed the snapshot at seq (\d+)")
CONNECTED = re.compile(r"connected to NATS")


@dataclass(kw_only=True)
class Sample:
    step: str
    repeat: int
    seconds: float
    bytes: int
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    database: dict[str, Any] = field(default_factory=dict)
    node_logs: dict[str, str] = field(default_factory=dict)  # of nodes that failed or misbehaved
    notes: set[str] = field(default_factory=set)

    def add(self, step: str, repeat: int, seconds: float, nbytes: int, **detail: Any) -> None:
        self.samples.append(Sample(step=step, repeat=repeat, seconds=seconds, bytes=nbytes, detail=detail))


# ------------------------------------------------------------------------------------------------ helpers
def cpu_of(pid: int | None) -> float:
    return proc_cpu_seconds(pid) if pid is not None else float("nan")


def settle() -> None:
    """Write back dirty pages before a timed step, so that it does not pay for the previous one's."""
    os.sync()


def log_events(text: str) -> list[tuple[float, str, str]]:
    """(unix time, level, message) of each line of a node log."""
    events = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if m:
            stamp = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC)
            events.append((stamp.timestamp(), m.group(2), m.group(4)))
    return events


# ------------------------------------------------------------------------------------------------ the data
def build_database(path: Path, size_bytes: int) -> dict[str, Any]:
    """A database of about ``size_bytes``: 90 % in ``t`` (4000-byte random blobs, one a page), 10 % in ``u``
    (a TEXT column with an index). Built fast: no journal, no fsync; WAL at the end, as a node keeps it."""
    t0 = time.monotonic()
    rows_t = max(1, int(size_bytes * 0.9) // 4096)
    rows_u = max(1, int(size_bytes * 0.1) // U_ROW_BYTES)
    conn = apsw.Connection(str(path))
    try:
        conn.execute("PRAGMA page_size=4096; PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")  # 256 MiB: the index build stays in memory
        conn.execute(SCHEMA)
        done = 0
        while done < rows_t:
            n = min(T_BATCH, rows_t - done)
            with conn:
                conn.execute(FILL_T, (n, VALUE_BYTES))
            done += n
        with conn:
            conn.execute(FILL_U, (rows_u, rows_t))
            conn.execute("CREATE INDEX u_name ON u(name)")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()
    return {
        "path": str(path),
        "bytes": path.stat().st_size,
        "rows_t": rows_t,
        "rows_u": rows_u,
        "build_seconds": time.monotonic() - t0,
    }


def fingerprint(node: NodeProcess) -> list[Any]:
    resp = node.request("POST", "/query", {"sql": FINGERPRINT}, timeout=QUERY_TIMEOUT)
    if resp.status != 200:
        raise RuntimeError(f"fingerprint query on {node.name}: HTTP {resp.status} {resp.body[:500]!r}")
    row: list[Any] = resp.json()["rows"][0]
    return row


# ------------------------------------------------------------------------------------------------ steps
def file_copy(src: Path, dest: Path) -> tuple[float, float]:
    """Seconds to copy (``shutil.copyfile``: sendfile on Linux), and then to fsync the copy."""
    t0 = time.perf_counter()
    shutil.copyfile(src, dest)
    t1 = time.perf_counter()
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return t1 - t0, time.perf_counter() - t1


def backup_copy(src: Path, dest: Path) -> float:
    """Seconds for SQLite's backup API to copy ``src`` into a new database, as a node makes a snapshot file
    (the copy is committed, so fsynced, by SQLite; then set to a rollback journal, as the node does)."""
    t0 = time.perf_counter()
    source = apsw.Connection(str(src), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        target = apsw.Connection(str(dest))
        try:
            with target.backup("main", source, "main") as backup:
                while not backup.done:
                    backup.step(4096)
            target.execute("PRAGMA journal_mode=DELETE")
        finally:
            target.close()
    finally:
        source.close()
    return time.perf_counter() - t0


def take_snapshot(node1: NodeProcess, repeat: int, run: Run) -> tuple[SnapshotMeta, float] | None:
    """Write one row (a snapshot is skipped when nothing changed), then time ``POST /snapshot``."""
    node1.query({"sql": MARK, "params": [time.time()]})
    settle()
    t0 = time.perf_counter()
    resp = node1.request("POST", "/snapshot", timeout=600)
    seconds = time.perf_counter() - t0
    if resp.status != 200:
        run.problems.append(f"repeat {repeat}: POST /snapshot answered {resp.status}: {resp.body[:500]!r}")
        return None
    body = resp.json()
    snap = SnapshotMeta(**body["snapshot"])
    if not body.get("taken"):
        run.problems.append(f"repeat {repeat}: POST /snapshot did not take a new snapshot: {body}")
    run.add(TAKE, repeat, seconds, snap.size, snapshot=body["snapshot"], taken=body.get("taken"))
    return snap, seconds


def new_node(
    tmp: Path,
    repeat: int,
    nats_url: str,
    nats_pid: int | None,
    env: dict[str, str],
    snap: SnapshotMeta,
    expected: list[Any],
    args: argparse.Namespace,
    run: Run,
) -> tuple[float, float, dict[str, float]] | None:
    """Start a fresh node from the latest snapshot, timed from process start until ``/readyz`` says ready;
    check it holds node1's rows and installed that snapshot; stop it and delete its directory. Returns the
    seconds until ready, until its log says the snapshot was installed, and the CPU seconds node2 and
    node1's nats-server used until then."""
    name = f"node2-{repeat}"
    node = NodeProcess(
        workdir=tmp / name,
        name=name,
        args=[DB, "--replication-url", nats_url, "--from-latest-snapshot", "--log-level", "info"],
        env=env,
    )
    try:
        started_at = time.time()
        nats0 = cpu_of(nats_pid)
        t0 = time.perf_counter()
        try:
            node.start(timeout=args.ready_timeout)
            seconds = time.perf_counter() - t0
            assert node.proc is not None
            cpu = {"node": cpu_of(node.proc.pid), "nats-server": cpu_of(nats_pid) - nats0}
            got = fingerprint(node)
        except (RuntimeError, TimeoutError, OSError) as e:
            run.problems.append(f"repeat {repeat}: {name} failed: {str(e).splitlines()[0]}")
            run.node_logs[name] = node.logs()
            return None
        finally:
            try:
                code = node.stop()
                if code != 0:
                    run.problems.append(f"repeat {repeat}: {name} exited with {code} when stopped")
                    run.node_logs[name] = node.logs()
            except TimeoutError as e:
                run.problems.append(f"repeat {repeat}: {str(e).splitlines()[0]}")
                run.node_logs[name] = node.logs()
        log = node.logs()
    finally:
        shutil.rmtree(node.workdir, ignore_errors=True)
    if got != expected:
        run.problems.append(f"repeat {repeat}: {name} holds {got}, node1 {expected}")
        run.node_logs[name] = log
    events = log_events(log)
    installed_after, installed_seq = float("nan"), None
    for t, _, msg in events:
        if m := INSTALLED.search(msg):
            installed_after, installed_seq = t - started_at, int(m.group(1))
            break
    connected_after = next((t - started_at for t, _, msg in events if CONNECTED.match(msg)), float("nan"))
    if installed_seq is None:  # the fingerprint is the check; the log line only splits the time
        run.notes.add(
            "the new nodes' logs have no 'installed the snapshot at seq N' line, so the node2 parts are not "
            "shown"
        )
    elif installed_seq != snap.seq:
        run.problems.append(
            f"repeat {repeat}: {name} installed the snapshot at seq {installed_seq}, not {snap.seq}"
        )
        run.node_logs[name] = log
    run.add(
        READY,
        repeat,
        seconds,
        snap.size,
        cpu=cpu,
        connected_after=connected_after,
        installed_after=installed_after,
        fingerprint=got,
        log=[(round(t - started_at, 3), level, msg) for t, level, msg in events],
    )
    if not math.isnan(connected_after):
        run.add(N2_CONNECTED, repeat, connected_after, 0)
    if not math.isnan(installed_after):
        if not math.isnan(connected_after):
            run.add(N2_INSTALLED, repeat, installed_after - connected_after, snap.size)
        run.add(N2_AFTER, repeat, seconds - installed_after, 0)
    return seconds, installed_after, cpu


async def breakdown(
    nats_url: str, nats_pid: int | None, snapshot: SnapshotMeta, dest: Path
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Time the bootstrap's parts in this process with the node's code: download, verify, sha256; and the
    snapshot take's upload of the same file (into a bucket of its own, deleted afterwards). Returns the
    seconds of each, and the CPU seconds this process and node1's nats-server used in the get and the put."""
    conn = NatsConnection(
        nats_url, name="bench-bootstrap", login=nats_credentials()
    )  # node1's embedded server
    conn.start()
    try:
        if not await conn.wait_connected(10.0):
            raise RuntimeError(f"cannot connect to NATS at {nats_url}")
        out: dict[str, float] = {}
        cpu: dict[str, dict[str, float]] = {}
        store = JetStreamSnapshotStore(conn)
        await asyncio.to_thread(settle)
        c0, n0 = time.process_time(), cpu_of(nats_pid)
        t0 = time.perf_counter()
        got = await store.fetch(DB, dest)
        out[GET] = time.perf_counter() - t0
        cpu[GET] = {"bench": time.process_time() - c0, "nats-server": cpu_of(nats_pid) - n0}
        if got.seq != snapshot.seq:
            raise RuntimeError(f"downloaded the snapshot at seq {got.seq}, expected {snapshot.seq}")
        t0 = time.perf_counter()
        await asyncio.to_thread(verify, dest, got)
        out[VERIFY] = time.perf_counter() - t0
        t0 = time.perf_counter()
        await asyncio.to_thread(sha256_of, dest)
        out[SHA] = time.perf_counter() - t0
        other = JetStreamSnapshotStore(conn, stream=BREAKDOWN_BUCKET_STREAM)
        await asyncio.to_thread(settle)
        c0, n0 = time.process_time(), cpu_of(nats_pid)
        t0 = time.perf_counter()
        await other.put(got, dest)
        out[PUT] = time.perf_counter() - t0
        cpu[PUT] = {"bench": time.process_time() - c0, "nats-server": cpu_of(nats_pid) - n0}
        await conn.jetstream().delete_object_store(other.bucket)
        return out, cpu
    finally:
        await conn.close()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ the run
def measure(args: argparse.Namespace, tmp: Path, node1: NodeProcess, env: dict[str, str], run: Run) -> None:
    db_path = node1.workdir / DB
    assert node1.nats_port
    nats_url = f"nats://127.0.0.1:{node1.nats_port}"
    assert node1.proc is not None
    nats_pid = child_pid(node1.proc.pid, "nats-server")
    copies = tmp / "copies"
    copies.mkdir()
    for repeat in range(1, args.repeats + 1):
        size = db_path.stat().st_size

        settle()
        dest = copies / "copy.db"
        t_copy, t_fsync = file_copy(db_path, dest)
        dest.unlink()
        run.add(COPY, repeat, t_copy + t_fsync, size, copy=t_copy, fsync=t_fsync)
        run.add(COPY_NOSYNC, repeat, t_copy, size)

        settle()
        dest = copies / "backup.db"
        t_backup = backup_copy(db_path, dest)
        backup_size = dest.stat().st_size
        dest.unlink()
        run.add(BACKUP, repeat, t_backup, backup_size)

        line = (
            f"[{repeat}/{args.repeats}] file copy {t_copy:.2f} s + fsync {t_fsync:.2f} s; "
            f"backup API {t_backup:.2f} s"
        )
        taken = take_snapshot(node1, repeat, run)
        if taken is None:
            print(line + "; snapshot FAILED", flush=True)
            continue
        snap, t_take = taken
        line += f"; snapshot take {t_take:.2f} s"
        expected = fingerprint(node1)

        settle()
        ready = new_node(tmp, repeat, nats_url, nats_pid, env, snap, expected, args, run)
        if ready is None:
            print(line + "; new node FAILED", flush=True)
            continue
        line += (
            f"; new node ready {ready[0]:.2f} s (snapshot installed at {ready[1]:.2f} s; CPU: node2 "
            f"{ready[2]['node']:.2f} s, nats-server {ready[2]['nats-server']:.2f} s)"
        )

        if args.breakdown:
            dest = copies / "download.db"
            try:
                parts, cpu = asyncio.run(breakdown(nats_url, nats_pid, snap, dest))
            finally:
                dest.unlink(missing_ok=True)
            for step, secs in parts.items():
                run.add(step, repeat, secs, snap.size, **({"cpu": cpu[step]} if step in cpu else {}))
            line += (
                f"; in-process: get {parts[GET]:.2f} s (CPU: here {cpu[GET]['bench']:.2f} s, nats-server "
                f"{cpu[GET]['nats-server']:.2f} s), verify {parts[VERIFY]:.2f} s "
                f"(sha256 {parts[SHA]:.2f} s), "
                f"put {parts[PUT]:.2f} s (CPU: here {cpu[PUT]['bench']:.2f} s, nats-server "
                f"{cpu[PUT]['nats-server']:.2f} s)"
            )
        print(line, flush=True)


def summarize(run: Run, steps: tuple[str, ...], floor: float, whole: float) -> list[dict[str, Any]]:
    """Medians per step; ``whole`` is the new node's median time to ready (for the parts' share of it)."""
    rows = []
    for step in steps:
        samples = [s for s in run.samples if s.step == step]
        if not samples:
            continue
        secs = [s.seconds for s in samples]
        med = median(secs)
        nbytes = median([float(s.bytes) for s in samples])
        rows.append(
            {
                "step": step,
                "median_s": med,
                "mb_per_s": nbytes / MB / med if med and nbytes else float("nan"),
                "ratio_to_file_copy": med / floor if floor else float("nan"),
                "share_of_ready": med / whole if whole else float("nan"),
                "spread": spread(secs),
                "repeats": len(samples),
                "seconds": secs,
            }
        )
    return rows


def print_table(rows: list[dict[str, Any]], first: str, share: bool = False) -> None:
    headers = [
        first,
        "median s",
        "MB/s",
        "ratio to file copy",
        *(["share of ready"] if share else []),
        "spread",
    ]
    headers.append("n")
    table = [
        [
            r["step"],
            f"{r['median_s']:.2f}",
            "-" if math.isnan(r["mb_per_s"]) else f"{r['mb_per_s']:.0f}",
            f"{r['ratio_to_file_copy']:.2f}x",
            *([fmt_pct(r["share_of_ready"])] if share else []),
            "-" if math.isnan(r["spread"]) else f"{r['spread']:.0%}",
            str(r["repeats"]),
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        out = [
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(out) + " |"

    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for t in table:
        print(line(t))


def fmt_pct(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.0%}"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--size-mb", type=float, default=500.0, help="size of the database in MB (10^6 B) [500]")
    p.add_argument("--repeats", type=int, default=3, help="repeats of each measurement; medians shown [3]")
    p.add_argument(
        "--ready-timeout", type=float, default=900.0, help="longest wait for a new node to be ready, s [900]"
    )
    p.add_argument(
        "--breakdown",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the download, verify and upload in this process, to show where the time goes [on]",
    )
    p.add_argument("--dir", type=Path, default=None, help="where to make the temporary directory")
    p.add_argument("--json", type=Path, default=None, help="also write the results (every repeat) as JSON")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.size_mb <= 0:
        p.error("--repeats and --size-mb must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="in-process %(levelname)s %(name)s: %(message)s")
    # the in-process breakdown closes its NATS connection on purpose: that warning is noise here
    logging.getLogger("sqlite_ha.replication.jetstream.connection").setLevel(logging.ERROR)
    began = time.monotonic()
    run = Run()
    node1: NodeProcess | None = None
    aborted = ""
    with tempfile.TemporaryDirectory(prefix="sqlite-ha-bench-", dir=args.dir) as tmp_name:
        tmp = Path(tmp_name)
        machine = machine_info(tmp)
        machine["code"] = code_state()
        size_bytes = int(args.size_mb * MB)
        free = shutil.disk_usage(tmp).free
        print(
            f"machine: {machine['nproc']} CPUs ({machine['usable_cpus']} usable), {machine['cpu']}, "
            f"{machine['platform']}"
        )
        print(
            f"python {machine['python']}, apsw {machine['apsw']}, SQLite {machine['sqlite']}, nats-py "
            f"{machine['nats_py']}; files and JetStream store on {machine['filesystem']} "
            f"({free / 1e9:.1f} GB free); load average at start "
            f"{', '.join(f'{x:.2f}' for x in machine['loadavg_at_start'])}"
        )
        print(f"code: {machine['code']}")
        if free < 4 * size_bytes:
            print(f"warning: {free / 1e9:.1f} GB free, the run needs about {4 * size_bytes / 1e9:.1f} GB")
        # The node makes its snapshot file in the temporary directory: keep it on the filesystem measured.
        scratch = tmp / "scratch"
        scratch.mkdir()
        env = {"TMPDIR": str(scratch)}
        try:
            (tmp / "node1").mkdir()
            run.database = build_database(tmp / "node1" / DB, size_bytes)
            db = run.database
            print(
                f"database: {db['bytes'] / MB:.0f} MB ({db['rows_t']:,} rows of {VALUE_BYTES}-byte blobs in "
                f"t, {db['rows_u']:,} rows in u with an index on a TEXT column), built in "
                f"{db['build_seconds']:.1f} s"
            )
            node1 = NodeProcess(
                workdir=tmp / "node1", name="node1", nats_port=None, args=[DB, "--log-level", "warn"], env=env
            )
            t0 = time.perf_counter()
            node1.start(timeout=NODE1_TIMEOUT)
            run.database["node1_ready_seconds"] = time.perf_counter() - t0
            print(
                f"settings: {args.repeats} repeats (median shown), interleaved; node1 (embedded NATS, file "
                f"store, sync_interval always) ready on it in {run.database['node1_ready_seconds']:.1f} s; "
                "each new node is a fresh process in an empty directory with --replication-url "
                "--from-latest-snapshot; os.sync() before each timed step\n",
                flush=True,
            )
            measure(args, tmp, node1, env, run)
        except Exception as e:  # reported below, after every process is stopped
            aborted = f"{type(e).__name__}: {e}"
            traceback.print_exc()
        finally:
            if node1 is not None:
                try:
                    code = node1.stop()
                    if code != 0:
                        run.problems.append(f"node1 exited with {code} when stopped")
                except TimeoutError as e:
                    run.problems.append(str(e).splitlines()[0])
                if aborted or run.problems:
                    run.node_logs["node1"] = node1.logs()
        machine["loadavg_at_end"] = os.getloadavg()

    floor = median([s.seconds for s in run.samples if s.step == COPY])
    whole = median([s.seconds for s in run.samples if s.step == READY])
    main_rows = summarize(run, STEPS, floor, whole)
    part_rows = summarize(run, PARTS, floor, whole)
    if main_rows:
        size = run.database.get("bytes", 0)
        print(f"\nA new node from a snapshot of a {size / MB:.0f} MB database, against a file copy of it")
        print_table(main_rows, "step")
    if part_rows:
        print("\nWhere the new node's time goes (the same snapshot; ratios to the file copy + fsync)")
        print_table(part_rows, "part", share=True)
    ready = next((r for r in main_rows if r["step"] == READY), None)
    nosync = next((r for r in main_rows if r["step"] == COPY_NOSYNC), None)
    if ready is not None:
        ratio = ready["ratio_to_file_copy"]
        print(
            f"\ngoal: new node ready within {GOAL_RATIO:g}x of the file copy -> "
            f"{'MET' if ratio <= GOAL_RATIO else 'NOT MET'} ({ratio:.2f}x the copy + fsync"
            + (f"; {ready['median_s'] / nosync['median_s']:.2f}x the copy without fsync)" if nosync else ")")
        )
    print(
        f"load average (1 min) at start {machine['loadavg_at_start'][0]:.2f}, at end "
        f"{machine['loadavg_at_end'][0]:.2f}; the run took {time.monotonic() - began:.0f} s"
    )
    for note in sorted(run.notes):
        print(f"note: {note}")
    for name, text in run.node_logs.items():
        print(f"\n----- {name} log -----\n{text.rstrip()}")
    problems = ([f"THE BENCHMARK STOPPED EARLY: {aborted}"] if aborted else []) + run.problems
    if problems:
        bar = "!" * 100
        print(f"\n{bar}\n!!! {len(problems)} FAILURES: the numbers above are NOT valid measurements\n{bar}")
        for p in problems:
            print(p)
    if args.json:
        doc = {
            "machine": machine,
            "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "database": run.database,
            "summary": main_rows,
            "parts": part_rows,
            "samples": [asdict(s) for s in run.samples],
            "problems": problems,
            "node_logs": run.node_logs,
        }
        args.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
        print(f"\nwrote {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
