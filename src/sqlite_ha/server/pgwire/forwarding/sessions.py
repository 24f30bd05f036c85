"""The keys and counters of the forwarded sessions of one PostgreSQL server (see ``forwarding/writer.py``)."""

from __future__ import annotations

from sqlite_ha.security.node_auth import SessionVerifier, session_keys
from sqlite_ha.server.pgwire.settings import PgNode, PgSettings


class NodeSessions:
    """One per PostgreSQL server: the keys of forwarded sessions, both ways, and their counters."""

    def __init__(self, node: PgNode, settings: PgSettings) -> None:
        self.node_name = node.name
        self.keys = session_keys(node.keys, settings.password if settings.superuser else None)
        self.verifier = SessionVerifier(self.keys)
        self.pg_ports: dict[str, int] = {}  # a writer's PostgreSQL port, by its URL, once asked
        self.accepted = 0  # forwarded sessions opened here by other nodes
        self.opened = 0  # sessions this node opened on a writer
        self.forwarded = 0  # exchanges (statements or blocks) this node's sessions ran on a writer

    def stats(self) -> dict[str, int]:
        """For ``GET /status`` (``connections.pg.forwarding``)."""
        return {
            "accepted": self.accepted,
            "refused": self.verifier.refused,
            "opened": self.opened,
            "forwarded": self.forwarded,
        }
