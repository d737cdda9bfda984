"""Every replica's SSE readers get every run event, whichever replica stored it.

In a cluster, no replica publishes its own events straight to its readers: each one reads
the event table in id order (woken by ``NOTIFY gateway_events``, which every stored event
sends on commit, and at least every second) and publishes what it had not. One path for
every event keeps each stream in the order of its ids.

Ids are handed out when an event is inserted, not when it commits, so two replicas' commits
can land out of order: an id missing below newer ones is waited for (``GAP_SECONDS``) before
the floor passes it. Such an event arriving later still is in the history (a reader resuming
with ``Last-Event-ID`` gets it); only the live stream would miss it.
"""

from __future__ import annotations

import time

from sqlalchemy import Table, func, select
from sqlalchemy.engine import Engine

from app.db.outbox import StoredEvent
from app.db.tables import RunEvent
from app.db.thread import DatabaseThread
from app.streaming.broker import EventBroker

__all__ = ["GAP_SECONDS", "EventTail"]

GAP_SECONDS = 2.0
BATCH = 1000
_EVENTS: Table = RunEvent.__table__  # type: ignore[attr-defined]
_COLUMNS = [_EVENTS.c[name] for name in ("id", "run_id", "workflow_id", "event_type", "data")]


def _newest(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.max(_EVENTS.c.id))).scalar() or 0)


def _after(engine: Engine, floor: int) -> list[StoredEvent]:
    query = (
        select(*_COLUMNS, _EVENTS.c.created_at)
        .where(_EVENTS.c.id > floor)
        .order_by(_EVENTS.c.id)
        .limit(BATCH)
    )
    with engine.connect() as connection:
        return [StoredEvent(**row._mapping) for row in connection.execute(query)]


class EventTail:
    """Publishes stored events to this replica's broker, each once, in id order."""

    def __init__(self, engine: Engine, db: DatabaseThread, broker: EventBroker) -> None:
        self.engine = engine
        self.db = db
        self.broker = broker
        self.floor = 0  # every event up to here was published (or given up on)
        self._published: set[int] = set()  # ids above the floor already published
        self._gaps: dict[int, float] = {}  # ids missing above the floor: first seen missing

    async def start(self) -> None:
        """Begin after the newest stored event (older ones are history: readers replay them)."""
        self.floor = await self.db.run(_newest, self.engine)

    async def catch_up(self) -> int:
        """Publish what was stored since; how many events were published."""
        published = 0
        while True:
            rows = await self.db.run(_after, self.engine, self.floor)
            fresh = [row for row in rows if row.id not in self._published]
            for row in fresh:
                await self.broker.publish(row.as_event())
                self._published.add(row.id)
            published += len(fresh)
            self._advance(time.monotonic())
            if len(rows) < BATCH or not fresh:
                return published

    def _advance(self, now: float) -> None:
        if not self._published:
            return
        top = max(self._published)
        missing = set(range(self.floor + 1, top)) - self._published
        self._gaps = {i: self._gaps.get(i, now) for i in missing}
        waiting = [i for i, since in self._gaps.items() if now - since < GAP_SECONDS]
        self.floor = min(waiting) - 1 if waiting else top
        self._published = {i for i in self._published if i > self.floor}
        self._gaps = {i: t for i, t in self._gaps.items() if i > self.floor}
