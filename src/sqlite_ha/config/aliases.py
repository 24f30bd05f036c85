"""Environment variables of the systems sqlite-ha replaces, read as the settings they mean.

A deployment moving from go-ha (seed 004) or the base-ha plugin (seed 000) keeps its environment: each of
their variables is either read as the sqlite-ha setting that does the same, or refused with an error that
names it and says why (silently ignoring a setting someone relies on is the worst answer). A variable that
looks like ours (``HA_*``) but is none of them gets a warning with the closest name: a typo must not pass
unnoticed.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Mapping

from sqlite_ha.config.values import parse_bool
from sqlite_ha.errors import ConfigError

log = logging.getLogger(__name__)

# Seed 000's writer pinning (the base-ha plugin).
BASE_ENV = {
    "BASE_STATIC_WRITER": "leader-static",
    "BASE_LOCAL_TARGET": "local-target",
    "BASE_PEERS": "peers",
    "BASE_NODE_ID": "node-id",
}

# go-ha's variables whose sqlite-ha setting has another name.
GO_HA_ENV = {
    "HA_PUBLISHER_TIMEOUT": "replication-timeout",
    "HA_STREAM_MAX_AGE": "replication-max-age",
    "HA_DELIVER_POLICY": "replication-policy",
    "HA_ROW_IDENTIDY": "row-identify",  # sic: the seed's spelling
    "HA_NATS_CONFIG_NAME": "nats-config",
    "HA_ASYNC_PUBLISHER": "async-replication",
}

# go-ha's switches a server cannot turn: accepted with the value that changes nothing, else refused.
SWITCHES = {
    "HA_AUTO_START": (True, "sqlite-ha serve always starts replicating and snapshotting as it starts"),
    "HA_DISABLE_PUBLISHER": (
        False,
        "a node always publishes its writes (a node that did not would diverge from the others); for a "
        "read-only copy of a cluster open the database read-only",
    ),
    "HA_DISABLE_SUBSCRIBER": (
        False,
        "a node always applies the others' writes (one that did not would diverge from them)",
    ),
    "HA_DISABLE_SNAPSHOTTER": (False, "use --snapshot-interval 0 to take snapshots only on demand"),
}

# go-ha's variables sqlite-ha has no counterpart for.
REFUSED = {
    "HA_GRPC_PORT": "sqlite-ha has no gRPC server: remote clients use the HTTP API or the PostgreSQL wire "
    "protocol of sqlite-ha serve (--port, --pg-port)",
    "HA_GRPC_TIMEOUT": "sqlite-ha has no gRPC server: a request's time limit is --query-timeout, a write's "
    "wait for the log --replication-timeout",
    "HA_GRPC_TOKEN": "sqlite-ha has no gRPC server: protect the HTTP API with --token or --auth-file",
    "HA_REPLICATION_ID": "a node serves several databases and each needs its own id: give it per database "
    "as the DSN parameter replicationID (file:app.db?replicationID=ID)",
}
IGNORED = {
    "HA_ASYNC_PUBLISHER_OUTBOX_DIR": "sqlite-ha keeps the outbox inside the database file, committed with "
    "each write, so it needs no directory",
}

# HA_* variables that are not settings but are ours: positional databases, the config file, the admin client.
OTHER_OWN = frozenset({"HA_ARGS", "HA_CONFIG", "HA_URL", "HA_CACERT", "HA_CLIENT_CERT", "HA_CLIENT_KEY"})


def foreign_env(env: Mapping[str, str], own: Iterable[str]) -> dict[str, tuple[str, str]]:
    """The settings that seed 000's and go-ha's variables give: ``{setting: (value, variable)}``. Raises
    ``ConfigError`` for one sqlite-ha cannot honour, warns about one it ignores or does not know."""
    own = set(own)
    out: dict[str, tuple[str, str]] = {}
    for var, name in (*BASE_ENV.items(), *GO_HA_ENV.items()):
        if env.get(var):
            out[name] = (env[var], var)
    for var, (harmless, why) in SWITCHES.items():
        if var in env:
            try:
                value = parse_bool(env[var])
            except ValueError as e:
                raise ConfigError(var, str(e)) from None
            if value is not harmless:
                raise ConfigError(var, f"{env[var]!r} is not supported: {why}")
    for var, why in REFUSED.items():
        if env.get(var):
            raise ConfigError(var, f"is not supported: {why}")
    for var, why in IGNORED.items():
        if env.get(var):
            log.warning("%s is ignored: %s", var, why)
    known = own | OTHER_OWN | set(GO_HA_ENV) | set(SWITCHES) | set(REFUSED) | set(IGNORED)
    for var in env:
        if var.startswith("HA_") and var not in known and not _secret_file(var, own):
            close = difflib.get_close_matches(var, sorted(known), n=1, cutoff=0.75)
            log.warning(
                "environment variable %s is not a sqlite-ha setting: ignored%s",
                var,
                f" (did you mean {close[0]}?)" if close else "",
            )
    return out


def _secret_file(var: str, own: set[str]) -> bool:
    return var.endswith("_FILE") and var[: -len("_FILE")] in own
