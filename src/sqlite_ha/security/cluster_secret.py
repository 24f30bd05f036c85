"""Where a node finds its cluster secret, and the secret a first node makes for its cluster.

In order: ``--cluster-secret`` (or ``HA_CLUSTER_SECRET``, or the file ``HA_CLUSTER_SECRET_FILE`` names, read
by the config), then ``--cluster-secret-file``. With none of them, a node that runs an embedded NATS server
makes one (a new cluster starts with one command) and keeps it, 0600, in ``cluster-secret`` beside its NATS
store, where it finds it again at its next start. A node that replicates through an external NATS server
makes none: it must use the secret of the cluster it joins, which it cannot guess.
A secret file that others may read is accepted with a warning (``config.warn_if_readable`` says why).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from sqlite_ha.config import Config, read_secret_file, warn_if_readable
from sqlite_ha.errors import ConfigError
from sqlite_ha.security.keys import ClusterKeys, generate_secret

log = logging.getLogger(__name__)

SECRET_FILE_NAME = "cluster-secret"


@dataclass(frozen=True, kw_only=True)
class ClusterSecret:
    """The node's cluster secret(s) and where they come from (never the secret itself)."""

    keys: ClusterKeys | None
    """None when the replication channel runs without a secret (``--insecure-replication``, or no NATS)."""
    source: str
    """``--cluster-secret`` (flag or environment), ``--cluster-secret-file``, ``generated`` (a file this
    node made, now or at an earlier start) or ``none``."""
    path: Path | None = None
    """The file the secret was read from or stored in."""
    created: bool = False
    """Made at this start: the operator has to be told how other nodes join."""


def cluster_keys(config: Config) -> ClusterKeys | None:
    """The keys of the configured secret(s), without making one; None when none is configured."""
    if config.insecure_replication:
        return None
    if config.cluster_secret:
        return _keys(config.cluster_secret, "--cluster-secret")
    if config.cluster_secret_file:
        return _keys(
            read_secret_file(config.cluster_secret_file, "--cluster-secret-file"), "--cluster-secret-file"
        )
    return None


def cluster_secret(config: Config) -> ClusterSecret:
    """The node's secret: the configured one, else the one it made earlier, else a new one (embedded NATS
    only). Raises ``ConfigError`` for a node that joins an external NATS server without a secret."""
    if config.insecure_replication:
        return ClusterSecret(keys=None, source="none")
    keys = cluster_keys(config)
    if keys is not None:
        if config.cluster_secret:
            return ClusterSecret(keys=keys, source="--cluster-secret")
        return ClusterSecret(keys=keys, source="--cluster-secret-file", path=Path(config.cluster_secret_file))
    if config.replication_url:
        raise ConfigError(
            "--replication-url",
            "a node that replicates through an external NATS server needs the cluster secret of the nodes "
            "it joins (it authenticates to NATS and signs every change set with it): copy the "
            f"{SECRET_FILE_NAME} file of the first node and start with --cluster-secret-file FILE (or "
            "HA_CLUSTER_SECRET_FILE=FILE, or HA_CLUSTER_SECRET); --insecure-replication runs without one, "
            "for a trusted network only",
        )
    if not config.embedded_nats:
        return ClusterSecret(keys=None, source="none")  # no NATS: nothing to authenticate
    path = config.store_dir().parent / SECRET_FILE_NAME
    created = False
    try:
        text = _read_kept(path)
        if text is None:
            text, created = _store_new(path), True
    except OSError as e:
        raise ConfigError(
            "--cluster-secret-file",
            f"cannot keep the cluster secret in {path}: {e.strerror or e}",
            source="the secret made at first start",
        ) from e
    if not created:
        log.info("cluster secret: the one this node made at its first start, kept in %s", path)
    return ClusterSecret(keys=_keys(text, str(path)), source="generated", path=path, created=created)


def join_instructions(path: Path) -> str:
    """What the operator reads on stderr after the first start: how the other nodes get the secret."""
    return (
        f"sqlite-ha: made a new cluster secret and stored it in {path} (mode 0600).\n"
        "sqlite-ha: every node of this cluster needs the same secret. Copy that file to each other node "
        "(keep it 0600)\n"
        "sqlite-ha: and start it with --cluster-secret-file FILE, or HA_CLUSTER_SECRET_FILE=FILE.\n"
    )


def _keys(text: str, source: str) -> ClusterKeys:
    try:
        return ClusterKeys.from_text(text)
    except ValueError as e:
        raise ConfigError(source, str(e)) from None


def _read_kept(path: Path) -> str | None:
    """The secret a previous start stored, or None if there is none yet."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, encoding="utf-8") as f:
        text = f.read()
    warn_if_readable(path, "the cluster secret made at first start")
    return text.strip()


def _store_new(path: Path) -> str:
    """Make a secret and store it at ``path`` atomically: written 0600 beside it, synced, then linked into
    place, so a crash leaves no half-written secret and two racing starts end with the same one."""
    directory = path.parent
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    secret = generate_secret()
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secret + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # unlike rename, never replaces a secret another start stored meanwhile
        except FileExistsError:
            kept = _read_kept(path)
            if kept:
                return kept
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return secret
