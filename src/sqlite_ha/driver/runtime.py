"""The background event loop the driver owns: one daemon thread, started on first use.

A node is asyncio code (NATS, the applier, group commit, the writer lock), while a DB-API caller is plain
blocking code on any thread. Every embedded node of the process therefore runs on one loop in one daemon
thread, and callers hand it coroutines: ``call`` from synchronous code (blocks until done), ``run`` from
asyncio code on another loop (awaits without blocking that loop). uvloop is used where it is installed, as
``sqlite-ha serve`` does.

``shutdown`` closes every registered closer (the connectors: they flush and stop their nodes and any embedded
NATS server), then stops the loop and joins the thread; it is registered with ``atexit`` so that a script
that never closes anything still leaves no nats-server behind and no change set unpublished that could be.

Calling ``call`` from the loop's own thread would wait for work that can only run once the wait is over: a
deadlock. It raises ``RuntimeThreadError`` instead (a driver callback, an interceptor, anything running on
the loop must use the node's async API).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from sqlite_ha.errors import HAError

log = logging.getLogger(__name__)

T = TypeVar("T")

SHUTDOWN_TIMEOUT = 30.0  # seconds ``shutdown`` waits for the closers (a node stopping hands over, flushes)


class RuntimeThreadError(HAError):
    """A blocking driver call was made on the driver's own event loop thread, where it would wait forever."""

    code = "runtime_thread"


class RuntimeClosed(HAError):
    """The runtime was shut down (``sqlite_ha.shutdown()`` or interpreter exit)."""

    code = "runtime_closed"


def new_event_loop(choice: str = "auto") -> asyncio.AbstractEventLoop:
    """uvloop where installed (``auto``), as the server's ``--event-loop`` does; ``asyncio`` otherwise."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


class Runtime:
    def __init__(self, loop_choice: str = "auto") -> None:
        self._choice = loop_choice
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._closed = False

    # ------------------------------------------------------------------------------------ the loop
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop, started on first use (in a daemon thread named ``sqlite-ha-driver``)."""
        loop = self._loop
        if loop is not None and not self._closed:
            return loop
        with self._lock:
            if self._closed:
                raise RuntimeClosed("the sqlite-ha driver runtime was shut down", hint="open a new process")
            if self._loop is None:
                loop = new_event_loop(self._choice)
                ready = threading.Event()
                thread = threading.Thread(
                    target=self._serve, args=(loop, ready), name="sqlite-ha-driver", daemon=True
                )
                thread.start()
                ready.wait()
                self._thread = thread
                self._loop = loop
            return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    @property
    def running(self) -> bool:
        return self._loop is not None and not self._closed

    def on_loop_thread(self) -> bool:
        thread = self._thread
        return thread is not None and threading.get_ident() == thread.ident

    # ------------------------------------------------------------------------------------ calls
    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule ``coro`` on the loop; the returned future can be waited on from any thread."""
        try:
            loop = self.loop
        except BaseException:
            coro.close()
            raise
        return asyncio.run_coroutine_threadsafe(coro, loop)

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its outcome (from synchronous code on any other thread).

        On ``timeout`` (or a KeyboardInterrupt while waiting) the coroutine is cancelled and the error
        raised; what it had already done stays done (a write queued for group commit may still commit)."""
        if self.on_loop_thread():
            coro.close()
            raise RuntimeThreadError(
                "a blocking sqlite-ha driver call was made on the driver's own event loop thread, where it "
                "would wait for itself forever",
                hint="code running on that loop (callbacks, interceptors) must use the async API "
                "(sqlite_ha.aio) or the node directly",
            )
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the driver call did not finish within {timeout:g}s") from None
        except BaseException as e:
            if not future.done():  # interrupted while waiting (KeyboardInterrupt): do not leave it running
                future.cancel()
            if isinstance(e, concurrent.futures.CancelledError):
                raise RuntimeClosed("the sqlite-ha driver runtime stopped during the call") from None
            raise

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` running on the driver's loop, from asyncio code on any loop, never blocking it.

        On the driver's loop itself it is simply awaited."""
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            coro.close()
            raise
        if current is self._loop:
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    # ------------------------------------------------------------------------------------ shutdown
    def add_closer(self, closer: Callable[[], Awaitable[None]]) -> None:
        """``closer()`` is awaited on the loop by ``shutdown`` (in reverse order of registration)."""
        with self._lock:
            self._closers.append(closer)

    def remove_closer(self, closer: Callable[[], Awaitable[None]]) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._closers.remove(closer)

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Close every registered closer, then stop the loop and join its thread. Idempotent; afterwards
        the runtime refuses new work (``RuntimeClosed``)."""
        if self.on_loop_thread():
            raise RuntimeThreadError("shutdown() was called on the driver's own event loop thread")
        with self._lock:
            if self._closed:
                return
            self._closed = True
            loop, thread = self._loop, self._thread
            closers, self._closers = list(reversed(self._closers)), []
        if loop is None or thread is None:
            return

        async def close_all() -> None:
            for closer in closers:
                try:
                    await closer()
                except Exception:  # one failing must not keep the others (and their NATS servers) running
                    log.exception("closing a sqlite-ha connector at shutdown failed")

        future = asyncio.run_coroutine_threadsafe(close_all(), loop)
        try:
            future.result(timeout)
        except concurrent.futures.TimeoutError:
            log.warning("sqlite-ha driver shutdown: the connectors did not close within %gs", timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)


_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> Runtime:
    """The process's runtime (a new one after ``shutdown``, so a test can start again)."""
    global _runtime
    current = _runtime
    if current is not None and not current._closed:
        return current
    with _runtime_lock:
        if _runtime is None or _runtime._closed:
            _runtime = Runtime()
        return _runtime


def shutdown(timeout: float = SHUTDOWN_TIMEOUT) -> None:
    """Close every connector of the process and stop the driver's loop (also run at interpreter exit)."""
    current = _runtime
    if current is not None:
        current.shutdown(timeout)


atexit.register(shutdown)
