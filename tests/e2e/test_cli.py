"""The ``sqlite-ha`` command: configuration errors, the embedded NATS server, clean shutdown."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from sqlite_ha.testing import NodeProcess, free_port, wait_for
from tests.conftest import NodeFactory


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "sqlite_ha", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["serve", "--bogus"], {}, "--bogus"),
        (["serve", "--replication-timeout", "5x"], {}, "--replication-timeout"),
        (["serve", "--port", "70000"], {}, "--port"),
        (["serve", "--memory=maybe"], {}, "--memory"),
        (["serve", "--event-loop", "trio"], {}, "--event-loop"),
        (["serve"], {"HA_REPLICATION_MAX_AGE": "forever"}, "HA_REPLICATION_MAX_AGE"),
        (["serve", "-c", "/nonexistent/ha.conf"], {}, "--config"),
        (["serve", "--nats-port", "0", "file:x.db?_bogus=1"], {}, "_bogus"),
        (["serve", "--nats-port", "0", "/proc/nope/app.db"], {}, "app.db"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], env: dict[str, str], needle: str
) -> None:
    result = run_cli(*args, env=env, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sqlite-ha: error:")
    assert needle in lines[0]
    assert "Traceback" not in result.stderr


def test_unreadable_database_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "not-a-db.db").write_bytes(b"this is not sqlite" * 100)
    result = run_cli("serve", "--nats-port", "0", "--port", str(free_port()), "not-a-db.db", cwd=tmp_path)
    assert result.returncode == 2
    assert "not-a-db.db" in result.stderr
    assert "Traceback" not in result.stderr


def test_http_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = run_cli("serve", "--nats-port", "0", "--port", str(port), "app.db", cwd=tmp_path)
    assert result.returncode == 2
    assert f"--port: cannot listen on 127.0.0.1:{port}: address already in use" in result.stderr


def test_nats_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result = run_cli(
            "serve",
            "--nats-port",
            str(port),
            "--nats-store-dir",
            str(tmp_path / "js"),
            "--port",
            str(free_port()),
            "app.db",
            cwd=tmp_path,
        )
    assert result.returncode == 2, result.stderr
    assert "--nats-port" in result.stderr
    assert "in use" in result.stderr


def test_help_lists_every_setting() -> None:
    from sqlite_ha.config import SETTINGS

    result = run_cli("serve", "--help")
    assert result.returncode == 0
    for s in SETTINGS:
        assert s.flag in result.stdout, s.flag


def nats_children(node: NodeProcess) -> list[psutil.Process]:
    assert node.proc is not None
    return [p for p in psutil.Process(node.proc.pid).children(recursive=True) if "nats-server" in p.name()]


@pytest.mark.parametrize(("sig", "loop"), [(signal.SIGTERM, "uvloop"), (signal.SIGINT, "asyncio")])
def test_embedded_nats_and_clean_shutdown(node_factory: NodeFactory, sig: int, loop: str) -> None:
    node = node_factory(args=["app.db", "--event-loop", loop], nats_port=None)
    assert node.request("GET", "/status").json()["event_loop"] == loop
    ready = node.request("GET", "/readyz").json()
    assert ready["checks"] == {"databases": True, "nats": True, "jetstream": True, "replication": True}
    children = nats_children(node)
    assert len(children) == 1
    nats_pid = children[0].pid
    node.query({"sql": "CREATE TABLE t(x)"})
    node.query([{"sql": "INSERT INTO t VALUES (?)", "params": [i]} for i in range(100)])
    assert node.stop(sig=sig) == 0
    assert not psutil.pid_exists(nats_pid) or psutil.Process(nats_pid).status() == psutil.STATUS_ZOMBIE
    assert "node node1 stopped" in node.logs()
    # committed data is all there after the stop
    node.start()
    assert node.query({"sql": "SELECT count(*) FROM t"})["rows"] == [[100]]


def test_killed_node_leaves_no_nats_orphan(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db"], nats_port=None)
    nats_pid = nats_children(node)[0].pid
    node.kill()
    wait_for(
        lambda: not psutil.pid_exists(nats_pid) or psutil.Process(nats_pid).status() == psutil.STATUS_ZOMBIE,
        10,
        "the nats-server child to exit after its parent was killed",
    )


def test_jetstream_store_persists_across_restarts(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db"], nats_port=None)
    store = node.workdir / "nats"
    node.stop()
    assert any(store.rglob("*")), "the JetStream store directory was not created"
    node.start()
    assert node.request("GET", "/readyz").status == 200


def test_external_nats_and_readiness_follows_it(node_factory: NodeFactory, tmp_path: Path) -> None:
    nats = node_factory(args=["nats-host.db"], nats_port=None, name="natshost")
    client = node_factory(
        args=["app.db", "--replication-url", f"nats://127.0.0.1:{nats.nats_port}"], nats_port=0, name="client"
    )
    assert client.request("GET", "/readyz").json()["checks"]["jetstream"] is True
    assert nats_children(client) == []  # it started no server of its own
    status = client.request("GET", "/status").json()
    assert status["nats"]["connected"] is True
    assert status["nats"]["embedded"] is False
    nats.stop()
    wait_for(lambda: client.request("GET", "/readyz").status == 503, 20, "readiness to drop with NATS")
    # reads still work while NATS is away; writes are refused before anything is written
    assert client.query({"sql": "SELECT 1"})["rows"] == [[1]]
    refused = client.request("POST", "/query", {"sql": "CREATE TABLE t(x)"})
    assert refused.status == 503
    assert refused.json()["error"]["code"] == "not_replicating"
    assert client.query({"sql": "SELECT count(*) FROM sqlite_schema WHERE name = 't'"})["rows"] == [[0]]
    nats.start()
    wait_for(lambda: client.request("GET", "/readyz").status == 200, 30, "readiness to come back")
    assert "seq" in client.query({"sql": "CREATE TABLE t(x)"})


def test_no_nats_means_ready_without_it(node: NodeProcess) -> None:
    assert node.request("GET", "/readyz").json()["checks"] == {"databases": True, "replication": True}
    assert node.request("GET", "/status").json()["nats"] is None


def test_config_file_and_env(tmp_path: Path, node_factory: NodeFactory) -> None:
    port = free_port()
    workdir = tmp_path / "cfg"
    workdir.mkdir()
    (workdir / "ha.conf").write_text(
        f"# node settings\nport {port}\nname from-file\nnats-port 0\ntoken filetoken\n"
    )
    node = node_factory(
        args=["-c", "ha.conf", "app.db"],
        workdir=workdir,
        bare=True,
        port=port,
        token="envtoken",
        env={"HA_TOKEN": "envtoken"},
    )
    status = node.request("GET", "/status")
    assert status.json()["node"] == "from-file"  # from the file
    assert node.request("GET", "/status", headers={"Authorization": "filetoken"}).status == 401  # env wins
