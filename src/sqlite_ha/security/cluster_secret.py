"""Where a node finds its cluster secret: the flag or ``HA_CLUSTER_SECRET``, or ``--cluster-secret-file``."""

from __future__ import annotations

from sqlite_ha.config import Config, read_secret_file
from sqlite_ha.errors import ConfigError
from sqlite_ha.security.keys import ClusterKeys


def cluster_keys(config: Config) -> ClusterKeys | None:
    """The keys of the configured secret(s); None when the replication channel runs without them."""
    if config.insecure_replication:
        return None
    if config.cluster_secret:
        text, source = config.cluster_secret, "--cluster-secret"
    elif config.cluster_secret_file:
        text = read_secret_file(config.cluster_secret_file, "--cluster-secret-file")
        source = "--cluster-secret-file"
    else:
        return None
    try:
        return ClusterKeys.from_text(text)
    except ValueError as e:
        raise ConfigError(source, str(e)) from None
