"""Fan-out of run events to live readers (SSE streams), with bounded memory per reader.

Every event is first stored as a ``RunEvent`` row (its autoincrement id is the SSE event id)
and then published here. The broker only carries live events; the database is the history.
That split is what keeps a slow reader cheap: when its queue is full, the broker drops the
events meant for it and marks it lagging, and the reader catches up from the database by id
(``SubscriberLagging``), the same path a reconnecting client takes with ``Last-Event-ID``.

A reader that has caught up can be pushed to instead (``LiveFeed.attach``): the broker then
hands events straight to the reader's sink, synchronously, with no queue and no task wake-up
per reader. That is what keeps the fan-out to 1,000 streams cheap; a sink that cannot take
events at once detaches itself, and its events queue again until it has caught up.

``publish`` does not fan out by itself: it appends the event to the log of its run (and of
its workflow, and of "everything"), and one writer, a loop callback, walks the readers of
each log a slice at a time, giving each reader every event of the log it has not had yet in
one delivery. Between slices the loop runs, so events that arrive during a fan-out join it:
InvokeAI sends a run's events in bursts a few milliseconds apart, and a fan-out to 1,000
streams takes longer than that, so a burst costs about one write per stream, not one per
event and stream. Readers that got an event before a later one was logged get the later one
in the next round.

A stream whose run is over ends its response only once the writer has visited the readers it
still had to visit when that stream got its last event (``settled``). Ending a response takes
a few task turns per stream; when a run ends, a thousand streams end at once, and those turns
taken between the writer's slices held the last readers of that run's final round back: at
1,000 readers the p99 delay went from 85-142 ms to 57-98 ms once they waited, the median
unchanged (benchmarks/README.md).

The wire shape of an event (see docs/events.md)::

    {"id": 42, "run_id": "...", "workflow_id": "...", "event": "node.progress",
     "data": {...}, "created_at": "2026-11-29T15:00:00.123456+00:00"}

``EventBroker`` is the seam for other backends (Postgres LISTEN/NOTIFY for several replicas),
shaped like litestar's ``ChannelsBackend``; ``InMemoryEventBroker`` serves one process.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Final

from app.schemas.events import TERMINAL_EVENT_TYPES

__all__ = [
    "Event",
    "EventBroker",
    "InMemoryEventBroker",
    "LiveFeed",
    "Sink",
    "SubscriberLagging",
    "is_terminal_event",
    "to_wire",
]

Event = dict[str, Any]
# Called by the broker with the matching events of one delivery (in id order) while attached;
# must not block.
Sink = Callable[[list[Event]], None]

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE: Final = 256
# Readers served per step of the writer; between steps the loop runs (and new events join).
DELIVERY_SLICE: Final = 64


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


_CLOSED: Final = object()


class LiveFeed:
    """One reader's view of the live events: a bounded queue, or a sink pushed to.

    Pulled (the default): an async iterator over a bounded queue. Iteration raises
    ``SubscriberLagging`` once after events were dropped for this reader; the reader then
    replays from the database (events published from then on are queued again), and skips ids
    it has already sent.

    Pushed (``attach``): each event goes straight to the sink, called by ``publish``. The sink
    or the reader ends that with ``detach`` (later events queue again); ``wait_detached`` is
    where the reader sleeps meanwhile, woken only by a detach or a close, never per event.
    """

    def __init__(
        self,
        *,
        run_id: str | None,
        workflow_id: str | None,
        maxsize: int,
        run_ids: frozenset[str] | None = None,
        kinds: frozenset[str] | None = None,
    ) -> None:
        self.run_id = run_id
        self.workflow_id = workflow_id
        self.run_ids = run_ids  # indexed by workflow, the reader keeps only these runs
        self.kinds = kinds  # only these event types (nothing else is queued, nobody woken)
        self.lagging = False
        self.dropped = 0
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize)
        self._closed = False
        self._sink: Sink | None = None
        self._detached: asyncio.Future[None] | None = None
        # Indexed by run, a reader filtering by workflow as well checks that itself.
        self._workflow_check = run_id is not None and workflow_id is not None
        self.log_position = 0  # how much of its index key's log it was given (the broker's)

    @property
    def closed(self) -> bool:
        """True once the broker closed this subscription (server shutdown) or it was left."""
        return self._closed

    @property
    def attached(self) -> bool:
        """True while events are pushed to a sink instead of queued."""
        return self._sink is not None

    def deliver(self, events: list[Event]) -> None:
        """Push events of this reader's run (or workflow, or any: the broker's index has chosen
        them) to the sink in one call, in id order; or queue them, or mark the reader lagging
        when its queue is full."""
        if self._closed:
            return
        if self._workflow_check:
            events = [e for e in events if e.get("workflow_id") == self.workflow_id]
        if self.run_ids is not None:
            events = [e for e in events if e.get("run_id") in self.run_ids]
        if self.kinds is not None:
            events = [e for e in events if e.get("event") in self.kinds]
            if not events:
                return
        sink = self._sink
        if sink is not None:
            if events:
                try:
                    sink(events)
                except Exception:  # a broken reader must not stop the fan-out to the others
                    logger.exception("an SSE sink failed; closing its subscription")
                    self.close()
            return
        for event in events:
            self._enqueue(event)

    def _enqueue(self, event: Event) -> None:
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

    def attach(self, sink: Sink) -> bool:
        """Push events to ``sink`` from now on; only a reader with nothing queued may.

        Returns:
            False (nothing attached) when events are queued, the reader is lagging or the
            subscription is closed: the reader must take those first.
        """
        if self._closed or self.lagging or not self._queue.empty():
            return False
        self._sink = sink
        self._detached = asyncio.get_running_loop().create_future()
        return True

    def detach(self) -> None:
        """Stop pushing (events queue again) and wake ``wait_detached``; safe to repeat."""
        self._sink = None
        if self._detached is not None and not self._detached.done():
            self._detached.set_result(None)

    async def wait_detached(self, timeout: float) -> bool:
        """Sleep while attached, at most ``timeout`` seconds; True when detached meanwhile."""
        waiter = self._detached
        if self._sink is None or waiter is None:
            return True
        await asyncio.wait((waiter,), timeout=timeout)
        return waiter.done()

    def leave(self) -> None:
        """The reader unsubscribed: deliveries still under way skip it."""
        self._closed = True
        self.detach()

    def close(self) -> None:
        """End the iteration (server shutdown); queued events are dropped."""
        if not self._closed:
            self._closed = True
            self.detach()
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

    def take_lag(self) -> bool:
        """True once after events were dropped; from then on new events are queued again."""
        lagging, self.lagging = self.lagging, False
        return lagging

    def __aiter__(self) -> LiveFeed:
        return self

    async def __anext__(self) -> Event:
        if self.take_lag():
            # Cleared before the reader queries the database, so nothing published after
            # that query can be missed: it is queued, and older ids are skipped by the reader.
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
        self,
        *,
        run_id: str | None = None,
        workflow_id: str | None = None,
        run_ids: frozenset[str] | None = None,
        kinds: frozenset[str] | None = None,
    ) -> AbstractAsyncContextManager[LiveFeed]:
        """Receive the live events of one run, one workflow (of some of its runs: ``run_ids``),
        or all (no filter); only events of these ``kinds`` (event types), when given.

        Returns:
            An async context manager yielding a ``LiveFeed`` (an async iterator of event
            dicts); leaving it unsubscribes.
        """

    @abc.abstractmethod
    async def settled(self) -> None:
        """Return once the delivery under way has gone through the readers it had still to
        reach when this was called (at once when none is under way). Bounded: events
        published meanwhile do not extend the wait. Work that can wait (ending a stream that
        is over) waits here, so as not to slow a fan-out."""

    @abc.abstractmethod
    async def close(self) -> None:
        """End every subscription (server shutdown)."""


Key = tuple[str, str | None]  # an index of readers: ("run", id), ("workflow", id), ("all", None)


class _Round:
    """The readers of one key that the writer has still to visit, and the key's log."""

    def __init__(self, log: list[Event], readers: list[LiveFeed]) -> None:
        self.log = log
        self.readers = readers
        self.next = 0


class InMemoryEventBroker(EventBroker):
    """A broker for one process: subscribers indexed by run and workflow for cheap fan-out."""

    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._by_run: dict[str, set[LiveFeed]] = {}
        self._by_workflow: dict[str, set[LiveFeed]] = {}
        self._unfiltered: set[LiveFeed] = set()
        self._closed = False
        # Events not yet given to every reader of their key, and the writer's work.
        self._rounds: dict[Key, _Round] = {}
        self._writing = False
        # Readers the writer has visited since the start, and who waits for a count of them
        # (in the order of the counts: visits plus the visits still due never decreases).
        self._visits = 0
        self._settling: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    @property
    def subscriber_count(self) -> int:
        """How many readers are subscribed right now."""
        runs = sum(len(s) for s in self._by_run.values())
        return runs + sum(len(s) for s in self._by_workflow.values()) + len(self._unfiltered)

    async def publish(self, event: Event) -> None:
        """Deliver the event to the readers of its run, of its workflow, and of everything.

        Delivery starts once the calling task yields, and reaches every reader subscribed
        now (readers are visited in slices; events published meanwhile go along).
        """
        if self._closed:
            return
        self._log(("all", None), event)
        for kind, value in (("run", event.get("run_id")), ("workflow", event.get("workflow_id"))):
            if value is not None:
                self._log((kind, value), event)
        if not self._writing:
            self._writing = True
            asyncio.get_running_loop().call_soon(self._write_slice)

    def _log(self, key: Key, event: Event) -> None:
        found = self._rounds.get(key)
        if found is not None:
            found.log.append(event)
        elif members := self._members(key):
            self._rounds[key] = _Round([event], list(members))

    def _members(self, key: Key) -> set[LiveFeed]:
        kind, value = key
        if kind == "all":
            return self._unfiltered
        index = self._by_run if kind == "run" else self._by_workflow
        return index.get(value or "", set())

    def _write_slice(self) -> None:
        """Give the next readers what they have not had; come back after the loop ran."""
        budget = DELIVERY_SLICE
        for key, work in list(self._rounds.items()):
            while budget and work.next < len(work.readers):
                reader = work.readers[work.next]
                work.next += 1
                budget -= 1
                if reader.log_position < len(work.log):
                    events = work.log[reader.log_position :]
                    reader.log_position = len(work.log)
                    reader.deliver(events)
            if work.next == len(work.readers):
                self._end_round(key, work)
            if not budget:
                break
        self._visits += DELIVERY_SLICE - budget
        if self._rounds:
            asyncio.get_running_loop().call_soon(self._write_slice)
        else:
            self._writing = False
        if self._settling:
            self._wake_settled()

    def _end_round(self, key: Key, work: _Round) -> None:
        members = self._members(key)
        # Forget what every reader has had: under a steady flow of events the log never
        # empties, and must not grow.
        had = min((r.log_position for r in members), default=len(work.log))
        if had:
            del work.log[:had]
            for reader in members:
                reader.log_position -= had
        behind = [r for r in members if r.log_position < len(work.log)]
        if behind:  # events were logged during the round
            work.readers, work.next = behind, 0
        else:
            del self._rounds[key]  # everyone has everything

    async def settled(self) -> None:
        """Return once the writer has made the visits to readers it has still to make now;
        see ``EventBroker.settled``."""
        due = sum(len(work.readers) - work.next for work in self._rounds.values())
        if not due:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._settling.append((self._visits + due, waiter))
        await waiter

    def _wake_settled(self) -> None:
        settling, idle = self._settling, not self._rounds
        while settling and (idle or settling[0][0] <= self._visits):
            _, waiter = settling.popleft()
            if not waiter.done():  # done: its task was canceled
                waiter.set_result(None)

    @contextlib.asynccontextmanager
    async def subscribe(
        self,
        *,
        run_id: str | None = None,
        workflow_id: str | None = None,
        run_ids: frozenset[str] | None = None,
        kinds: frozenset[str] | None = None,
    ) -> AsyncIterator[LiveFeed]:
        """Receive live events; see ``EventBroker.subscribe``."""
        sub = LiveFeed(
            run_id=run_id,
            workflow_id=workflow_id,
            run_ids=run_ids,
            kinds=kinds,
            maxsize=self.queue_size,
        )
        index, key = self._index_for(sub)
        if key is None:
            self._unfiltered.add(sub)
        else:
            index.setdefault(key, set()).add(sub)
        # Events logged before now were stored before now: the reader's replay finds them.
        work = self._rounds.get(self._key_of(sub))
        sub.log_position = len(work.log) if work is not None else 0
        if self._closed:
            sub.close()
        try:
            yield sub
        finally:
            sub.leave()
            self._remove(sub, index, key)

    @staticmethod
    def _key_of(sub: LiveFeed) -> Key:
        if sub.run_id is not None:
            return ("run", sub.run_id)
        if sub.workflow_id is not None:
            return ("workflow", sub.workflow_id)
        return ("all", None)

    def _index_for(self, sub: LiveFeed) -> tuple[dict[str, set[LiveFeed]], str | None]:
        if sub.run_id is not None:
            return self._by_run, sub.run_id
        return self._by_workflow, sub.workflow_id

    def _remove(self, sub: LiveFeed, index: dict[str, set[LiveFeed]], key: str | None) -> None:
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
        self._rounds.clear()  # the writer's next slice finds nothing: waiters of settled go
        for sub in self._unfiltered | {s for group in self._all_groups() for s in group}:
            sub.close()

    def _all_groups(self) -> list[set[LiveFeed]]:
        return [*self._by_run.values(), *self._by_workflow.values()]
