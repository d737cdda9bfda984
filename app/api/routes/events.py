"""Server-Sent Events routes: one run's events, or every run's, resumable by event id.

How a stream is written (replay, then live events, no loss and no repeats) is
``app.streaming.relay``; the wire format is ``app.streaming.wire``; the event shape is
``RunEventPublic`` (``app.schemas.events``).
"""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request

from app.api.deps import broker_of, engine_of, settings_of
from app.core.errors import NotFound
from app.schemas.events import RunEventPublic
from app.streaming.previews import previews_of
from app.streaming.relay import newest_event_id, relay, run_status
from app.streaming.wire import EventStreamResponse

__all__ = [
    "SEND_TIMEOUT_SECONDS",
    "LastEventIdHeader",
    "LastEventIdQuery",
    "resume_point",
    "router",
]

router = APIRouter(tags=["events"])

# A reader that cannot take one event within this time is stuck; drop its connection.
SEND_TIMEOUT_SECONDS = 30.0

# Event ids are SQLite integers: a larger id is refused (422) before the stream starts, where
# the query would otherwise fail after the 200 was sent.
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
        "model": RunEventPublic,  # documented under text/event-stream, the route's media type
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


PreviewsQuery = Annotated[
    bool,
    Query(
        description="Also send `node.preview` events: the image of each denoising step, live "
        "only (no id, never replayed); a reader that falls behind gets the latest one."
    ),
]


def _response(
    request: Request,
    *,
    last_id: int,
    run_id: str | None = None,
    workflow_id: str | None = None,
    previews: bool = False,
) -> EventStreamResponse:
    broker = broker_of(request)
    stream = functools.partial(
        relay,
        engine=engine_of(request),
        broker=broker,
        last_id=last_id,
        ping=float(settings_of(request).sse_ping_seconds),
        run_id=run_id,
        workflow_id=workflow_id,
        previews=previews_of(broker) if previews else None,
    )
    return EventStreamResponse(stream, send_timeout=SEND_TIMEOUT_SECONDS)


@router.get("/runs/{run_id}/events", response_class=EventStreamResponse, responses=_SSE_DOC)
async def run_events(
    request: Request,
    run_id: str,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
    previews: PreviewsQuery = False,
) -> EventStreamResponse:
    """Follow one run: its stored events, then live ones, ending after the terminal event."""
    if await run_status(engine_of(request), run_id) is None:
        raise NotFound(f"run {run_id} not found")
    last = resume_point(last_event_id_header, last_event_id)
    return _response(request, last_id=last, run_id=run_id, previews=previews)


@router.get("/events", response_class=EventStreamResponse, responses=_SSE_DOC)
async def all_events(
    request: Request,
    workflow_id: Annotated[str | None, Query(description="Only runs of this workflow.")] = None,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
    previews: PreviewsQuery = False,
) -> EventStreamResponse:
    """Follow every run (or one workflow's): live events, after stored ones when resuming."""
    resume = last_event_id_header if last_event_id_header is not None else last_event_id
    # Without a resume point this stream starts now; replaying all history would be unbounded.
    last = resume if resume is not None else await newest_event_id(engine_of(request))
    return _response(request, last_id=last, workflow_id=workflow_id, previews=previews)


def resume_point(header: int | None, query: int | None) -> int:
    """Where a stream of given runs resumes: the header, else the query, else the start."""
    if header is not None:
        return header
    return query if query is not None else 0
