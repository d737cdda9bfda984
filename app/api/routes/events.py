"""Server-Sent Events: the live events of one run, or of all runs, resumable by event id.

Ordering that makes resuming lossless and free of repeats (each event is stored before it is
published):

1. subscribe to the broker (from now on every new event is queued for this stream);
2. replay the stored events with an id above ``Last-Event-ID`` from the database;
3. relay live events, skipping ids already sent.

An event stored before step 1 is found in step 2; one stored after it is queued. A reader that
falls behind is told so by the broker and goes back to step 2 from its last sent id.

Step 3 has two gears. Caught up, a stream is *pushed to*: the broker's ``publish`` calls the
stream's sink, which writes the event to the connection there and then (``_Sink``), so a
thousand streams cost a thousand writes and no task wake-ups. When a write cannot finish at
once (a slow reader, flow control) the sink detaches; the stream's task finishes that write,
sends what queued meanwhile (or re-reads from the database if the queue overflowed), and
attaches again once caught up::

    replay (pull) ──> caught up? ── attach ──> publish ─> sink ─> write_now ─┐
        ^                 ^                                                   │ blocked,
        │ lagging         └── finish the write, take the queued events <──────┘ or terminal
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from sse_starlette import ServerSentEvent

from app.api.sse import (
    Connection,
    EventStreamResponse,
    WireCache,
    WireEvent,
    encode_event,
    ping_chunk,
    wire_cache,
)
from app.core.errors import NotFound
from app.events import (
    Event,
    EventBroker,
    SubscriberLagging,
    Subscription,
    is_terminal_event,
)
from app.models import Run, RunEvent, RunStatus

__all__ = ["router"]

router = APIRouter(tags=["events"])

REPLAY_PAGE = 500
# A reader that cannot take one event within this time is stuck; drop its connection.
SEND_TIMEOUT_SECONDS = 30.0
# How long a finished run's stream waits for a terminal event not yet stored (see below).
TERMINAL_GRACE_SECONDS = 2.0

# Event ids are 64-bit database ids: a larger resume point is no id at all.
MAX_EVENT_ID = 2**63 - 1

LastEventIdHeader = Annotated[
    int | None,
    Header(
        alias="Last-Event-ID",
        ge=0,
        le=MAX_EVENT_ID,
        description="Resume after this event id (browsers send it when they reconnect).",
    ),
]
LastEventIdQuery = Annotated[
    int | None,
    Query(
        ge=0,
        le=MAX_EVENT_ID,
        description="Resume after this event id, for clients that cannot set headers.",
    ),
]

_SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "A text/event-stream; each event's data is a RunEventPublic (JSON).",
        "content": {
            "text/event-stream": {
                "example": 'id: 42\nevent: node.progress\ndata: {"id":42,"run_id":"...",'
                '"workflow_id":"...","event":"node.progress","data":{"percentage":0.5},'
                '"created_at":"2026-11-29T15:00:00+00:00"}\n\n'
            }
        },
    }
}


# -- history (sync, run in a worker thread) ----------------------------------------------------


def row_to_event(row: RunEvent) -> Event:
    """A stored event as the dict the broker publishes."""
    return {
        "id": row.id,
        "run_id": row.run_id,
        "workflow_id": row.workflow_id,
        "event": row.event_type,
        "data": row.data,
        "created_at": row.created_at,
    }


def load_events_after(
    engine: Engine, *, after_id: int, run_id: str | None, workflow_id: str | None, limit: int
) -> list[Event]:
    """Up to ``limit`` stored events with an id above ``after_id``, oldest first."""
    query = select(RunEvent).where(col(RunEvent.id) > after_id)
    if run_id is not None:
        query = query.where(RunEvent.run_id == run_id)
    if workflow_id is not None:
        query = query.where(RunEvent.workflow_id == workflow_id)
    with Session(engine) as session:
        rows = session.exec(query.order_by(col(RunEvent.id)).limit(limit)).all()
        return [row_to_event(row) for row in rows]


def load_run_status(engine: Engine, run_id: str) -> str | None:
    """The stored status of a run, or None when there is no such run."""
    with Session(engine) as session:
        run = session.get(Run, run_id)
        return None if run is None else run.status


TERMINAL_STATUSES = frozenset(s.value for s in RunStatus if s.terminal)


async def _run_is_over(engine: Engine, run_id: str) -> bool:
    return await anyio.to_thread.run_sync(load_run_status, engine, run_id) in TERMINAL_STATUSES


# -- the stream --------------------------------------------------------------------------------


def to_sse(event: Event) -> ServerSentEvent:
    """One event on the wire: ``id:`` its id, ``event:`` its type, ``data:`` the JSON shape."""
    return encode_event(event)


Batch = list[WireEvent]


def _chunk(batch: Batch) -> bytes:
    """A batch of events in one chunk: one write, however many events waited."""
    return batch[0].encode() if len(batch) == 1 else b"".join(e.encode() for e in batch)


class _Cursor:
    """The last id sent, whether the stream is over, and where encoded events are shared."""

    def __init__(self, last_id: int, wire: WireCache, *, stop_at_terminal: bool) -> None:
        self.last_id = last_id
        self.done = False
        self.wire = wire
        self.stop_at_terminal = stop_at_terminal

    def advance(self, event: Event) -> WireEvent:
        """Mark ``event`` sent (the caller sends it); the encoded form to send."""
        self.last_id = int(event["id"])
        self.done = self.stop_at_terminal and is_terminal_event(event)
        return self.wire.get(event)

    def advance_all(self, events: list[Event]) -> Batch:
        """The events not sent yet, in order, up to the terminal one if the stream stops there."""
        batch = []
        for event in events:
            if int(event["id"]) <= self.last_id:
                continue  # already sent (by the replay)
            batch.append(self.advance(event))
            if self.done:
                break
        return batch


async def _replay(
    engine: Engine, cursor: _Cursor, run_id: str | None, workflow_id: str | None
) -> AsyncIterator[Batch]:
    while not cursor.done:
        page = await anyio.to_thread.run_sync(
            lambda: load_events_after(
                engine,
                after_id=cursor.last_id,
                run_id=run_id,
                workflow_id=workflow_id,
                limit=REPLAY_PAGE,
            )
        )
        batch = cursor.advance_all(page)
        if batch:
            yield batch
        if cursor.done or len(page) < REPLAY_PAGE:
            return


async def relay(
    connection: Connection,
    *,
    engine: Engine,
    broker: EventBroker,
    last_id: int,
    ping: float,
    run_id: str | None = None,
    workflow_id: str | None = None,
) -> None:
    """Write one stream: one run's events (until its terminal event), or many (never ends).

    Args:
        connection: where the events go.
        engine: the database holding the events (the history).
        broker: the live events.
        last_id: send only events with a larger id (the resume point).
        ping: seconds between heartbeats while the stream waits for events.
        run_id: only this run's events; the stream ends after its terminal event.
        workflow_id: only the events of this workflow's runs.
    """
    cursor = _Cursor(last_id, wire_cache(broker), stop_at_terminal=run_id is not None)
    async with broker.subscribe(run_id=run_id, workflow_id=workflow_id) as sub:
        while not cursor.done:
            # Read the status before the replay: a run already over has stored its events.
            over = run_id is not None and await _run_is_over(engine, run_id)
            async for batch in _replay(engine, cursor, run_id, workflow_id):
                await connection.write(_chunk(batch))
            if over:
                async for batch in _terminal_in_flight(engine, sub, cursor, run_id):
                    await connection.write(_chunk(batch))
                return
            if cursor.done or not await _live(connection, sub, cursor, ping):
                return
            # Events were dropped for us (the queue overflowed): re-read them from the database.


async def _live(connection: Connection, sub: Subscription, cursor: _Cursor, ping: float) -> bool:
    """Relay live events until the stream is over (False) or has fallen behind (True)."""
    sink = functools.partial(_push, connection, sub, cursor)
    while not (cursor.done or sub.closed):
        if sub.take_lag():
            return True
        batch = cursor.advance_all(sub.take_ready())
        if batch:
            await connection.write(_chunk(batch))  # what queued while we were not attached
        elif sub.attach(sink):
            await _while_pushed(connection, sub, ping)
    return False


def _push(connection: Connection, sub: Subscription, cursor: _Cursor, events: list[Event]) -> None:
    """The sink: called by the broker's delivery; writes the events to the connection now."""
    batch = cursor.advance_all(events)  # skips what the replay sent already
    if batch and (not connection.write_now(_chunk(batch)) or cursor.done):
        # Blocked: later events queue until the stream's task has finished this write.
        # Done: the stream's task ends the response.
        sub.detach()


async def _while_pushed(connection: Connection, sub: Subscription, ping: float) -> None:
    """Sleep while the broker pushes; a heartbeat when a ping interval passes; when detached,
    finish the write the sink could not finish at once."""
    while not await sub.wait_detached(ping):
        # Attached means no write is in flight: the heartbeat can go out the same way.
        if not connection.write_now(ping_chunk()):
            sub.detach()
            break
    await connection.finish()


async def _terminal_in_flight(
    engine: Engine, sub: Subscription, cursor: _Cursor, run_id: str | None
) -> AsyncIterator[Batch]:
    """The run's status is final but its last event was not read yet: wait a moment for it.

    The run service writes the final status just before it stores the terminal event, and our
    reads run in worker threads, so a read can fall between the two writes.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TERMINAL_GRACE_SECONDS
    while not cursor.done and (remaining := deadline - loop.time()) > 0:
        try:
            # The timeout covers only the wait for the queue, never our caller's send.
            event = await asyncio.wait_for(anext(sub), remaining)
        except (TimeoutError, StopAsyncIteration, SubscriberLagging):
            break
        batch = cursor.advance_all([event])
        if batch:
            yield batch
    if not cursor.done:
        async for batch in _replay(engine, cursor, run_id, None):
            yield batch


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _broker(request: Request) -> EventBroker:
    broker: EventBroker = request.app.state.broker
    return broker


def _response(
    request: Request, *, last_id: int, run_id: str | None = None, workflow_id: str | None = None
) -> EventStreamResponse:
    stream = functools.partial(
        relay,
        engine=_engine(request),
        broker=_broker(request),
        last_id=last_id,
        ping=float(request.app.state.settings.sse_ping_seconds),
        run_id=run_id,
        workflow_id=workflow_id,
    )
    return EventStreamResponse(stream, send_timeout=SEND_TIMEOUT_SECONDS)


@router.get("/runs/{run_id}/events", response_class=EventStreamResponse, responses=_SSE_DOC)
async def run_events(
    request: Request,
    run_id: str,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
) -> EventStreamResponse:
    """Follow one run: its stored events, then live ones, ending after the terminal event."""
    engine = _engine(request)
    if await anyio.to_thread.run_sync(load_run_status, engine, run_id) is None:
        raise NotFound(f"run {run_id} not found")
    last = _resume_point(last_event_id_header, last_event_id)
    return _response(request, last_id=last, run_id=run_id)


@router.get("/events", response_class=EventStreamResponse, responses=_SSE_DOC)
async def all_events(
    request: Request,
    workflow_id: Annotated[str | None, Query(description="Only runs of this workflow.")] = None,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
) -> EventStreamResponse:
    """Follow every run (or one workflow's): live events, after stored ones when resuming."""
    resume = last_event_id_header if last_event_id_header is not None else last_event_id
    # Without a resume point this stream starts now; replaying all history would be unbounded.
    last = resume if resume is not None else await _newest_event_id(_engine(request))
    return _response(request, last_id=last, workflow_id=workflow_id)


def _resume_point(header: int | None, query: int | None) -> int:
    if header is not None:
        return header
    return query if query is not None else 0


async def _newest_event_id(engine: Engine) -> int:
    def newest() -> int:
        with Session(engine) as session:
            top = session.exec(select(RunEvent.id).order_by(col(RunEvent.id).desc())).first()
            return int(top or 0)

    return await anyio.to_thread.run_sync(newest)
