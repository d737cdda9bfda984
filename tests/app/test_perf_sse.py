"""The fan-out path of SSE: events encoded once, sends run in the caller, the send timeout."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from starlette.types import Message

from app.streaming.broker import InMemoryEventBroker
from app.streaming.wire import (
    Connection,
    EventStreamResponse,
    SendTimeout,
    WireCache,
    encode_event,
    run_eagerly,
    wire_cache,
)


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


# -- running a coroutine in the caller ---------------------------------------------------------


async def test_a_coroutine_that_does_not_wait_finishes_in_the_caller() -> None:
    done: list[str] = []

    async def quick() -> None:
        done.append("sent")

    assert run_eagerly(quick()) is None
    assert done == ["sent"]  # before any loop iteration


async def test_the_rest_of_a_waiting_coroutine_finishes_in_a_task() -> None:
    gate = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def waits() -> None:
        steps.append("before")
        steps.append(await gate)
        steps.append("after")

    rest = run_eagerly(waits())
    assert rest is not None and steps == ["before"]
    task = asyncio.create_task(_await(rest))
    await asyncio.sleep(0)
    assert not task.done()
    gate.set_result("value")
    await asyncio.wait_for(task, 5)
    assert steps == ["before", "value", "after"]


async def test_cancelling_the_rest_reaches_the_coroutine() -> None:
    cleaned = asyncio.Event()

    async def waits_forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    rest = run_eagerly(waits_forever())
    assert rest is not None
    task = asyncio.create_task(_await(rest))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()


async def test_an_error_before_the_first_wait_is_raised_to_the_caller() -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run_eagerly(broken())


async def _await(rest: Any) -> None:
    await rest


# -- the connection ----------------------------------------------------------------------------


class FakeSend:
    """An ASGI send that completes at once unless ``paused`` (like uvicorn's flow control)."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.writable = asyncio.Event()
        self.writable.set()

    async def __call__(self, message: Message) -> None:
        if not self.writable.is_set():
            await self.writable.wait()
        self.bodies.append(message.get("body", b""))


async def test_a_write_that_can_go_out_goes_out_at_once() -> None:
    send = FakeSend()
    connection = Connection(send, send_timeout=5)
    assert connection.write_now(b"one")
    assert send.bodies == [b"one"] and not connection.blocked


async def test_a_blocked_write_is_finished_by_the_stream_task() -> None:
    send = FakeSend()
    send.writable.clear()
    connection = Connection(send, send_timeout=5)
    assert not connection.write_now(b"one")
    assert connection.blocked and send.bodies == []
    finishing = asyncio.create_task(connection.finish())
    await asyncio.sleep(0)
    send.writable.set()
    await asyncio.wait_for(finishing, 5)
    assert send.bodies == [b"one"] and not connection.blocked
    await connection.write(b"two")
    assert send.bodies == [b"one", b"two"]


async def test_a_reader_that_takes_nothing_within_the_send_timeout_is_dropped() -> None:
    send = FakeSend()
    send.writable.clear()  # the reader never reads
    connection = Connection(send, send_timeout=0.05)
    with pytest.raises(SendTimeout):
        await connection.write(b"one")
    assert send.bodies == [] and not connection.blocked


async def test_head_answers_the_headers_without_starting_the_stream() -> None:
    started = asyncio.Event()

    async def stream(connection: Connection) -> None:
        started.set()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await EventStreamResponse(stream, send_timeout=5)(scope, receive, send)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        response = await http.head("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-store"
    assert response.content == b"" and not started.is_set()
