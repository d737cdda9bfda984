"""The database thread: every database call of the run lifecycle and the webhook worker runs
here, off the event loop, one at a time and in the order it was asked for.

Off the loop, so a slow database (PostgreSQL over the network, a busy SQLite) never stalls the
SSE streams or InvokeAI's events. One thread, because the order matters: event ids are
assigned at commit, and the broker must publish them in id order (a ``/events`` reader skips
ids lower than one it has sent). Commits finish here in the order they were asked for, and the
tasks waiting for them resume in that order, so they publish in id order too. Routes use
FastAPI's thread pool instead (their calls need no order between them).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["DatabaseThread"]

P = ParamSpec("P")
T = TypeVar("T")


class DatabaseThread:
    """Runs blocking database functions on one dedicated thread."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-db")

    async def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``function(*args, **kwargs)`` on the database thread; its result or its error."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(function, *args, **kwargs)
        )

    def close(self) -> None:
        """Finish what was asked, then end the thread."""
        self._executor.shutdown(wait=True)
