"""Every setting of a node: its flag, environment variable, parser, default and help text.

``SETTINGS`` is the single source of truth: the CLI builds its options from it, the environment and file
readers look names up in it, and the docs are checked against it (tests/test_lint.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlite_ha.config.values import (
    parse_bool,
    parse_choice,
    parse_duration,
    parse_http_url,
    parse_http_urls,
    parse_int_range,
    parse_interceptor,
    parse_leader_provider,
    parse_nats_name,
    parse_nats_url,
    parse_node_id,
    parse_policy,
    parse_port,
    parse_routes,
    parse_row_identify,
    parse_size,
    parse_str,
    parse_stream_name,
    parse_transaction_size,
)

ENV_PREFIX = "HA_"


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
    parse_transaction_size: "SIZE",
    parse_port: "PORT",
    parse_nats_url: "URL",
    parse_http_url: "URL",
    parse_http_urls: "URL,URL",
    parse_stream_name: "NAME",
}

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "name",
        parse_str,
        None,
        "Node name, used in change sets and consumer names [default: hostname]",
        short="n",
        metavar="NAME",
    ),
    Setting(
        "host",
        parse_str,
        "127.0.0.1",
        "Address the HTTP API listens on; use 0.0.0.0 to serve other machines (and set --token)",
        metavar="ADDR",
    ),
    Setting("port", parse_port, 8080, "HTTP API port", short="p"),
    Setting(
        "token",
        parse_str,
        "",
        "Value required in the Authorization header of every request except "
        "health and docs ('Bearer <token>' or the bare token)",
        secret=True,
        metavar="TOKEN",
    ),
    Setting(
        "auth-file",
        parse_str,
        "",
        "Users and their per-database permissions (JSON or YAML; reloaded on change and on SIGHUP). They log "
        "in over HTTP (Basic) and PostgreSQL (SCRAM); --token stays a single admin user",
        metavar="FILE",
    ),
    Setting(
        "cert", parse_str, "", "TLS certificate (PEM) of the HTTP API: it then serves HTTPS", metavar="FILE"
    ),
    Setting("key", parse_str, "", "TLS private key (PEM) of --cert", metavar="FILE"),
    Setting(
        "client-ca",
        parse_str,
        "",
        "CA (PEM) whose client certificates the HTTP API requires (needs --cert)",
        metavar="FILE",
    ),
    Setting(
        "max-connections",
        parse_int_range(1, 1_000_000),
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
    Setting("pg-user", parse_str, "ha", "User PostgreSQL clients log in as", metavar="USER"),
    Setting("pg-pass", parse_str, "ha", "Password of --pg-user", secret=True, metavar="PASS"),
    Setting(
        "pg-auth",
        parse_choice("scram-sha-256", "md5", "password"),
        "scram-sha-256",
        "How PostgreSQL clients prove the password: scram-sha-256, md5 or password (cleartext)",
        metavar="METHOD",
    ),
    Setting("pg-cert", parse_str, "", "TLS certificate (PEM) for PostgreSQL clients", metavar="FILE"),
    Setting("pg-key", parse_str, "", "TLS private key (PEM) of --pg-cert", metavar="FILE"),
    Setting(
        "pg-tls",
        parse_choice("allow", "require"),
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
        parse_int_range(1, 1_000_000),
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
        parse_choice("debug", "info", "warn", "warning", "error"),
        "info",
        "Log level: debug, info, warn, error",
        metavar="LEVEL",
    ),
    Setting(
        "create-db-dir",
        parse_str,
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
        parse_choice("normal", "full"),
        "full",
        "SQLite synchronous mode for database files: full survives power loss, normal only a crash",
        metavar="MODE",
    ),
    Setting(
        "event-loop",
        parse_choice("auto", "uvloop", "asyncio"),
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
        parse_int_range(1, 2**31),
        500_000,
        "Most rows one response may hold; more is an error asking for LIMIT",
        metavar="N",
    ),
    Setting(
        "nats-host", parse_str, "127.0.0.1", "Address the embedded NATS server listens on", metavar="ADDR"
    ),
    Setting("nats-port", parse_port, 4222, "Embedded NATS port; 0 starts no embedded server"),
    Setting(
        "nats-name",
        parse_nats_name,
        "",
        "server_name of the embedded NATS server (unique in a NATS cluster) [default: --name]",
        metavar="NAME",
    ),
    Setting(
        "nats-store-dir",
        parse_str,
        "",
        "JetStream store of the embedded NATS server [default: $XDG_DATA_HOME/sqlite-ha/<name>/nats]",
        metavar="DIR",
    ),
    Setting(
        "nats-user",
        parse_str,
        "",
        "User required by the embedded NATS server (and used to connect)",
        metavar="USER",
    ),
    Setting("nats-pass", parse_str, "", "Password of --nats-user", secret=True, metavar="PASS"),
    Setting(
        "nats-creds",
        parse_str,
        "",
        "NATS credentials the node logs in with instead of a password: a .creds file (JWT and nkey seed) or "
        "an nkey seed file, for an external server or a --nats-config with nkey users",
        metavar="FILE",
    ),
    Setting(
        "nats-config",
        parse_str,
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
    Setting("nats-cluster-name", parse_stream_name, "sqlite-ha", "NATS cluster name", metavar="NAME"),
    Setting(
        "nats-routes",
        parse_routes,
        (),
        "Cluster ports of the other nodes' embedded NATS servers, comma-separated host:port",
        metavar="HOST:PORT,...",
    ),
    Setting("nats-logs", parse_bool, False, "Show the embedded NATS server's log", is_flag=True),
    Setting(
        "nats-cert",
        parse_str,
        "",
        "TLS certificate (PEM) of the embedded NATS server, for its client and cluster ports",
        metavar="FILE",
    ),
    Setting("nats-key", parse_str, "", "TLS private key (PEM) of --nats-cert", metavar="FILE"),
    Setting(
        "nats-ca",
        parse_str,
        "",
        "CA (PEM) that signed the NATS servers' certificates: trusted by the node's NATS client (also for "
        "an external tls:// server) and required of the embedded server's cluster peers",
        metavar="FILE",
    ),
    Setting(
        "cluster-secret",
        parse_str,
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
        parse_str,
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
        parse_nats_url,
        "",
        "External NATS URL to replicate through (wins over the embedded server)",
    ),
    Setting("replication-stream", parse_stream_name, "ha_replication", "JetStream stream name"),
    Setting("replicas", parse_int_range(1, 5), 1, "Stream and object store replicas (1-5)", metavar="N"),
    Setting("replication-timeout", parse_duration, 15.0, "How long a write waits for the stream to ack"),
    Setting("replication-max-age", parse_duration, 24 * 3600.0, "How long the stream keeps change sets"),
    Setting(
        "max-transaction-size",
        parse_transaction_size,
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
        parse_policy,
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
        parse_row_identify,
        "pk",
        "How rows are identified across nodes: pk (rowid is accepted and means the same)",
        metavar="MODE",
    ),
    Setting(
        "rowid-stride",
        parse_int_range(1, 1024),
        16,
        "Keys the database chooses (INTEGER PRIMARY KEY) are strided so nodes never pick the same one: "
        "at most N nodes insert such rows; 1 = SQLite's own keys (one writer only). The first node of a "
        "cluster sets it",
        metavar="N",
    ),
    Setting(
        "leader-static",
        parse_http_url,
        "",
        "Writer mode static: the HTTP URL of the node that takes every write (the same on every node; "
        "that node writes, the others forward to it). Also BASE_STATIC_WRITER",
    ),
    Setting(
        "leader-addr",
        parse_http_url,
        "",
        "Writer mode elected: this node's own HTTP URL, as the other nodes reach it. The nodes elect one "
        "writer through a lease in NATS; the others forward writes to it",
    ),
    Setting(
        "leader-provider",
        parse_leader_provider,
        "",
        "go-ha's leaderProvider: static:URL is --leader-static URL, dynamic:URL is --leader-addr URL",
        metavar="KIND:URL",
    ),
    Setting(
        "local-target",
        parse_http_url,
        "",
        "Writer mode pinned (seed 000's BASE_LOCAL_TARGET): this node's own HTTP URL; with --peers, the "
        "lowest node id alive by heartbeats writes",
    ),
    Setting(
        "peers",
        parse_http_urls,
        (),
        "Writer mode pinned (BASE_PEERS): the other nodes' HTTP URLs, comma-separated",
    ),
    Setting(
        "node-id",
        parse_node_id,
        "",
        "Node id ranked in writer mode pinned (lowest alive writes) [default: --name]",
        metavar="ID",
    ),
    Setting(
        "heartbeat-interval",
        parse_duration,
        1.0,
        "Writer modes elected and pinned: how often the writer renews its lease, and nodes send heartbeats",
    ),
    Setting(
        "lease-timeout",
        parse_duration,
        3.0,
        "Writer modes elected and pinned: a writer not heard of for this long is replaced",
    ),
    Setting(
        "writer-wait",
        parse_duration,
        10.0,
        "How long a write waits for a writer while none is known (an election), before it fails with "
        "no_writer",
    ),
    Setting(
        "interceptor",
        parse_interceptor,
        "",
        "Python hooks around applying change sets, as module:object (see docs/replication.md)",
        short="i",
        metavar="MODULE:OBJ",
    ),
    Setting(
        "apply-strategy",
        parse_interceptor,
        "",
        "Python callable that applies change sets from other nodes in place of last-writer-wins, as "
        "module:object (see docs/replication.md)",
        metavar="MODULE:OBJ",
    ),
)
SETTINGS_BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
