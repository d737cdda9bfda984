"""Running a coroutine in its caller until it first waits (Python 3.12's eager tasks, on 3.11).

Two hot paths use it: an SSE fan-out writes to a thousand connections from the broker's
``publish`` without waking a task per connection (``app.streaming.wire``), and a run accepted
by ``POST .../runs`` has its enqueue request on InvokeAI's socket before the 202 is built
(``app.runs.dispatcher``). Whatever is left after the first wait is awaited by a task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator
from typing import Any

__all__ = ["Rest", "run_eagerly"]


class Rest:
    """The rest of a coroutine that ``run_eagerly`` ran up to its first suspension.

    Awaiting it (in a task) hands the future the coroutine is waiting on to that task, then
    drives the coroutine to its end, as the task would have from the start; a cancellation of
    the awaiting task is thrown into the coroutine. (Python 3.12's eager tasks do the same.)
    """

    def __init__(self, coro: Generator[Any, Any, None], suspended_on: Any) -> None:
        self._coro = coro
        self._suspended_on = suspended_on

    def __await__(self) -> Generator[Any, Any, None]:
        coro, step = self._coro, self._suspended_on
        while True:
            try:
                sent = yield step
            except BaseException as exc:  # cancellation: the coroutine decides what it means
                try:
                    step = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    step = coro.send(sent)
                except StopIteration:
                    return

    def close(self) -> None:
        """Abandon the coroutine (its ``finally`` blocks run now)."""
        self._coro.close()


def run_eagerly(awaitable: Awaitable[None]) -> Rest | None:
    """Run ``awaitable`` (a coroutine) now, in the caller, until it finishes or first waits.

    Returns:
        None when it finished without waiting; else its rest, to be awaited by a task.

    Raises:
        Whatever the coroutine raised before its first wait.
    """
    coro = awaitable.__await__()
    try:
        suspended_on = coro.send(None)
    except StopIteration:
        return None
    return Rest(coro, suspended_on)
