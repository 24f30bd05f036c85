"""What ``--auth-file`` costs on the read path: PostgreSQL point reads and HTTP fast-path point reads.

    python bench/users.py [--duration 3] [--repeats 3] [--rows 10000]

Three node processes are measured in turn (repeats interleaved): without an auth file, with one whose user has
every permission on the database (statements run unrestricted: no grant to check), and with one whose user
may only read (every statement prepared under a grant, checked by SQLite's authorizer). Each serves
``bench.db`` without NATS with a preloaded ``kv`` table. The load is one connection, one request at a time:
asyncpg ``fetchval`` of a prepared ``SELECT v FROM kv WHERE id = $1``, and ``POST /query`` with a JSON point
read over one keep-alive connection (``http.client``, Basic credentials with the auth file). Reported: the
median over the repeats of requests per second and of the node's CPU microseconds per request (its
``/proc`` times over the window), which shows the server's share better than the rate does.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import asyncpg

from sqlite_ha.testing import NodeProcess, free_port

PASSWORD = "bench pw"
CONFIGS = ("none", "all-perms", "read-only")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(config: str, root: Path, rows: int) -> tuple[NodeProcess, int, str]:
    workdir = root / config
    port = free_port()
    args = ["bench.db", "--pg-port", str(port), "--pg-pass", PASSWORD, "--log-level", "warn"]
    user = "ha"
    if config != "none":
        from sqlite_ha.security.passwords import hash_password  # not in releases before --auth-file

        user = "bench"
        perms = "[all]" if config == "all-perms" else "[read]"
        workdir.mkdir(parents=True)
        entry = f'- username: bench\n  password_hash: "{hash_password(PASSWORD)}"\n'
        (workdir / "users.yaml").write_text(entry + f"  perms: {{bench.db: {perms}}}\n")
        args += ["--auth-file", "users.yaml", "--token", "setup"]
    node = NodeProcess(workdir=workdir, args=args, token="setup" if config != "none" else "").start()
    node.query([{"sql": "CREATE TABLE kv(id INTEGER PRIMARY KEY, v TEXT)"}])
    fill = "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ?) "
    node.query([{"sql": fill + "INSERT INTO kv SELECT i, 'v' || i FROM s", "params": [rows]}])
    return node, port, user


async def pg_reads(port: int, user: str, seconds: float, rows: int) -> int:
    conn = await asyncpg.connect(host="127.0.0.1", port=port, user=user, password=PASSWORD, database="bench")
    try:
        stmt = await conn.prepare("SELECT v FROM kv WHERE id = $1")
        rnd = random.Random(1)
        n = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for _ in range(100):
                i = rnd.randint(1, rows)
                if await stmt.fetchval(i) != f"v{i}":
                    raise AssertionError("wrong row")
            n += 100
        return n
    finally:
        await conn.close()


def http_reads(node: NodeProcess, user: str, seconds: float, rows: int) -> int:
    headers = {"Content-Type": "application/json"}
    if user != "ha":
        headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{PASSWORD}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", node.port)
    rnd = random.Random(2)
    n = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            for _ in range(100):
                i = rnd.randint(1, rows)
                body = json.dumps({"sql": "SELECT v FROM kv WHERE id = ?", "params": [i]})
                conn.request("POST", "/query", body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200 or json.loads(data)["rows"] != [[f"v{i}"]]:
                    raise AssertionError(f"{resp.status}: {data[:200]!r}")
            n += 100
        return n
    finally:
        conn.close()


def measure(
    kind: str, node: NodeProcess, port: int, user: str, seconds: float, rows: int
) -> tuple[float, float]:
    assert node.pid is not None
    if kind == "pg":
        asyncio.run(pg_reads(port, user, 0.5, rows))  # warm-up
    else:
        http_reads(node, user, 0.5, rows)
    cpu0, t0 = cpu_seconds(node.pid), time.monotonic()
    n = (
        asyncio.run(pg_reads(port, user, seconds, rows))
        if kind == "pg"
        else http_reads(node, user, seconds, rows)
    )
    cpu1, t1 = cpu_seconds(node.pid), time.monotonic()
    return n / (t1 - t0), (cpu1 - cpu0) / n * 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--configs", default=",".join(CONFIGS), help="which of none, all-perms, read-only")
    args = p.parse_args()
    configs = args.configs.split(",")
    root = Path(tempfile.mkdtemp(prefix="sqlite-ha-bench-users-"))
    nodes = {c: start(c, root, args.rows) for c in configs}
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for _ in range(args.repeats):
            for kind in ("pg", "http"):
                for c in configs:
                    node, port, user = nodes[c]
                    results.setdefault((kind, c), []).append(
                        measure(kind, node, port, user, args.duration, args.rows)
                    )
    finally:
        for node, _, _ in nodes.values():
            node.stop()
    print(f"{'point reads, 1 connection':<34} {'req/s':>8} {'node CPU µs/req':>16}")
    for (kind, c), runs in results.items():
        rate = statistics.median(r for r, _ in runs)
        cpu = statistics.median(u for _, u in runs)
        print(f"{kind + ' ' + c:<34} {rate:>8.0f} {cpu:>16.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
