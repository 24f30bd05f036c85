"""A script that never closes anything still stops cleanly: at interpreter exit the runtime closes every
connector (the node stops in order, its embedded nats-server is stopped, not orphaned or killed)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sqlite_ha.testing import free_port

SCRIPT = """
import logging, os, sys
import sqlite_ha
from sqlite_ha.testing import child_pids

logging.basicConfig(level=logging.INFO)
conn = sqlite_ha.connect(sys.argv[1], name="forgetful", natsPort=sys.argv[2], natsStoreDir=sys.argv[3])
conn.execute("CREATE TABLE t (x)")
conn.execute("INSERT INTO t VALUES (42)")
conn.commit()
print("nats", *child_pids(os.getpid(), "nats-server"), flush=True)
# no close, no shutdown
"""


def test_a_script_that_forgets_to_close_stops_its_node_cleanly(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    started = time.monotonic()
    args = [str(tmp_path / "app.db"), str(free_port()), str(tmp_path / "js")]
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
    line = next(line for line in done.stdout.splitlines() if line.startswith("nats"))
    pids = line.split()[1:]
    assert len(pids) == 1, "the node ran no embedded nats-server"
    # stopped by the node at exit (a clean exit code), not left behind or killed with its parent
    assert f"nats-server (pid {pids[0]}) exited with code 0" in done.stderr
    assert not Path(f"/proc/{pids[0]}").exists()
    assert sqlite3.connect(tmp_path / "app.db").execute("SELECT x FROM t").fetchall() == [(42,)]
