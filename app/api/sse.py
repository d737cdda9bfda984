"""The SSE wire for many readers: each event encoded once, and sends that cost no timer.

With 1,000 streams on one run, the gateway's cost per event is one send per stream, so
everything done per stream per event is multiplied by a thousand. Two things are taken out of
that path here:

- encoding: ``wire_cache(broker).get(event)`` returns one ``WireEvent`` per event id, whose
  bytes are computed once and shared by every stream that sends it;
- the send timeout: sse-starlette wraps every send in its own cancel scope (a timer armed and
  disarmed per send). ``StreamResponse`` only notes when a send started; its heartbeat task
  ends a stream whose send has been stuck for longer than ``send_timeout`` (so a stuck reader
  is dropped within ``send_timeout`` plus one heartbeat interval, not exactly at it).
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import AsyncGenerator
from typing import Any

from sse_starlette import EventSourceResponse, ServerSentEvent
from sse_starlette.sse import SendTimeoutError
from starlette.types import Message, Send

from app.events import Event, EventBroker, to_wire

__all__ = ["Batch", "StreamResponse", "WireEvent", "encode_event", "wire_cache", "wire_chunks"]

# Encoded events kept per application (a burst of one run's events to every stream fits).
WIRE_CACHE_SIZE = 1024


class WireEvent(ServerSentEvent):
    """A ``ServerSentEvent`` encoded once: every stream that sends it sends the same bytes."""

    def __init__(self, *, data: str, id: str, event: str) -> None:
        super().__init__(data=data, id=id, event=event)
        self._wire = super().encode()

    def encode(self) -> bytes:
        """The event's bytes on the wire (computed at creation)."""
        return self._wire


def encode_event(event: Event) -> WireEvent:
    """One event on the wire: ``id:`` its id, ``event:`` its type, ``data:`` the JSON shape."""
    body = json.dumps(to_wire(event), separators=(",", ":"), default=str)
    return WireEvent(data=body, id=str(event["id"]), event=event["event"])


class WireCache:
    """The newest events' encoded form by id.

    An event id is a database id and a stored event never changes, so a cached form is never
    stale; the cache is bounded (an old event replayed is encoded again, for that stream).
    """

    def __init__(self, size: int = WIRE_CACHE_SIZE) -> None:
        self.size = size
        self._by_id: dict[int, WireEvent] = {}

    def get(self, event: Event) -> WireEvent:
        """The encoded form of ``event``, made on first use."""
        event_id = int(event["id"])
        found = self._by_id.get(event_id)
        if found is None:
            found = self._by_id[event_id] = encode_event(event)
            if len(self._by_id) > self.size:
                del self._by_id[next(iter(self._by_id))]  # the oldest (insertion order)
        return found


# One cache per broker, i.e. per application: ids are unique only within one database.
_CACHES: weakref.WeakKeyDictionary[EventBroker, WireCache] = weakref.WeakKeyDictionary()


def wire_cache(broker: EventBroker) -> WireCache:
    """The encoded-event cache shared by every stream of ``broker``'s application."""
    cache = _CACHES.get(broker)
    if cache is None:
        cache = _CACHES[broker] = WireCache()
    return cache


Batch = list[ServerSentEvent]


async def wire_chunks(batches: AsyncGenerator[Batch, None]) -> AsyncGenerator[bytes, None]:
    """Each batch of events as one chunk of bytes: one send per batch, not per event."""
    try:
        async for batch in batches:
            yield batch[0].encode() if len(batch) == 1 else b"".join(e.encode() for e in batch)
    finally:
        await batches.aclose()  # leave the broker now, not when the generator is collected


class StreamResponse(EventSourceResponse):
    """sse-starlette's response, with the send timeout checked by the heartbeat, not per send.

    The heartbeat (``ping``) must be positive: it is what enforces ``send_timeout``.
    """

    def __init__(self, content: Any, *, ping: float, send_timeout: float) -> None:
        super().__init__(content, ping=ping, send_timeout=send_timeout)
        self._sending_since: float | None = None

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        started = self._sending_since
        if started is not None:
            # The heartbeat, while a send is in flight: is the reader stuck?
            if self.send_timeout is not None and time.monotonic() - started > self.send_timeout:
                raise SendTimeoutError()
            await super()._send_with_timeout(send, message)
            return
        self._sending_since = time.monotonic()
        try:
            await send(message)
        finally:
            self._sending_since = None
