"""A driver DSN and its options (go-ha's DSN parameters and ``HA_*`` variables) read as a node configuration.

SKELETON: the lead's first cut, extended by the options work (every seed option name, DSN and environment).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from sqlite_ha.config import Config, resolve
from sqlite_ha.errors import ConfigError

# go-ha DSN parameter -> our setting name (temporary minimal table; the options work completes it)
_NAMES = {
    "name": "name",
    "replicationURL": "replication-url",
    "replicationStream": "replication-stream",
    "natsPort": "nats-port",
    "natsStoreDir": "nats-store-dir",
}


@dataclass(frozen=True, kw_only=True)
class DriverOptions:
    """What a ``Connector`` needs: the embedded node's configuration and the id of its one database."""

    config: Config
    database: str  # the database's id on the node (the file name, or ``replicationID``)
    auto_start: bool = True


def parse_options(
    dsn: str, options: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> DriverOptions:
    """``dsn`` is a path or ``file:path?param=value&…``; SQLite's own parameters (``_journal``, ``_fk``, …)
    stay in the DSN given to the database, the driver's go to the node. ``options`` override the DSN."""
    env = os.environ if env is None else env
    path, query = dsn, ""
    if dsn.startswith("file:"):
        parts = urlsplit(dsn)
        path, query = parts.path or parts.netloc, parts.query
    params = dict(parse_qsl(query, keep_blank_values=True))
    params.update({k: str(v) for k, v in (options or {}).items()})
    flags: dict[str, Any] = {}
    sqlite_params: dict[str, str] = {}
    for key, value in params.items():
        if key.startswith("_"):
            sqlite_params[key] = value
        elif key in _NAMES:
            flags[_NAMES[key]] = value
        else:
            raise ConfigError(key, "is not a sqlite-ha driver option")
    database = f"file:{path}?{urlencode(sqlite_params)}" if sqlite_params else path
    flags.setdefault("nats-port", "0")  # the skeleton runs alone unless told otherwise
    config = resolve(flags, databases=[database], env={k: v for k, v in env.items() if k.startswith("HA_")})
    return DriverOptions(config=config, database=os.path.basename(path.rstrip("/")))
