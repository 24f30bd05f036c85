"""One typed configuration, resolved from flags, ``HA_*`` environment variables and a config file.

The ``SETTINGS`` table is the single source of truth: the CLI builds its options from it, the environment and
file readers look names up in it, and ``resolve`` turns raw strings into a frozen ``Config``. Precedence is
flags > environment > config file > default, as in the ``ha`` command of the seeds. Every bad value becomes a
``ConfigError`` naming the setting and where the value came from, so the CLI can print one line and exit 2.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shlex
import socket
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlite_ha.config.aliases import foreign_env
from sqlite_ha.config.settings import ENV_PREFIX, SETTINGS, SETTINGS_BY_NAME, Setting
from sqlite_ha.config.values import parse_bool, parse_duration, parse_size
from sqlite_ha.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "SETTINGS",
    "SETTINGS_BY_NAME",
    "Config",
    "Setting",
    "parse_bool",
    "parse_duration",
    "parse_size",
    "read_config_file",
    "read_env",
    "read_secret_file",
    "resolve",
    "warn_if_readable",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything a node needs to start; built only by ``resolve``."""

    databases: tuple[str, ...] = ()
    name: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    token: str = field(default="", repr=False)
    auth_file: str = ""
    cert: str = ""
    key: str = ""
    client_ca: str = ""
    max_connections: int = 500
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_result_bytes: int = 128 * 1024 * 1024
    pg_port: int = 0
    pg_user: str = "ha"
    pg_pass: str = field(default="ha", repr=False)
    pg_auth: str = "scram-sha-256"
    pg_cert: str = ""
    pg_key: str = ""
    pg_tls: str = "allow"
    pg_allow_cleartext: bool = False
    pg_max_connections: int = 500
    pg_max_copy_size: int = 256 * 1024 * 1024
    memory: bool = False
    log_level: str = "info"
    create_db_dir: str = ""
    max_body_size: int = 16 * 1024 * 1024
    max_load_size: int = 64 * 1024**3
    synchronous: str = "full"
    event_loop: str = "auto"
    busy_timeout: float = 5.0
    query_timeout: float = 30.0
    max_result_rows: int = 500_000
    nats_host: str = "127.0.0.1"
    nats_port: int = 4222
    nats_name: str = ""
    nats_store_dir: str = ""
    nats_user: str = ""
    nats_pass: str = field(default="", repr=False)
    nats_creds: str = ""
    nats_config: str = ""
    nats_cluster_port: int = 0
    nats_cluster_name: str = "sqlite-ha"
    nats_routes: tuple[str, ...] = ()
    nats_logs: bool = False
    nats_cert: str = ""
    nats_key: str = ""
    nats_ca: str = ""
    cluster_secret: str = field(default="", repr=False)
    cluster_secret_file: str = ""
    insecure_replication: bool = False
    replication_url: str = ""
    replication_stream: str = "ha_replication"
    replicas: int = 1
    replication_timeout: float = 15.0
    replication_max_age: float = 24 * 3600.0
    max_transaction_size: int = 512 * 1024 * 1024
    replication_policy: str = "all"
    snapshot_interval: float = 60.0
    from_latest_snapshot: bool = False
    async_replication: bool = False
    disable_ddl_sync: bool = False
    row_identify: str = "pk"
    rowid_stride: int = 16
    leader_static: str = ""
    leader_addr: str = ""
    leader_provider: str = ""
    local_target: str = ""
    peers: tuple[str, ...] = ()
    node_id: str = ""
    heartbeat_interval: float = 1.0
    lease_timeout: float = 3.0
    writer_wait: float = 10.0
    interceptor: str = ""
    apply_strategy: str = ""

    @property
    def writer_mode(self) -> str:
        """leaderless (every node writes), static, elected or pinned (see docs/writer-modes.md)."""
        if self.leader_static:
            return "static"
        if self.leader_addr:
            return "elected"
        if self.local_target:
            return "pinned"
        return "leaderless"

    @property
    def embedded_nats(self) -> bool:
        """An embedded server runs unless an external URL is given or the port is 0."""
        return not self.replication_url and self.nats_port != 0

    @property
    def nats_url(self) -> str:
        """The URL the node's NATS client connects to; empty when the node runs without NATS."""
        if self.replication_url:
            return self.replication_url
        if self.nats_port:
            host = "127.0.0.1" if self.nats_host in ("0.0.0.0", "") else self.nats_host
            return f"nats://{host}:{self.nats_port}"
        return ""

    def store_dir(self) -> Path:
        if self.nats_store_dir:
            return Path(self.nats_store_dir)
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
        return base / "sqlite-ha" / self.name / "nats"

    def redacted(self) -> dict[str, Any]:
        """The configuration as a dict with secrets masked: safe to log or show in status."""
        out = dataclasses.asdict(self)
        for s in SETTINGS:
            if s.secret and out.get(s.attr):
                out[s.attr] = "***"
        return out


def _check_names_known(values: Mapping[str, Any], source: str) -> None:
    for key in values:
        if key not in SETTINGS_BY_NAME:
            raise ConfigError(f"--{key}", "unknown setting", source=source)


def read_config_file(path: str) -> dict[str, str]:
    """Read ``flag value`` lines (``#`` comments, optional leading dashes, ``flag=value`` too).

    A bare flag name means true for switches, as in the plain format the ``ha`` command reads.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError("--config", f"cannot read {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError("--config", f"{path} is not UTF-8 text") from e
    out: dict[str, str] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=") if "=" in line.split(None, 1)[0] else line.partition(" ")
        key = key.strip().lstrip("-")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        source = f"{path}:{lineno}"
        if key not in SETTINGS_BY_NAME:
            raise ConfigError(f"--{key}", "unknown setting", source=source)
        if not sep or value == "":
            if not SETTINGS_BY_NAME[key].is_flag:
                raise ConfigError(f"--{key}", "missing value", source=source)
            value = "true"
        out[key] = value
    return out


def read_env(env: Mapping[str, str]) -> dict[str, str]:
    """The settings the environment gives (see ``read_env_sources``)."""
    return {name: value for name, (value, _) in read_env_sources(env).items()}


def read_env_sources(env: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """``{setting: (value, variable)}`` from the ``HA_*`` variables that name a setting (and
    ``HA_<SECRET>_FILE`` for secrets), and those of seed 000 (``BASE_*``) and go-ha (``config/aliases.py``);
    an ``HA_*`` variable of ours wins over theirs. HA_ARGS (positional) is read by ``resolve``."""
    own_names = {s.env for s in SETTINGS}
    out = foreign_env(env, own_names)
    for s in SETTINGS:
        if s.env in env:
            out[s.name] = (env[s.env], s.env)
        elif s.secret and env.get(s.env + "_FILE") and s.env + "_FILE" not in own_names:
            # (HA_CLUSTER_SECRET_FILE is --cluster-secret-file's own variable: that setting reads it)
            out[s.name] = (read_secret_file(env[s.env + "_FILE"], s.env + "_FILE"), s.env + "_FILE")
    return out


def read_secret_file(path: str, source: str) -> str:
    """A secret kept in a file (``HA_TOKEN_FILE``, as container secrets are mounted): its text without the
    final newline, so that neither ``ps`` nor the environment shows the secret."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(source, f"cannot read {path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(source, f"{path} is not UTF-8 text") from e
    warn_if_readable(Path(path), source)
    return text.rstrip("\r\n")


def warn_if_readable(path: Path, source: str) -> None:
    """Warn when a secret file is readable by its group or by others. A warning, not a refusal as ssh's
    for a private key: container secrets are mounted readable by all (Docker 0444, Kubernetes 0644 by
    default) in a container whose only user is the node, and refusing them would push operators to flags,
    which ``ps`` shows."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return
    if mode & 0o077:
        log.warning(
            "%s: %s is readable by %s (mode %04o): whoever can read it holds the secret; make it private "
            "with: chmod 600 %s",
            source,
            path,
            "others" if mode & 0o007 else "its group",
            mode,
            path,
        )


def resolve(
    flags: Mapping[str, Any],
    *,
    databases: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    config_file: str | None = None,
) -> Config:
    """Merge flags > env > config file > defaults and parse every value into a ``Config``.

    ``flags`` holds only the values the user gave on the command line (already typed for switches,
    strings otherwise). Databases come from the command line, else from ``HA_ARGS``.
    """
    env = os.environ if env is None else env
    _check_names_known(flags, "command line")
    file_values = read_config_file(config_file) if config_file else {}
    env_values = read_env_sources(env)
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw: Any
        if s.name in flags and flags[s.name] is not None:
            raw, source = flags[s.name], None
        elif s.name in env_values:
            raw, source = env_values[s.name]
        elif s.name in file_values:
            raw, source = file_values[s.name], config_file
        else:
            values[s.attr] = s.default
            continue
        if isinstance(raw, bool) and s.is_flag:
            values[s.attr] = raw
            continue
        try:
            values[s.attr] = s.parse(str(raw))
        except ValueError as e:
            raise ConfigError(s.flag, str(e), source=source) from None
    if not values["name"]:
        values["name"] = socket.gethostname() or "node"
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", values["name"]):
        raise ConfigError("--name", f"{values['name']!r} may only hold letters, digits, _ and -")
    dbs = tuple(databases)
    if not dbs and env.get("HA_ARGS"):
        dbs = tuple(shlex.split(env["HA_ARGS"]))
    if values["nats_pass"] and not values["nats_user"]:
        raise ConfigError("--nats-pass", "needs --nats-user")
    if values["nats_creds"] and values["nats_user"]:
        raise ConfigError("--nats-creds", "give --nats-creds or --nats-user/--nats-pass, not both")
    if values["nats_creds"] and not (values["replication_url"] or values["nats_config"]):
        raise ConfigError(
            "--nats-creds",
            "is for an external server (--replication-url) or a --nats-config of yours that defines nkey "
            "users; the generated configuration of the embedded server uses the cluster secret",
        )
    if bool(values["pg_cert"]) != bool(values["pg_key"]):
        raise ConfigError(
            "--pg-cert" if values["pg_key"] else "--pg-key", "--pg-cert and --pg-key go together"
        )
    for cert, key in (("cert", "key"), ("nats-cert", "nats-key")):
        a, b = cert.replace("-", "_"), key.replace("-", "_")
        if bool(values[a]) != bool(values[b]):
            raise ConfigError(f"--{b}" if values[a] else f"--{a}", f"--{cert} and --{key} go together")
    if values["client_ca"] and not values["cert"]:
        raise ConfigError("--client-ca", "needs --cert (client certificates are checked only over HTTPS)")
    if values["pg_tls"] == "require" and not values["pg_cert"]:
        raise ConfigError("--pg-tls", "require needs --pg-cert and --pg-key")
    if values["cluster_secret"] and values["cluster_secret_file"]:
        raise ConfigError(
            "--cluster-secret-file", "give the cluster secret once: --cluster-secret-file or --cluster-secret"
        )
    if values["pg_auth"] == "password" and not values["pg_cert"] and not values["pg_allow_cleartext"]:
        raise ConfigError(
            "--pg-auth",
            "password sends the password in clear and this node has no --pg-cert for TLS: give --pg-cert and "
            "--pg-key, or --pg-allow-cleartext to accept it anyway",
        )
    if values["insecure_replication"] and (values["cluster_secret"] or values["cluster_secret_file"]):
        raise ConfigError("--insecure-replication", "contradicts --cluster-secret / --cluster-secret-file")
    _check_writer_mode(values)
    return Config(databases=dbs, **values)


def _check_writer_mode(values: dict[str, Any]) -> None:
    """One writer mode at most, with what it needs; ``--leader-provider`` becomes the flag it stands for."""
    provider = values["leader_provider"]
    if provider:
        kind, _, url = provider.partition(":")
        attr = "leader_static" if kind == "static" else "leader_addr"
        if values[attr] and values[attr] != url:
            raise ConfigError("--leader-provider", f"contradicts --{attr.replace('_', '-')} {values[attr]}")
        values[attr] = url
    given = [f for f in ("leader_static", "leader_addr", "local_target") if values[f]]
    if len(given) > 1:
        flags = " and ".join("--" + f.replace("_", "-") for f in given)
        raise ConfigError(
            "--" + given[1].replace("_", "-"), f"{flags} choose different writer modes: give one"
        )
    if values["peers"] and not values["local_target"]:
        raise ConfigError(
            "--peers", "belongs to writer mode pinned: give --local-target (BASE_LOCAL_TARGET) too"
        )
    if not given:
        return
    mode = {"leader_static": "static", "leader_addr": "elected", "local_target": "pinned"}[given[0]]
    if values["async_replication"]:
        raise ConfigError(
            "--async-replication",
            f"cannot be combined with writer mode {mode}: a writer that answers before the log took its "
            "write cannot be fenced, and a deposed writer's answered writes would be lost",
        )
    if mode in ("elected", "pinned"):
        if values["heartbeat_interval"] <= 0:
            raise ConfigError("--heartbeat-interval", "must be more than 0")
        if values["lease_timeout"] < 2 * values["heartbeat_interval"]:
            raise ConfigError(
                "--lease-timeout",
                f"must be at least twice --heartbeat-interval ({values['heartbeat_interval']:g}s): one lost "
                "renewal must not cost the writer its lease",
            )
    if mode == "elected" and not (values["nats_port"] or values["replication_url"]):
        raise ConfigError(
            "--leader-addr",
            "an elected writer holds its lease in NATS: give --nats-port or --replication-url",
        )
