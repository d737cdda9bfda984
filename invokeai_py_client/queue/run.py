"""One submission of a workflow, followed to its end.

::

    subscribe(batch_id)      the batch id is minted before the POST: no event can be missed
      │
    enqueue_batch ──────────> item_id
      │
    events ──> RunWatcher.observe ── terminal status ──> GET item ──> run finished
      │  ▲                                                           (result or error)
      │  └── resync (reconnect, overflow) or quiet for RECHECK_INTERVAL: GET item
      ▼
    wait(): on the pump's loop, await the run's done event; elsewhere, watch afresh

A waiter on another loop (e.g. ``wait_for_completion_sync`` after an async ``submit``)
subscribes on its own loop's hub and checks the item right after subscribing, so a run that
already ended is answered at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ..events.models import (
    EventsResyncEvent,
    InvocationCompleteEvent,
    InvocationErrorEvent,
    InvokeAIEvent,
    QueueClearedEvent,
    QueueItemsCanceledEvent,
    QueueItemStatusChangedEvent,
)
from ..exceptions import (
    InvokeAIError,
    NotFoundError,
    RunCanceledError,
    RunFailedError,
    RunTimeoutError,
)
from .from_events import CompletedNodes
from .models import EnqueueResult, IvkJob, JobStatus, OpenJobStatus

if TYPE_CHECKING:
    from ..client import InvokeAIClient
    from ..events.session import Subscription

__all__ = ["RunWatcher", "WorkflowRun", "outcome_error", "status_event_from_job", "wait_run"]

logger = logging.getLogger(__name__)

# A quiet subscription is re-checked over HTTP this often: a safety net for events lost in
# ways the hub cannot see. Completion itself is noticed from events, not from this.
RECHECK_INTERVAL = 15.0
# How long callbacks may still get events of a run known (by a re-check) to have ended.
LATE_EVENTS_GRACE = 5.0

EventCallback = Callable[[dict[str, Any]], Any]


def outcome_error(job: IvkJob, error_event: InvocationErrorEvent | None) -> InvokeAIError | None:
    """The error a finished item stands for (failed, canceled), or None if it completed."""
    if job.status == JobStatus.CANCELED:
        return RunCanceledError(f"queue item {job.item_id} was canceled", item_id=job.item_id)
    if job.status != JobStatus.FAILED:
        return None
    node_id, node_type = job.failed_node()
    if error_event is not None:
        node_id, node_type = error_event.node_id or node_id, error_event.node_type or node_type
    return RunFailedError(
        item_id=job.item_id,
        error_type=job.error_type or (error_event.error_type if error_event else None),
        error_message=job.error_message or (error_event.error_message if error_event else None),
        error_traceback=job.error_traceback
        or (error_event.error_traceback if error_event else None),
        node_id=node_id,
        node_type=node_type,
    )


def status_event_from_job(job: IvkJob) -> dict[str, Any]:
    """A ``queue_item_status_changed`` event dict made from an item (after a missed event)."""
    return {
        "event_type": QueueItemStatusChangedEvent.EVENT_NAME,
        "queue_id": job.queue_id,
        "item_id": job.item_id,
        "batch_id": job.batch_id,
        "session_id": job.session_id,
        "status": str(job.status),
        "error_type": job.error_type,
        "error_message": job.error_message,
        "error_traceback": job.error_traceback,
        "origin": job.origin,
        "destination": job.destination,
        "synthetic": True,
    }


class WorkflowRun:
    """The state of one submission: its batch, queue item, status and outcome."""

    def __init__(self, batch_id: str) -> None:
        self.batch_id = batch_id
        self.enqueue: EnqueueResult | None = None
        self.item_id: int | None = None
        self.session_id: str | None = None
        self.status: OpenJobStatus = JobStatus.PENDING
        self.job: IvkJob | None = None
        self.error_event: InvocationErrorEvent | None = None
        self.error: InvokeAIError | None = None
        # The item's node results as its events tell them (None: always read the item).
        self.completed_nodes: CompletedNodes | None = None
        self.finished = False
        self._done = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pump: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return (
            f"WorkflowRun(batch_id={self.batch_id!r}, item_id={self.item_id}, "
            f"status={self.status!s})"
        )

    @property
    def item_ids(self) -> list[int]:
        return list(self.enqueue.item_ids) if self.enqueue else []

    def to_dict(self) -> dict[str, Any]:
        """The submission as a dict: batch id, item ids, enqueued count, status."""
        return {
            "batch_id": self.batch_id,
            "item_id": self.item_id,
            "item_ids": self.item_ids,
            "enqueued": self.enqueue.enqueued if self.enqueue else 0,
            "requested": self.enqueue.requested if self.enqueue else None,
            "session_id": self.session_id,
            "status": str(self.status),
        }

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def finish(self, job: IvkJob) -> None:
        """Record the final item and its outcome, and wake the waiters of the pump's loop."""
        if self.finished:
            return
        self.job, self.status, self.finished = job, job.status, True
        self.session_id = job.session_id or self.session_id
        self.error = outcome_error(job, self.error_event)
        self._wake()

    def _wake(self) -> None:
        # The done event belongs to the pump's loop; a waiter elsewhere may finish the run.
        loop = self._loop
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is None or loop is here:
            self._done.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._done.set)

    def result(self) -> IvkJob:
        """The finished item; raises the run's error when it failed or was canceled."""
        if self.error is not None:
            raise self.error
        assert self.job is not None
        return self.job


class RunWatcher:
    """Feeds events of one run into its state and tells when it has ended."""

    def __init__(self, run: WorkflowRun, client: InvokeAIClient) -> None:
        self._run = run
        self._client = client

    def concerns(self, event: InvokeAIEvent) -> bool:
        """Whether an event is about this run's item (events without an item id are)."""
        item_id = getattr(event, "item_id", None)
        return item_id is None or self._run.item_id is None or item_id == self._run.item_id

    async def observe(self, event: InvokeAIEvent) -> bool:
        """Take one event; True once the run has ended."""
        run = self._run
        if isinstance(event, EventsResyncEvent | QueueClearedEvent):
            if run.completed_nodes is not None:
                run.completed_nodes.gap()
            return await self.recheck()
        if isinstance(event, QueueItemsCanceledEvent):
            return run.item_id in event.canceled_item_ids and await self.recheck()
        if not self.concerns(event):
            return run.finished
        if isinstance(event, InvocationErrorEvent):
            run.error_event = event
        elif isinstance(event, InvocationCompleteEvent) and run.completed_nodes is not None:
            run.completed_nodes.add(event.model_dump())
        elif isinstance(event, QueueItemStatusChangedEvent):
            run.status = event.status
            run.session_id = event.session_id or run.session_id
            if event.is_terminal:
                await self._finish_from_event(event)
        return run.finished

    def is_last_event(self, event: InvokeAIEvent) -> bool:
        """Whether nothing more will come for this run after ``event``."""
        if not self.concerns(event):
            return False
        if isinstance(event, QueueItemStatusChangedEvent):
            # A failed item sends its status before its invocation_error: wait for that.
            return event.is_terminal and event.status != JobStatus.FAILED
        if isinstance(event, InvocationErrorEvent):
            return self._run.finished
        if isinstance(event, QueueItemsCanceledEvent):
            return self._run.item_id in event.canceled_item_ids
        return isinstance(event, QueueClearedEvent) and self._run.finished

    async def recheck(self) -> bool:
        """Ask the server how the item stands; True once it has ended."""
        run = self._run
        if run.finished or run.item_id is None:
            return run.finished
        try:
            job = await self._client.queue_repo.aget_item(run.item_id)
        except NotFoundError:
            # Cleared or deleted: it will never finish.
            job = IvkJob(item_id=run.item_id, batch_id=run.batch_id, status=JobStatus.CANCELED)
        except InvokeAIError as exc:
            logger.debug("re-check of queue item %s failed: %r", run.item_id, exc)
            return False
        run.status = job.status
        if job.is_terminal:
            run.finish(job)
        return run.finished

    async def _finish_from_event(self, event: QueueItemStatusChangedEvent) -> None:
        run = self._run
        assert run.item_id is not None
        if run.completed_nodes is not None:
            # Every node's result came with its event: no need to read the item back.
            from_events = run.completed_nodes.job(event.model_dump())
            if from_events is not None:
                run.finish(from_events)
                return
        try:
            job = await self._client.queue_repo.aget_item(run.item_id)
        except InvokeAIError:
            # The item's session (results) is not reachable; the event still says how it ended.
            job = IvkJob.model_validate(event.model_dump(exclude={"event_type"}))
        if not job.is_terminal:  # the event is newer than what the server let us read
            job = job.model_copy(update={"status": event.status})
        run.finish(job)


async def _call(callback: EventCallback | None, event: InvokeAIEvent) -> None:
    if callback is None:
        return
    try:
        result = callback(event.to_dict())
        if inspect.isawaitable(result):
            await result
    except Exception:
        # A broken callback must not stop the run from being followed.
        logger.exception("event callback %r raised", callback)


async def pump_run(
    run: WorkflowRun,
    client: InvokeAIClient,
    sub: Subscription,
    callbacks: Mapping[str, EventCallback | None],
) -> None:
    """Follow a run on its subscription until it ends, calling the event callbacks.

    A re-check can learn that the item ended before its last events arrive (the server's
    emitter lags behind its processor under load). The run is finished at once, so waiters
    return, but the callbacks still get the late events, for up to ``LATE_EVENTS_GRACE``.
    """
    watcher = RunWatcher(run, client)
    try:
        while True:
            event = await sub.get(LATE_EVENTS_GRACE if run.finished else RECHECK_INTERVAL)
            if event is None:
                if sub.closed or run.finished:
                    return
                await watcher.recheck()
                continue
            if watcher.concerns(event):
                await _call(callbacks.get(event.event_type), event)
            await watcher.observe(event)
            if watcher.is_last_event(event):
                return
    finally:
        sub.close()
        # Wake waiters even if this task died; they fall back to watching on their own.
        run._wake()


def start_pump(
    run: WorkflowRun,
    client: InvokeAIClient,
    sub: Subscription,
    callbacks: Mapping[str, EventCallback | None],
) -> None:
    """Follow the run in a background task on the running loop."""
    run._loop = asyncio.get_running_loop()
    run._pump = asyncio.create_task(pump_run(run, client, sub, callbacks))


async def wait_run(run: WorkflowRun, client: InvokeAIClient, timeout: float | None) -> IvkJob:
    """Wait for a run to end and return its item.

    Raises:
        RunTimeoutError: it did not end within ``timeout`` seconds.
        RunFailedError: it failed (server's error type, message, traceback and node).
        RunCanceledError: it was canceled.
    """
    if run.item_id is None:
        raise InvokeAIError("this run was never enqueued")
    if not run.finished and _pump_is_here(run):
        try:
            async with asyncio.timeout(timeout):
                await run._done.wait()
        except TimeoutError:
            raise _timeout(run, timeout) from None
    if not run.finished:
        await _watch(run, client, timeout)
    return run.result()


def _pump_is_here(run: WorkflowRun) -> bool:
    with contextlib.suppress(RuntimeError):
        pump = run._pump
        return pump is not None and not pump.done() and run._loop is asyncio.get_running_loop()
    return False


def _timeout(run: WorkflowRun, timeout: float | None) -> RunTimeoutError:
    return RunTimeoutError(
        f"queue item {run.item_id} did not finish within {timeout} s (status {run.status!s})",
        item_id=run.item_id,
    )


async def _watch(run: WorkflowRun, client: InvokeAIClient, timeout: float | None) -> None:
    hub = await client.event_hub()
    deadline = None if timeout is None else time.monotonic() + timeout
    watcher = RunWatcher(run, client)
    with hub.subscribe(batch_id=run.batch_id) as sub:
        # Subscribed first, then checked: a run that ended before is seen here.
        if await watcher.recheck():
            return
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise _timeout(run, timeout)
            wait = RECHECK_INTERVAL if remaining is None else min(remaining, RECHECK_INTERVAL)
            event = await sub.get(wait)
            ended = await watcher.recheck() if event is None else await watcher.observe(event)
            if ended:
                return
