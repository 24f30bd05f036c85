"""The driver's background loop: started once, refuses blocking calls from its own thread, shuts down."""

from __future__ import annotations

import asyncio
import threading

import pytest

from sqlite_ha.driver.runtime import Runtime, RuntimeClosed, RuntimeThreadError


def test_call_runs_on_one_daemon_thread_and_returns() -> None:
    rt = Runtime()
    try:

        async def where() -> tuple[str, bool]:
            return threading.current_thread().name, threading.current_thread().daemon

        assert rt.call(where()) == ("sqlite-ha-driver", True)
        assert rt.call(where()) == ("sqlite-ha-driver", True)
    finally:
        rt.shutdown()


def test_blocking_call_from_the_loop_thread_is_refused() -> None:
    rt = Runtime()
    try:

        async def nested() -> None:
            async def inner() -> int:
                return 1

            rt.call(inner())

        with pytest.raises(RuntimeThreadError, match="would wait for itself"):
            rt.call(nested())
    finally:
        rt.shutdown()


def test_run_from_another_loop_does_not_block_it() -> None:
    rt = Runtime()
    try:

        async def slow() -> str:
            await asyncio.sleep(0.2)
            return threading.current_thread().name

        async def main() -> tuple[str, int]:
            ticks = 0

            async def tick() -> None:
                nonlocal ticks
                while True:
                    await asyncio.sleep(0.01)
                    ticks += 1

            ticker = asyncio.create_task(tick())
            name = await rt.run(slow())
            ticker.cancel()
            return name, ticks

        name, ticks = asyncio.run(main())
        assert name == "sqlite-ha-driver"
        assert ticks >= 5
    finally:
        rt.shutdown()


def test_shutdown_awaits_closers_then_refuses_work() -> None:
    rt = Runtime()
    closed: list[str] = []

    async def closer() -> None:
        await asyncio.sleep(0)
        closed.append(threading.current_thread().name)

    async def noop() -> None:
        pass

    rt.call(noop())
    rt.add_closer(closer)
    rt.shutdown()
    assert closed == ["sqlite-ha-driver"]
    with pytest.raises(RuntimeClosed):
        rt.call(noop())
    rt.shutdown()  # idempotent


def test_call_timeout_cancels() -> None:
    rt = Runtime()
    try:
        cancelled = threading.Event()

        async def forever() -> None:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        with pytest.raises(TimeoutError):
            rt.call(forever(), timeout=0.05)
        assert cancelled.wait(5)
    finally:
        rt.shutdown()
