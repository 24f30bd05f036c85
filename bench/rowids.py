"""What strided keys cost per statement: ``Database.execute`` in-process, stride 1 (SQLite's own keys, nothing
rewritten) against stride 16 (the leaderless default: the insert is rewritten and ``_ha_next_rowid`` runs once
per row). No replication, no HTTP: only what the rewrite and the allocator add.

    python bench/rowids.py [--statements 20000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import tempfile
import time
from pathlib import Path

from sqlite_ha.changes.rowids import Rowids, RowidSlot
from sqlite_ha.db.database import Database, DatabaseOptions
from sqlite_ha.db.dsn import parse_dsn
from sqlite_ha.db.statement import Statement

_KEYS = itertools.count(10_000_000)
CASES = {
    "insert, one row": ("INSERT INTO t(x) VALUES (?)", lambda i: (f"v{i}",)),
    "insert, key given": ("INSERT INTO t(id, x) VALUES (?, ?)", lambda i: (next(_KEYS), "v")),
    "insert, 10 rows": ("INSERT INTO t(x) VALUES " + ", ".join(["(?)"] * 10), lambda i: tuple(range(10))),
    "update (not an insert)": ("UPDATE t SET x = ? WHERE id = 1", lambda i: (f"u{i}",)),
}


def database(root: Path, stride: int) -> Database:
    rowids = Rowids(stride)
    rowids.assign(RowidSlot(stride, min(3, stride)))
    path = root / f"s{stride}.db"
    db = Database(parse_dsn(str(path), memory=True), DatabaseOptions(rowids=rowids))
    asyncio.run(db.execute([Statement(sql="CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, x)")]))
    return db


async def measure(db: Database, sql: str, params: object, n: int) -> float:
    started = time.process_time()  # CPU time: the machine's other work counts less than in wall time
    for i in range(n):
        await db.execute([Statement(sql=sql, bindings=params(i))])  # type: ignore[operator]
    return (time.process_time() - started) / n * 1e6


async def measure_bulk(db: Database, n: int) -> float:
    """One request of ``n`` one-row inserts (as COPY sends them): µs per row."""
    statements = [Statement(sql="INSERT INTO t(x) VALUES (?)", bindings=(i,)) for i in range(n)]
    started = time.process_time()
    await db.execute(statements)
    return (time.process_time() - started) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--statements", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dbs = {stride: database(Path(tmp), stride) for stride in (1, 16)}
        print("CPU µs per request, the best of the repeats")
        print(f"{'statement':<24} {'stride 1 µs':>12} {'stride 16 µs':>13} {'added µs':>9}")
        for name, (sql, params) in CASES.items():
            times: dict[int, list[float]] = {1: [], 16: []}
            for _ in range(args.repeats):
                for stride, db in dbs.items():  # alternated, so that drift of the machine hits both
                    times[stride].append(asyncio.run(measure(db, sql, params, args.statements)))
            plain, strided = min(times[1]), min(times[16])
            print(f"{name:<24} {plain:>12.2f} {strided:>13.2f} {strided - plain:>9.2f}")
        bulk: dict[int, list[float]] = {1: [], 16: []}
        for _ in range(args.repeats):
            for stride, db in dbs.items():
                bulk[stride].append(asyncio.run(measure_bulk(db, args.statements)))
        plain, strided = min(bulk[1]), min(bulk[16])
        print(f"{'bulk, per row':<24} {plain:>12.2f} {strided:>13.2f} {strided - plain:>9.2f}")
        for db in dbs.values():
            db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
