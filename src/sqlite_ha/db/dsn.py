"""Database arguments as users of ``ha`` write them: a path, or a ``file:`` DSN with parameters.

Go driver parameters (``_journal``, ``_busy_timeout``, ``_fk``, …) are understood so that existing command
lines keep working; anything unknown is an error rather than silently ignored. go-ha's ``replicationID``
(seed 001's ``cdcID``) sets the database's id, which is otherwise the file's base name.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from sqlite_ha.errors import ConfigError

DEFAULT_DATABASE = "ha.db"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # fullmatch: ``$`` would let a final newline in


@dataclass(frozen=True, kw_only=True)
class DatabaseSpec:
    """Where a database lives and how it is opened."""

    # The file's base name, or the DSN's ``replicationID``: routes, stream subjects and consumer names use
    # it, so two files of different names with one replicationID are one replicated database.
    id: str
    path: str  # file path; for in-memory databases the file loaded at start, if it exists
    memory: bool = False
    busy_timeout: float | None = None
    synchronous: str | None = None
    foreign_keys: bool | None = None
    read_only: bool = False


def valid_id(name: str) -> bool:
    return bool(_ID.fullmatch(name)) and name not in (".", "..")


def parse_dsn(arg: str, *, memory: bool) -> DatabaseSpec:
    """Parse one positional database argument."""
    setting = f"database {arg!r}"
    path, params = arg, {}
    if arg.startswith("file:"):
        parts = urlsplit(arg)
        path = parts.path or parts.netloc
        try:
            params = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
        except ValueError:
            raise ConfigError(setting, "malformed query string") from None
    if not path:
        raise ConfigError(setting, "no file name")
    ident = os.path.basename(path.rstrip("/"))
    kwargs: dict[str, object] = {}
    for key, value in params.items():
        k = key.lower()
        if k in ("_journal", "_journal_mode"):
            if value.upper() != "WAL":
                raise ConfigError(setting, f"{key}={value}: sqlite-ha always uses WAL for database files")
        elif k in ("_busy_timeout", "_timeout"):
            if not value.isdigit():
                raise ConfigError(setting, f"{key}={value!r} is not a number of milliseconds")
            kwargs["busy_timeout"] = int(value) / 1000
        elif k in ("_synchronous", "_sync"):
            mode = {"1": "normal", "2": "full", "3": "full", "extra": "full"}.get(
                value.lower(), value.lower()
            )
            if mode not in ("normal", "full"):
                raise ConfigError(setting, f"{key}={value!r}: use NORMAL or FULL")
            kwargs["synchronous"] = mode
        elif k in ("_foreign_keys", "_fk"):
            kwargs["foreign_keys"] = value.lower() in ("1", "true", "on", "yes")
        elif k == "mode":
            if value == "memory":
                memory = True
            elif value == "ro":
                kwargs["read_only"] = True
            elif value not in ("rw", "rwc"):
                raise ConfigError(setting, f"mode={value!r}: use ro, rw, rwc or memory")
        elif k in ("replicationid", "cdcid"):
            if not valid_id(value):
                raise ConfigError(
                    setting, f"{key}={value!r} is not a usable database id (letters, digits, . _ -)"
                )
            ident = value
        elif k in ("_txlock", "cache", "_loc", "_mutex", "vfs"):
            continue  # connection details of the Go driver that do not apply here
        else:
            raise ConfigError(setting, f"unknown parameter {key!r}")
    if not valid_id(ident):
        raise ConfigError(
            setting,
            f"{ident!r} is not a usable database name (letters, digits, . _ -): rename the file or give "
            "replicationID=ID",
        )
    return DatabaseSpec(id=ident, path=path, memory=memory, **kwargs)  # type: ignore[arg-type]


def parse_databases(args: tuple[str, ...], *, memory: bool) -> list[DatabaseSpec]:
    specs = [parse_dsn(a, memory=memory) for a in (args or (DEFAULT_DATABASE,))]
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.id in seen:
            raise ConfigError(
                f"database {spec.path!r}",
                f"has the same name as {seen[spec.id]!r}; database names must be unique",
            )
        seen[spec.id] = spec.path
    return specs
