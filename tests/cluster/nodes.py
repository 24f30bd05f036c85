"""In-process replicated databases on the in-memory hub, for the cluster tests: one file database each."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlite_ha.db.database import Database
from sqlite_ha.db.dsn import parse_dsn
from sqlite_ha.replication.memory import MemoryHub
from sqlite_ha.replication.replicated_database import ReplicatedDatabase


async def open_node(tmp: Path, hub: MemoryHub, name: str, **kwargs: Any) -> ReplicatedDatabase:
    """Node ``name``'s app.db in ``tmp/name``, joined to ``hub`` and started; ``kwargs`` go to
    ``ReplicatedDatabase`` (a sealer, interceptors, ...)."""
    (tmp / name).mkdir(exist_ok=True)
    rdb = ReplicatedDatabase(
        Database(parse_dsn(str(tmp / name / "app.db"), memory=False)), hub.connect(name), node=name, **kwargs
    )
    await rdb.start()
    return rdb


async def close(*nodes: ReplicatedDatabase) -> None:
    for rdb in nodes:
        await rdb.close()
        await rdb.replicator.close()
        rdb.db.close()
