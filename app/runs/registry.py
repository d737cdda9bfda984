"""The runs this process is working on right now, shared by the run collaborators.

``InFlight`` is the one piece of state the dispatcher, follower, reconciler and deadlines
share: which runs are being enqueued (nobody else may send or settle them meanwhile), which are
followed (by run id and by InvokeAI queue item), which enqueues lost their answer, and which
deadlines were already acted on. Plain data, no I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from app.db.tables import Run
from invokeai_py_client import IvkJob
from invokeai_py_client.queue import CompletedNodes

__all__ = ["Check", "Finish", "InFlight", "Message", "Relayed", "Tracked"]


@dataclass(frozen=True)
class Relayed:
    """An InvokeAI event of the run's queue item, to translate and store."""

    event_type: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Check:
    """Catch the run up with its queue item (``item``: already read; None: read it)."""

    item: IvkJob | None = None


@dataclass(frozen=True)
class Finish:
    """Close the run from its queue item (after the grace for trailing events)."""


Message = Relayed | Check | Finish


@dataclass
class Tracked:
    """A run being followed."""

    run_id: str
    workflow_id: str
    item_id: int
    status: str
    batch_id: str | None = None
    failure_hint: dict[str, Any] | None = None
    # Whether InvokeAI told the end over Socket.IO; if not, the terminal event is synthetic.
    evented: bool = False
    finishing: bool = False
    # Its node results as the events tell them (None: the end is read from the queue item).
    completed: CompletedNodes | None = None
    # Its own webhook (url, events): which of its events need no read of the run to store.
    webhook: tuple[str | None, list[str] | None] | None = None
    last_progress: tuple[Any, ...] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # Everything about one run is handled in order by one task reading this inbox.
    inbox: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)

    def new_progress(self, data: dict[str, Any]) -> bool:
        """Whether a ``node.progress`` tells something the previous one did not (InvokeAI
        sends each denoising step's progress twice, the same but for the preview)."""
        key = (data.get("node_id"), data.get("step"), data.get("percentage"), data.get("message"))
        if key == self.last_progress:
            return False
        self.last_progress = key
        return True

    @classmethod
    def of(cls, run: Run) -> Tracked:
        """The follower's record of an enqueued run."""
        assert run.item_id is not None
        tracked = cls(run.id, run.workflow_id, run.item_id, run.status, run.batch_id)
        tracked.webhook = (run.webhook_url, run.webhook_events)
        return tracked


class InFlight:
    """Runs being enqueued, followed, looked up or canceled by this process."""

    def __init__(self) -> None:
        self._enqueueing: dict[str, asyncio.Event] = {}  # set when the enqueue ended
        self._by_item: dict[int, Tracked] = {}
        self._by_run: dict[str, Tracked] = {}
        # Runs whose enqueue answer was lost (monotonic time): InvokeAI may still have them.
        self.maybe_sent: dict[str, float] = {}
        self.resolving: set[str] = set()  # leftover claims being looked up right now
        self.deadline_asked: set[str] = set()  # runs InvokeAI was asked to cancel (deadline)

    # -- enqueueing -------------------------------------------------------------------------

    def begin_enqueue(self, run_id: str) -> None:
        """From now on nobody else sends, cancels or settles this run until ``end_enqueue``."""
        self._enqueueing[run_id] = asyncio.Event()

    def end_enqueue(self, run_id: str) -> None:
        """The enqueue ended (however): wake whoever waits for it."""
        done = self._enqueueing.pop(run_id, None)
        if done is not None:
            done.set()

    def enqueueing(self, run_id: str) -> bool:
        """Whether this run's enqueue is under way in this process."""
        return run_id in self._enqueueing

    async def wait_enqueued(self, run_id: str, timeout: float | None) -> None:
        """Return once the run is not being enqueued, or after ``timeout`` seconds (None:
        no limit)."""
        done = self._enqueueing.get(run_id)
        if done is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout)

    async def wait_all_enqueued(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for every enqueue under way."""
        under_way = [done.wait() for done in self._enqueueing.values()]
        if under_way:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*under_way), timeout)

    # -- following --------------------------------------------------------------------------

    def follow(self, tracked: Tracked) -> None:
        """Route the events of ``tracked``'s queue item to it."""
        self._by_item[tracked.item_id] = tracked
        self._by_run[tracked.run_id] = tracked

    def unfollow(self, tracked: Tracked) -> None:
        """The run ended: forget it and wake its waiters."""
        self._by_item.pop(tracked.item_id, None)
        self._by_run.pop(tracked.run_id, None)
        tracked.done.set()

    def by_item(self, item_id: int) -> Tracked | None:
        """The followed run of a queue item."""
        return self._by_item.get(item_id)

    def by_run(self, run_id: str) -> Tracked | None:
        """The followed run of a run id."""
        return self._by_run.get(run_id)

    def followed(self) -> list[Tracked]:
        """Every run followed right now."""
        return list(self._by_item.values())

    def in_flight(self) -> int:
        """How many runs are being enqueued or followed here."""
        return len(self._enqueueing) + len(self._by_run)

    def busy(self, run_id: str) -> bool:
        """Whether the run is being enqueued or looked up here (leave it alone)."""
        return run_id in self._enqueueing or run_id in self.resolving
