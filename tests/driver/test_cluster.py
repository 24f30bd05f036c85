"""Two driver-embedded processes (``sqlite_ha.connect``) and one ``sqlite-ha serve`` node on one stream,
with a cluster secret: each writes, all three converge to the same table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sqlite_ha.testing import TEST_CLUSTER_SECRET, NodeProcess, wait_for
from tests.conftest import NodeFactory

ROWS = 20
SECRET = TEST_CLUSTER_SECRET

# An application embedding the driver: argv = DSN, its name, how many rows the cluster will hold. It waits
# for the table the cluster has, writes its rows, waits until it has everyone's and prints the table.
APP = r"""
import json, sys, time
import sqlite_ha

dsn, me, total, rows = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
conn = sqlite_ha.connect(dsn, name=me)

def until(sql, want):
    deadline = time.monotonic() + 30
    while True:
        got = [list(r) for r in conn.execute(sql).fetchall()]
        if got == want:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{me}: waited for {sql} == {want}, have {got}")
        time.sleep(0.05)

until("SELECT count(*) FROM sqlite_schema WHERE name = 't'", [[1]])
for i in range(rows):
    conn.execute("INSERT INTO t (k, v) VALUES (?, ?)", (f"{me}-{i}", i))
    conn.commit()
until("SELECT count(*) FROM t", [[total]])
print(json.dumps([list(r) for r in conn.execute("SELECT k, v FROM t ORDER BY k").fetchall()]), flush=True)
conn.close()
sqlite_ha.shutdown()
"""


def test_two_driver_processes_and_a_serve_node_converge(node_factory: NodeFactory, tmp_path: Path) -> None:
    server: NodeProcess = node_factory(name="server", args=["app.db"], nats_port=None)
    server.query({"sql": "CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)"}, db="app.db")
    url = f"nats://127.0.0.1:{server.nats_port}"
    secret = tmp_path / "cluster-secret"
    secret.write_text(TEST_CLUSTER_SECRET + "\n")
    secret.chmod(0o600)
    total = 3 * ROWS
    apps = []
    for name, dsn, env in (
        # one takes the secret from HA_CLUSTER_SECRET, the other from a file named in its DSN; the other's
        # file has a name of its own, joined to the server's app.db by replicationID
        (
            "app1",
            f"file:{tmp_path / 'app1' / 'app.db'}?replicationURL={url}",
            {"HA_CLUSTER_SECRET": TEST_CLUSTER_SECRET},
        ),
        (
            "app2",
            f"file:{tmp_path / 'app2' / 'mine.sqlite'}?replicationURL={url}&clusterSecretFile={secret}"
            "&replicationID=app.db",
            {},
        ),
    ):
        (tmp_path / name).mkdir()
        apps.append(
            subprocess.Popen(
                [sys.executable, "-c", APP, dsn, name, str(total), str(ROWS)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env={**_env(), **env},
                cwd=tmp_path / name,
            )
        )
    try:
        for i in range(ROWS):
            server.query(
                {"sql": "INSERT INTO t (k, v) VALUES (?, ?)", "params": [f"server-{i}", i]}, db="app.db"
            )
        outputs = []
        for app in apps:
            out, err = app.communicate(timeout=60)
            assert app.returncode == 0, err.decode()
            outputs.append(json.loads(out))
        wait_for(lambda: _rows(server) == outputs[0], 15, "the serve node to have every row")
    finally:
        for app in apps:
            if app.poll() is None:
                app.kill()
                app.wait()
    assert len(outputs[0]) == total
    assert outputs[0] == outputs[1] == _rows(server)
    assert {k.split("-")[0] for k, _ in outputs[0]} == {"server", "app1", "app2"}


def _rows(server: NodeProcess) -> list[list[object]]:
    answer = server.query({"sql": "SELECT k, v FROM t ORDER BY k"}, db="app.db")
    return [list(r) for r in answer["rows"]]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HA_")}
