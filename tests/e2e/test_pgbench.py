"""pgbench 15, unchanged, against a node: ``-i`` (DROP TABLE of several, CREATE TABLE … WITH (fillfactor),
COPY, VACUUM ANALYZE, ALTER TABLE … ADD PRIMARY KEY as a table rebuild) and then its built-in TPC-B script in
the three query modes, after which the database is consistent as pgbench defines it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import psycopg
import pytest

from sqlite_ha.testing import NodeProcess
from tests.e2e.test_pgwire import PASSWORD, dsn, pg  # noqa: F401  (the fixture)

pytestmark = pytest.mark.skipif(
    shutil.which("pgbench") is None, reason="pgbench (postgresql-client) is needed"
)


def pgbench(node: NodeProcess, *args: str) -> str:
    target = ("-h", "127.0.0.1", "-p", str(node.pg_port), "-U", "ha", "app")  # type: ignore[attr-defined]
    run = subprocess.run(
        ["pgbench", *args, *target],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PGPASSWORD": PASSWORD},
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "error" not in run.stderr, run.stderr  # pgbench goes on after some errors (its vacuum's)
    return run.stdout


def test_pgbench_initializes_and_runs_tpcb(pg: NodeProcess) -> None:  # noqa: F811
    pgbench(pg, "-i", "-s", "1", "-q")
    with psycopg.connect(dsn(pg)) as conn:
        assert conn.execute("SELECT count(*) FROM pgbench_accounts").fetchone() == (100_000,)
        assert conn.execute("SELECT count(*) FROM pgbench_tellers").fetchone() == (10,)
        assert conn.execute("SELECT count(*) FROM pgbench_branches").fetchone() == (1,)
        keys = conn.execute("SELECT name, sql FROM sqlite_schema WHERE name LIKE 'pgbench%'").fetchall()
        assert all("PRIMARY KEY" in str(sql).upper() for name, sql in keys if name != "pgbench_history")
    for mode in ("simple", "prepared", "extended"):
        out = pgbench(pg, "-c", "2", "-T", "2", "-M", mode)
        found = re.search(r"number of transactions actually processed: (\d+)", out)
        assert found is not None, out
        done = int(found.group(1))
        assert done > 0
        assert "number of failed transactions: 0 " in out, out
        with psycopg.connect(dsn(pg)) as conn:
            sums = conn.execute(
                "SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(tbalance) FROM "
                "pgbench_tellers), (SELECT sum(bbalance) FROM pgbench_branches), "
                "(SELECT count(*) FROM pgbench_history)"
            ).fetchone()
        assert sums is not None
        accounts, tellers, branches, history = sums
        assert accounts == tellers == branches, (mode, sums)
        assert history == done, (mode, sums)  # each run starts with pgbench_history truncated
