"""A throw-away real PostgreSQL 15 for tests and benchmarks that compare a node with the real thing.

Shared by ``bench/`` and the ``postgres`` test fixture, so there is one way to start one: the Debian
binaries (``/usr/lib/postgresql/15/bin``), ``initdb`` into a fresh directory, listening on 127.0.0.1 only,
SCRAM authentication, default durability. ``initdb`` and ``postgres`` refuse to run as root: as root they
run as the ``postgres`` OS user (else ``nobody``), and the directory is made theirs.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_BINDIR = Path("/usr/lib/postgresql/15/bin")


def os_user(name: str) -> tuple[int, int]:
    pw = pwd.getpwnam(name)
    return pw.pw_uid, pw.pw_gid


def default_os_user() -> str:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return "nobody"
    return "postgres"


def available(bindir: Path = DEFAULT_BINDIR) -> bool:
    return (bindir / "initdb").exists() and (bindir / "postgres").exists()


@dataclass(kw_only=True)
class PostgresServer:
    """A throw-away PostgreSQL cluster in ``root`` (data, socket directory, log), started as ``run_as``."""

    root: Path
    port: int
    bindir: Path = DEFAULT_BINDIR
    user: str = "ha"
    password: str = "secret"
    run_as: tuple[int, int] | None = None  # (uid, gid) when this process is root
    settings: tuple[str, ...] = ("fsync=on", "synchronous_commit=on", "shared_buffers=128MB")
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def in_temp_dir(cls, port: int, **kwargs: Any) -> PostgresServer:
        """One in a new directory under the system temporary directory, whose parents the ``postgres``
        user can traverse (pytest's ``tmp_path`` is private to root)."""
        run_as = os_user(default_os_user()) if os.geteuid() == 0 else None
        root = Path(tempfile.mkdtemp(prefix="sqlite-ha-pg-")) / "pg"
        return cls(root=root, port=port, run_as=run_as, **kwargs)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return (
            f"host=127.0.0.1 port={self.port} user={self.user} password={self.password} dbname={dbname} "
            "sslmode=disable gssencmode=disable"
        )

    def url(self, dbname: str = "postgres", driver: str = "postgresql") -> str:
        return f"{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{dbname}"

    def env(self) -> dict[str, str]:
        """Environment for libpq tools (psql, pg_dump, pgbench) to reach this server."""
        return {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGSSLMODE": "disable",
        }

    def _user_kwargs(self) -> dict[str, Any]:
        if self.run_as is None:
            return {}
        return {"user": self.run_as[0], "group": self.run_as[1], "extra_groups": []}

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LC_", "LANG"))}
        return {**env, "LC_ALL": "C", "HOME": str(self.root)}

    def init(self) -> PostgresServer:
        self.root.mkdir(parents=True)
        (self.root / "sock").mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.password + "\n")
        if self.run_as is not None:
            for path in (self.root.parent, self.root, self.root / "sock", pwfile):
                os.chown(path, *self.run_as)
            probe = subprocess.run(["test", "-w", str(self.root)], **self._user_kwargs(), check=False)
            if probe.returncode != 0:
                raise RuntimeError(
                    f"uid {self.run_as[0]} cannot write {self.root}: is every directory above it "
                    "traversable (o+x)? Use a directory elsewhere (e.g. /tmp)"
                )
        proc = subprocess.run(
            [
                *(str(self.bindir / "initdb"), "-D", str(self.data), "-U", self.user, f"--pwfile={pwfile}"),
                *("--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-instructions"),
            ],
            capture_output=True,
            text=True,
            env=self._env(),
            cwd=self.root,
            **self._user_kwargs(),
        )
        if proc.returncode != 0:
            raise RuntimeError(f"initdb failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return self

    def start(self, timeout: float = 60.0) -> PostgresServer:
        cmd = [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port)]
        cmd += ["-k", str(self.root / "sock"), "-c", "listen_addresses=127.0.0.1"]
        for setting in self.settings:
            cmd += ["-c", setting]
        with self.log_path.open("ab") as log:
            if self.run_as is not None:
                os.chown(self.log_path, *self.run_as)
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env(),
                cwd=self.root,
                **self._user_kwargs(),
            )
        deadline = time.monotonic() + timeout
        # asked through this server's own socket directory: on 127.0.0.1 another server that took the port
        # first would answer for it
        ready = [str(self.bindir / "pg_isready"), "-q", "-h", str(self.root / "sock"), "-p", str(self.port)]
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}:\n{self.logs()}")
            if subprocess.run(ready, check=False).returncode == 0:
                return self
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL not ready after {timeout:g}s\n{self.logs()}")
            time.sleep(0.05)

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run ``sql`` with psql (stops at the first error); returns its output."""
        proc = subprocess.run(
            [str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", dbname, "-c", sql],
            capture_output=True,
            text=True,
            env=self.env(),
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed ({proc.returncode}): {proc.stderr}")
        return proc.stdout

    def stop(self, timeout: float = 30.0) -> int:
        """Fast shutdown (SIGINT); SIGKILL if it does not stop in time. Returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise TimeoutError(f"PostgreSQL did not stop in {timeout:g}s:\n{self.logs()}") from None
        return self.proc.returncode

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
