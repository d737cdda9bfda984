"""Run the async core from synchronous code.

The client is written once, async. Its synchronous methods hand their coroutine to a private
event loop that lives in a daemon thread (a "portal", as in anyio's blocking portal), so the
sync API and the async API share every line of logic. The portal's loop has its own HTTP
connection pool and Socket.IO connection; a caller's own loop has its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from functools import wraps
from typing import Any, ParamSpec, TypeVar

__all__ = ["Portal", "sync_twin"]

P = ParamSpec("P")
T = TypeVar("T")


class Portal:
    """A background event loop that synchronous callers submit coroutines to."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._start()
            assert self._loop is not None
            return self._loop

    def _start(self) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="invokeai-client-portal", daemon=True)
        self._thread.start()
        ready.wait()
        self._loop = loop

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule a coroutine on the portal's loop; returns a concurrent future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def in_portal_thread(self) -> bool:
        """True when called from the portal's own thread (where blocking on it would hang)."""
        return self._thread is not None and threading.current_thread() is self._thread

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the portal's loop and block until it is done."""
        if self.in_portal_thread():
            coro.close()
            raise RuntimeError("a synchronous client method was called from inside the portal loop")
        future = self.submit(coro)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise

    @property
    def running(self) -> bool:
        return self._loop is not None

    def stop(self) -> None:
        """Stop the loop and join its thread; later calls start a fresh one."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        loop.close()


def sync_twin(
    async_method: Callable[P, Awaitable[T]],
) -> Callable[P, T]:
    """Make the blocking twin of an async method of an object that has ``_portal``.

    The twin runs the very same coroutine on the portal, so the two cannot drift apart.
    """

    @wraps(async_method)
    def method(*args: P.args, **kwargs: P.kwargs) -> T:
        owner: Any = args[0]
        coro = async_method(*args, **kwargs)
        return owner._portal.call(coro)  # type: ignore[no-any-return]

    method.__doc__ = f"Blocking form of ``{async_method.__name__}``.\n\n{async_method.__doc__}"
    return method
