"""Driver-embedded nodes in the test's own process: ``Node(serve=False)`` built from driver options, as the
driver builds it, with a few helpers to write and read."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlite_ha.db.statement import Statement
from sqlite_ha.driver.options import DriverOptions, parse_options
from sqlite_ha.node import Node
from sqlite_ha.served import ServedDatabase
from sqlite_ha.testing import TEST_CLUSTER_SECRET, free_port


@dataclass
class Embedded:
    node: Node
    opts: DriverOptions

    @property
    def db(self) -> ServedDatabase:
        return self.node.database(self.opts.database)

    async def run(self, sql: str, *bindings: Any) -> int | None:
        """Execute one statement; the log position of what it wrote."""
        _, seq = await self.db.execute([Statement(sql=sql, bindings=tuple(bindings) or None)])
        return seq

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        execution, _ = await self.db.execute([Statement(sql=sql)])
        return [tuple(r) for r in execution.results[0].rows]

    async def stop(self) -> None:
        await self.node.stop()


async def embed(dsn: str, **options: Any) -> Embedded:
    opts = parse_options(dsn, options, env={})
    node = Node(opts.config, serve=False, plugins=opts.plugins)
    await node.start()
    if node.replication is not None and not await node.replication.wait_started(15.0):
        await node.stop()
        raise TimeoutError("the embedded node did not join the replication log within 15s")
    return Embedded(node, opts)


async def pair(
    tmp_path: Path, a: dict[str, Any] | None = None, b: dict[str, Any] | None = None
) -> tuple[Embedded, Embedded]:
    """Two embedded nodes of one cluster: ``a`` runs the embedded NATS server, ``b`` joins it by URL."""
    port = free_port()
    for d in ("a", "b"):
        (tmp_path / d).mkdir(exist_ok=True)
    first = await embed(
        str(tmp_path / "a" / "app.db"),
        name="a",
        natsPort=port,
        natsStoreDir=str(tmp_path / "a" / "nats"),
        clusterSecret=TEST_CLUSTER_SECRET,
        **(a or {}),
    )
    try:
        second = await embed(
            str(tmp_path / "b" / "app.db"),
            name="b",
            replicationURL=f"nats://127.0.0.1:{port}",
            clusterSecret=TEST_CLUSTER_SECRET,
            **(b or {}),
        )
    except BaseException:
        await first.stop()
        raise
    return first, second


async def until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)
