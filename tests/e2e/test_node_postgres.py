"""node-postgres (the ``pg`` package, as .ci/run installs it into .ci/node-pg) against a node and against
PostgreSQL 15: the same script prints the same JSON. int4 comes back as a JS number and int8 as a string, as
with PostgreSQL; dates round-trip as JS Dates (sent as ISO text with an offset); json, bytea (Buffer), named
prepared statements and transactions (an error inside aborts the block, ROLLBACK undoes it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest

from sqlite_ha.testing import free_port
from sqlite_ha.testing_pg import PostgresServer
from tests.conftest import NodeFactory

ROOT = Path(__file__).resolve().parents[2]
MODULES = ROOT / ".ci" / "node-pg" / "node_modules"
SCRIPT = Path(__file__).with_name("node_postgres.js")
PASSWORD = "node pg"


def node_postgres() -> str:
    """The node binary, with pg installed from the lock file (as .ci/run does) if it is not there yet."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not (MODULES / "pg").is_dir() and npm is not None:
        subprocess.run(
            [npm, "ci", "--prefix", str(MODULES.parent), "--no-audit", "--no-fund", "--silent"],
            check=False,
            timeout=300,
        )
    if node is None or not (MODULES / "pg").is_dir():
        pytest.fail("node and node-postgres are needed: apt install nodejs npm; .ci/run installs pg (npm ci)")
    return node


def run_script(url: str) -> dict[str, Any]:
    node = node_postgres()
    env = {**os.environ, "NODE_PATH": str(MODULES), "TZ": "UTC"}
    done = subprocess.run([node, str(SCRIPT), url], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_node_postgres_as_with_postgresql(node_factory: NodeFactory, postgres: PostgresServer) -> None:
    port = free_port()
    node_factory(args=["app.db", "--pg-port", str(port), "--pg-pass", PASSWORD], nats_port=None)
    name = f"np_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
        admin.execute(f"ALTER DATABASE {name} SET timezone TO 'UTC'")
    try:
        want = run_script(postgres.url(name))
    finally:
        with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    got = run_script(f"postgresql://ha:{quote(PASSWORD)}@127.0.0.1:{port}/app")
    # the things an application relies on, spelled out (and then everything at once)
    first = got["rows"][0]
    assert first["i4"] == {"number": 42}
    assert first["id"] == {"string": "1"}  # a bigint key
    assert first["i8"] == {"string": "9007199254740993"}
    assert first["tz"] == {"Date": "2024-01-02T03:04:05.678Z"}
    assert first["b"] == {"Buffer": "000102ff"}
    assert first["n"] == {"string": "70.40"}
    assert [r["id"] for r in got["rows"]] == [{"string": str(i)} for i in (1, 2, 3, 4)]
    assert got["serial_read"] == got["serial"] == ["number", "number"]
    assert got["serial_named"] == ["number"]
    assert got["bigserial_read"] == got["bigserial"] == ["string"]
    assert got["duplicate"] == "23505"
    assert got["aborted"] == "25P02"
    for key in want:
        assert got[key] == want[key], key
