"""Run real ``sqlite-ha serve`` processes for tests and benchmarks.

Production-quality helpers on purpose: every wait honours its timeout and fails with the process's log, ports
are free ones picked at start, and stopping never leaves a process behind.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TEST_CLUSTER_SECRET = secrets.token_urlsafe(32)
"""The cluster secret every ``NodeProcess`` gets (``HA_CLUSTER_SECRET``) unless its ``env`` says otherwise
(``HA_CLUSTER_SECRET=""`` lets a node make its own): the nodes of one test process form one cluster."""


def nats_credentials(secret: str = TEST_CLUSTER_SECRET) -> dict[str, str]:
    """``nats.connect`` keyword arguments that log in to a node's embedded NATS server as the nodes of the
    cluster of ``secret`` do (a test's raw client: it may then do anything a node can)."""
    from sqlite_ha.security.keys import ClusterKeys
    from sqlite_ha.security.nats_access import nats_user

    password = ClusterKeys.from_text(secret).nats_password
    return {"user": nats_user(password), "password": password}


_PORTS = random.Random(secrets.randbits(64))  # its own generator: tests (hypothesis) seed the global one
_GIVEN: set[int] = set()
LOWEST_PORT = 10_000


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A TCP port free on loopback now, for a process started next to listen on.

    Not one the kernel picks with bind(0): those come from the ephemeral range, which every outgoing
    connection draws from too, so between this call and the process's bind a client connection could take
    it (seen in CI: "--nats-port … is already in use"). A random port below that range, checked by binding
    it, and never handed out twice by this process."""
    lo, _ = _ephemeral_range()
    for _ in range(200 if lo > LOWEST_PORT + 1000 else 0):
        port = _PORTS.randrange(LOWEST_PORT, lo)
        if port in _GIVEN:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def nats_cluster_args(cluster_ports: list[int], i: int) -> list[str]:
    """Flags of node ``i`` of a cluster whose nodes each run an embedded NATS server, routed to the others
    on loopback, with a stream of as many replicas as servers."""
    routes = ",".join(f"127.0.0.1:{p}" for j, p in enumerate(cluster_ports) if j != i)
    return [
        "--replicas",
        str(len(cluster_ports)),
        "--nats-cluster-port",
        str(cluster_ports[i]),
        "--nats-routes",
        routes,
    ]


def child_pids(pid: int, name: str | None = None) -> list[int]:
    """The pids of the direct children of ``pid`` (named ``name``, if given), read from Linux's ``/proc``.

    A node runs its embedded nats-server as a child: this is how a test finds it to kill or pause it alone.
    """
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split at the last ")"
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid and (name is None or comm == name[:15]):
            found.append(int(entry.name))
    return sorted(found)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll ``condition`` until true; raise ``TimeoutError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


@dataclass(kw_only=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class ChildProcess:
    """A child process of a test, with its log file: how it is stopped and read, for every kind."""

    name: str
    proc: subprocess.Popen[bytes] | None
    log_path: Path

    def stop(self, timeout: float = 15.0, sig: int = signal.SIGTERM) -> int:
        """Stop with ``sig`` and return the exit code; SIGKILL if it does not stop in time."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise TimeoutError(f"{self.name} did not stop in {timeout:g}s:\n{self.logs()}") from None
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass(kw_only=True)
class NodeProcess(ChildProcess):
    """One node process. ``args`` are extra command-line arguments (databases, flags)."""

    workdir: Path
    args: list[str] = field(default_factory=list)
    name: str = "node1"
    port: int = 0
    nats_port: int | None = 0  # 0 = no embedded NATS; None = pick a free port and run one
    token: str = ""
    env: dict[str, str] = field(default_factory=dict)
    bare: bool = False  # pass only ``args``: settings come from a config file or the environment
    host: str = "127.0.0.1"
    """Where the node listens (HTTP and embedded NATS) and is reached."""
    prefix: list[str] = field(default_factory=list)
    """Run the node through this command (``ip netns exec NS`` execs: the pid stays the node's)."""
    ca: str = ""
    """A CA file (PEM): the node serves HTTPS (``--cert`` in ``args``) and requests trust this CA."""
    client_cert: str = ""
    """A PEM file with a client certificate and its key, presented over HTTPS (nodes with ``--client-ca``)."""
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        if self.nats_port is None:
            self.nats_port = free_port()
        self.log_path = self.workdir / f"{self.name}.log"

    @property
    def command(self) -> list[str]:
        if self.bare:
            return [*self.prefix, sys.executable, "-m", "sqlite_ha", "serve", *self.args]
        cmd = [
            *self.prefix,
            sys.executable,
            "-m",
            "sqlite_ha",
            "serve",
            "--name",
            self.name,
            "--port",
            str(self.port),
            "--nats-port",
            str(self.nats_port),
            "--nats-store-dir",
            str(self.workdir / "nats"),
        ]
        if self.token:
            cmd += ["--token", self.token]
        if self.host != "127.0.0.1":
            cmd += ["--host", self.host, "--nats-host", self.host]
        return cmd + self.args

    def start(self, timeout: float = 30.0, wait_ready: bool = True) -> NodeProcess:
        env = {**os.environ, "HA_CLUSTER_SECRET": TEST_CLUSTER_SECRET, **self.env}
        env = {k: v for k, v in env.items() if v or k != "HA_CLUSTER_SECRET"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
            )
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited with {self.proc.returncode}:\n{self.logs()}")
            try:
                return self.request("GET", "/readyz", timeout=1).status == 200
            except OSError:
                return False

        try:
            wait_for(ready, timeout, f"node {self.name} to be ready")
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{self.logs()}") from None

    @property
    def pid(self) -> int | None:
        """The node's pid while its process runs (or is stopped by a signal), else None."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        return self.proc.pid

    def nats_pids(self) -> list[int]:
        """The pids of the node's embedded nats-server (none without one or while the node is down)."""
        pid = self.pid
        return [] if pid is None else child_pids(pid, "nats-server")

    # ------------------------------------------------------------------------------------ HTTP
    @property
    def url(self) -> str:
        return f"{'https' if self.ca else 'http'}://{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext:
        """The client side of the node's HTTPS: its CA trusted, the client certificate if one is set."""
        context = ssl.create_default_context(cafile=self.ca)
        if self.client_cert:
            context.load_cert_chain(self.client_cert)
        return context

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
        timeout: float = 30.0,
        auth: bool = True,
    ) -> Response:
        conn = (
            http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.ssl_context())
            if self.ca
            else http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        )
        try:
            hdrs = dict(headers or {})
            if self.token and auth and "Authorization" not in hdrs:
                hdrs["Authorization"] = f"Bearer {self.token}"
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            if data is not None:
                hdrs.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            return Response(status=resp.status, headers=dict(resp.getheaders()), body=resp.read())
        finally:
            conn.close()

    def query(self, body: Any, db: str | None = None, expect: int = 200) -> Any:
        """POST a query and return the decoded JSON; fail loudly on an unexpected status."""
        resp = self.request("POST", f"/databases/{db}" if db else "/query", body)
        if resp.status != expect:
            raise AssertionError(f"expected {expect}, got {resp.status}: {resp.body[:2000]!r}")
        return resp.json()


@contextlib.contextmanager
def running_node(workdir: Path, **kwargs: Any) -> Iterator[NodeProcess]:
    node = NodeProcess(workdir=workdir, **kwargs).start()
    try:
        yield node
    finally:
        node.stop()


@dataclass(kw_only=True)
class SyncProcess(ChildProcess):
    """One ``sqlite-ha sync`` process (a live read replica) of ``target`` from the NATS at ``nats_url``;
    ``args`` are extra flags. The test cluster's secret unless ``env`` says otherwise."""

    workdir: Path
    target: str
    nats_url: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    name: str = "sync"
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", "sqlite_ha", "sync", "--replication-url", self.nats_url, *self.args]

    def _env(self) -> dict[str, str]:
        env = {**os.environ, "HA_CLUSTER_SECRET": TEST_CLUSTER_SECRET, **self.env}
        return {k: v for k, v in env.items() if v or k != "HA_CLUSTER_SECRET"}

    def start(self) -> SyncProcess:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.command, self.target],
                cwd=self.workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env(),
            )
        return self

    def run(self, *extra: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run the command to its end with ``extra`` flags (``--status``, or flags it refuses)."""
        return subprocess.run(
            [*self.command, *extra, self.target],
            cwd=self.workdir,
            capture_output=True,
            text=True,
            env=self._env(),
            timeout=timeout,
            check=False,
        )

    def status(self) -> dict[str, Any]:
        """``sqlite-ha sync --status``: the target's position against the stream."""
        done = self.run("--status")
        if done.returncode != 0:
            raise AssertionError(f"sync --status exited {done.returncode}: {done.stderr}")
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        def found() -> bool:
            if text in self.logs():
                return True
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"sync exited with {self.proc.returncode}:\n{self.logs()}")
            return False

        try:
            wait_for(found, timeout, f"{text!r} in the log of {self.name}")
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{self.logs()}") from None
