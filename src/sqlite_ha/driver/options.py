"""A driver DSN and its options (go-ha's DSN parameters and ``HA_*`` variables) read as a node configuration.

``parse_options(dsn, options, env)`` accepts every option of go-ha (seeds 001 and 004) under its own name, in
the DSN (``file:app.db?replicationURL=nats://…&name=n1``), as a keyword option (``replicationURL=…`` or
``replication_url=…``) and as its ``HA_*`` variable; and every sqlite-ha setting under its own name (kebab,
camel or snake case: ``cluster-secret-file``, ``clusterSecretFile``, ``cluster_secret_file``), so a driver
joins an authenticated cluster exactly as a node does. Precedence: keyword options > DSN > environment >
defaults. SQLite's own DSN parameters (``_journal``, ``_fk``, ``_busy_timeout``, ``mode``…) go to the
database (``db/dsn.py``). Values are parsed as the server parses them (durations ``5s``, booleans); a keyword
option may also be a Python value (``True``, a number of seconds, an interceptor object).

Each go-ha option is read as the sqlite-ha setting that does the same (``GO_HA_OPTIONS``; the environment
names come from ``config/aliases.py``, the one table of them), as a plug-in choice (``sqlite_ha.plugins``),
or refused with a ``ConfigError`` that names it and says why. docs/library.md, "Driver options", has
the table.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from sqlite_ha.config import SETTINGS_BY_NAME, Config, parse_bool, parse_duration, resolve
from sqlite_ha.config.aliases import GO_HA_ENV, IGNORED, REFUSED
from sqlite_ha.db.dsn import parse_dsn, valid_id
from sqlite_ha.errors import ConfigError
from sqlite_ha.plugins import (
    LOG_PUBLISHERS,
    ChangeSetPublisher,
    Plugins,
    check_interceptor,
    load_apply_strategy,
    load_interceptor,
    publisher_from_text,
)

log = logging.getLogger(__name__)

# go-ha's DSN parameters (seed 004) and their environment variables. What each means here is decided by the
# variable: a setting of ours (``config/aliases.GO_HA_ENV``, or our own variable of the same name), a plug-in
# choice (``_PLUGIN_OPTIONS``), or a refusal (``aliases.REFUSED``, ``aliases.IGNORED``).
GO_HA_OPTIONS: dict[str, str] = {
    "asyncPublisher": "HA_ASYNC_PUBLISHER",
    "asyncPublisherOutboxDir": "HA_ASYNC_PUBLISHER_OUTBOX_DIR",
    "autoStart": "HA_AUTO_START",
    "replicationID": "HA_REPLICATION_ID",
    "deliverPolicy": "HA_DELIVER_POLICY",
    "disableSubscriber": "HA_DISABLE_SUBSCRIBER",
    "disablePublisher": "HA_DISABLE_PUBLISHER",
    "disableDBSnapshotter": "HA_DISABLE_SNAPSHOTTER",
    "disableDDLSync": "HA_DISABLE_DDL_SYNC",
    "grpcPort": "HA_GRPC_PORT",
    "grpcTimeout": "HA_GRPC_TIMEOUT",
    "grpcToken": "HA_GRPC_TOKEN",
    "leaderProvider": "HA_LEADER_PROVIDER",
    "name": "HA_NAME",
    "natsConfigFile": "HA_NATS_CONFIG_NAME",
    "natsName": "HA_NATS_NAME",
    "natsPort": "HA_NATS_PORT",
    "natsStoreDir": "HA_NATS_STORE_DIR",
    "publisherTimeout": "HA_PUBLISHER_TIMEOUT",
    "replicationStream": "HA_REPLICATION_STREAM",
    "replicationURL": "HA_REPLICATION_URL",
    "replicas": "HA_REPLICAS",
    "rowIdentify": "HA_ROW_IDENTIDY",  # sic: the seed's spelling
    "snapshotInterval": "HA_SNAPSHOT_INTERVAL",
    "streamMaxAge": "HA_STREAM_MAX_AGE",
}
# Seed 001's older names of the same options.
SEED_001_NAMES: dict[str, str] = {
    "cdcID": "replicationID",
    "disableCDCSubscriber": "disableSubscriber",
    "disableCDCPublisher": "disablePublisher",
}
# go-ha options that choose plug-ins rather than settings (read by this module, not by ``resolve``), and
# the driver's own: ``publisher``, ``interceptor`` and ``applyStrategy`` (also settings, for the server).
_PLUGIN_OPTIONS = (
    "autoStart",
    "replicationID",
    "disableSubscriber",
    "disablePublisher",
    "disableDBSnapshotter",
)
DRIVER_OPTIONS = ("publisher",)
# The variables of those plug-in choices: the driver reads them; ``resolve`` (the server's reading, which
# refuses them) never sees them.
_PLUGIN_ENV = {GO_HA_OPTIONS[name]: name for name in _PLUGIN_OPTIONS}

# sqlite-ha settings that belong to a server's listeners: a driver has none.
SERVER_ONLY: dict[str, str] = (
    {
        name: "the embedded driver serves no HTTP API (it has no listener); run sqlite-ha serve for one"
        for name in (
            "host",
            "token",
            "auth-file",
            "cert",
            "key",
            "client-ca",
            "max-connections",
            "header-timeout",
            "body-timeout",
            "max-body-size",
            "max-load-size",
            "create-db-dir",
        )
    }
    | {
        name: "the embedded driver serves no PostgreSQL wire protocol; run sqlite-ha serve for one"
        for name in (
            "pg-port",
            "pg-user",
            "pg-pass",
            "pg-auth",
            "pg-cert",
            "pg-key",
            "pg-tls",
            "pg-allow-cleartext",
            "pg-max-connections",
            "pg-max-copy-size",
        )
    }
    | {
        "event-loop": "the driver's replication runs on a background loop of the library's own",
        "log-level": "an application configures logging itself (the logger is 'sqlite_ha')",
        "local-target": "writer mode pinned forwards between HTTP listeners; use leaderProvider=dynamic:URL",
        "peers": "writer mode pinned forwards between HTTP listeners; use leaderProvider=dynamic:URL",
        "node-id": "writer mode pinned forwards between HTTP listeners; use leaderProvider=dynamic:URL",
    }
)
# SQLite's DSN parameters without a leading underscore (those with one all go to the database).
_SQLITE_PARAMS = frozenset({"mode", "cache", "vfs", "immutable"})


def _setting_of_env(var: str) -> str | None:
    """The sqlite-ha setting a go-ha variable is read as: through ``aliases.GO_HA_ENV``, or ours by name."""
    if var in GO_HA_ENV:
        return GO_HA_ENV[var]
    return next((s.name for s in SETTINGS_BY_NAME.values() if s.env == var), None)


def _normal(key: str) -> str:
    """One spelling for every case style: ``replicationURL``, ``replication_url``, ``replication-url``."""
    return key.replace("-", "").replace("_", "").lower()


# normalized spelling -> canonical option name: go-ha's names first (they win where both exist: they mean
# the same), then ours.
_CANONICAL: dict[str, str] = {}
for _name in (*GO_HA_OPTIONS, *SEED_001_NAMES, *DRIVER_OPTIONS, *SETTINGS_BY_NAME):
    _CANONICAL.setdefault(_normal(_name), _name)
_KNOWN = sorted({*GO_HA_OPTIONS, *SEED_001_NAMES, *DRIVER_OPTIONS, *SETTINGS_BY_NAME})


@dataclass(frozen=True, kw_only=True)
class DriverOptions:
    """What a ``Connector`` needs: the embedded node's configuration, the id of its one database and the
    plug-ins the options chose."""

    config: Config
    database: str  # the database's id on the node (the file's base name, or ``replicationID``)
    plugins: Plugins = field(default_factory=Plugins)

    @property
    def auto_start(self) -> bool:
        """go-ha's autoStart: False holds the subscriber and snapshotter back until
        ``Node.start_replication()``."""
        return self.plugins.auto_start


@dataclass
class _Given:
    """One option as the user gave it: its name as written, its value, and where it came from."""

    key: str
    value: Any
    source: str  # "keyword option", "DSN" or the variable's name


def parse_options(
    dsn: str, options: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
) -> DriverOptions:
    """``dsn`` is a path or ``file:path?param=value&…`` (a plain path may carry ``?params`` too, as the Go
    drivers allow). ``options`` are keyword options; ``env`` the environment (default ``os.environ``)."""
    env = os.environ if env is None else env
    path, query = _split(dsn)
    if path in (":memory:", "") or path.startswith(":memory:"):
        raise ConfigError(
            "dsn",
            f"{dsn!r} names no file, and a replicated database is replicated under its name: give a file "
            "(app.db), or file:NAME?mode=memory for one kept in memory and replicated under NAME",
        )
    given: dict[str, _Given] = {}  # canonical name -> the option that wins
    sqlite_params: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key.startswith("_") or key.lower() in _SQLITE_PARAMS:
            sqlite_params[key] = value
        else:
            given[_canonical(key, "DSN")] = _Given(key, value, "DSN")
    for key, value in (options or {}).items():
        if value is None:
            continue
        if key.startswith("_"):  # SQLite's, as a keyword (``_fk=1``): over the DSN's
            sqlite_params[key] = str(int(value)) if isinstance(value, bool) else str(value)
        else:
            given[_canonical(key, "keyword option")] = _Given(key, value, "keyword option")
    for var, name in _PLUGIN_ENV.items():
        if var in env and name not in given:
            given[name] = _Given(var, env[var], var)

    flags: dict[str, Any] = {}
    for name, option in given.items():
        if name in _PLUGIN_OPTIONS or name in DRIVER_OPTIONS or name in ("interceptor", "apply-strategy"):
            continue
        setting = _setting_for(name, option)
        if setting is not None:
            flags[setting] = _setting_value(setting, option)
    plugins = _plugins(given)
    if "replicationID" in given:
        option = given["replicationID"]
        ident = str(option.value)
        if not valid_id(ident):
            raise ConfigError(
                option.key,
                f"{ident!r} is not a usable database id (letters, digits, . _ -)",
                source=option.source,
            )
        sqlite_params["replicationID"] = ident
    if "name" not in flags and not env.get("HA_NAME"):
        flags["name"] = default_name(path)
    if "port" not in flags and not env.get("HA_PORT"):
        flags["port"] = "0"  # no listener: a static:URL names this process only if its port is given
    database = f"file:{path}?{urlencode(sqlite_params)}" if sqlite_params else path
    parse_dsn(database, memory=False)  # a bad name or SQLite parameter fails here, before a node starts
    server_env = {k: v for k, v in env.items() if k.startswith(("HA_", "BASE_")) and k not in _PLUGIN_ENV}
    try:
        config = resolve(flags, databases=[database], env=server_env)
        plugins = plugins.completed(config)
    except ConfigError as e:
        raise _named(e, given) from None
    spec_id = sqlite_params.get("replicationID") or os.path.basename(path.rstrip("/"))
    return DriverOptions(config=config, database=spec_id, plugins=plugins)


def default_name(path: str) -> str:
    """The node name of a driver given none: the host's name and a hash of the database's absolute path.
    Stable across restarts (a node's durable consumer and rowid slot are found by its name) and different
    for two applications on one host that open different files (one name, one consumer: they would steal
    each other's change sets). go-ha's is the host name alone."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname() or "node")[:40].strip("-") or "node"
    digest = hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:8]
    return f"{host}-{digest}"


def _split(dsn: str) -> tuple[str, str]:
    if dsn.startswith("file:"):
        parts = urlsplit(dsn)
        return parts.path or parts.netloc, parts.query
    path, _, query = dsn.partition("?")
    return path, query


def _canonical(key: str, source: str) -> str:
    name = _CANONICAL.get(_normal(key))
    if name is None:
        close = difflib.get_close_matches(key, _KNOWN, n=1, cutoff=0.6)
        raise ConfigError(
            key,
            "is not a sqlite-ha driver option" + (f" (did you mean {close[0]}?)" if close else ""),
            source=source,
        )
    return SEED_001_NAMES.get(name, name)  # seed 001's older names are the same options


def _setting_for(name: str, option: _Given) -> str | None:
    """The sqlite-ha setting a (non plug-in) option sets, None for one that changes nothing here (warned);
    ``ConfigError`` for one that cannot be honoured."""
    var = GO_HA_OPTIONS.get(name)
    if var is not None:
        if var in REFUSED:
            raise ConfigError(option.key, f"is not supported: {REFUSED[var]}", source=option.source)
        if var in IGNORED:
            log.warning("%s (from %s) is ignored: %s", option.key, option.source, IGNORED[var])
            return None
        setting = _setting_of_env(var)
        assert setting is not None, var  # every other go-ha variable names a setting (tested)
        name = setting
    if name in SERVER_ONLY:
        raise ConfigError(option.key, f"does not apply: {SERVER_ONLY[name]}", source=option.source)
    return name


def _setting_value(setting: str, option: _Given) -> str | bool:
    """The option's value as ``resolve`` takes it, checked now so that an error names the option as given."""
    s = SETTINGS_BY_NAME[setting]
    value = option.value
    if isinstance(value, bool):
        if not s.is_flag:
            raise ConfigError(option.key, f"{value!r} is not a value for it", source=option.source)
        return value
    if isinstance(value, int | float) and s.parse is parse_duration:
        text = f"{value}s"  # a number of seconds, as Python's timeouts are
    elif isinstance(value, str | int | float):
        text = str(value)
    else:
        raise ConfigError(option.key, f"takes text, not {type(value).__name__}", source=option.source)
    try:
        s.parse(text)
    except ValueError as e:
        raise ConfigError(option.key, str(e), source=option.source) from None
    return text


def _flag(option: _Given) -> bool:
    if isinstance(option.value, bool):
        return option.value
    try:
        return parse_bool(str(option.value))
    except ValueError as e:
        raise ConfigError(option.key, str(e), source=option.source) from None


def _plugins(given: dict[str, _Given]) -> Plugins:
    """The plug-ins the options choose (``sqlite_ha.plugins``)."""
    kwargs: dict[str, Any] = {}
    log_publisher: str | None = None
    cdc: list[ChangeSetPublisher] = []
    if (option := given.get("publisher")) is not None:
        values = option.value if isinstance(option.value, list | tuple) else [option.value]
        for value in values:
            if isinstance(value, str):
                got, more = publisher_from_text(value, option.key)
                if any(p.strip() in LOG_PUBLISHERS for p in value.split(",")) or not more:
                    log_publisher = got
                cdc.extend(more)
            elif callable(getattr(value, "publish", None)):
                cdc.append(value)
            else:
                raise ConfigError(
                    option.key,
                    f"{value!r} is neither a publisher name nor an object with publish(cs, payload)",
                    source=option.source,
                )
        if log_publisher is None:
            log_publisher = "none" if cdc else "nats"  # JSON lines alone: no log
    if (option := given.get("disablePublisher")) is not None and _flag(option):
        if log_publisher not in (None, "none"):
            raise ConfigError(option.key, f"contradicts publisher={log_publisher}", source=option.source)
        log_publisher = "none"
    if log_publisher is not None:
        kwargs["publisher"] = log_publisher
    kwargs["cdc"] = tuple(cdc)
    if (option := given.get("disableSubscriber")) is not None:
        kwargs["subscriber"] = not _flag(option)
    if (option := given.get("disableDBSnapshotter")) is not None:
        kwargs["snapshotter"] = not _flag(option)
    if (option := given.get("autoStart")) is not None:
        kwargs["auto_start"] = _flag(option)
    if (option := given.get("interceptor")) is not None:
        if isinstance(option.value, str):
            _setting_value("interceptor", option)
            kwargs["interceptor"] = load_interceptor(option.value, option.key)
        else:
            check_interceptor(option.value, repr(option.value), option.key)
            kwargs["interceptor"] = option.value
    if (option := given.get("apply-strategy")) is not None:
        if isinstance(option.value, str):
            _setting_value("apply-strategy", option)
            kwargs["apply_strategy"] = load_apply_strategy(option.value, option.key)
        elif callable(option.value):
            kwargs["apply_strategy"] = option.value
        else:
            raise ConfigError(option.key, f"{option.value!r} is not callable", source=option.source)
    return Plugins(**kwargs)


def _named(e: ConfigError, given: dict[str, _Given]) -> ConfigError:
    """An error ``resolve`` raised about a setting (``--replication-url``), named as the user gave it."""
    for name, option in given.items():
        setting = name
        var = GO_HA_OPTIONS.get(name)
        if var is not None:
            setting = _setting_of_env(var) or name
        if e.setting in (f"--{setting}", setting):
            detail = e.message.split(": ", 1)[1] if ": " in e.message else e.message
            return ConfigError(option.key, detail, source=option.source)
    return e
