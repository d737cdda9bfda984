"""Socket.IO events from a real InvokeAI: the raw session, the hub, typed models, reconnects."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from invokeai_py_client import InvokeAIClient
from invokeai_py_client.events import (
    BatchEnqueuedEvent,
    EventHub,
    EventsResyncEvent,
    InvocationCompleteEvent,
    InvocationErrorEvent,
    InvocationStartedEvent,
    InvokeAIEvent,
    QueueItemStatusChangedEvent,
    Subscription,
)
from invokeai_py_client.queue import JobStatus

pytestmark = pytest.mark.invokeai


def graph_body(batch_id: str, *, image_name: str | None = None, a: int = 1) -> dict[str, Any]:
    """add(a, 2); with ``image_name`` an image node that fails on a missing image instead."""
    if image_name is None:
        node = {"id": "sum", "type": "add", "a": a, "b": 2, "use_cache": False}
    else:
        node = {"id": "img", "type": "image", "image": {"image_name": image_name}}
    graph = {"id": str(uuid.uuid4()), "nodes": {node["id"]: node}, "edges": []}
    return {"batch": {"batch_id": batch_id, "graph": graph, "runs": 1}, "prepend": False}


async def collect_until_terminal(sub: Subscription, timeout: float = 30) -> list[InvokeAIEvent]:
    events: list[InvokeAIEvent] = []
    while True:
        event = await sub.get(timeout)
        assert event is not None, f"no terminal event; got {[e.event_type for e in events]}"
        events.append(event)
        if isinstance(event, QueueItemStatusChangedEvent) and event.is_terminal:
            # invocation_error follows the failed status; give it a moment to arrive.
            if event.status == JobStatus.FAILED:
                late = await sub.get(5)
                if late is not None:
                    events.append(late)
            return events


async def test_socketio_session_is_connected_and_subscribed(aclient: InvokeAIClient) -> None:
    received: list[tuple[str, Any]] = []
    batch_id = str(uuid.uuid4())
    async with aclient.socketio_session() as sio:
        assert sio.connected

        @sio.on("*")  # type: ignore[misc]
        async def catch_all(event: str, data: Any) -> None:
            if isinstance(data, dict) and data.get("batch_id") == batch_id:
                received.append((event, data))

        await aclient.queue_repo.aenqueue_batch(graph_body(batch_id))
        for _ in range(300):
            if any(
                e == "queue_item_status_changed" and d["status"] == "completed" for e, d in received
            ):
                break
            await asyncio.sleep(0.05)
    names = [e for e, _ in received]
    assert "batch_enqueued" in names and "invocation_complete" in names
    assert not sio.connected


async def test_one_hub_per_loop_and_typed_events_of_a_run(aclient: InvokeAIClient) -> None:
    hub = await aclient.event_hub()
    assert hub is await aclient.event_hub()
    assert hub.connected
    batch_id = str(uuid.uuid4())
    with hub.subscribe(batch_id=batch_id) as sub:
        result = await aclient.queue_repo.aenqueue_batch(graph_body(batch_id, a=40))
        events = await collect_until_terminal(sub)
    kinds = [type(e) for e in events]
    assert kinds[0] is BatchEnqueuedEvent
    assert InvocationStartedEvent in kinds
    complete = next(e for e in events if isinstance(e, InvocationCompleteEvent))
    assert complete.item_id == result.item_ids[0]
    assert complete.node_id == "sum" and complete.node_type == "add"
    assert complete.result["value"] == 42
    last = events[-1]
    assert isinstance(last, QueueItemStatusChangedEvent) and last.status is JobStatus.COMPLETED
    assert last.to_dict()["event_type"] == "queue_item_status_changed"


async def test_failed_run_events_carry_the_error(aclient: InvokeAIClient) -> None:
    hub = await aclient.event_hub()
    batch_id = str(uuid.uuid4())
    with hub.subscribe(batch_id=batch_id) as sub:
        await aclient.queue_repo.aenqueue_batch(graph_body(batch_id, image_name="nope.png"))
        events = await collect_until_terminal(sub)
    failed = next(e for e in events if isinstance(e, QueueItemStatusChangedEvent) and e.is_terminal)
    assert failed.status is JobStatus.FAILED
    assert failed.error_type == "ImageRecordNotFoundException"
    error = next(e for e in events if isinstance(e, InvocationErrorEvent))
    assert error.node_id == "img" and error.node_type == "image"
    assert error.error_message == "Image record not found" and error.error_traceback


async def test_watch_everything_sees_other_batches(aclient: InvokeAIClient) -> None:
    hub = await aclient.event_hub()
    batch_id = str(uuid.uuid4())
    with hub.subscribe(everything=True) as everything:
        await aclient.queue_repo.aenqueue_batch(graph_body(batch_id, a=7))
        seen: set[str] = set()
        while "completed" not in seen:
            event = await everything.get(30)
            assert event is not None
            if getattr(event, "batch_id", None) == batch_id:
                seen.add(str(getattr(event, "status", event.event_type)))
    assert "batch_enqueued" in seen


async def test_reconnect_resubscribes_and_tells_readers_to_resync(invokeai_url: str) -> None:
    client = InvokeAIClient.from_url(invokeai_url)
    try:
        hub: EventHub = await client.event_hub()
        with hub.subscribe(everything=True) as sub:
            sio = hub._sio
            assert sio is not None
            old_sid = sio.sid
            # Drop the websocket under python-socketio's feet, as a network failure would.
            await sio.eio.ws.close()
            event = await sub.get(20)
            assert isinstance(event, EventsResyncEvent) and event.reason == "reconnected"
            # The resync is sent from the connect handler, before python-socketio itself
            # flags the connection as up.
            for _ in range(100):
                if sio.connected:
                    break
                await asyncio.sleep(0.05)
            assert sio.connected and sio.sid != old_sid
            # Subscribed again: the queue room's events flow on the new connection.
            batch_id = str(uuid.uuid4())
            await client.queue_repo.aenqueue_batch(graph_body(batch_id, a=3))
            while True:
                event = await sub.get(30)
                assert event is not None
                mine = isinstance(event, QueueItemStatusChangedEvent) and event.batch_id == batch_id
                if mine and event.is_terminal:  # type: ignore[union-attr]
                    break
    finally:
        await client.aclose()
