"""The embedded DB-API driver (``sqlite_ha.connect``) against CPython's ``sqlite3``, measured in the same run.

    python bench/driver.py [--duration 3] [--repeats 3] [--rows 10000] [--json out.json]

Three setups serve one file database ``kv(id INTEGER PRIMARY KEY, v TEXT)`` preloaded with ``--rows`` rows:

- ``sqlite3``: CPython's module on the file, WAL, ``synchronous=FULL`` (what a node uses for a database that
  is not replicated), the baseline;
- ``driver, alone``: ``sqlite_ha.connect(path, natsPort=0)``: an embedded node with no log to publish to;
- ``driver, replicated``: ``sqlite_ha.connect(path, natsPort=<free port>)``: an embedded node with its own
  embedded nats-server (JetStream, R1), every commit acknowledged by the log.

Operations, one thread, each for ``--duration`` seconds: a point read by random id outside a transaction, and
a one-row insert committed on its own (``with conn: conn.execute(INSERT …)``). Each measurement is repeated,
interleaved across setups, and the median is reported with the ratio to ``sqlite3``. Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlite_ha
from machine import machine_info, print_table
from sqlite_ha.testing import free_port

Connect = Callable[[Path], Any]


def open_sqlite3(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level="", check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    return conn


def open_driver(nats_port: int) -> Connect:
    def connect(path: Path) -> Any:
        return sqlite_ha.connect(str(path), name="bench", natsPort=nats_port, natsStoreDir=str(path.parent))

    return connect


def prepare(conn: Any, rows: int) -> None:
    with conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kv(id INTEGER PRIMARY KEY, v TEXT)")
    with conn:
        conn.executemany("INSERT INTO kv(v) VALUES (?)", [(f"value {i}",) for i in range(rows)])


def measure(op: Callable[[], None], duration: float) -> float:
    """Operations per second of ``op`` for ``duration`` seconds (after a short warm-up)."""
    end = time.perf_counter() + min(0.3, duration / 5)
    while time.perf_counter() < end:
        op()
    n, start = 0, time.perf_counter()
    end = start + duration
    while (now := time.perf_counter()) < end:
        for _ in range(50):
            op()
        n += 50
    return n / (now - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per measurement [3]")
    p.add_argument("--repeats", type=int, default=3, help="repeats of every measurement [3]")
    p.add_argument("--rows", type=int, default=10_000, help="rows preloaded [10000]")
    p.add_argument("--json", type=Path, default=None, help="also write every repeat as JSON")
    args = p.parse_args()
    rng = random.Random(1)
    with tempfile.TemporaryDirectory(prefix="bench-driver-") as tmp:
        setups: dict[str, Any] = {}
        for name, connect in (
            ("sqlite3", open_sqlite3),
            ("driver, alone", open_driver(0)),
            ("driver, replicated", open_driver(free_port())),
        ):
            folder = Path(tmp) / name.replace(", ", "-")
            folder.mkdir()
            conn = connect(folder / "bench.db")
            prepare(conn, args.rows)
            setups[name] = conn

        def read(conn: Any) -> Callable[[], None]:
            # A replicated node chooses keys from its own slot (strided): read ids that exist.
            ids = [r[0] for r in conn.execute("SELECT id FROM kv ORDER BY id LIMIT ?", (args.rows,))]

            def op() -> None:
                row = conn.execute("SELECT v FROM kv WHERE id = ?", (rng.choice(ids),)).fetchone()
                assert row is not None

            return op

        def insert(conn: Any) -> Callable[[], None]:
            def op() -> None:
                with conn:
                    conn.execute("INSERT INTO kv(v) VALUES (?)", ("new",))

            return op

        results: dict[str, dict[str, list[float]]] = {}
        for _ in range(args.repeats):
            for op_name, make in (("point read", read), ("insert (commit)", insert)):
                for name, conn in setups.items():
                    rate = measure(make(conn), args.duration)
                    results.setdefault(op_name, {}).setdefault(name, []).append(rate)
        for conn in setups.values():
            conn.close()
        sqlite_ha.shutdown()
        info = machine_info(Path(tmp))
    print(
        f"machine: {info.get('cpu', '?')}; {args.repeats} repeats of {args.duration:g}s, medians",
        file=sys.stderr,
    )
    table = []
    for op_name, by_setup in results.items():
        base = statistics.median(by_setup["sqlite3"])
        for name, rates in by_setup.items():
            med = statistics.median(rates)
            table.append(
                [
                    op_name,
                    name,
                    f"{med:,.0f}/s",
                    f"{1e6 / med:,.1f} µs",
                    f"{med / base:.2f}x",
                    f"{min(rates):,.0f}-{max(rates):,.0f}",
                ]
            )
    print_table(["operation", "setup", "median", "per op", "vs sqlite3", "range"], table, left=2)
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": info, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
