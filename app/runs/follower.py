"""Following runs on InvokeAI's queue: its events routed to runs, stored, relayed, reconciled.

One background task (the *watcher*) holds a catch-all subscription on the client's event
hub and routes each event by queue item id to the run it belongs to; one task per run then
handles that run's events and queue checks in order. Every change is a ``Transitions.apply``
(state, event and webhook rows in one transaction, then published). Followed runs are re-read
from InvokeAI's queue on start, after every (re)connect of the event stream, and periodically,
so a restart mid-run finds the run finished::

    watcher ─ status in_progress ─ run.started ─ node.* ... ─ status completed
            ─ read queue item ─ outputs ─ Run(succeeded) + run.succeeded (one transaction)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from app.db import queries
from app.db.tables import Run, RunStatus, utcnow
from app.runs import errors
from app.runs.context import RunContext
from app.runs.outputs import compute_outputs
from app.runs.registry import Check, Finish, Relayed, Tracked
from app.runs.transition import Change, Guard
from app.runs.translate import node_event, run_status_for
from app.schemas.events import RunEventType
from invokeai_py_client import IvkJob
from invokeai_py_client.events import EventHub
from invokeai_py_client.exceptions import InvokeAIError, NotFoundError
from invokeai_py_client.queue import CompletedNodes

__all__ = ["Follower", "checks_after_bulk_read"]

logger = logging.getLogger(__name__)

# How long a run whose item ended waits for trailing events before it is closed from the queue
# item: InvokeAI sends a failed status before ``invocation_error``, and a queue read can beat
# the Socket.IO events of the same item.
FAILED_GRACE_SECONDS = 1.0
EARLY_EVENTS_KEPT = 512
CONNECT_WAIT_SECONDS = 5.0
# How often followed runs are re-read from the queue while InvokeAI's events are followed: a
# safety net for an event that never arrives, one bulk read for all runs, so it can be short.
HEALTHY_RECHECK_SECONDS = 10.0


def checks_after_bulk_read(
    followed: list[Tracked], items: list[IvkJob]
) -> list[tuple[Tracked, Check]]:
    """The inbox messages a bulk read of queue items calls for (runs already in step: none)."""
    by_id = {item.item_id: item for item in items}
    messages: list[tuple[Tracked, Check]] = []
    for tracked in followed:
        item = by_id.get(tracked.item_id)
        if item is None:
            messages.append((tracked, Check()))  # gone? confirmed by a read of its own
        elif run_status_for(str(item.status)) != tracked.status:
            messages.append((tracked, Check(item)))
    return messages


class Follower:
    """Follows enqueued runs to their end; owns the connection to InvokeAI's events."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        # Events that arrived before their enqueue call returned (the watcher is faster).
        self._early: deque[tuple[int, str, dict[str, Any]]] = deque(maxlen=EARLY_EVENTS_KEPT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._connected = asyncio.Event()
        self._hub: EventHub | None = None  # the client's event hub, once the watcher holds it
        self._attempted = asyncio.Event()  # the watcher tried to connect at least once
        # Called (as tasks) each time the event stream is followed again.
        self.connected_hooks: list[Callable[[], Coroutine[Any, Any, None]]] = []

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Follow the unfinished runs already enqueued, and start watching InvokeAI."""
        unfinished = await self.ctx.db.run(queries.unfinished_runs, self.ctx.engine, self.ctx.owner)
        for run in unfinished:
            if run.item_id is not None:
                self._track(run).inbox.put_nowait(Check())
        self.spawn(self._watch_forever())
        self.spawn(self._poll_forever())

    async def stop(self) -> None:
        """Stop every task (runs stay recorded; the next start reconciles them)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task owned (and cancelled on stop) by the follower."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def events_connected(self) -> bool:
        """Whether InvokeAI's event stream is being followed right now (its Socket.IO
        connection up, not reconnecting)."""
        return self._connected.is_set() and self._hub is not None and self._hub.connected

    async def await_events(self) -> None:
        """Wait (briefly) until the event stream is followed, unless it is known to be down."""
        # A run enqueued before the watcher listens would lose its node events (its end is
        # still found by re-reading the queue item). Waiting is bounded: never block a run.
        if self._connected.is_set() or self._attempted.is_set():
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), CONNECT_WAIT_SECONDS)

    # -- tracking ---------------------------------------------------------------------------

    def follow_new(self, run: Run, graph: dict[str, Any] | None = None) -> None:
        """Start following a run that was just enqueued (and its ``run.queued`` stored).

        ``graph`` is the graph sent, when known: a run whose every node's result arrives
        with its event, with nothing missed, is closed from the events alone.
        """
        # No await in here: events that came early are queued before any later one.
        tracked = self._track(run)
        if graph is not None and self.events_connected:
            tracked.completed = CompletedNodes.of_graph(graph)
        for item_id, event_type, payload in self._early:
            if item_id == tracked.item_id:
                tracked.inbox.put_nowait(Relayed(event_type, payload))
        if not self.events_connected:
            # Nothing tells how this run goes but its queue item (the poller re-reads it too).
            # While the event stream is followed, every event of the item reaches us (early
            # ones were kept above), so a read now would only cost InvokeAI a request per run.
            tracked.inbox.put_nowait(Check())

    async def recheck(self, run_id: str, timeout: float) -> None:
        """Re-read a followed run's queue item; return once it ended or ``timeout`` passed."""
        self.nudge(run_id)
        await self.wait(run_id, timeout)

    def nudge(self, run_id: str) -> None:
        """Re-read a followed run's queue item soon (no waiting)."""
        tracked = self.ctx.registry.by_run(run_id)
        if tracked is not None:
            tracked.inbox.put_nowait(Check())

    async def wait(self, run_id: str, timeout: float) -> None:
        """Return when the followed run is terminal or ``timeout`` seconds passed."""
        tracked = self.ctx.registry.by_run(run_id)
        if tracked is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tracked.done.wait(), timeout)

    def _track(self, run: Run) -> Tracked:
        tracked = Tracked.of(run)
        self.ctx.registry.follow(tracked)
        self.spawn(self._consume(tracked))
        return tracked

    async def _consume(self, tracked: Tracked) -> None:
        while not tracked.done.is_set():
            message = await tracked.inbox.get()
            try:
                if isinstance(message, Relayed):
                    await self._route(tracked, message.event_type, message.payload)
                elif isinstance(message, Check):
                    await self._check(tracked, message.item)
                else:
                    await self._finish(tracked)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad event must not stop the run's follower
                logger.exception("while following run %s", tracked.run_id)

    # -- events -----------------------------------------------------------------------------

    async def _apply(
        self,
        tracked: Tracked,
        event: RunEventType,
        data: dict[str, Any],
        columns: dict[str, Any] | None = None,
        guard: Guard = Guard.NONE,
    ) -> bool:
        change = Change(
            tracked.run_id,
            tracked.workflow_id,
            event,
            data,
            columns or {},
            guard,
            webhook=tracked.webhook,
            batch_id=tracked.batch_id,  # still this item's run (not moved to another server)
        )
        return await self.ctx.transitions.apply(change) is not None

    async def _watch_forever(self) -> None:
        delay = self.ctx.settings.reconcile_interval_seconds
        while True:
            try:
                if self.ctx.client.username is not None:
                    # Multi-user: no Socket.IO handshake without a fresh token.
                    await self.ctx.client.alogin()
                hub = self._hub = await self.ctx.client.event_hub()
                with hub.subscribe(everything=True) as sub:
                    self._connected.set()
                    self._attempted.set()
                    for hook in self.connected_hooks:
                        self.spawn(hook())
                    self._events_missed()
                    await self._recheck_all()
                    async for event in sub:
                        await self._on_event(event.event_type, event.model_dump(mode="json"))
            except asyncio.CancelledError:
                raise
            except Exception:  # keep following whatever happens; log and reconnect
                logger.warning("event stream from InvokeAI lost; retrying", exc_info=True)
            self._attempted.set()
            self._connected.clear()
            await asyncio.sleep(delay)

    async def _poll_forever(self) -> None:
        # A safety net for events lost while the stream was down. While it is up, every
        # event reaches the watcher (a reconnect or an overflow re-checks everything at once),
        # so the bulk read runs only every HEALTHY_RECHECK_SECONDS: with hundreds of runs
        # waiting in InvokeAI's queue, reading them all every few seconds costs both sides.
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(self.ctx.settings.reconcile_interval_seconds)
            due = not self.events_connected or loop.time() - last >= HEALTHY_RECHECK_SECONDS
            if self.ctx.registry.followed() and due:
                last = loop.time()
                await self._recheck_all()

    async def _recheck_all(self) -> None:
        # One bulk read for every followed run (not one request each: with hundreds of runs
        # unfinished, per-run reads every interval would swamp InvokeAI and the client pool).
        followed = self.ctx.registry.followed()
        if not followed:
            return
        try:
            items = await self.ctx.client.queue_repo.aget_items_by_ids(
                [t.item_id for t in followed]
            )
        except InvokeAIError:
            return  # unreachable: the poller tries again
        for tracked, message in checks_after_bulk_read(followed, items):
            tracked.inbox.put_nowait(message)

    def _events_missed(self) -> None:
        """Events may have been lost (a reconnect, an overflow): runs end from their items."""
        for tracked in self.ctx.registry.followed():
            if tracked.completed is not None:
                tracked.completed.gap()

    async def _on_event(self, event_type: str, payload: dict[str, Any]) -> None:
        if event_type == "events_resync":
            self._events_missed()
            await self._recheck_all()
            return
        if event_type == "queue_items_canceled":
            for item_id in payload.get("canceled_item_ids") or []:
                if (tracked := self.ctx.registry.by_item(item_id)) is not None:
                    tracked.inbox.put_nowait(Check())
            return
        item_id = payload.get("item_id")
        if not isinstance(item_id, int):
            return
        tracked = self.ctx.registry.by_item(item_id)
        if tracked is None:
            self._early.append((item_id, event_type, payload))
            return
        tracked.inbox.put_nowait(Relayed(event_type, payload))

    async def _route(self, tracked: Tracked, event_type: str, payload: dict[str, Any]) -> None:
        if tracked.finishing:
            return
        if event_type == "queue_item_status_changed":
            await self._on_status(tracked, str(payload.get("status")), payload)
            return
        translated = node_event(event_type, payload)
        if translated is None:
            return
        if translated[0] is RunEventType.node_completed and tracked.completed is not None:
            tracked.completed.add(payload)
        if translated[0] is RunEventType.node_progress:
            self._offer_preview(tracked, translated[1], payload.get("image"))
            if not tracked.new_progress(translated[1]):
                return  # InvokeAI repeats each denoising step's progress: one is enough
        await self._mark_started(tracked, payload.get("session_id"))
        await self._apply(tracked, *translated)
        if translated[0] is RunEventType.node_failed:
            tracked.failure_hint = translated[1]
            tracked.evented = True
            await self._finish(tracked)

    def _offer_preview(self, tracked: Tracked, progress: dict[str, Any], image: Any) -> None:
        """Hand a denoising step's image to the streams that asked for previews (not stored)."""
        if not isinstance(image, dict) or not isinstance(image.get("dataURL"), str):
            return
        data = {
            "node_id": progress["node_id"],
            "node_type": progress["node_type"],
            "step": progress["step"],
            "width": image.get("width"),
            "height": image.get("height"),
            "url": image["dataURL"],
        }
        self.ctx.previews.publish(tracked.run_id, tracked.workflow_id, data)

    async def _mark_started(
        self, tracked: Tracked, session_id: Any, *, synthetic: bool = False
    ) -> None:
        if tracked.status != RunStatus.queued.value:
            return
        tracked.status = RunStatus.running.value
        data: dict[str, Any] = {"item_id": tracked.item_id, "session_id": session_id}
        if synthetic:
            data["synthetic"] = True  # learnt from the queue item, not from an event
        columns = {"status": tracked.status, "started_at": utcnow(), "session_id": session_id}
        await self._apply(tracked, RunEventType.run_started, data, columns, Guard.QUEUED)

    async def _on_status(self, tracked: Tracked, status: str, payload: dict[str, Any]) -> None:
        run_status = run_status_for(status)
        if run_status == RunStatus.running.value:
            await self._mark_started(tracked, payload.get("session_id"))
        elif run_status == RunStatus.failed.value:
            tracked.evented = True
            self.spawn(self._finish_later(tracked))  # give invocation_error time to arrive
        elif run_status in (RunStatus.succeeded.value, RunStatus.canceled.value):
            tracked.evented = True
            from_events = tracked.completed.job(payload) if tracked.completed else None
            # Every node's result came with its event: no need to read the item back.
            item = from_events.model_dump(mode="json") if from_events is not None else None
            await self._finish(tracked, item)

    async def _finish_later(self, tracked: Tracked) -> None:
        await asyncio.sleep(FAILED_GRACE_SECONDS)
        tracked.inbox.put_nowait(Finish())

    # -- reconciling with the queue ---------------------------------------------------------

    async def _check(self, tracked: Tracked, item: IvkJob | None = None) -> None:
        """Catch the run up with its queue item (read here unless given)."""
        if tracked.finishing:
            return
        lost = errors.lost_error(tracked.item_id, tracked.batch_id)
        try:
            if item is None:
                item = await self.ctx.client.queue_repo.aget_item(tracked.item_id)
        except NotFoundError:
            await self._close(tracked, RunStatus.failed, error=lost)
            return
        except InvokeAIError:
            return  # unreachable: the poller tries again
        if tracked.batch_id and item.batch_id and item.batch_id != tracked.batch_id:
            # InvokeAI lost its queue and reuses item ids: this item is another run's.
            await self._close(tracked, RunStatus.failed, error=lost)
            return
        run_status = run_status_for(str(item.status))
        if run_status == RunStatus.running.value:
            await self._mark_started(tracked, item.session_id, synthetic=True)
        elif run_status is not None and RunStatus(run_status).terminal:
            if self.events_connected:
                # The queue can answer before the item's last events arrive over Socket.IO:
                # give them a moment, so the stream still carries every node event.
                self.spawn(self._finish_later(tracked))
            else:
                await self._finish(tracked, item.model_dump(mode="json"))

    async def _finish(self, tracked: Tracked, item: dict[str, Any] | None = None) -> None:
        """Close the run from its queue item (read here unless given)."""
        if tracked.finishing:
            return
        tracked.finishing = True
        try:
            if item is None:
                read = await self.ctx.client.queue_repo.aget_item(tracked.item_id)
                item = read.model_dump(mode="json")
            await self._close_from_item(tracked, item)
        except InvokeAIError:
            tracked.finishing = False  # try again on the next check
            logger.warning("cannot read queue item %s yet", tracked.item_id, exc_info=True)

    async def _close_from_item(self, tracked: Tracked, item: dict[str, Any]) -> None:
        status = run_status_for(str(item.get("status")))
        if tracked.status == RunStatus.queued.value and item.get("started_at"):
            await self._mark_started(tracked, item.get("session_id"), synthetic=True)
        if status == RunStatus.succeeded.value:
            outputs = compute_outputs(await self._definition(tracked), item)
            await self._close(tracked, RunStatus.succeeded, outputs=outputs)
        elif status == RunStatus.failed.value:
            error = errors.from_item(item, tracked.failure_hint)
            await self._close(tracked, RunStatus.failed, error=error)
        else:
            cancel_at = (await self._stored(tracked)).cancel_at
            deadline = errors.deadline_error(cancel_at, utcnow())
            await self._close(tracked, RunStatus.canceled, error=deadline)

    async def _stored(self, tracked: Tracked) -> Run:
        return await self.ctx.db.run(queries.load_run, self.ctx.engine, tracked.run_id)

    async def _definition(self, tracked: Tracked) -> dict[str, Any]:
        run = await self._stored(tracked)
        version = await self.ctx.db.run(
            queries.find_workflow_version, self.ctx.engine, run.workflow_id, run.workflow_version
        )
        assert version is not None  # versions are never deleted
        return dict(version.definition)

    async def _close(
        self,
        tracked: Tracked,
        status: RunStatus,
        *,
        outputs: list[dict[str, Any]] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        tracked.finishing = True
        tracked.status = status.value
        data: dict[str, Any] = {}
        if outputs is not None:
            data["outputs"] = outputs
        if error is not None:
            data["error"] = error
        if not tracked.evented:
            data["synthetic"] = True  # InvokeAI's own status event for the end never came
        columns: dict[str, Any] = {"status": status.value, "finished_at": utcnow()}
        columns |= {"outputs": outputs, "error": error}
        event = RunEventType(f"run.{status.value}")
        await self._apply(tracked, event, data, columns, Guard.UNFINISHED)
        self.ctx.registry.unfollow(tracked)
