""" "duplicate message id is in process" (JetStream error 10158), provoked on a real 3-server cluster.

A replicated stream's leader answers 10158 to a message id that an earlier publish is still storing (its
raft proposal not applied yet). The earlier publish does store it, so for the driver this is a success: it
must ask again until the stream answers with the duplicate's sequence, never fail (which made the node
answer 202 "pending" for a write that was in the log all along).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import nats

from sqlite_ha.natsd import NatsServer, NatsServerOptions
from sqlite_ha.replication.jetstream.connection import NatsConnection
from sqlite_ha.replication.jetstream.driver import JetStreamReplicator
from sqlite_ha.testing import free_port

ROUNDS = 40


async def _cluster(tmp_path: Path) -> list[NatsServer]:
    ports = [free_port() for _ in range(3)]
    servers = [
        NatsServer(
            NatsServerOptions(
                name=f"s{i}",
                port=free_port(),
                store_dir=tmp_path / f"s{i}",
                cluster_port=ports[i],
                routes=tuple(f"127.0.0.1:{p}" for j, p in enumerate(ports) if j != i),
            )
        )
        for i in range(3)
    ]
    await asyncio.gather(*(s.start() for s in servers))
    return servers


def test_in_process_answers_are_retried_until_the_duplicate_ack_gives_the_seq(tmp_path: Path) -> None:
    async def body() -> tuple[int, int]:
        servers = await _cluster(tmp_path)
        conn = NatsConnection(servers[0].url, name="n1")
        conn.start()
        raw = await nats.connect(servers[0].url)
        try:
            r = JetStreamReplicator(conn, node="n1", stream="inproc", replicas=3, start_timeout=60)
            await r.start()
            for _ in range(100):  # the first publishes may find the new stream without a leader yet
                try:
                    await r.publish("main.db", b"warm up", msg_id="warm-up", timeout=5)
                    break
                except Exception:
                    await asyncio.sleep(0.1)
            seen_in_process = 0
            for i in range(ROUNDS):
                msg_id = f"race-{i}"
                # The same id sent twice back to back (a retry racing the first attempt): the second arrives
                # while the leader still stores the first.
                first = asyncio.ensure_future(
                    raw.request("inproc.main_db", b"x", timeout=5, headers={"Nats-Msg-Id": msg_id})
                )
                seq = await r.publish("main.db", b"x", msg_id=msg_id, timeout=5)
                answer = json.loads((await first).data)
                if "error" not in answer:
                    assert seq == answer["seq"], (seq, answer)
                else:  # the driver's attempt was first, and this one met it in process
                    assert answer["error"]["err_code"] == 10158, answer
                seen_in_process = r.stats().get("publish_in_process", 0)
            info = await raw.jetstream().stream_info("inproc")
            await r.close()
            return seen_in_process, int(info.state.messages)
        finally:
            await raw.close()
            await conn.close()
            for s in servers:
                await s.stop()

    in_process, messages = asyncio.run(body())
    assert messages == ROUNDS + 1  # each id stored once
    assert in_process > 0, "no publish met 10158: the race was not provoked"
