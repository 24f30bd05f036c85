"""Secrets never leak: a node given its secrets through the environment and files is made to fail in every
way a client can (wrong token, wrong PostgreSQL password, bad requests), then its log, ``/status`` and the
command lines of its processes are searched for the secrets. A secret given as a flag is warned about."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import psycopg
import pytest

from sqlite_ha.testing import NodeProcess, child_pids, free_port
from tests.conftest import NodeFactory

TOKEN = "tok-7f3a91c2e5d04b"
PG_PASS = "pgpw-b41d88e0aa62"
NATS_PASS = "natspw-0c9e7f12d3"
CLUSTER_SECRET = "cluster-5ad0c3b7e1f94c2a8d6e"
SECRETS = (TOKEN, PG_PASS, NATS_PASS, CLUSTER_SECRET)


def command_lines(node: NodeProcess) -> list[str]:
    """What ``ps`` shows of the node and its children (the embedded nats-server)."""
    assert node.pid is not None
    return [
        Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        for pid in (node.pid, *child_pids(node.pid))
    ]


def assert_nowhere(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret appears in {where}"


def test_secrets_from_env_and_files_never_leak(node_factory: NodeFactory, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    pg_port = free_port()
    node = node_factory(
        args=["app.db", "--pg-port", str(pg_port), "--log-level", "debug"],
        nats_port=None,
        env={
            "HA_TOKEN_FILE": str(token_file),
            "HA_PG_PASS": PG_PASS,
            "HA_NATS_USER": "ha",
            "HA_NATS_PASS": NATS_PASS,
            "HA_CLUSTER_SECRET": CLUSTER_SECRET,
        },
    )
    node.token = TOKEN  # for the requests that must pass
    node.query(["CREATE TABLE t(x)"])

    # wrong tokens, on the fast path and through aiohttp, and the secrets themselves as wrong tokens
    for secret in SECRETS[1:]:
        headers = {"Authorization": f"Bearer {secret}"}
        assert node.request("POST", "/query", ["SELECT 1"], headers=headers).status == 401
        assert node.request("GET", "/status", headers=headers).status == 401
    for path, raw in (("/query", b"{not json"), ("/query", b'["SELEC broken"]'), ("/load", b"not sqlite")):
        answer = node.request("POST", path, raw=raw)
        assert answer.status >= 400
        assert_nowhere(answer.body.decode(errors="replace"), f"the answer to a bad {path}")

    # wrong PostgreSQL passwords (one of them another secret), with psycopg and asyncpg
    dsn = f"host=127.0.0.1 port={pg_port} user=ha dbname=app sslmode=disable"
    for wrong in ("wrong", TOKEN):
        with pytest.raises(psycopg.OperationalError) as info:
            psycopg.connect(f"{dsn} password={wrong}")
        assert "password authentication failed" in str(info.value)
        assert_nowhere(str(info.value), "a PostgreSQL error")

    async def asyncpg_wrong() -> str:
        try:
            await asyncpg.connect(host="127.0.0.1", port=pg_port, user="ha", password=NATS_PASS, ssl=False)
        except asyncpg.InvalidPasswordError as e:
            return str(e)
        raise AssertionError("a wrong password logged in")

    assert_nowhere(asyncio.run(asyncpg_wrong()), "a PostgreSQL error")
    with (
        psycopg.connect(f"{dsn} password={PG_PASS}", autocommit=True) as conn,
        pytest.raises(psycopg.errors.UndefinedTable),
    ):
        conn.execute("SELECT * FROM missing")

    status = node.request("GET", "/status")
    assert status.status == 200
    assert_nowhere(status.body.decode(), "/status")
    for line in command_lines(node):
        assert_nowhere(line, "a command line")
    node.stop()
    logs = node.logs()
    assert "password authentication failed" in logs  # the errors were logged, without the secrets
    assert_nowhere(logs, "the node's log")
    assert "was given on the command line" not in logs


def test_secret_flags_are_warned_about_by_name(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db", "--token", TOKEN, "--pg-pass", PG_PASS], token="")
    logs = node.logs()
    for flag, env in (("--token", "HA_TOKEN"), ("--pg-pass", "HA_PG_PASS")):
        warnings = [line for line in logs.splitlines() if f"{flag} was given on the command line" in line]
        assert len(warnings) == 1, logs
        assert "WARN" in warnings[0]
        assert f"{env} or {env}_FILE" in warnings[0]
    assert TOKEN not in logs
    assert PG_PASS not in logs


def test_a_bad_secret_is_refused_without_echoing_it(node_factory: NodeFactory) -> None:
    short = "zq9-xw"  # too short for a cluster secret
    node = node_factory(args=["app.db"], env={"HA_CLUSTER_SECRET": short}, start=False)
    node.start(wait_ready=False)
    assert node.proc is not None
    assert node.proc.wait(30) == 2
    assert "cluster secret" in node.logs()
    assert short not in node.logs()
