"""Cluster write throughput with ``wrk`` as the load generator (part 1 of ``replication.py``, cheaper client).

The Python load generator of ``replication.py`` spends about a quarter of this 2-core machine on itself, which
the nodes then lack. ``wrk`` (Debian package ``wrk``; not needed by anything else) does the same job for a
fraction of the CPU. Each node gets its own ``wrk`` with clients/3 connections, inserting rows with ids no
other request uses; afterwards every node must hold exactly the acknowledged rows.

    python bench/replication_wrk.py [--duration 5] [--repeats 3] [--clients 16]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import machine_info, proc_cpu_seconds
from replication import CREATE, settle, start_cluster, stop_cluster

LUA = """
local base = {base}
local n = 0
local failures = 0
request = function()
  n = n + 1
  local id = base + n
  return wrk.format("POST", "/query", {{["Content-Type"] = "application/json"}},
    '{{"sql": "INSERT INTO kv(id, v) VALUES (?, ?)", "params": [' .. id .. ', "v"]}}')
end
response = function(status, headers, body)
  if status ~= 200 or not string.find(body, '"seq"', 1, true) then
    failures = failures + 1
    if failures <= 3 then io.stderr:write("bad answer " .. status .. ": " .. body .. "\\n") end
  end
end
"""
_REQUESTS = re.compile(r"(\d+) requests in")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def run_wrk(urls: list[str], clients: int, duration: float, base: int, workdir: Path) -> dict[str, float]:
    """One wrk per node, all at once; returns tx/s, answered writes, failures, latency p50/p99 (ms)."""
    procs = []
    for i, url in enumerate(urls):
        script = workdir / f"load{i}.lua"
        script.write_text(LUA.format(base=base + i * 10**9))
        conns = max(1, clients // len(urls) + (1 if i < clients % len(urls) else 0))
        procs.append(
            subprocess.Popen(
                ["wrk", "-t1", f"-c{conns}", f"-d{int(duration)}s", "--latency", "-s", str(script), url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=duration + 60) for p in procs]
    total = failures = 0
    p50s, p99s = [], []
    for out, err in outs:
        if err.strip():
            print(err.strip(), file=sys.stderr)
        found = _REQUESTS.search(out)
        if found is None:
            raise RuntimeError(f"wrk said: {out.strip()} {err.strip()}")
        total += int(found.group(1))
        non2xx = _NON_2XX.search(out)
        failures += int(non2xx.group(1)) if non2xx else 0
        lat = {q: float(v) * _UNITS[u] for q, v, u in _LATENCY.findall(out)}
        p50s.append(lat.get("50", float("nan")))
        p99s.append(lat.get("99", float("nan")))
    return {
        "tps": total / duration,
        "acked": total - failures,
        "failures": failures,
        "p50_ms": statistics.median(p50s),
        "p99_ms": max(p99s),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[3, 15])
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print(
            "wrk is not installed (apt-get install wrk); bench/replication.py needs nothing", file=sys.stderr
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        workdir = Path(tmp)
        nodes = start_cluster(workdir, "full")
        try:
            for node in nodes:
                node.start()
            nodes[0].query({"sql": CREATE})
            print(f"machine: {machine_info(workdir)}")
            urls = [f"http://127.0.0.1:{n.port}/query" for n in nodes]
            acked = 0
            rows: dict[int, list[dict[str, float]]] = {c: [] for c in args.clients}
            for repeat in range(args.repeats):
                for clients in args.clients:
                    pids = {n.name: n.proc.pid for n in nodes if n.proc is not None}
                    before = {name: proc_cpu_seconds(pid) for name, pid in pids.items()}
                    started = time.monotonic()
                    result = run_wrk(urls, clients, args.duration, (repeat * 10 + clients) * 10**10, workdir)
                    wall = time.monotonic() - started
                    cpu = 0.0
                    for name, pid in pids.items():
                        cpu += proc_cpu_seconds(pid) - before[name]
                    result["node_cpu_ms_per_tx"] = cpu / max(result["tps"] * wall, 1) * 1000
                    acked += int(result["acked"])
                    rows[clients].append(result)
                    print(
                        f"repeat {repeat + 1} clients {clients}: {result['tps']:,.0f} tx/s, "
                        f"p50 {result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
                        f"failures {int(result['failures'])}"
                    )
            last = nodes[0].query({"sql": "INSERT INTO kv(id, v) VALUES (?, 'last')", "params": [-1]})
            done = settle(nodes, int(last["seq"]))
            counts = [nodes[i].query({"sql": "SELECT count(*) FROM kv"})["rows"][0][0] for i in range(3)]
        finally:
            problems = stop_cluster(nodes)
    print("\n| clients | write tx/s (median) | p50 ms | p99 ms | node CPU ms/tx | failures |")
    print("|---|---|---|---|---|---|")
    for clients, results in rows.items():
        med = statistics.median(r["tps"] for r in results)
        print(
            f"| {clients} | {med:,.0f} | {statistics.median(r['p50_ms'] for r in results):.2f} | "
            f"{statistics.median(r['p99_ms'] for r in results):.2f} | "
            f"{statistics.median(r['node_cpu_ms_per_tx'] for r in results):.2f} | "
            f"{sum(int(r['failures']) for r in results)} |"
        )
    # wrk stops at its deadline with requests in flight: those commit without being counted, so a node may
    # hold up to one row per connection and run more than was acknowledged, never fewer.
    slack = sum(args.clients) * args.repeats
    same = len(set(counts)) == 1
    ok = same and 0 <= counts[0] - (acked + 1) <= slack and not done.problems and not problems
    print(
        f"\nconvergence: {acked + 1} writes acknowledged (+ up to {slack} in flight at wrk's deadlines), "
        f"nodes hold {counts}: {'yes' if ok else 'NO'}"
    )
    for problem in [*done.problems, *problems]:
        print(f"problem: {problem}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
