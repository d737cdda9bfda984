"""Fan-out of run events to live readers (SSE streams), with bounded memory per reader.

Every event is first stored as a ``RunEvent`` row (its autoincrement id is the SSE event id)
and then published here. The broker only carries live events; the database is the history.
That split is what keeps a slow reader cheap: when its queue is full, the broker drops the
events meant for it and marks it lagging, and the reader catches up from the database by id
(``SubscriberLagging``), the same path a reconnecting client takes with ``Last-Event-ID``.

The wire shape of an event (see docs/events.md)::

    {"id": 42, "run_id": "...", "workflow_id": "...", "event": "node.progress",
     "data": {...}, "created_at": "2026-11-29T15:00:00.123456+00:00"}

``EventBroker`` is the seam for other backends (Postgres LISTEN/NOTIFY for several replicas),
shaped like litestar's ``ChannelsBackend``; ``InMemoryEventBroker`` serves one process.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Final

__all__ = [
    "TERMINAL_EVENT_TYPES",
    "Event",
    "EventBroker",
    "InMemoryEventBroker",
    "SubscriberLagging",
    "Subscription",
    "is_terminal_event",
    "to_wire",
]

Event = dict[str, Any]

# The run's last event: the per-run stream ends right after sending one of these.
TERMINAL_EVENT_TYPES: Final = frozenset({"run.succeeded", "run.failed", "run.canceled"})
DEFAULT_QUEUE_SIZE: Final = 256


class SubscriberLagging(Exception):  # a signal to the reader, not a failure
    """The reader fell behind and events were dropped; re-read them from the database by id."""


def is_terminal_event(event: Event) -> bool:
    """True for the event that ends a run (succeeded, failed, canceled)."""
    return event.get("event") in TERMINAL_EVENT_TYPES


def to_wire(event: Event) -> Event:
    """The event as JSON-ready data: timestamps become ISO 8601 strings."""
    created = event.get("created_at")
    if isinstance(created, datetime):
        return {**event, "created_at": created.isoformat()}
    return event


def _matches(event: Event, run_id: str | None, workflow_id: str | None) -> bool:
    if run_id is not None and event.get("run_id") != run_id:
        return False
    return workflow_id is None or event.get("workflow_id") == workflow_id


_CLOSED: Final = object()


class Subscription:
    """One reader's view of the live events: an async iterator over a bounded queue.

    Iteration raises ``SubscriberLagging`` once after events were dropped for this reader; the
    reader then replays from the database (events published from then on are queued again),
    and skips ids it has already sent.
    """

    def __init__(self, *, run_id: str | None, workflow_id: str | None, maxsize: int) -> None:
        self.run_id = run_id
        self.workflow_id = workflow_id
        self.lagging = False
        self.dropped = 0
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize)
        self._closed = False

    def offer(self, event: Event) -> None:
        """Queue one event for this reader, or mark it lagging when its queue is full."""
        if self._closed or not _matches(event, self.run_id, self.workflow_id):
            return
        if self.lagging:
            self.dropped += 1
            return
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            # Everything queued is also in the database: free the memory now, let the
            # reader re-read from its last sent id.
            self.dropped += self._drain() + 1
            self.lagging = True

    def close(self) -> None:
        """End the iteration (server shutdown); queued events are dropped."""
        if not self._closed:
            self._closed = True
            self._drain()
            self._queue.put_nowait(_CLOSED)

    def _drain(self) -> int:
        count = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            count += 1
        return count

    def take_ready(self) -> list[Event]:
        """The events queued right now, without waiting (a reader sends them in one write)."""
        ready: list[Event] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is _CLOSED:
                self._queue.put_nowait(_CLOSED)  # the next ``anext`` ends the iteration
                break
            assert isinstance(item, dict)
            ready.append(item)
        return ready

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        if self.lagging:
            # Cleared before the reader queries the database, so nothing published after
            # that query can be missed: it is queued, and older ids are skipped by the reader.
            self.lagging = False
            raise SubscriberLagging
        item = await self._queue.get()
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)  # stay closed for later calls
            raise StopAsyncIteration
        assert isinstance(item, dict)
        return item


class EventBroker(abc.ABC):
    """Publishes run events to the readers subscribed to them."""

    @abc.abstractmethod
    async def publish(self, event: Event) -> None:
        """Deliver one stored event to every matching subscriber; never blocks on readers."""

    @abc.abstractmethod
    def subscribe(
        self, *, run_id: str | None = None, workflow_id: str | None = None
    ) -> AbstractAsyncContextManager[Subscription]:
        """Receive the live events of one run, one workflow, or all (no filter).

        Returns:
            An async context manager yielding a ``Subscription`` (an async iterator of event
            dicts); leaving it unsubscribes.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """End every subscription (server shutdown)."""


class InMemoryEventBroker(EventBroker):
    """A broker for one process: subscribers indexed by run and workflow for cheap fan-out."""

    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._by_run: dict[str, set[Subscription]] = {}
        self._by_workflow: dict[str, set[Subscription]] = {}
        self._unfiltered: set[Subscription] = set()
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        """How many readers are subscribed right now."""
        runs = sum(len(s) for s in self._by_run.values())
        return runs + sum(len(s) for s in self._by_workflow.values()) + len(self._unfiltered)

    async def publish(self, event: Event) -> None:
        """Offer the event to the readers of its run, of its workflow, and of everything."""
        for sub in self._targets(event):
            sub.offer(event)

    def _targets(self, event: Event) -> list[Subscription]:
        # Copies, so a reader leaving during fan-out cannot break the iteration.
        targets = list(self._unfiltered)
        run_id, workflow_id = event.get("run_id"), event.get("workflow_id")
        if run_id is not None:
            targets.extend(self._by_run.get(run_id, ()))
        if workflow_id is not None:
            targets.extend(self._by_workflow.get(workflow_id, ()))
        return targets

    @contextlib.asynccontextmanager
    async def subscribe(
        self, *, run_id: str | None = None, workflow_id: str | None = None
    ) -> AsyncIterator[Subscription]:
        """Receive live events; see ``EventBroker.subscribe``."""
        sub = Subscription(run_id=run_id, workflow_id=workflow_id, maxsize=self.queue_size)
        index, key = self._index_for(sub)
        if key is None:
            self._unfiltered.add(sub)
        else:
            index.setdefault(key, set()).add(sub)
        if self._closed:
            sub.close()
        try:
            yield sub
        finally:
            self._remove(sub, index, key)

    def _index_for(self, sub: Subscription) -> tuple[dict[str, set[Subscription]], str | None]:
        if sub.run_id is not None:
            return self._by_run, sub.run_id
        return self._by_workflow, sub.workflow_id

    def _remove(
        self, sub: Subscription, index: dict[str, set[Subscription]], key: str | None
    ) -> None:
        if key is None:
            self._unfiltered.discard(sub)
            return
        members = index.get(key)
        if members is not None:
            members.discard(sub)
            if not members:
                del index[key]

    async def close(self) -> None:
        """End every subscription; later subscriptions end at once."""
        self._closed = True
        for sub in self._unfiltered | {s for group in self._all_groups() for s in group}:
            sub.close()

    def _all_groups(self) -> list[set[Subscription]]:
        return [*self._by_run.values(), *self._by_workflow.values()]
