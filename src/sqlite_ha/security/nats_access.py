"""Who may use the replication channel: the embedded NATS server's users and routes, the node's own NATS
credentials, and TLS. Policy only: ``natsd`` runs the server and ``replication/jetstream/connection`` the
client with what is decided here.

With a cluster secret, the embedded server has one user per secret (two during a rotation), named after the
secret (``sqlite-ha-<8 hex>``: nats-server refuses two users of one name) with the password derived from it,
and the node connects as the first. Every user may do everything (the stream, the object store, ``_HA.>``
snapshot requests): the nodes of a cluster trust each other, the point is to keep everyone else out.
Routes between embedded servers authenticate with the same credentials. A nats-server cluster block requires
one user of incoming routes (the first secret's), so during a rotation outgoing routes are tried with each
secret: a pair of servers where one knows only the old secret and the other only accepts the new one still
forms its route in the other direction (docs/security.md, "Rotating the cluster secret").

``--nats-user``/``--nats-pass`` or ``--nats-creds`` (nkeys) win over the secret for NATS (not for the MACs).
``--nats-config`` is the user's own server config: the node then only connects, with the explicit login or
the secret's credentials.
"""

from __future__ import annotations

import hashlib
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_ha.config import Config
from sqlite_ha.errors import ConfigError
from sqlite_ha.natsd import NatsServerOptions
from sqlite_ha.security.keys import NATS_USER, ClusterKeys

log = logging.getLogger(__name__)


def nats_user(password: str) -> str:
    """The NATS user name of a secret's password: distinct per secret, and says nothing about it."""
    return f"{NATS_USER}-{hashlib.sha256(password.encode()).hexdigest()[:8]}"


@dataclass(frozen=True, kw_only=True)
class NatsAccess:
    """How the node authenticates to NATS and how its embedded server authenticates others."""

    mode: str
    """``cluster-secret``, ``user`` (``--nats-user``), ``nkey`` (``--nats-creds``) or ``none``
    (``--insecure-replication``)."""
    users: tuple[tuple[str, str], ...] = ()
    """``(user, password)`` the embedded server accepts; the node connects with the first."""
    creds_file: str = ""
    """``--nats-creds``: a .creds file or an nkey seed the node's client logs in with."""
    cert: str = ""
    key: str = ""
    ca: str = ""
    external_tls: bool = False
    """The external server's URL says ``tls://``."""

    @property
    def credentials(self) -> tuple[str, str] | None:
        return self.users[0] if self.users else None

    @property
    def tls(self) -> bool:
        return bool(self.cert) or self.external_tls

    def client_tls(self) -> ssl.SSLContext | None:
        """The TLS context of the node's NATS client: trusting ``--nats-ca`` (else the system's CAs); None
        when no TLS is configured (nats-py then makes a default context for a ``tls://`` URL itself)."""
        if not (self.ca or self.cert):
            return None
        try:
            return ssl.create_default_context(cafile=self.ca or None)
        except (OSError, ssl.SSLError) as e:
            raise ConfigError("--nats-ca", f"cannot load {self.ca}: {e}") from e

    def server_options(self, config: Config) -> NatsServerOptions:
        """How the node runs its embedded server, with these credentials and TLS."""
        creds = self.credentials
        return NatsServerOptions(
            name=config.nats_name or config.name,
            host=config.nats_host,
            port=config.nats_port,
            store_dir=config.store_dir(),
            user=creds[0] if creds else None,
            password=creds[1] if creds else None,
            other_users=self.users[1:],
            route_logins=self.users,
            tls_cert=Path(self.cert) if self.cert else None,
            tls_key=Path(self.key) if self.key else None,
            tls_ca=Path(self.ca) if self.ca else None,
            config_file=Path(config.nats_config) if config.nats_config else None,
            cluster_port=config.nats_cluster_port,
            cluster_name=config.nats_cluster_name,
            routes=config.nats_routes,
            logs=config.nats_logs,
        )

    def client_login(self) -> dict[str, str]:
        """The ``nats.connect`` arguments that log the node in (never logged)."""
        if self.creds_file:
            try:
                head = Path(self.creds_file).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                raise ConfigError("--nats-creds", f"cannot read {self.creds_file}: {e}") from e
            if "BEGIN NATS USER JWT" in head:
                return {"user_credentials": self.creds_file}
            return {"nkeys_seed": self.creds_file}
        if self.credentials is None:
            return {}
        user, password = self.credentials
        return {"user": user, "password": password}

    def status(self) -> dict[str, Any]:
        """For ``/status``: the mode and whether TLS is on, never a secret."""
        return {"auth": self.mode, "tls": self.tls}


def nats_access(config: Config, keys: ClusterKeys | None) -> NatsAccess:
    users: tuple[tuple[str, str], ...] = ()
    mode = "none"
    if config.nats_creds:
        mode = "nkey"
    elif config.nats_user:
        mode, users = "user", ((config.nats_user, config.nats_pass),)
    elif keys is not None:
        mode, users = "cluster-secret", tuple((nats_user(p), p) for p in keys.nats_passwords())
    return NatsAccess(
        mode=mode,
        users=users,
        creds_file=config.nats_creds,
        cert=config.nats_cert,
        key=config.nats_key,
        ca=config.nats_ca,
        external_tls=any(u.startswith("tls://") for u in config.replication_url.split(",")),
    )


def warn_insecure(config: Config) -> None:
    """The one loud line an ``--insecure-replication`` node logs at start."""
    log.warning(
        "--insecure-replication: the replication channel has no credentials and change sets carry no MAC; "
        "any process that can reach NATS%s can read every change set, write to every database and replace "
        "snapshots. Use it only on a private, trusted network",
        f" (the embedded server listens on {config.nats_host}:{config.nats_port})"
        if config.embedded_nats
        else "",
    )
