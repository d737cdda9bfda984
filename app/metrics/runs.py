"""Run timings observed from the event broker: dispatch latency, queue wait, duration.

A subscriber of every run's events (the broker's unfiltered subscription), so the run
lifecycle itself knows nothing of metrics. At ``run.queued`` it reads the run and observes
the time since it was accepted; at a terminal event it reads the finished run and observes
its queue wait (accepted to started) and duration (started to finished). A run canceled
before it started has neither. Should this reader fall behind (its queue bounded by the
broker), the events it missed are not observed: the histograms undercount, they never
double-count; the exact counts by status come from the database (``database.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.db import queries as crud
from app.db.tables import Run, Workflow
from app.metrics.registry import GatewayMetrics
from app.streaming.broker import Event, EventBroker, SubscriberLagging, is_terminal_event

__all__ = ["RunTimings"]

logger = logging.getLogger(__name__)


def _when(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(value)
    return None


def _utc(value: datetime) -> datetime:
    # Rows read back through the ORM are aware; raw rows of SQLite are naive UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (_utc(end) - _utc(start)).total_seconds())


def _load(engine: Engine, run_id: str) -> tuple[Run, str] | None:
    """The run and its workflow's name."""
    with Session(engine, expire_on_commit=False) as session:
        run = crud.get_run(session=session, run_id=run_id)
        if run is None:
            return None
        workflow = session.get(Workflow, run.workflow_id)
        return run, workflow.name if workflow is not None else run.workflow_id


# What the timings are read from; other events are not even queued for the observer.
OBSERVED = frozenset({"run.queued", "run.succeeded", "run.failed", "run.canceled"})


class RunTimings:
    """Observes run timings from the broker while started (``start`` / ``stop``)."""

    def __init__(self, metrics: GatewayMetrics, engine: Engine, broker: EventBroker) -> None:
        self.metrics = metrics
        self.engine = engine
        self.broker = broker
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Subscribe before returning, so no run accepted afterwards is missed."""
        subscribed = asyncio.Event()
        self._task = asyncio.create_task(self._follow(subscribed), name="gateway-metrics-runs")
        await subscribed.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self, subscribed: asyncio.Event) -> None:
        async with self.broker.subscribe(kinds=OBSERVED) as events:
            subscribed.set()
            while True:
                try:
                    event = await anext(events)
                except SubscriberLagging:
                    continue
                except StopAsyncIteration:
                    return
                try:
                    await self.observe(event)
                except Exception:  # a metric must never stop the observer
                    logger.exception("while observing run event %s", event.get("id"))

    async def observe(self, event: Event) -> None:
        """Observe what one event completes; other events cost nothing."""
        kind = event.get("event")
        if kind != "run.queued" and not is_terminal_event(event):
            return
        loaded = await asyncio.to_thread(_load, self.engine, str(event.get("run_id")))
        if loaded is None:
            return
        run, workflow = loaded
        if kind == "run.queued":
            latency = _seconds(run.created_at, _when(event.get("created_at")))
            if latency is not None:
                self.metrics.dispatch_latency.observe(latency)
            return
        wait = _seconds(run.created_at, run.started_at)
        if wait is not None:
            self.metrics.queue_wait.observe(wait)
        duration = _seconds(run.started_at, run.finished_at)
        if duration is not None:
            self.metrics.run_duration.labels(workflow, run.status).observe(duration)
