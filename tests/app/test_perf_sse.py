"""The fan-out path of SSE: events encoded once, batched sends, the heartbeat's send timeout."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest
from sse_starlette.sse import SendTimeoutError

from app.api.sse import Batch, StreamResponse, WireCache, encode_event, wire_cache, wire_chunks
from app.events import InMemoryEventBroker


def event(event_id: int, kind: str = "node.progress") -> dict[str, Any]:
    return {"id": event_id, "run_id": "r", "workflow_id": "w", "event": kind, "data": {"n": 1}}


def test_an_event_is_encoded_once_and_shared() -> None:
    cache = WireCache(size=2)
    first = cache.get(event(1))
    assert cache.get(event(1)) is first
    assert first.encode() == encode_event(event(1)).encode()
    assert first.encode().startswith(b"id: 1\r\nevent: node.progress\r\ndata: {")
    cache.get(event(2))
    cache.get(event(3))  # over the bound: the oldest goes
    assert cache.get(event(1)) is not first


def test_each_application_has_its_own_cache() -> None:
    # Ids are database ids: two gateways in one process may both have an event 1.
    one, other = InMemoryEventBroker(), InMemoryEventBroker()
    assert wire_cache(one) is wire_cache(one)
    assert wire_cache(one) is not wire_cache(other)


async def test_events_waiting_together_are_taken_together() -> None:
    broker = InMemoryEventBroker()
    async with broker.subscribe(run_id="r") as sub:
        for n in (1, 2, 3):
            await broker.publish(event(n))
        first = await anext(sub)
        assert [first["id"], *(e["id"] for e in sub.take_ready())] == [1, 2, 3]
        assert sub.take_ready() == []
        await broker.close()
        assert sub.take_ready() == []
        with pytest.raises(StopAsyncIteration):
            await anext(sub)


async def test_a_batch_goes_out_as_one_chunk_and_the_source_is_closed() -> None:
    closed = asyncio.Event()

    async def batches() -> AsyncGenerator[Batch, None]:
        try:
            yield [encode_event(event(1))]
            yield [encode_event(event(2)), encode_event(event(3))]
            yield [encode_event(event(4))]
        finally:
            closed.set()

    chunks = wire_chunks(batches())
    assert await anext(chunks) == encode_event(event(1)).encode()
    second = await anext(chunks)
    assert second == encode_event(event(2)).encode() + encode_event(event(3)).encode()
    await chunks.aclose()  # the reader went away mid-stream
    assert closed.is_set()


async def test_the_heartbeat_ends_a_stream_whose_send_is_stuck() -> None:
    async def nothing() -> AsyncGenerator[bytes, None]:
        yield b""

    response = StreamResponse(nothing(), ping=1.0, send_timeout=0.05)
    stuck = asyncio.Event()

    async def send(message: Any) -> None:
        if message.get("body") == b"data":
            await stuck.wait()  # the reader never takes this chunk

    sending = asyncio.create_task(
        response._send_with_timeout(send, {"type": "http.response.body", "body": b"data"})
    )
    await asyncio.sleep(0.1)
    heartbeat = {"type": "http.response.body", "body": b": ping\r\n\r\n", "more_body": True}
    with pytest.raises(SendTimeoutError):
        await response._send_with_timeout(send, heartbeat)
    stuck.set()
    await sending
    await response._send_with_timeout(send, heartbeat)  # a send in time is not refused
