"""``wait_applied`` (``min_seq``) in process, on the in-memory hub: past the log's end it refuses at once;
within the log it waits, however far behind the node is."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from sqlite_ha.db.statement import Statement
from sqlite_ha.replication.freshness import LogUnreachable, SeqBeyondLog, StaleRead
from sqlite_ha.replication.memory import MemoryHub
from tests.cluster.nodes import close, open_node


def test_beyond_the_log_is_refused_at_once_and_within_it_waits(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub = MemoryHub(auto=False)  # nothing is delivered until the test says so: b lags behind
        a, b = await open_node(tmp_path, hub, "a"), await open_node(tmp_path, hub, "b")
        try:
            _, seq = await a.execute([Statement(sql="CREATE TABLE t(x)")])
            assert seq == 1
            started = time.monotonic()
            with pytest.raises(SeqBeyondLog) as info:
                await b.wait_applied(seq + 1, 10)
            assert time.monotonic() - started < 5
            assert (info.value.fields["min_seq"], info.value.fields["last_seq"]) == (seq + 1, seq)
            # seq is in the log but b has not applied it: that is a wait, not a refusal
            with pytest.raises(StaleRead):
                await b.wait_applied(seq, 0.3)
            waiting = asyncio.ensure_future(b.wait_applied(seq, 10))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            await hub.deliver_all()
            await waiting
        finally:
            await close(a, b)

    asyncio.run(scenario())


def test_a_strong_read_waits_for_everything_the_log_held_and_fails_clearly_without_the_log(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        hub = MemoryHub(auto=False)  # b applies nothing until the test delivers
        a, b = await open_node(tmp_path, hub, "a"), await open_node(tmp_path, hub, "b")
        try:
            await a.execute([Statement(sql="CREATE TABLE t(x)")])
            await a.execute([Statement(sql="INSERT INTO t VALUES (1)")])
            with pytest.raises(StaleRead):  # b is behind the log's end and does not catch up in time
                await b.wait_current(0.3)
            waiting = asyncio.ensure_future(b.wait_current(10))
            await asyncio.sleep(0.05)
            assert not waiting.done()
            await hub.deliver_all()
            await waiting
            assert b.applied_seq == hub.log("app.db").last_seq
            await a.wait_current(1)  # a node that is current returns at once
            b.replicator.connected = False  # type: ignore[attr-defined]
            with pytest.raises(LogUnreachable, match="does not answer"):
                await b.wait_current(1)
        finally:
            await close(a, b)

    asyncio.run(scenario())
