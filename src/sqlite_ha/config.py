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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlite_ha.errors import ConfigError

ENV_PREFIX = "HA_"
log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------------ parsers
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Parse a Go-style duration (``15s``, ``1m30s``, ``24h``, ``250ms``, ``0``) into seconds.

    Go syntax because ``ha`` users already write their durations that way.
    """
    s = text.strip()
    if s in ("0", ""):
        if s == "":
            raise ValueError("empty duration")
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            raise ValueError(f"{text!r} is not a duration (examples: 500ms, 15s, 1m30s, 24h)")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return total


_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """Parse a byte size: ``1048576``, ``512KB``, ``16MiB``, ``1g`` (binary multiples)."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size (examples: 1048576, 512KB, 16MB)")
    unit = (m.group(2) or "").lower()[:1]
    return int(m.group(1)) * _SIZE_UNITS[unit]


MAX_TRANSACTION_SIZE_LIMIT = 1_000_000_000  # SQLite's longest value: a change set is one in the outbox


def _parse_transaction_size(text: str) -> int:
    size = parse_size(text)
    if not 1024 * 1024 <= size <= MAX_TRANSACTION_SIZE_LIMIT:
        raise ValueError(
            f"{text!r} is not between 1MB and {MAX_TRANSACTION_SIZE_LIMIT} bytes (SQLite's longest value)"
        )
    return size


_TRUE = {"1", "t", "true", "yes", "y", "on"}
_FALSE = {"0", "f", "false", "no", "n", "off"}


def parse_bool(text: str) -> bool:
    v = text.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


def parse_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is not a port number (0-65535)")
    return port


def _parse_int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
        if not lo <= n <= hi:
            raise ValueError(f"{n} is out of range ({lo}-{hi})")
        return n

    return parse


def _parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        v = text.strip().lower()
        if v not in choices:
            raise ValueError(f"{text!r} is not one of: {', '.join(choices)}")
        return v

    return parse


def _parse_str(text: str) -> str:
    return text


def _parse_nats_url(text: str) -> str:
    """One NATS URL, or several separated by commas (the servers of one cluster)."""
    for url in text.split(","):
        if text and not re.match(r"^(nats|tls|ws|wss)://[^\s,]+$", url.strip()):
            raise ValueError(f"{url!r} is not a NATS URL (example: nats://127.0.0.1:4222)")
    return ",".join(u.strip() for u in text.split(",")) if text else text


_POLICY = re.compile(
    r"^(all|last|new|by_start_sequence=[1-9][0-9]*|by_start_time=\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})$"
)


def _parse_policy(text: str) -> str:
    value = text.strip()
    if not _POLICY.match(value):
        raise ValueError(
            f"{text!r} is not a delivery policy (all, last, new, by_start_sequence=N, "
            "by_start_time=YYYY-MM-DD HH:MM:SS)"
        )
    return value


def _parse_row_identify(text: str) -> str:
    value = text.strip().lower()
    if value in ("pk", "rowid"):
        return value
    if value == "full":
        raise ValueError(
            "'full' is not supported: rows identified by their content cannot carry a version, so concurrent "
            "writes could not converge; tables without a primary key are identified by origin node and rowid"
        )
    raise ValueError(f"{text!r} is not one of: pk, rowid")


def _parse_interceptor(text: str) -> str:
    if text and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", text):
        raise ValueError(f"{text!r} is not module:object (example: myapp.hooks:interceptor)")
    return text


def _parse_routes(text: str) -> tuple[str, ...]:
    """Comma-separated ``host:port`` (or ``nats-route://host:port``) of the other servers' cluster ports."""
    routes = tuple(r.strip() for r in text.split(",") if r.strip())
    for route in routes:
        hostport = route.split("://", 1)[-1].rsplit("@", 1)[-1]
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{route!r} is not host:port (example: 10.0.0.2:6222)")
    return routes


def _parse_stream_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text):
        raise ValueError(f"{text!r} is not a valid stream name (letters, digits, _ and -)")
    return text


# ------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class Setting:
    """One configurable value: its flag, its parser and its help text."""

    name: str  # long flag without dashes, e.g. "replication-timeout"
    parse: Callable[[str], Any]
    default: Any
    help: str
    short: str | None = None
    is_flag: bool = False  # boolean switch: ``--memory`` alone means true
    secret: bool = False  # never printed or logged
    metavar: str | None = None

    @property
    def placeholder(self) -> str:
        """What the value looks like, for help texts."""
        if self.metavar:
            return self.metavar
        return _PLACEHOLDERS.get(self.parse, "TEXT")

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.attr.upper()

    @property
    def flag(self) -> str:
        return "--" + self.name


_PLACEHOLDERS: dict[Callable[[str], Any], str] = {
    parse_duration: "DURATION",
    parse_size: "SIZE",
    _parse_transaction_size: "SIZE",
    parse_port: "PORT",
    _parse_nats_url: "URL",
    _parse_stream_name: "NAME",
}

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "name",
        _parse_str,
        None,
        "Node name, used in change sets and consumer names [default: hostname]",
        short="n",
        metavar="NAME",
    ),
    Setting(
        "host",
        _parse_str,
        "127.0.0.1",
        "Address the HTTP API listens on; use 0.0.0.0 to serve other machines (and set --token)",
        metavar="ADDR",
    ),
    Setting("port", parse_port, 8080, "HTTP API port", short="p"),
    Setting(
        "token",
        _parse_str,
        "",
        "Value required in the Authorization header of every request except "
        "health and docs ('Bearer <token>' or the bare token)",
        secret=True,
        metavar="TOKEN",
    ),
    Setting(
        "auth-file",
        _parse_str,
        "",
        "Users and their per-database permissions (JSON or YAML; reloaded on change and on SIGHUP). They log "
        "in over HTTP (Basic) and PostgreSQL (SCRAM); --token stays a single admin user",
        metavar="FILE",
    ),
    Setting(
        "cert", _parse_str, "", "TLS certificate (PEM) of the HTTP API: it then serves HTTPS", metavar="FILE"
    ),
    Setting("key", _parse_str, "", "TLS private key (PEM) of --cert", metavar="FILE"),
    Setting(
        "client-ca",
        _parse_str,
        "",
        "CA (PEM) whose client certificates the HTTP API requires (needs --cert)",
        metavar="FILE",
    ),
    Setting(
        "max-connections",
        _parse_int_range(1, 1_000_000),
        500,
        "Most HTTP connections served at once; more are answered 503 and closed (health checks still answer)",
        metavar="N",
    ),
    Setting(
        "header-timeout",
        parse_duration,
        10.0,
        "How long a client may take to send a request's headers (HTTP) or its start-up (PostgreSQL) before "
        "the connection is closed",
    ),
    Setting(
        "body-timeout",
        parse_duration,
        60.0,
        "How long a client may take to send a request body once its headers arrived (an upload: the longest "
        "pause in it)",
    ),
    Setting(
        "max-result-bytes",
        parse_size,
        128 * 1024 * 1024,
        "Largest result one query may return (e.g. 128MB); a larger one is refused before it is built",
    ),
    Setting("pg-port", parse_port, 0, "PostgreSQL wire protocol port (0 = off)", metavar="PORT"),
    Setting("pg-user", _parse_str, "ha", "User PostgreSQL clients log in as", metavar="USER"),
    Setting("pg-pass", _parse_str, "ha", "Password of --pg-user", secret=True, metavar="PASS"),
    Setting(
        "pg-auth",
        _parse_choice("scram-sha-256", "md5", "password"),
        "scram-sha-256",
        "How PostgreSQL clients prove the password: scram-sha-256, md5 or password (cleartext)",
        metavar="METHOD",
    ),
    Setting("pg-cert", _parse_str, "", "TLS certificate (PEM) for PostgreSQL clients", metavar="FILE"),
    Setting("pg-key", _parse_str, "", "TLS private key (PEM) of --pg-cert", metavar="FILE"),
    Setting(
        "pg-tls",
        _parse_choice("allow", "require"),
        "allow",
        "With --pg-cert: allow lets clients choose, require refuses a session that does not start TLS",
        metavar="MODE",
    ),
    Setting(
        "pg-allow-cleartext",
        parse_bool,
        False,
        "Accept --pg-auth password (the password in clear) on sessions without TLS",
        is_flag=True,
    ),
    Setting(
        "pg-max-connections",
        _parse_int_range(1, 1_000_000),
        500,
        "Most PostgreSQL sessions served at once; more are refused with SQLSTATE 53300",
        metavar="N",
    ),
    Setting(
        "pg-max-copy-size",
        parse_size,
        256 * 1024 * 1024,
        "Most data one COPY FROM STDIN may send (e.g. 256MB); it is written as one transaction",
    ),
    Setting(
        "memory",
        parse_bool,
        False,
        "Keep databases in memory; files given are loaded into memory",
        short="m",
        is_flag=True,
    ),
    Setting(
        "log-level",
        _parse_choice("debug", "info", "warn", "warning", "error"),
        "info",
        "Log level: debug, info, warn, error",
        metavar="LEVEL",
    ),
    Setting(
        "create-db-dir",
        _parse_str,
        "",
        "Directory where databases created over the API (POST /databases) are stored; empty disables it",
        metavar="DIR",
    ),
    Setting("max-body-size", parse_size, 16 * 1024 * 1024, "Largest accepted request body (e.g. 16MB)"),
    Setting(
        "max-load-size",
        parse_size,
        64 * 1024**3,
        "Largest SQLite file accepted by POST /load (e.g. 2GB); it is stored on disk while it loads",
    ),
    Setting(
        "synchronous",
        _parse_choice("normal", "full"),
        "full",
        "SQLite synchronous mode for database files: full survives power loss, normal only a crash",
        metavar="MODE",
    ),
    Setting(
        "event-loop",
        _parse_choice("auto", "uvloop", "asyncio"),
        "auto",
        "Event loop of the node: uvloop (faster; auto uses it where it is installed) or the standard asyncio",
        metavar="LOOP",
    ),
    Setting("busy-timeout", parse_duration, 5.0, "How long a write waits for a lock held by another process"),
    Setting(
        "query-timeout",
        parse_duration,
        30.0,
        "How long one request may run; past it the request is rolled back with query_timeout",
    ),
    Setting(
        "max-result-rows",
        _parse_int_range(1, 2**31),
        500_000,
        "Most rows one response may hold; more is an error asking for LIMIT",
        metavar="N",
    ),
    Setting(
        "nats-host", _parse_str, "127.0.0.1", "Address the embedded NATS server listens on", metavar="ADDR"
    ),
    Setting("nats-port", parse_port, 4222, "Embedded NATS port; 0 starts no embedded server"),
    Setting(
        "nats-store-dir",
        _parse_str,
        "",
        "JetStream store of the embedded NATS server [default: $XDG_DATA_HOME/sqlite-ha/<name>/nats]",
        metavar="DIR",
    ),
    Setting(
        "nats-user",
        _parse_str,
        "",
        "User required by the embedded NATS server (and used to connect)",
        metavar="USER",
    ),
    Setting("nats-pass", _parse_str, "", "Password of --nats-user", secret=True, metavar="PASS"),
    Setting(
        "nats-creds",
        _parse_str,
        "",
        "NATS credentials the node logs in with instead of a password: a .creds file (JWT and nkey seed) or "
        "an nkey seed file, for an external server or a --nats-config with nkey users",
        metavar="FILE",
    ),
    Setting(
        "nats-config",
        _parse_str,
        "",
        "nats-server config file; replaces the generated configuration",
        metavar="FILE",
    ),
    Setting(
        "nats-cluster-port",
        parse_port,
        0,
        "Port for routes from the other embedded NATS servers of a cluster; 0 runs no cluster",
    ),
    Setting("nats-cluster-name", _parse_stream_name, "sqlite-ha", "NATS cluster name", metavar="NAME"),
    Setting(
        "nats-routes",
        _parse_routes,
        (),
        "Cluster ports of the other nodes' embedded NATS servers, comma-separated host:port",
        metavar="HOST:PORT,...",
    ),
    Setting("nats-logs", parse_bool, False, "Show the embedded NATS server's log", is_flag=True),
    Setting(
        "nats-cert",
        _parse_str,
        "",
        "TLS certificate (PEM) of the embedded NATS server, for its client and cluster ports",
        metavar="FILE",
    ),
    Setting("nats-key", _parse_str, "", "TLS private key (PEM) of --nats-cert", metavar="FILE"),
    Setting(
        "nats-ca",
        _parse_str,
        "",
        "CA (PEM) that signed the NATS servers' certificates: trusted by the node's NATS client (also for "
        "an external tls:// server) and required of the embedded server's cluster peers",
        metavar="FILE",
    ),
    Setting(
        "cluster-secret",
        _parse_str,
        "",
        "Secret shared by the nodes of a cluster: the embedded NATS server's credentials and the MAC of "
        "every change set and snapshot derive from it. Two, comma-separated, during a rotation (the first "
        "signs). Prefer HA_CLUSTER_SECRET or --cluster-secret-file: a flag shows in ps [default: made at "
        "first start and kept beside the NATS store]",
        secret=True,
        metavar="SECRET",
    ),
    Setting(
        "cluster-secret-file",
        _parse_str,
        "",
        "File holding the cluster secret (one line; during a rotation two lines, the first signs)",
        metavar="FILE",
    ),
    Setting(
        "insecure-replication",
        parse_bool,
        False,
        "Run the replication channel without credentials and without MACs: any process that reaches NATS "
        "can then write to every database (only for a private, trusted network; warned at start)",
        is_flag=True,
    ),
    Setting(
        "replication-url",
        _parse_nats_url,
        "",
        "External NATS URL to replicate through (wins over the embedded server)",
    ),
    Setting("replication-stream", _parse_stream_name, "ha_replication", "JetStream stream name"),
    Setting("replicas", _parse_int_range(1, 5), 1, "Stream and object store replicas (1-5)", metavar="N"),
    Setting("replication-timeout", parse_duration, 15.0, "How long a write waits for the stream to ack"),
    Setting("replication-max-age", parse_duration, 24 * 3600.0, "How long the stream keeps change sets"),
    Setting(
        "max-transaction-size",
        _parse_transaction_size,
        512 * 1024 * 1024,
        "Largest change set one write transaction may make (e.g. 512MB, at most 1e9 bytes); a larger one is "
        "rolled back with payload_too_large. One larger than a message of the log travels in chunks",
    ),
    Setting(
        "from-latest-snapshot",
        parse_bool,
        False,
        "Start every database from the latest snapshot (a node also does so by itself when the log no "
        "longer holds what it missed)",
        is_flag=True,
    ),
    Setting(
        "snapshot-interval",
        parse_duration,
        60.0,
        "Take a snapshot of each database about this often when it changed, and before the log's retention "
        "drops change sets no snapshot covers (0 = only on demand or when a joining node asks)",
    ),
    Setting(
        "replication-policy",
        _parse_policy,
        "all",
        "Where a new consumer starts: all, last, new, by_start_sequence=N, by_start_time=YYYY-MM-DD HH:MM:SS",
        metavar="POLICY",
    ),
    Setting(
        "async-replication",
        parse_bool,
        False,
        "Answer writes after the local commit; an outbox relay publishes them",
        is_flag=True,
    ),
    Setting("disable-ddl-sync", parse_bool, False, "Do not replicate schema changes", is_flag=True),
    Setting(
        "row-identify",
        _parse_row_identify,
        "pk",
        "How rows are identified across nodes: pk (rowid is accepted and means the same)",
        metavar="MODE",
    ),
    Setting(
        "rowid-stride",
        _parse_int_range(1, 1024),
        16,
        "Keys the database chooses (INTEGER PRIMARY KEY) are strided so nodes never pick the same one: "
        "at most N nodes insert such rows; 1 = SQLite's own keys (one writer only). The first node of a "
        "cluster sets it",
        metavar="N",
    ),
    Setting(
        "interceptor",
        _parse_interceptor,
        "",
        "Python hooks around applying change sets, as module:object (see docs/replication.md)",
        short="i",
        metavar="MODULE:OBJ",
    ),
)
SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}


# ------------------------------------------------------------------------------------------------ config
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
    interceptor: str = ""

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
    """Pick the ``HA_*`` variables that name a setting (and ``HA_<SECRET>_FILE`` for secrets); others are
    left alone (HA_ARGS is positional)."""
    out: dict[str, str] = {}
    own_names = {s.env for s in SETTINGS}
    for s in SETTINGS:
        if s.env in env:
            out[s.name] = env[s.env]
        elif s.secret and env.get(s.env + "_FILE") and s.env + "_FILE" not in own_names:
            # (HA_CLUSTER_SECRET_FILE is --cluster-secret-file's own variable: that setting reads it)
            out[s.name] = read_secret_file(env[s.env + "_FILE"], s.env + "_FILE")
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
    env_values = read_env(env)
    values: dict[str, Any] = {}
    for s in SETTINGS:
        raw: Any
        if s.name in flags and flags[s.name] is not None:
            raw, source = flags[s.name], None
        elif s.name in env_values:
            raw, source = env_values[s.name], s.env
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
    return Config(databases=dbs, **values)
