"""Shared by the SQLAlchemy and Alembic tests: the ``sqlite+ha`` URL of a file, and the dialect registered
under its name when the installed package metadata predates its entry point (an editable install made
before the entry point was declared; ``pip install -e .`` refreshes it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine
from sqlalchemy.dialects import registry

from sqlite_ha.natsd import NatsServer, NatsServerOptions
from sqlite_ha.testing import TEST_CLUSTER_SECRET, free_port, nats_credentials

ENTRY_POINT = "sqlite.ha"
DIALECTS = {ENTRY_POINT: "SQLiteHADialect", "sqlite.ha_async": "SQLiteHAAsyncDialect"}
LOCAL = {"name": "n1", "natsPort": "0"}
"""Options of a database without replication. Without ``replicationURL`` the driver (as go-ha) runs an
embedded NATS server, on port 4222 with its store in the user's data directory, unless ``natsPort=0``."""


def ensure_registered() -> None:
    for name, cls in DIALECTS.items():
        if not entry_points(group="sqlalchemy.dialects", name=name):
            registry.register(name, "sqlite_ha.sqlalchemy", cls)


def url(path: Path, *, driver: str = "ha", **options: Any) -> str:
    """``sqlite+ha:////abs/path/app.db?option=value``: options under their go-ha names."""
    query = f"?{urlencode(options)}" if options else ""
    return f"sqlite+{driver}:///{path}{query}"


def dispose(engine: Engine) -> None:
    """Close the engine's connections and stop the embedded node of its database (``engine.dispose()``
    alone leaves the node running, for other engines and connections of the same DSN)."""
    with engine.connect() as conn:
        connector = conn.connection.dbapi_connection.connector  # type: ignore[union-attr]
    engine.dispose()
    connector.close()


@contextlib.contextmanager
def running_nats(store_dir: Path) -> Iterator[str]:
    """A real nats-server that requires the test cluster's credentials, as a node's embedded one does; its
    URL. Engines reach it with ``replicationURL`` and ``HA_CLUSTER_SECRET=TEST_CLUSTER_SECRET``."""
    with asyncio.Runner() as runner:
        options = NatsServerOptions(
            name="sqlalchemy", port=free_port(), store_dir=store_dir, **nats_credentials(TEST_CLUSTER_SECRET)
        )
        server = NatsServer(options)
        runner.run(server.start())
        try:
            yield server.url
        finally:
            runner.run(server.stop())
