"""examples/notes run as its README says: the README's shell commands, run by a shell in a fresh directory
(the ports changed to free ones), two real app processes, a note written through one's HTTP API read through
the other's."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import sqlite_ha
from sqlite_ha.testing import child_pids, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "notes"
README = EXAMPLE / "README.md"


def readme_commands() -> list[str]:
    """The shell lines of the README's ``sh`` blocks, in order."""
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(), re.S | re.M)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def nats_servers(pid: int) -> list[int]:
    """The nats-server processes under ``pid`` (the app, or the shell that runs it)."""
    return [n for p in [pid, *child_pids(pid)] for n in child_pids(p, "nats-server")]


@dataclass
class Instance:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body))
            resp = conn.getresponse()
            data = resp.read()
            kind = resp.getheader("Content-Type", "")
            return resp.status, json.loads(data) if kind == "application/json" and data else data
        finally:
            conn.close()

    def notes(self) -> list[str]:
        status, body = self.request("GET", "/api/notes")
        assert status == 200, body
        return sorted(note["text"] for note in body["notes"])

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"the instance exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return self.request("GET", "/api/notes")[0] == 200
        except OSError:
            return False

    def stop(self) -> int:
        """SIGTERM, as Ctrl-C would: the app closes its database and its node stops (with NATS, if any)."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(f"the instance did not stop in 30 s:\n{self.logs()}") from None
        return self.proc.returncode


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[list[Instance]]:
    lines = readme_commands()
    servers = [line for line in lines if "app.py" in line]
    assert len(servers) == 2, lines
    http_ports = re.findall(r"--port (\d+)", " ".join(servers))
    nats_ports = set(re.findall(r"natsPort=(\d+)|nats://127\.0\.0\.1:(\d+)", " ".join(servers)))
    assert len(http_ports) == 2, servers
    ports = {old: str(free_port()) for old in [*http_ports, *{p for pair in nats_ports for p in pair if p}]}

    def adapted(line: str) -> str:
        for old, new in ports.items():
            line = re.sub(rf"\b{old}\b", new, line)
        line = line.replace("python app.py", f"python {EXAMPLE / 'app.py'}")
        return re.sub(r"(?<![\w/.-])python(?= )", sys.executable, line)  # this test's Python, venv or not

    env = {k: v for k, v in os.environ.items() if not k.startswith("HA_")}  # the README's settings only
    package_root = str(Path(sqlite_ha.__file__).resolve().parents[1])  # the sqlite_ha this test runs with
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    for line in lines:
        if line.startswith(("pip install", "cd ")) or line in servers or line.startswith("curl "):
            continue  # installed already; the test's directory instead; the servers next; the test's requests
        subprocess.run(["bash", "-euc", adapted(line)], cwd=tmp_path, env=env, check=True, timeout=30)

    started: list[Instance] = []
    try:
        for i, line in enumerate(servers):
            log = tmp_path / f"instance{i + 1}.log"
            with log.open("wb") as out:
                proc = subprocess.Popen(
                    ["bash", "-euc", adapted(line)],
                    cwd=tmp_path,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # its own process group: stopped whole, shell and app
                )
            instance = Instance(port=int(ports[http_ports[i]]), proc=proc, log=log)
            started.append(instance)
            wait_for(instance.ready, 60, f"instance {i + 1} to serve", interval=0.1)
        yield started
    except BaseException:
        for instance in started:
            print(f"----- log of the instance on port {instance.port} -----\n{instance.logs()}")
        raise
    finally:
        for instance in started:
            if instance.proc.poll() is None:
                os.killpg(instance.proc.pid, signal.SIGKILL)
                instance.proc.wait()


def test_a_note_written_on_one_instance_is_read_on_the_other(instances: list[Instance]) -> None:
    one, two = instances
    status, page = one.request("GET", "/")
    assert status == 200
    assert b"<title>Notes</title>" in page

    status, note = one.request("POST", "/api/notes", {"text": "hello from one"})
    assert status == 201, note
    assert note["text"] == "hello from one"
    wait_for(lambda: two.notes() == ["hello from one"], 30, "the note to reach instance two", interval=0.1)

    status, other = two.request("POST", "/api/notes", {"text": "and from two"})
    assert status == 201, other
    assert other["id"] != note["id"]  # keys chosen on different instances never collide
    wait_for(lambda: one.notes() == ["and from two", "hello from one"], 30, "the reply to reach one")

    status, _ = two.request("DELETE", f"/api/notes/{note['id']}")
    assert status == 204
    wait_for(lambda: one.notes() == ["and from two"], 30, "the deletion to reach one")
    assert one.request("POST", "/api/notes", {"text": ""})[0] == 400

    nats = nats_servers(one.proc.pid)
    assert nats, "instance one runs no embedded nats-server"
    assert one.stop() == 0, one.logs()
    assert two.stop() == 0, two.logs()
    assert [pid for pid in nats if Path(f"/proc/{pid}").exists()] == []  # stopped with the app
