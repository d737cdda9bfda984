"""Server-Sent Events: the live events of one run, or of all runs, resumable by event id.

Ordering that makes resuming lossless and free of repeats (each event is stored before it is
published):

1. subscribe to the broker (from now on every new event is queued for this stream);
2. replay the stored events with an id above ``Last-Event-ID`` from the database;
3. relay live events, skipping ids already sent.

An event stored before step 1 is found in step 2; one stored after it is queued. A reader that
falls behind is told so by the broker and goes back to step 2 from its last sent id.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.api.sse import Batch, StreamResponse, WireCache, encode_event, wire_cache, wire_chunks
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

LastEventIdHeader = Annotated[
    int | None,
    Header(
        alias="Last-Event-ID",
        description="Resume after this event id (browsers send it when they reconnect).",
    ),
]
LastEventIdQuery = Annotated[
    int | None,
    Query(description="Resume after this event id, for clients that cannot set headers."),
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


class _Cursor:
    """The last id sent, whether the stream is over, and where encoded events are shared."""

    def __init__(self, last_id: int, wire: WireCache) -> None:
        self.last_id = last_id
        self.done = False
        self.wire = wire


async def _replay(
    engine: Engine, cursor: _Cursor, run_id: str | None, workflow_id: str | None, stop: bool
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
        batch = _advance_all(cursor, page, stop)
        if batch:
            yield batch
        if cursor.done or len(page) < REPLAY_PAGE:
            return


def _advance(cursor: _Cursor, event: Event, stop_at_terminal: bool) -> ServerSentEvent:
    cursor.last_id = int(event["id"])
    cursor.done = stop_at_terminal and is_terminal_event(event)
    return cursor.wire.get(event)


def _advance_all(cursor: _Cursor, events: list[Event], stop_at_terminal: bool) -> Batch:
    """The events not sent yet, in order, up to the terminal one when the stream stops there."""
    batch = []
    for event in events:
        if int(event["id"]) <= cursor.last_id:
            continue  # already sent (by the replay)
        batch.append(_advance(cursor, event, stop_at_terminal))
        if cursor.done:
            break
    return batch


async def follow(
    *,
    engine: Engine,
    broker: EventBroker,
    last_id: int,
    run_id: str | None = None,
    workflow_id: str | None = None,
) -> AsyncIterator[ServerSentEvent]:
    """The SSE events of one run (ends after its terminal event) or of many (never ends)."""
    batches = follow_batches(
        engine=engine, broker=broker, last_id=last_id, run_id=run_id, workflow_id=workflow_id
    )
    async for batch in batches:
        for sse in batch:
            yield sse


async def follow_batches(
    *,
    engine: Engine,
    broker: EventBroker,
    last_id: int,
    run_id: str | None = None,
    workflow_id: str | None = None,
) -> AsyncGenerator[Batch, None]:
    """``follow``'s events, grouped: every event already waiting goes out in one write."""
    cursor = _Cursor(last_id, wire_cache(broker))
    stop = run_id is not None
    async with broker.subscribe(run_id=run_id, workflow_id=workflow_id) as sub:
        while not cursor.done:
            # Read the status before the replay: a run already over has stored its events.
            over = run_id is not None and await _run_is_over(engine, run_id)
            async for batch in _replay(engine, cursor, run_id, workflow_id, stop):
                yield batch
            if over:
                async for batch in _terminal_in_flight(engine, sub, cursor, run_id):
                    yield batch
                return
            if cursor.done:
                return
            try:
                async for event in sub:
                    batch = _advance_all(cursor, [event, *sub.take_ready()], stop)
                    if batch:
                        yield batch
                    if cursor.done:
                        return
                return  # the broker closed: the server is shutting down
            except SubscriberLagging:
                continue  # events were dropped for us: re-read them from the database


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
        batch = _advance_all(cursor, [event], True)
        if batch:
            yield batch
    if not cursor.done:
        async for batch in _replay(engine, cursor, run_id, None, True):
            yield batch


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _broker(request: Request) -> EventBroker:
    broker: EventBroker = request.app.state.broker
    return broker


def _response(request: Request, batches: AsyncGenerator[Batch, None]) -> EventSourceResponse:
    ping = float(request.app.state.settings.sse_ping_seconds)
    return StreamResponse(wire_chunks(batches), ping=ping, send_timeout=SEND_TIMEOUT_SECONDS)


@router.get("/runs/{run_id}/events", response_class=EventSourceResponse, responses=_SSE_DOC)
async def run_events(
    request: Request,
    run_id: str,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
) -> EventSourceResponse:
    """Follow one run: its stored events, then live ones, ending after the terminal event."""
    engine = _engine(request)
    if await anyio.to_thread.run_sync(load_run_status, engine, run_id) is None:
        raise NotFound(f"run {run_id} not found")
    last = _resume_point(last_event_id_header, last_event_id)
    stream = follow_batches(engine=engine, broker=_broker(request), last_id=last, run_id=run_id)
    return _response(request, stream)


@router.get("/events", response_class=EventSourceResponse, responses=_SSE_DOC)
async def all_events(
    request: Request,
    workflow_id: Annotated[str | None, Query(description="Only runs of this workflow.")] = None,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
) -> EventSourceResponse:
    """Follow every run (or one workflow's): live events, after stored ones when resuming."""
    resume = last_event_id_header if last_event_id_header is not None else last_event_id
    # Without a resume point this stream starts now; replaying all history would be unbounded.
    last = resume if resume is not None else await _newest_event_id(_engine(request))
    stream = follow_batches(
        engine=_engine(request), broker=_broker(request), last_id=last, workflow_id=workflow_id
    )
    return _response(request, stream)


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
