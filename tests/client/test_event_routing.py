"""The event hub's routing, fed fake event dicts (no server, no Socket.IO)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from invokeai_py_client import InvokeAIClient
from invokeai_py_client.events import (
    EventHub,
    EventsResyncEvent,
    InvocationCompleteEvent,
    InvokeAIEvent,
    QueueItemStatusChangedEvent,
    parse_event,
)
from invokeai_py_client.events.session import socketio_path_for
from invokeai_py_client.queue import JobStatus


def status_event(item_id: int, batch_id: str, status: str) -> dict[str, Any]:
    return {
        "queue_id": "default",
        "item_id": item_id,
        "batch_id": batch_id,
        "session_id": f"s{item_id}",
        "status": status,
        "created_at": "2026-01-01",
        "updated_at": "2026-01-01",
        "batch_status": {},
        "queue_status": {},
    }


def complete_event(item_id: int, batch_id: str, node: str) -> dict[str, Any]:
    return {
        "queue_id": "default",
        "item_id": item_id,
        "batch_id": batch_id,
        "session_id": f"s{item_id}",
        "invocation": {"id": "prepared", "type": "add"},
        "invocation_source_id": node,
        "result": {"type": "integer_output", "value": 3},
    }


@pytest.fixture
def hub() -> EventHub:
    return EventHub(InvokeAIClient("localhost", 1))


def drain(sub: Any) -> list[InvokeAIEvent]:
    events = []
    while not sub._queue.empty():
        item = sub._queue.get_nowait()
        if item is not None:
            events.append(item)
    return events


async def test_events_go_only_to_their_item_or_batch(hub: EventHub) -> None:
    by_batch = hub.subscribe(batch_id="b1")
    by_item = hub.subscribe(item_id=2)
    hub.dispatch("queue_item_status_changed", status_event(1, "b1", "in_progress"))
    hub.dispatch("invocation_complete", complete_event(2, "b2", "n"))
    hub.dispatch("invocation_complete", complete_event(3, "b3", "n"))

    got_batch, got_item = drain(by_batch), drain(by_item)
    assert [e.event_type for e in got_batch] == ["queue_item_status_changed"]
    assert isinstance(got_batch[0], QueueItemStatusChangedEvent)
    assert got_batch[0].status is JobStatus.IN_PROGRESS
    assert [type(e) for e in got_item] == [InvocationCompleteEvent]
    assert got_item[0].to_dict()["event_type"] == "invocation_complete"
    assert got_item[0].to_dict()["invocation_source_id"] == "n"


async def test_fifty_subscribers_each_see_only_their_own(hub: EventHub) -> None:
    subs = {i: hub.subscribe(batch_id=f"batch-{i}") for i in range(50)}
    for i in range(50):
        for status in ("in_progress", "completed"):
            hub.dispatch("queue_item_status_changed", status_event(i, f"batch-{i}", status))
    for i, sub in subs.items():
        events = drain(sub)
        assert [e.item_id for e in events] == [i, i]  # type: ignore[attr-defined]


async def test_unrelated_events_are_dropped_without_parsing(hub: EventHub) -> None:
    sub = hub.subscribe(item_id=1)
    # Neither event names item 1 (nor a watched batch): the subscriber gets nothing.
    hub.dispatch("queue_item_status_changed", {"item_id": 99, "garbage": object()})
    hub.dispatch("model_load_started", {"config": {}})
    assert drain(sub) == []


async def test_watch_everything_sees_all_events(hub: EventHub) -> None:
    everything = hub.subscribe(everything=True)
    hub.dispatch("model_load_started", {"config": {"name": "x"}})
    hub.dispatch("invocation_complete", complete_event(5, "b5", "n"))
    assert [e.event_type for e in drain(everything)] == [
        "model_load_started",
        "invocation_complete",
    ]


async def test_bulk_cancel_reaches_listed_items_and_clear_reaches_all(hub: EventHub) -> None:
    one, two = hub.subscribe(item_id=1), hub.subscribe(item_id=2)
    hub.dispatch("queue_items_canceled", {"queue_id": "default", "canceled_item_ids": [2, 7]})
    assert drain(one) == []
    assert [e.event_type for e in drain(two)] == ["queue_items_canceled"]
    hub.dispatch("queue_cleared", {"queue_id": "default"})
    assert len(drain(one)) == 1 and len(drain(two)) == 1


async def test_item_ids_added_after_subscribing_are_routed(hub: EventHub) -> None:
    sub = hub.subscribe(batch_id="b")
    sub.add_item_ids([11])
    hub.dispatch("queue_items_canceled", {"canceled_item_ids": [11]})
    assert len(drain(sub)) == 1


async def test_closed_subscription_is_forgotten_and_ends_iteration(hub: EventHub) -> None:
    sub = hub.subscribe(batch_id="b", item_id=4)
    assert hub.subscription_count == 1
    sub.close()
    assert hub.subscription_count == 0
    assert hub._by_batch == {} and hub._by_item == {}
    hub.dispatch("queue_item_status_changed", status_event(4, "b", "completed"))
    assert [e async for e in sub] == []


async def test_a_waiting_reader_is_woken_by_its_event(hub: EventHub) -> None:
    sub = hub.subscribe(batch_id="b")
    reader = asyncio.create_task(sub.get(timeout=5))
    await asyncio.sleep(0)
    hub.dispatch("queue_item_status_changed", status_event(1, "b", "completed"))
    event = await reader
    assert isinstance(event, QueueItemStatusChangedEvent) and event.is_terminal


async def test_overflow_drops_oldest_and_tells_the_reader_to_resync(hub: EventHub) -> None:
    sub = hub.subscribe(batch_id="b", maxsize=2)
    for node in ("n1", "n2", "n3"):
        hub.dispatch("invocation_complete", complete_event(1, "b", node))
    first = await sub.get(0.1)
    assert isinstance(first, EventsResyncEvent) and first.reason == "overflow"
    rest = [await sub.get(0.1), await sub.get(0.1)]
    assert [e.invocation_source_id for e in rest] == ["n2", "n3"]  # type: ignore[union-attr]
    assert sub.dropped == 1


async def test_reconnect_makes_every_reader_resync(hub: EventHub) -> None:
    sub = hub.subscribe(item_id=1)
    hub._on_connect()  # the first connection: nothing was missed
    assert drain(sub) == []
    hub._on_connect()  # a reconnect
    events = drain(sub)
    assert len(events) == 1 and isinstance(events[0], EventsResyncEvent)


def test_unknown_status_and_odd_payloads_are_kept() -> None:
    event = parse_event("queue_item_status_changed", status_event(1, "b", "paused_by_moon"))
    assert isinstance(event, QueueItemStatusChangedEvent) and event.status == "paused_by_moon"
    odd = parse_event("invocation_complete", {"no": "ids"})
    assert type(odd) is InvokeAIEvent and odd.to_dict() == {
        "event_type": "invocation_complete",
        "timestamp": None,
        "no": "ids",
    }
    assert parse_event("x", [1, 2]).to_dict()["data"] == [1, 2]


def test_socketio_path_follows_the_api_prefix() -> None:
    assert socketio_path_for("/api/v1") == "/ws/socket.io"
    assert socketio_path_for("/invoke/api/v1/") == "/invoke/ws/socket.io"
    assert socketio_path_for("") == "/ws/socket.io"
