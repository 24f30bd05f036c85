"""What the node hands the PostgreSQL front end: its settings (``PgSettings``) and itself as a ``PgNode``,
the small interface the sessions use (the consumer declares what it needs, as the HTTP app does with
``NodeView``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlite_ha.config import Config
from sqlite_ha.security.keys import ClusterKeys
from sqlite_ha.security.users import Users
from sqlite_ha.served import ServedDatabase
from sqlite_ha.writer.role import WriterMode


class PgNode(Protocol):
    """What a session needs of the node."""

    name: str
    config: Config
    keys: ClusterKeys | None  # the cluster secret's: forwarded sessions are keyed from it
    writer: WriterMode  # who takes writes: a session on another node forwards its writes there

    def database(self, ident: str | None = None) -> ServedDatabase: ...

    def database_ids(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class PgSettings:
    user: str = "ha"
    password: str = "ha"
    auth: str = "scram-sha-256"  # or "md5", "password"
    users: Users | None = None  # the users of --auth-file, who log in with their own verifiers
    superuser: bool = True  # whether ``user``/``password`` log in (with every permission)
    idle_in_transaction_timeout: float = 60.0
    read_wait: float = 15.0  # how long a read with ha.min_seq waits for the node to catch up
    max_message_size: int = 64 * 1024 * 1024
    max_copy_size: int = 256 * 1024 * 1024  # data one COPY FROM STDIN may send (it is one transaction)
    tls_required: bool = False  # --pg-tls require: a session that does not start TLS is refused
    allow_cleartext: bool = False  # --pg-allow-cleartext: auth "password" also on sessions without TLS
    max_connections: int = 0  # sessions at once (0: no cap); more are refused with 53300
    startup_timeout: float = 10.0  # from the connection to the first ReadyForQuery (TLS and login included)

    @property
    def over_cap_max(self) -> int:
        """Connections over the cap still told why (53300); beyond them a new one is closed at once, so a
        flood cannot hold descriptors for a startup timeout each."""
        return max(16, self.max_connections // 10)
