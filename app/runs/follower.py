"""Following runs: InvokeAI's events routed to runs, stored, relayed, reconciled.

One background task (the *watcher*) holds a catch-all subscription on the client's event
hub and routes each event by queue item id to the run it belongs to; one task per run then
handles that run's events and queue checks in order. Every relayed event is stored as a
``RunEvent`` row first, then published on the broker (SSE). Runs that are not terminal are
re-read from InvokeAI's queue on start, after every (re)connect of the event stream, and
periodically, so a restart mid-run finds the run finished::

    enqueue ─ Run(queued) ─ run.queued
    watcher ─ status in_progress ─ run.started ─ node.* ... ─ status completed
            ─ read queue item ─ outputs ─ Run(succeeded) ─ run.succeeded
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.core.config import Settings
from app.db import outbox as crud_webhooks
from app.db import queries as crud
from app.db.outbox import StoredEvent
from app.db.tables import Run, RunStatus, utcnow
from app.runs.outputs import compute_outputs
from app.runs.registry import Tracked as _Tracked
from app.runs.registry import checks_after_bulk_read, deadline_error, lost_error
from app.runs.translate import error_from_item, node_event, run_status_for
from app.streaming.broker import EventBroker
from invokeai_py_client import InvokeAIClient
from invokeai_py_client.exceptions import InvokeAIError, NotFoundError
from invokeai_py_client.queue.models import IvkJob

__all__ = ["RunFollower"]

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


class RunFollower:
    """Follows accepted runs to their end and keeps their state, events and outputs stored."""

    def __init__(
        self, *, engine: Engine, client: InvokeAIClient, broker: EventBroker, settings: Settings
    ) -> None:
        self.engine = engine
        self.client = client
        self.broker = broker
        self.settings = settings
        self._by_item: dict[int, _Tracked] = {}
        self._by_run: dict[str, _Tracked] = {}
        # Events that arrived before their enqueue call returned (the watcher is faster).
        self._early: deque[tuple[int, str, dict[str, Any]]] = deque(maxlen=EARLY_EVENTS_KEPT)
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._hub: Any = None  # the client's event hub, once the watcher holds it
        self._attempted = asyncio.Event()  # the watcher tried to connect at least once

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Load unfinished runs and start following InvokeAI (never blocks on it)."""
        with Session(self.engine) as session:
            unfinished = crud.list_unfinished_runs(session=session)
        for run in unfinished:
            if run.item_id is not None:
                self._track(run).inbox.put_nowait(("check",))
        self._watcher = asyncio.create_task(self._watch_forever(), name="gateway-run-watcher")
        self._poller = asyncio.create_task(self._poll_forever(), name="gateway-run-poller")

    async def stop(self) -> None:
        """Stop the background tasks (runs stay recorded; the next start reconciles them)."""
        tasks = [t for t in (self._watcher, self._poller, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    @property
    def events_connected(self) -> bool:
        """Whether InvokeAI's event stream is being followed right now (its Socket.IO
        connection up, not reconnecting)."""
        return self._connected.is_set() and self._hub is not None and bool(self._hub.connected)

    async def await_events(self) -> None:
        """Wait (briefly) until the event stream is followed, unless it is known to be down."""
        # A run enqueued before the watcher listens would lose its node events (its end is
        # still found by re-reading the queue item). Waiting is bounded: never block a run.
        if self._connected.is_set():
            return
        if self._attempted.is_set():
            return  # the stream is down; the poller will find how the run ends
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), CONNECT_WAIT_SECONDS)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- tracking ---------------------------------------------------------------------------

    def follow_new(self, run: Run) -> None:
        """Start following a run that was just enqueued (and its ``run.queued`` stored)."""
        # No await in here: events that came early are queued before any later one.
        tracked = self._track(run)
        for item_id, event_type, payload in self._early:
            if item_id == tracked.item_id:
                tracked.inbox.put_nowait(("event", event_type, payload))
        if not self.events_connected:
            # Nothing tells how this run goes but its queue item (the poller re-reads it too).
            # While the event stream is followed, every event of the item reaches us (early
            # ones were kept above), so a read now would only cost InvokeAI a request per run.
            tracked.inbox.put_nowait(("check",))

    async def recheck(self, run_id: str, timeout: float) -> None:
        """Re-read a followed run's queue item; return once it ended or ``timeout`` passed."""
        self.nudge(run_id)
        await self.wait(run_id, timeout)

    def nudge(self, run_id: str) -> None:
        """Re-read a followed run's queue item soon (no waiting)."""
        tracked = self._by_run.get(run_id)
        if tracked is not None:
            tracked.inbox.put_nowait(("check",))

    def _track(self, run: Run) -> _Tracked:
        assert run.item_id is not None
        tracked = _Tracked(run.id, run.workflow_id, run.item_id, run.status, run.batch_id)
        self._by_item[run.item_id] = tracked
        self._by_run[run.id] = tracked
        self._spawn(self._consume(tracked))
        return tracked

    async def _consume(self, tracked: _Tracked) -> None:
        while not tracked.done.is_set():
            message = await tracked.inbox.get()
            try:
                if message[0] == "event":
                    await self._route(tracked, message[1], message[2])
                elif message[0] == "check":
                    await self._check(tracked, *message[1:])
                else:
                    await self._finish(tracked)
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad event must not stop the run's follower
                logger.exception("while following run %s", tracked.run_id)

    def _untrack(self, tracked: _Tracked) -> None:
        self._by_item.pop(tracked.item_id, None)
        self._by_run.pop(tracked.run_id, None)
        tracked.done.set()

    async def wait(self, run_id: str, timeout: float) -> None:
        """Return when the run is terminal or ``timeout`` seconds passed."""
        tracked = self._by_run.get(run_id)
        if tracked is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tracked.done.wait(), timeout)

    # -- events -----------------------------------------------------------------------------

    async def _emit(self, tracked: _Tracked, event_type: str, data: dict[str, Any]) -> None:
        await self.emit_for(tracked.run_id, tracked.workflow_id, event_type, data)

    async def emit_for(
        self, run_id: str, workflow_id: str, event_type: str, data: dict[str, Any]
    ) -> None:
        """Store the event with its webhook deliveries (one transaction), then publish it."""
        with self.engine.begin() as connection:
            row = crud_webhooks.add_run_event_with_deliveries(
                connection=connection,
                run_id=run_id,
                workflow_id=workflow_id,
                event_type=event_type,
                data=data,
            )
        await self.publish_row(row)

    async def publish_row(self, row: StoredEvent) -> None:
        """Publish an event already stored (its row committed)."""
        event: dict[str, Any] = {"id": row.id, "run_id": row.run_id, "workflow_id": row.workflow_id}
        event |= {"event": row.event_type, "data": row.data, "created_at": row.created_at}
        await self.broker.publish(event)

    def _set(self, tracked: _Tracked, **changes: Any) -> None:
        if "status" in changes:
            tracked.status = changes["status"]
        crud.set_run_columns(self.engine, tracked.run_id, **changes)

    async def _watch_forever(self) -> None:
        delay = self.settings.reconcile_interval_seconds
        while True:
            try:
                if self.client.username is not None:
                    # Multi-user: no Socket.IO handshake without a fresh token.
                    await self.client.alogin()
                hub = self._hub = await self.client.event_hub()
                with hub.subscribe(everything=True) as sub:
                    self._connected.set()
                    self._attempted.set()
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
            await asyncio.sleep(self.settings.reconcile_interval_seconds)
            due = not self.events_connected or loop.time() - last >= HEALTHY_RECHECK_SECONDS
            if self._by_item and due:
                last = loop.time()
                await self._recheck_all()

    async def _recheck_all(self) -> None:
        # One bulk read for every followed run (not one request each: with hundreds of runs
        # unfinished, per-run reads every interval would swamp InvokeAI and the client pool).
        followed = list(self._by_item.values())
        if not followed:
            return
        try:
            items = await self.client.queue_repo.aget_items_by_ids([t.item_id for t in followed])
        except InvokeAIError:
            return  # unreachable: the poller tries again
        for tracked, message in checks_after_bulk_read(followed, items):
            tracked.inbox.put_nowait(message)

    async def _on_event(self, event_type: str, payload: dict[str, Any]) -> None:
        if event_type == "events_resync":
            await self._recheck_all()
            return
        if event_type == "queue_items_canceled":
            for item_id in payload.get("canceled_item_ids") or []:
                if item_id in self._by_item:
                    self._by_item[item_id].inbox.put_nowait(("check",))
            return
        item_id = payload.get("item_id")
        if not isinstance(item_id, int):
            return
        tracked = self._by_item.get(item_id)
        if tracked is None:
            self._early.append((item_id, event_type, payload))
            return
        tracked.inbox.put_nowait(("event", event_type, payload))

    async def _route(self, tracked: _Tracked, event_type: str, payload: dict[str, Any]) -> None:
        if tracked.finishing:
            return
        if event_type == "queue_item_status_changed":
            await self._on_status(tracked, str(payload.get("status")), payload)
            return
        translated = node_event(event_type, payload)
        if translated is None:
            return
        await self._mark_started(tracked, payload.get("session_id"))
        await self._emit(tracked, *translated)
        if translated[0] == "node.failed":
            tracked.failure_hint = translated[1]
            tracked.evented = True
            await self._finish(tracked)

    async def _mark_started(
        self, tracked: _Tracked, session_id: Any, *, synthetic: bool = False
    ) -> None:
        if tracked.status != RunStatus.queued.value:
            return
        self._set(
            tracked, status=RunStatus.running.value, started_at=utcnow(), session_id=session_id
        )
        data: dict[str, Any] = {"item_id": tracked.item_id, "session_id": session_id}
        if synthetic:
            data["synthetic"] = True  # learnt from the queue item, not from an event
        await self._emit(tracked, "run.started", data)

    async def _on_status(self, tracked: _Tracked, status: str, payload: dict[str, Any]) -> None:
        run_status = run_status_for(status)
        if run_status == RunStatus.running.value:
            await self._mark_started(tracked, payload.get("session_id"))
        elif run_status == RunStatus.failed.value:
            tracked.evented = True
            self._spawn(self._finish_later(tracked))  # give invocation_error time to arrive
        elif run_status in (RunStatus.succeeded.value, RunStatus.canceled.value):
            tracked.evented = True
            await self._finish(tracked)

    async def _finish_later(self, tracked: _Tracked) -> None:
        await asyncio.sleep(FAILED_GRACE_SECONDS)
        tracked.inbox.put_nowait(("finish",))

    # -- reconciling with the queue ---------------------------------------------------------

    async def _check(self, tracked: _Tracked, item: IvkJob | None = None) -> None:
        """Catch the run up with its queue item (read here unless given)."""
        if tracked.finishing:
            return
        try:
            if item is None:
                item = await self.client.queue_repo.aget_item(tracked.item_id)
        except NotFoundError:
            await self._close(tracked, RunStatus.failed.value, error=lost_error(tracked))
            return
        except InvokeAIError:
            return  # unreachable: the poller tries again
        if tracked.batch_id and item.batch_id and item.batch_id != tracked.batch_id:
            # InvokeAI lost its queue and reuses item ids: this item is another run's.
            await self._close(tracked, RunStatus.failed.value, error=lost_error(tracked))
            return
        run_status = run_status_for(str(item.status))
        if run_status == RunStatus.running.value:
            await self._mark_started(tracked, item.session_id, synthetic=True)
        elif run_status is not None and RunStatus(run_status).terminal:
            if self.events_connected:
                # The queue can answer before the item's last events arrive over Socket.IO:
                # give them a moment, so the stream still carries every node event.
                self._spawn(self._finish_later(tracked))
            else:
                await self._finish(tracked, item.model_dump(mode="json"))

    async def _finish(self, tracked: _Tracked, item: dict[str, Any] | None = None) -> None:
        """Close the run from its queue item (read here unless given)."""
        if tracked.finishing:
            return
        tracked.finishing = True
        try:
            if item is None:
                item = (await self.client.queue_repo.aget_item(tracked.item_id)).model_dump(
                    mode="json"
                )
            await self._close_from_item(tracked, item)
        except InvokeAIError:
            tracked.finishing = False  # try again on the next check
            logger.warning("cannot read queue item %s yet", tracked.item_id, exc_info=True)

    async def _close_from_item(self, tracked: _Tracked, item: dict[str, Any]) -> None:
        status = run_status_for(str(item.get("status")))
        if tracked.status == RunStatus.queued.value and item.get("started_at"):
            await self._mark_started(tracked, item.get("session_id"), synthetic=True)
        if status == RunStatus.succeeded.value:
            outputs = compute_outputs(self._definition(tracked), item)
            await self._close(tracked, status, outputs=outputs)
        elif status == RunStatus.failed.value:
            error = error_from_item(item, tracked.failure_hint)
            await self._close(tracked, status, error=error)
        else:
            await self._close(
                tracked, RunStatus.canceled.value, error=self._deadline_error(tracked)
            )

    def _deadline_error(self, tracked: _Tracked) -> dict[str, Any] | None:
        """Why a canceled run was canceled, when its deadline had passed (else None)."""
        with Session(self.engine) as session:
            run = crud.get_run(session=session, run_id=tracked.run_id)
        return deadline_error(run.cancel_at if run else None, utcnow())

    def _definition(self, tracked: _Tracked) -> dict[str, Any]:
        with Session(self.engine) as session:
            run = crud.get_run(session=session, run_id=tracked.run_id)
            assert run is not None
            version = crud.get_workflow_version(
                session=session, workflow_id=run.workflow_id, version=run.workflow_version
            )
            assert version is not None
            return dict(version.definition)

    async def _close(
        self,
        tracked: _Tracked,
        status: str,
        *,
        outputs: list[dict[str, Any]] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        tracked.finishing = True
        self._set(tracked, status=status, finished_at=utcnow(), outputs=outputs, error=error)
        data: dict[str, Any] = {}
        if outputs is not None:
            data["outputs"] = outputs
        if error is not None:
            data["error"] = error
        if not tracked.evented:
            data["synthetic"] = True  # InvokeAI's own status event for the end never came
        await self._emit(tracked, f"run.{status}", data)
        self._untrack(tracked)
