"""One large write transaction on a three-node cluster: how long until every node has it, and at what cost.

    python bench/large_transaction.py [--mb 200] [--row-bytes 1024] [--dir DIR]

A three-node cluster of real ``sqlite-ha serve`` processes on loopback (node1 runs the embedded NATS,
whose max payload is 8 MB; node2 and node3 join it with ``--replication-url``), file databases. One
``INSERT … SELECT`` over HTTP on node1 writes about ``--mb`` MB of text rows in one transaction; its change
set travels in chunks. Printed: the time until the write was answered (commit, capture and publishing every
chunk), until each node had applied it, the chunks in the stream, each node's peak RSS, and a per-table
checksum of every node's file (they must be equal; the exit status is 1 otherwise). Other arguments go to
every node (e.g. ``--query-timeout 5m``). Every process started here is stopped in a ``finally``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import apsw

from sqlite_ha.testing import NodeProcess, wait_for


def checksum(path: Path) -> tuple[int, str]:
    """Rows and SHA-256 of table t, read from the node's file (read-only; the node keeps running)."""
    conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        digest = hashlib.sha256()
        n = 0
        for row in conn.execute("SELECT id, v FROM t ORDER BY id"):
            digest.update(repr(row).encode())
            n += 1
        return n, digest.hexdigest()
    finally:
        conn.close()


def peak_rss_mb(node: NodeProcess) -> float:
    assert node.proc is not None
    for line in Path(f"/proc/{node.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def applied(node: NodeProcess) -> int:
    status = node.request("GET", "/status", timeout=60).json()
    return int(status["replication"]["databases"]["app.db"]["applied_seq"])


def run(mb: int, row_bytes: int, workdir: Path, extra: list[str]) -> int:
    nodes: list[NodeProcess] = []
    try:
        first = NodeProcess(workdir=workdir / "node1", name="node1", nats_port=None, args=["app.db", *extra])
        nodes.append(first.start(timeout=60))
        url = f"nats://127.0.0.1:{first.nats_port}"
        for i in (2, 3):
            node = NodeProcess(
                workdir=workdir / f"node{i}",
                name=f"node{i}",
                args=["app.db", "--replication-url", url, *extra],
            )
            nodes.append(node.start(timeout=60))
        first.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"})
        rows = mb * 1024 * 1024 // row_bytes
        sql = (
            f"INSERT INTO t(v) SELECT hex(randomblob({row_bytes // 2})) FROM (WITH RECURSIVE c(x) AS "
            f"(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {rows}) SELECT x FROM c)"
        )
        started = time.monotonic()
        resp = first.request("POST", "/query", {"sql": sql}, timeout=600)
        answered = time.monotonic() - started
        if resp.status != 200:
            print(f"the write failed: {resp.status} {resp.body[:500]!r}", file=sys.stderr)
            return 1
        seq = int(resp.json()["seq"])
        done: dict[str, float] = {}

        def all_applied() -> bool:
            for node in nodes:
                if node.name not in done and applied(node) >= seq:
                    done[node.name] = time.monotonic() - started
            return len(done) == len(nodes)

        wait_for(all_applied, 1200, "every node to apply the write", interval=0.2)
        status = first.request("GET", "/status").json()["replication"]["databases"]["app.db"]
        sums = {node.name: checksum(node.workdir / "app.db") for node in nodes}
        table: list[tuple[str, Any]] = [
            ("rows written", rows),
            ("change set chunks in the stream", seq - 1),
            ("write answered (s)", round(answered, 1)),
            *((f"applied on {name} (s)", round(t, 1)) for name, t in sorted(done.items())),
            *((f"peak RSS {n.name} (MB)", round(peak_rss_mb(n))) for n in nodes),
            ("published in chunks (node1)", status["published_chunked"]),
        ]
        width = max(len(k) for k, _ in table)
        print(f"one {mb} MB transaction on 3 nodes (embedded NATS, max payload 8 MB)")
        for key, value in table:
            print(f"  {key:<{width}}  {value}")
        for name, (n, digest) in sums.items():
            print(f"  {name}: {n} rows, sha256 {digest[:16]}…")
        if len(set(sums.values())) != 1 or next(iter(sums.values()))[0] != rows:
            print("THE NODES DIFFER", file=sys.stderr)
            return 1
        return 0
    finally:
        for node in nodes:
            node.stop(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mb", type=int, default=200, help="size of the transaction's rows, in MB")
    parser.add_argument("--row-bytes", type=int, default=1024, help="bytes of text per row")
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    args, extra = parser.parse_known_args()
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
        return run(args.mb, args.row_bytes, args.dir, extra)
    with tempfile.TemporaryDirectory(prefix="large-tx-") as tmp:
        return run(args.mb, args.row_bytes, Path(tmp), extra)


if __name__ == "__main__":
    sys.exit(main())
