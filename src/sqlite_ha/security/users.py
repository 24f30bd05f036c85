"""Users and their per-database permissions, read from ``--auth-file`` and reloaded when it changes.

The file is JSON or YAML: a list of users (rqlite's shape) or ``{"users": [...]}``::

    - username: reader
      password_hash: "SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>"   # sqlite-ha passwd
      perms: {app.db: [read]}
    - username: deploy
      password_hash: "SCRAM-SHA-256$..."
      tokens: ["sha256:<hex of the token's SHA-256>"]                      # sqlite-ha passwd --token
      perms: {"*": [all]}

A password is stored as PostgreSQL stores it, a SCRAM-SHA-256 verifier: the same entry serves HTTP Basic
(the cleartext is checked against it) and the PostgreSQL wire's SCRAM exchange. Bearer tokens are random
strings stored as their SHA-256: a token has enough entropy that a salt and a slow hash add nothing, and a
fast hash keeps a bearer request cheap. A plain ``password`` is accepted with a warning, as rqlite does.

Checking a Basic password costs a PBKDF2 run (milliseconds): ``Users.check_basic`` runs it on a thread and
remembers a success under a keyed hash of the (user, password) pair, so the next request with the same
credentials costs a dictionary look-up. A reload forgets every remembered success.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sqlite_ha.db.authorizer import Permission
from sqlite_ha.errors import ConfigError
from sqlite_ha.security.passwords import ScramVerifier, hash_password, parse_verifier, verify_password

log = logging.getLogger(__name__)

ALL_DATABASES = "*"
_PERMISSIONS = {
    "read": Permission.READ,
    "write": Permission.WRITE,
    "ddl": Permission.DDL,
    "admin": Permission.ADMIN,
    "all": Permission.ALL,
}
_USER_FIELDS = frozenset({"username", "password_hash", "password", "tokens", "perms"})
_TOKEN_PREFIX = "sha256:"
_CACHE_MAX = 10_000
_DUMMY = parse_verifier(hash_password(secrets.token_urlsafe(16)))


def token_hash(token: str) -> str:
    """How a bearer token is stored in the auth file."""
    return _TOKEN_PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(eq=False)
class User:
    """A user and what it may do; ``perms`` maps a database (its id, its name without extension, or "*")
    to its permissions."""

    name: str
    verifier: ScramVerifier | None
    perms: dict[str, Permission]
    tokens: frozenset[str] = frozenset()
    _grants: dict[str, Permission] = field(default_factory=dict, repr=False)
    _sql_grants: dict[str, Permission | None] = field(default_factory=dict, repr=False)

    def grant(self, database: str) -> Permission:
        """Every permission on ``database``: its own entries and those of "*"."""
        found = self._grants.get(database)
        if found is None:
            stem = database.rsplit(".", 1)[0]
            found = self.perms.get(ALL_DATABASES, Permission.NONE)
            found |= self.perms.get(database, Permission.NONE) | self.perms.get(stem, Permission.NONE)
            self._grants[database] = found
        return found

    def sql_grant(self, database: str) -> Permission | None:
        """The grant statements run with; None when it allows every statement (no check needed)."""
        try:
            return self._sql_grants[database]  # per request: one look-up, no IntFlag arithmetic
        except KeyError:
            pass
        grant = self.grant(database) & Permission.SQL
        found = None if grant == Permission.SQL else grant
        self._sql_grants[database] = found
        return found

    def allows(self, permission: Permission, database: str) -> bool:
        return permission in self.grant(database)


def superuser(name: str) -> User:
    """The user behind ``--token`` and ``--pg-user``/``--pg-pass``: every permission on every database."""
    return User(name=name, verifier=None, perms={ALL_DATABASES: Permission.ALL})


class Users:
    """The users of one auth file, current with it: ``reload`` (on SIGHUP) and ``watch`` (on change)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._key = secrets.token_bytes(32)  # keys the cache of checked passwords; never leaves memory
        self._stamp = _stamp(path)
        self.users, self._tokens = load(path)
        self._checked: dict[bytes, User] = {}
        self.reloads = 0

    def get(self, name: str) -> User | None:
        return self.users.get(name)

    def check_token(self, token: str) -> User | None:
        return self._tokens.get(token_hash(token))

    def remembered(self, credentials: str) -> User | None:
        """The user whose credentials (an Authorization header's value) were checked before, if any."""
        return self._checked.get(hmac.digest(self._key, credentials.encode(), "sha256"))

    async def check_basic(self, name: str, password: str, credentials: str = "") -> User | None:
        """The user whose password this is, or None. A success is remembered under ``credentials`` (by
        default the pair itself) until the next reload; see the module's note."""
        user = self.users.get(name)
        if not password:
            return None
        users = self.users
        # An unknown user costs the same PBKDF2 run as a wrong password: the time tells nothing.
        verifier = user.verifier if user is not None and user.verifier is not None else _DUMMY
        if not await asyncio.to_thread(verify_password, verifier, password) or user is None:
            return None
        if users is self.users:  # not reloaded meanwhile
            if len(self._checked) >= _CACHE_MAX:
                self._checked.clear()
            key = hmac.digest(self._key, (credentials or f"{name}\0{password}").encode(), "sha256")
            self._checked[key] = user
        return user

    def reload(self) -> bool:
        """Read the file again; a broken file keeps the users loaded before (and says why in the log)."""
        stamp = _stamp(self.path)
        try:
            users, tokens = load(self.path)
        except ConfigError as e:
            self._stamp = stamp  # not retried until it changes again
            log.error("--auth-file not reloaded, the previous users stay: %s", e.message)
            return False
        self.users, self._tokens, self._stamp = users, tokens, stamp
        self._checked = {}
        self.reloads += 1
        log.info("--auth-file reloaded: %d user%s", len(users), "" if len(users) == 1 else "s")
        return True

    def changed(self) -> bool:
        return _stamp(self.path) != self._stamp

    async def watch(self, interval: float = 1.0) -> None:
        """Reload whenever the file's size, modification time or inode changes (one stat per interval)."""
        while True:
            await asyncio.sleep(interval)
            if self.changed():
                self.reload()


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


# ------------------------------------------------------------------------------------------------ the file
def load(path: str) -> tuple[dict[str, User], dict[str, User]]:
    """Users by name and by token hash; ConfigError names the line or the user and field at fault."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("--auth-file", f"cannot read {path}: {e}") from None
    doc = _parse(path, text)
    if isinstance(doc, dict) and set(doc) == {"users"}:
        doc = doc["users"]
    if not isinstance(doc, list):
        raise ConfigError("--auth-file", f'{path}: expected a list of users (or {{"users": [...]}})')
    users: dict[str, User] = {}
    tokens: dict[str, User] = {}
    for i, entry in enumerate(doc):
        user = _user(path, i, entry)
        if user.name in users:
            raise ConfigError("--auth-file", f"{path}: users[{i}]: user {user.name!r} is listed twice")
        users[user.name] = user
        for digest in user.tokens:
            if digest in tokens:
                raise ConfigError(
                    "--auth-file", f"{path}: users[{i}]: a token is also {tokens[digest].name!r}'s"
                )
            tokens[digest] = user
    return users, tokens


def _parse(path: str, text: str) -> Any:
    as_json = path.endswith(".json") or (not path.endswith((".yaml", ".yml")) and text.lstrip()[:1] in "[{")
    if as_json:
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError("--auth-file", f"{path} line {e.lineno} column {e.colno}: {e.msg}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError("--auth-file", f"{path}{where}: {problem}") from None


def _user(path: str, i: int, entry: Any) -> User:
    where = f"{path}: users[{i}]"

    def fail(message: str) -> ConfigError:
        return ConfigError("--auth-file", f"{where}: {message}")

    if not isinstance(entry, dict):
        raise fail("expected an object with username, password_hash and perms")
    name = entry.get("username")
    if not isinstance(name, str) or not name:
        raise fail("username must be a non-empty string")
    where = f"{path}: users[{i}] ({name})"
    unknown = set(entry) - _USER_FIELDS
    if unknown:
        raise fail(
            f"unknown field {sorted(map(str, unknown))[0]!r} (expected {', '.join(sorted(_USER_FIELDS))})"
        )
    verifier: ScramVerifier | None = None
    if "password_hash" in entry and "password" in entry:
        raise fail("give password_hash or password, not both")
    if "password_hash" in entry:
        if not isinstance(entry["password_hash"], str):
            raise fail("password_hash must be a string (the output of sqlite-ha passwd)")
        try:
            verifier = parse_verifier(entry["password_hash"])
        except ValueError as e:
            raise fail(f"password_hash: {e}") from None
    elif "password" in entry:
        if not isinstance(entry["password"], str) or not entry["password"]:
            raise fail("password must be a non-empty string")
        log.warning(
            "--auth-file: user %r has a plain password; store password_hash instead (sqlite-ha passwd)", name
        )
        verifier = parse_verifier(hash_password(entry["password"]))
    tokens = entry.get("tokens", [])
    if not isinstance(tokens, list) or not all(
        isinstance(t, str) and t.startswith(_TOKEN_PREFIX) and len(t) == len(_TOKEN_PREFIX) + 64
        for t in tokens
    ):
        raise fail('tokens must be a list of "sha256:<64 hex digits>" (sqlite-ha passwd --token)')
    if verifier is None and not tokens:
        raise fail("has neither password_hash nor tokens: it could never log in")
    return User(
        name=name, verifier=verifier, perms=_perms(entry.get("perms"), fail), tokens=frozenset(tokens)
    )


def _perms(raw: Any, fail: Any) -> dict[str, Permission]:
    if raw is None:
        raise fail('perms is missing (e.g. {"app.db": ["read"]}, or {"*": ["all"]})')
    if isinstance(raw, list):  # rqlite's shape: permissions on every database
        raw = {ALL_DATABASES: raw}
    if not isinstance(raw, dict):
        raise fail("perms must map databases to lists of permissions")
    out: dict[str, Permission] = {}
    for database, names in raw.items():
        if not isinstance(database, str) or not database:
            raise fail(f"perms: {database!r} is not a database name")
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list):
            raise fail(f"perms.{database}: expected a list of permissions")
        grant = Permission.NONE
        for perm in names:
            if perm not in _PERMISSIONS:
                raise fail(
                    f"perms.{database}: unknown permission {perm!r} (expected {', '.join(_PERMISSIONS)})"
                )
            grant |= _PERMISSIONS[perm]
        out[database] = grant
    return out
