"""Moving JetStream leadership off a server that is about to stop.

A replicated (R3) stream accepts writes only through its leader, and each consumer delivers only through its
own leader. When the server holding one of them stops, the other replicas elect a new one only after they
have missed the leader's heartbeats for raft's election timeout (4-9 s in nats-server): that long no write
is acknowledged, or a node's change sets are not delivered. A leader that *steps down* hands over at once.
So before a node stops its embedded server it asks every stream and consumer that server leads to step
down (``$JS.API.STREAM.LEADER.STEPDOWN.<stream>``, ``$JS.API.CONSUMER.LEADER.STEPDOWN.<stream>.<consumer>``)
and waits until each has a leader elsewhere. (The JetStream meta leader can only be asked to step down from
the system account, which the node does not use; while the remaining servers elect a new one, only creating
and deleting streams and consumers waits, not writes or deliveries.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from nats.aio.client import Client as NATSClient

log = logging.getLogger(__name__)

REQUEST_TIMEOUT = 1.0
POLL = 0.05


async def hand_over(nc: NATSClient, server_name: str, timeout: float = 2.0) -> list[str]:
    """Step down every replicated stream and consumer ``server_name`` leads; return once each has another
    leader, or ``timeout`` passed (a handover takes a few tens of milliseconds; without a quorum left, as when
    the last servers of a cluster stop, no new leader comes, and the stop should not wait long for one).
    Returns what was moved, for the log. Never raises: a handover that fails
    leaves the replicas to elect a leader after the election timeout, as they would anyway."""
    deadline = time.monotonic() + timeout
    moved: list[str] = []
    try:
        led = await _led_by(nc, server_name)
    except Exception as e:  # no answer: nothing can be handed over, the stop goes on
        log.warning("cannot list the JetStream leaders on %s before stopping it: %s", server_name, e)
        return moved
    waiting: list[str] = []
    for kind, subject, info_subject in led:
        try:
            answer = await _request(nc, subject)
        except Exception as e:
            log.warning("%s did not step down: %s", kind, e)
            continue
        if not answer.get("success"):
            log.warning("%s did not step down: %s", kind, (answer.get("error") or {}).get("description"))
            continue
        moved.append(kind)
        waiting.append(info_subject)
    await asyncio.gather(*(_wait_moved(nc, subject, server_name, deadline) for subject in waiting))
    return moved


async def _led_by(nc: NATSClient, server_name: str) -> list[tuple[str, str, str]]:
    """(what, step-down subject, info subject) of every replicated stream and consumer the server leads."""
    out: list[tuple[str, str, str]] = []
    offset = 0
    while True:
        page = await _request(nc, "$JS.API.STREAM.LIST", {"offset": offset})
        streams = page.get("streams") or []
        for info in streams:
            name = info["config"]["name"]
            if _replicated(info) and _leader(info) == server_name:
                out.append(
                    (
                        f"stream {name}",
                        f"$JS.API.STREAM.LEADER.STEPDOWN.{name}",
                        f"$JS.API.STREAM.INFO.{name}",
                    )
                )
            out.extend(await _consumers_led_by(nc, name, server_name))
        offset += len(streams)
        if not streams or offset >= int(page.get("total", 0)):
            return out


async def _consumers_led_by(nc: NATSClient, stream: str, server_name: str) -> list[tuple[str, str, str]]:
    out: list[tuple[str, str, str]] = []
    offset = 0
    while True:
        page = await _request(nc, f"$JS.API.CONSUMER.LIST.{stream}", {"offset": offset})
        consumers = page.get("consumers") or []
        for info in consumers:
            name = info["name"]
            if _replicated(info) and _leader(info) == server_name:
                out.append(
                    (
                        f"consumer {stream}/{name}",
                        f"$JS.API.CONSUMER.LEADER.STEPDOWN.{stream}.{name}",
                        f"$JS.API.CONSUMER.INFO.{stream}.{name}",
                    )
                )
        offset += len(consumers)
        if not consumers or offset >= int(page.get("total", 0)):
            return out


async def _wait_moved(nc: NATSClient, info_subject: str, server_name: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            leader = _leader(await _request(nc, info_subject))
        except Exception:  # no leader to answer yet
            leader = None
        if leader is not None and leader != server_name:
            return
        await asyncio.sleep(POLL)


def _leader(info: dict[str, Any]) -> str | None:
    leader = (info.get("cluster") or {}).get("leader")
    return str(leader) if leader else None


def _replicated(info: dict[str, Any]) -> bool:
    return len((info.get("cluster") or {}).get("replicas") or []) > 0


async def _request(nc: NATSClient, subject: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    msg = await nc.request(subject, json.dumps(body).encode() if body else b"", timeout=REQUEST_TIMEOUT)
    answer: dict[str, Any] = json.loads(msg.data)
    if "error" in answer and subject.startswith("$JS.API.STREAM.LIST"):
        raise RuntimeError(answer["error"].get("description", "error"))
    return answer
