"""What a read replica is told: which databases into which files, through which NATS, from where in the log.

A replica is a node in the ``Subscriber`` role, so it is configured with the node's own settings (the same
flags, ``HA_*`` variables and parsers), restricted to those that mean something for a process that only
reads the log: NATS address, credentials and TLS, the cluster secret, the stream. Nothing else of the
environment reaches it (an ``HA_LEADER_STATIC`` meant for a server on the same machine must not make the
replica a writer-mode node).

Where it starts is decided by the file, not by a consumer: a file the replica wrote before resumes right
after the position stored in it; a new file starts from the beginning of the log, or from the latest
snapshot when the log no longer holds the beginning. ``--deliver-policy`` (ha-sync's delivery policies) is
checked against that, and refused where it would make a replica that silently lacks change sets
(``check_start``).
"""

from __future__ import annotations

import os
import re
import secrets
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_ha.config import SETTINGS_BY_NAME, Config, resolve
from sqlite_ha.config.values import parse_policy
from sqlite_ha.db.dsn import DatabaseSpec, valid_id
from sqlite_ha.errors import ConfigError
from sqlite_ha.replication.bootstrap import FileState

# The node settings a replica takes, by setting name (flags --<name>, variables HA_<NAME>).
SETTINGS = (
    "replication-url",
    "replication-stream",
    "cluster-secret",
    "cluster-secret-file",
    "insecure-replication",
    "nats-user",
    "nats-pass",
    "nats-creds",
    "nats-ca",
    "from-latest-snapshot",
    "busy-timeout",
    "log-level",
)
STATUS_INTERVAL = 10.0  # seconds between two lag lines in the log, by default
_NAME = re.compile(r"[A-Za-z0-9_-]{1,48}")


@dataclass(frozen=True, kw_only=True)
class ReplicaOptions:
    """A replica's configuration: the node's (``config``), its files and its consumers."""

    config: Config
    databases: tuple[DatabaseSpec, ...]
    durable: bool  # named consumers that outlive the process (``--durable NAME``), else ephemeral ones
    deliver_policy: str  # as given; checked against each file by ``check_start``
    status_interval: float = STATUS_INTERVAL


def replica_options(
    target: str | os.PathLike[str],
    *,
    databases: Sequence[str] = (),
    durable: str | None = None,
    deliver_policy: str = "all",
    status_interval: float = STATUS_INTERVAL,
    settings: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> ReplicaOptions:
    """Build and check a replica's options.

    ``target`` is the local file for one database (its id is ``databases[0]``, else the file's name, as
    ``sqlite-ha serve FILE`` names it), or a directory that receives one file per database, named by its
    id. ``settings`` holds node settings by name (``"replication-url"`` or ``replication_url``); the
    environment adds the ``HA_*`` variables of those settings only.
    """
    given = {str(k).replace("_", "-"): v for k, v in (settings or {}).items() if v is not None}
    for name in given:
        if name not in SETTINGS:
            raise ConfigError(f"--{name}", "is not a setting of a read replica")
    env = os.environ if env is None else env
    names = {SETTINGS_BY_NAME[n].env for n in SETTINGS}
    own_env = {k: v for k, v in env.items() if k in names or k.removesuffix("_FILE") in names}
    if not given.get("replication-url") and not own_env.get("HA_REPLICATION_URL"):
        raise ConfigError(
            "--replication-url", "is required: the NATS server(s) of the cluster to replicate from"
        )
    try:
        parse_policy(deliver_policy)
    except ValueError as e:
        raise ConfigError("--deliver-policy", str(e)) from None
    if status_interval < 0:
        raise ConfigError("--status-interval", "must be 0 (no lag lines) or more")
    if durable is not None and not _NAME.fullmatch(durable):
        raise ConfigError("--durable", f"{durable!r} is not a consumer name (1-48 letters, digits, _ and -)")
    flags = {
        **given,
        "name": durable or _ephemeral_name(),
        "nats-port": "0",  # no embedded server: a replica reads a cluster's
        "replication-policy": "all",  # where each file starts is decided by check_start
    }
    config = resolve(flags, env=own_env)
    specs = _specs(Path(target), databases)
    return ReplicaOptions(
        config=config,
        databases=tuple(specs),
        durable=durable is not None,
        deliver_policy=deliver_policy.strip(),
        status_interval=status_interval,
    )


def _ephemeral_name() -> str:
    """A replica without ``--durable``: a name of its own for its ephemeral consumers (a node's name would
    make two processes pull one consumer)."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname() or "host")[:24]
    return f"sync-{host}-{secrets.token_hex(3)}"


def _specs(target: Path, databases: Sequence[str]) -> list[DatabaseSpec]:
    for ident in databases:
        if not valid_id(ident):
            raise ConfigError("--database", f"{ident!r} is not a database name (letters, digits, . _ -)")
    if len(set(databases)) != len(databases):
        raise ConfigError("--database", "names a database twice")
    if len(databases) > 1 or target.is_dir():
        if not target.is_dir():
            raise ConfigError(
                "TARGET",
                f"{target} is not a directory: several databases are replicated into a directory, one file "
                "each, named by the database",
            )
        if not databases:
            raise ConfigError("--database", f"{target} is a directory: name the database(s) to replicate")
        return [DatabaseSpec(id=ident, path=str(target / ident)) for ident in databases]
    ident = databases[0] if databases else target.name
    if not valid_id(ident):
        raise ConfigError("TARGET", f"{target.name!r} is not a database name; give --database ID")
    if not target.parent.is_dir():
        raise ConfigError("TARGET", f"directory {target.parent} does not exist")
    return [DatabaseSpec(id=ident, path=str(target))]


def check_start(policy: str, state: FileState, path: str) -> int | None:
    """Refuse a delivery policy that would leave the replica without some change sets. Returns the position
    to record in a file that has none (a copy of the database the user says is complete up to it), else
    None: the replica resumes after the file's position, or starts a new file from the beginning (or a
    snapshot)."""
    if policy == "all":
        if state.position == 0 and state.user_tables:
            raise ConfigError(
                "TARGET",
                f"{path} holds tables but was never a replica (it has no replication position): the log's "
                "change sets would be mixed into rows of unknown origin",
                source=None,
            )
        return None
    key, _, value = policy.partition("=")
    if key == "by_start_sequence":
        start = int(value)
        if state.position and start <= state.position + 1:
            return None  # no change: it resumes right after its position
        if state.position:
            raise ConfigError(
                "--deliver-policy",
                f"{path} has applied the log up to seq {state.position}: starting at {start} would skip "
                f"seq {state.position + 1} to {start - 1}; leave --deliver-policy out to resume",
            )
        if not state.user_tables:
            if start == 1:
                return None
            raise ConfigError(
                "--deliver-policy",
                f"{path} is a new replica: starting at seq {start} it would lack every change set before; "
                "leave --deliver-policy out (it starts from the latest snapshot when the log no longer "
                "holds the beginning)",
            )
        return start - 1  # a copy the user vouches for: complete up to start - 1
    why = {
        "new": "only what is published from now on",
        "last": "only the last change set and what follows",
        "by_start_time": "only what was published after that time",
    }[key]
    where = (
        f"resumes right after seq {state.position}, the position stored in {path}"
        if state.position
        else "starts from the beginning of the log, or from the latest snapshot when the log no longer "
        "holds it"
    )
    raise ConfigError(
        "--deliver-policy",
        f"{policy} would give a replica with {why}, silently lacking the rest; a replica {where}. For a "
        "copy of the database complete up to seq N-1, use by_start_sequence=N",
    )
