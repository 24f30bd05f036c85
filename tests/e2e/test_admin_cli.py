"""The operator commands (``sqlite-ha snapshot …``, ``sqlite-ha load``) against real nodes."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from tests.conftest import NodeFactory
from tests.e2e.test_cli import run_cli
from tests.e2e.test_load import make_source, table_rows


def test_snapshot_commands_and_load_with_progress(node_factory: NodeFactory, tmp_path: Path) -> None:
    n1 = node_factory(args=["app.db", "--create-db-dir", str(tmp_path / "dbs")], nats_port=None, token="t0k")
    auth = ["--url", f"http://127.0.0.1:{n1.port}", "--token", "t0k"]

    # load a file, with a progress bar that shows sizes and a rate
    source = tmp_path / "source.db"
    make_source(source)
    loaded = run_cli("load", str(source), *auth, "--db", "app.db", "--progress")
    assert loaded.returncode == 0, loaded.stderr
    assert "3,069 rows" in loaded.stdout
    assert "uploaded source.db" in loaded.stderr
    assert "B/s" in loaded.stderr  # the rate
    assert len(table_rows(n1, "child")) == 3000

    # take, list, download: the file is the snapshot, checked against its checksum
    taken = run_cli("snapshot", "take", *auth)
    assert taken.returncode == 0, taken.stderr
    assert taken.stdout.startswith("took snapshot of app.db at seq ")
    again = run_cli("snapshot", "take", *auth)
    assert again.stdout.startswith("nothing changed since snapshot of app.db")
    listed = run_cli("snapshot", "list", *auth)
    assert listed.returncode == 0, listed.stderr
    assert "app.db" in listed.stdout
    assert "node1" in listed.stdout
    out = tmp_path / "dl" / "app.snapshot.db"
    got = run_cli("snapshot", "download", *auth, "-o", str(out), "--no-progress")
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() in got.stdout
    conn = sqlite3.connect(out)
    assert conn.execute("SELECT count(*) FROM child").fetchone() == (3000,)
    conn.close()

    # restore it into a new, empty database of the cluster
    created = n1.request("POST", "/databases", {"dsn": "copy.db"})
    assert created.status in (200, 201), created.body
    restored = run_cli("snapshot", "restore", str(out), *auth, "--db", "copy.db")
    assert restored.returncode == 0, restored.stderr
    for table in ("parent", "child", "kv", "log", "gen"):
        copy = n1.request("POST", "/databases/copy.db", {"sql": f"SELECT count(*) FROM {table}"}).json()
        orig = n1.query({"sql": f"SELECT count(*) FROM {table}"})
        assert copy["rows"] == orig["rows"], table

    # errors are one line and exit 1: refused by the node, wrong token, nobody listening
    refused = run_cli("load", str(source), *auth)
    assert refused.returncode == 1
    assert "already has tables" in refused.stderr
    assert "Traceback" not in refused.stderr
    bad_token = run_cli("snapshot", "list", "--url", f"http://127.0.0.1:{n1.port}", "--token", "nope")
    assert bad_token.returncode == 1
    assert "HTTP 401" in bad_token.stderr
    nobody = run_cli("snapshot", "list", "--url", "http://127.0.0.1:1")
    assert nobody.returncode == 1
    assert "cannot reach the node" in nobody.stderr
    missing = run_cli("load", str(tmp_path / "nope.db"), *auth)
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr
