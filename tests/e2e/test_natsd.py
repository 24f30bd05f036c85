"""The embedded nats-server, real binary: readiness, persistence, auth, port clash, no orphans."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import nats
import psutil
import pytest
from nats.js.api import StreamConfig

from sqlite_ha.errors import NatsServerError
from sqlite_ha.natsd import NatsServer, NatsServerOptions

SRC = Path(__file__).resolve().parents[2] / "src"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def readline(stream: IO[str], timeout: float) -> str:
    """One line from a pipe, or "" after ``timeout`` seconds."""
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(stream.readline()), daemon=True)
    thread.start()
    thread.join(timeout)
    return result[0] if result else ""


def gone(pid: int) -> bool:
    """The process no longer runs (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def nats_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.name() == "nats-server"]


async def _quiet(_e: Exception) -> None:
    pass


async def connect(url: str, **kw: Any) -> Any:
    return await nats.connect(
        url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=5, error_cb=_quiet, **kw
    )


def options(tmp_path: Path, **kw: Any) -> NatsServerOptions:
    return NatsServerOptions(name="n1", port=free_port(), store_dir=tmp_path / "store" / "js", **kw)


def test_start_connect_jetstream_stop(tmp_path: Path) -> None:
    server = NatsServer(options(tmp_path))

    async def run() -> int:
        await server.start()
        assert server.running
        assert server.url == f"nats://127.0.0.1:{server.options.port}"
        pid = server.pid
        assert pid is not None
        assert os.getpgid(pid) == pid  # its own process group: a terminal's Ctrl-C reaches only the node
        nc = await connect(server.url)
        try:
            info = await nc.jetstream().account_info()
            assert info.limits is not None
        finally:
            await nc.close()
        await server.stop()
        await server.stop()  # idempotent
        return pid

    pid = asyncio.run(run())
    assert not psutil.pid_exists(pid)
    assert server.pid is None
    assert not server.running
    assert (tmp_path / "store" / "js").is_dir()


def test_jetstream_data_survives_restart(tmp_path: Path) -> None:
    opts = options(tmp_path)

    async def run() -> None:
        server = NatsServer(opts)
        await server.start()
        try:
            nc = await connect(server.url)
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="LOG", subjects=["log.>"]))
            ack = await js.publish("log.a", b"hello")
            assert ack.seq == 1
            await nc.close()
        finally:
            await server.stop()

        server = NatsServer(opts)
        await server.start()
        try:
            nc = await connect(server.url)
            js = nc.jetstream()
            info = await js.stream_info("LOG")
            assert info.state.messages == 1
            msg = await js.get_msg("LOG", 1)
            assert msg.data == b"hello"
            await nc.close()
        finally:
            await server.stop()

    asyncio.run(run())


def test_user_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG, logger="sqlite_ha.natsd")
    password = 'Pa55-"sekr1t"-$HOME-\\x'
    server = NatsServer(options(tmp_path, user="node", password=password, logs=True))
    modes: list[int] = []
    remove = NatsServer._remove_runtime_dir

    def spy(self: NatsServer) -> None:
        if self._runtime_dir is not None:
            modes.append(stat.S_IMODE(os.stat(self._runtime_dir).st_mode))
            modes.append(stat.S_IMODE(os.stat(self._runtime_dir / "nats-server.conf").st_mode))
        remove(self)

    monkeypatch.setattr(NatsServer, "_remove_runtime_dir", spy)

    async def run() -> None:
        await server.start()
        try:
            assert modes == [0o700, 0o600]  # and removed already, as soon as the server has read it

            with pytest.raises(nats.errors.Error, match="Authorization Violation"):
                await connect(server.url)
            with pytest.raises(nats.errors.Error, match="Authorization Violation"):
                await connect(server.url, user="node", password="wrong")
            nc = await connect(server.url, user="node", password=password)
            await nc.jetstream().account_info()
            await nc.close()
        finally:
            await server.stop()

    asyncio.run(run())
    command = next(r.getMessage() for r in caplog.records if "starting nats-server" in r.getMessage())
    match = re.search(r" -c (\S+)", command)
    assert match
    assert not Path(match.group(1)).parent.exists()
    assert "node" not in server.url
    assert any("Server is ready" in r.getMessage() for r in caplog.records)
    assert all(r.levelno >= logging.INFO for r in caplog.records)  # logs=True forwards at INFO
    assert password not in caplog.text
    assert "sekr1t" not in caplog.text


def test_port_in_use(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = NatsServer(NatsServerOptions(name="n1", port=port, store_dir=tmp_path / "js"))
        with pytest.raises(NatsServerError) as excinfo:
            asyncio.run(server.start(timeout=10))
    message = str(excinfo.value)
    assert f"--nats-port {port} is already in use" in message
    assert "\n" not in message
    assert server.pid is None
    assert nats_children() == []
    asyncio.run(server.stop())  # still fine after a failed start


def test_port_in_use_by_another_nats_server(tmp_path: Path) -> None:
    """The other server answers the readiness probe while ours is still failing: must not count as ready."""
    other = NatsServer(options(tmp_path / "a"))
    ours = NatsServer(NatsServerOptions(name="n2", port=other.options.port, store_dir=tmp_path / "b"))

    async def run() -> None:
        await other.start()
        try:
            for _ in range(5):
                with pytest.raises(
                    NatsServerError, match=f"--nats-port {other.options.port} is already in use"
                ):
                    await ours.start()
                assert ours.pid is None
        finally:
            await other.stop()

    asyncio.run(run())
    assert nats_children() == []


def test_store_dir_cannot_be_shared(tmp_path: Path) -> None:
    store = tmp_path / "js"
    first = NatsServer(NatsServerOptions(name="n1", port=free_port(), store_dir=store))
    second = NatsServer(NatsServerOptions(name="n2", port=free_port(), store_dir=store))

    async def run() -> None:
        await first.start()
        try:
            with pytest.raises(NatsServerError, match="in use by another nats-server"):
                await second.start()
            assert second.pid is None
        finally:
            await first.stop()
        await second.start()  # free again once the first one is gone
        await second.stop()

    asyncio.run(run())


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from sqlite_ha.natsd import NatsServer, NatsServerOptions

    async def main() -> None:
        server = NatsServer(NatsServerOptions(name="n1", port=int(sys.argv[1]), store_dir=Path(sys.argv[2])))
        await server.start()
        print(server.pid, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())
    """
)


def test_sigkilled_parent_leaves_no_orphan(tmp_path: Path) -> None:
    runtime = tmp_path / "tmp"
    runtime.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(runtime),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(free_port()), str(tmp_path / "js")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert parent.stdout is not None
        line = readline(parent.stdout, timeout=30)
        if not line.strip():
            parent.kill()
            _, err = parent.communicate()
            pytest.fail(f"the child did not report a pid:\n{err}")
        pid = int(line)
        assert psutil.Process(pid).name() == "nats-server"
        assert psutil.Process(pid).ppid() == parent.pid

        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        wait_until(
            lambda: gone(pid), timeout=15, what=f"nats-server {pid} to exit after its parent was killed"
        )
        assert list(runtime.iterdir()) == []  # the generated config was already gone
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_a_server_that_dies_is_restarted_with_its_store_and_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL the server behind the node's back: the supervisor logs it at once and starts it again on the
    same port and store; while the port is taken the restart fails, is retried, and the state says why."""
    server = NatsServer(options(tmp_path))
    caplog.set_level(logging.INFO, logger="sqlite_ha.natsd")

    async def state_is(what: str, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while server.state().state != what:
            assert time.monotonic() < deadline, f"state {server.state()} is not {what}"
            await asyncio.sleep(0.01)

    async def run() -> None:
        await server.start()
        try:
            nc = await connect(server.url)
            await nc.jetstream().add_stream(StreamConfig(name="LOG", subjects=["log.>"]))
            await nc.jetstream().publish("log.a", b"kept")
            await nc.close()
            first = server.pid
            assert first is not None
            assert server.state().to_dict()["state"] == "running"
            assert server.state().restarts == 0

            blocker = socket.socket()
            try:
                os.kill(first, signal.SIGKILL)
                await state_is("restarting")
                # Take its port before the restart (0.5 s later) can: the restart fails and is retried.
                blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                blocker.bind(("127.0.0.1", server.options.port))
                blocker.listen()
                deadline = time.monotonic() + 20
                while server.state().last_error is None:
                    assert time.monotonic() < deadline, "the failing restart was not reported"
                    await asyncio.sleep(0.02)
                state = server.state()
                assert state.state == "restarting"
                assert state.last_exit_code == -signal.SIGKILL
                assert "already in use" in (state.last_error or "")
            finally:
                blocker.close()
            await state_is("running")
            state = server.state()
            assert state.restarts >= 2
            assert state.last_error is None
            assert server.pid not in (None, first)
            nc = await connect(server.url)
            msg = await nc.jetstream().get_msg("LOG", 1)
            assert msg.data == b"kept"  # same store
            await nc.close()
        finally:
            await server.stop()
        assert server.state().state == "stopped"

    asyncio.run(run())
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("exited unexpectedly" in m and "SIGKILL" in m for m in errors), errors
    assert nats_children() == []


def test_a_stopped_server_is_not_restarted(tmp_path: Path) -> None:
    server = NatsServer(options(tmp_path))

    async def run() -> None:
        await server.start()
        await server.stop()
        await asyncio.sleep(1.0)  # longer than the first restart backoff
        assert server.state().state == "stopped"
        assert server.state().restarts == 0
        assert not server.running

    asyncio.run(run())
    assert nats_children() == []
