"""The in-memory event broker: fan-out, filters, bounded queues, lagging readers, close."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from app.events import (
    InMemoryEventBroker,
    SubscriberLagging,
    is_terminal_event,
    to_wire,
)


def make_event(event_id: int, run_id: str = "r1", workflow_id: str = "w1", kind: str = "x"):
    return {
        "id": event_id,
        "run_id": run_id,
        "workflow_id": workflow_id,
        "event": kind,
        "data": {"n": event_id},
        "created_at": datetime(2026, 11, 29, tzinfo=UTC),
    }


async def take(sub, count: int) -> list[int]:
    got = []
    for _ in range(count):
        got.append((await asyncio.wait_for(anext(sub), 5))["id"])
    return got


async def test_every_subscriber_of_a_run_gets_every_event() -> None:
    broker = InMemoryEventBroker()
    async with broker.subscribe(run_id="r1") as a, broker.subscribe(run_id="r1") as b:
        for i in range(1, 6):
            await broker.publish(make_event(i))
        assert await take(a, 5) == [1, 2, 3, 4, 5]
        assert await take(b, 5) == [1, 2, 3, 4, 5]


async def test_filters_by_run_and_workflow_and_unfiltered_gets_all() -> None:
    broker = InMemoryEventBroker()
    async with (
        broker.subscribe(run_id="r1") as run_sub,
        broker.subscribe(workflow_id="w2") as wf_sub,
        broker.subscribe() as all_sub,
    ):
        await broker.publish(make_event(1, run_id="r1", workflow_id="w1"))
        await broker.publish(make_event(2, run_id="r2", workflow_id="w2"))
        await broker.publish(make_event(3, run_id="r1", workflow_id="w1"))
        assert await take(run_sub, 2) == [1, 3]
        assert await take(wf_sub, 1) == [2]
        assert await take(all_sub, 3) == [1, 2, 3]
        assert run_sub._queue.empty() and wf_sub._queue.empty()


async def test_run_and_workflow_filter_together() -> None:
    broker = InMemoryEventBroker()
    async with broker.subscribe(run_id="r1", workflow_id="w9") as sub:
        await broker.publish(make_event(1, run_id="r1", workflow_id="w1"))
        await broker.publish(make_event(2, run_id="r1", workflow_id="w9"))
        assert await take(sub, 1) == [2]


async def test_leaving_unsubscribes() -> None:
    broker = InMemoryEventBroker()
    async with (
        broker.subscribe(run_id="r1"),
        broker.subscribe(workflow_id="w1"),
        broker.subscribe(),
    ):
        assert broker.subscriber_count == 3
    assert broker.subscriber_count == 0
    assert broker._by_run == {} and broker._by_workflow == {}


async def test_slow_reader_is_marked_lagging_and_memory_stays_bounded() -> None:
    broker = InMemoryEventBroker(queue_size=4)
    async with broker.subscribe(run_id="r1") as slow, broker.subscribe(run_id="r1") as fast:
        for batch_start in range(1, 101, 4):
            batch = list(range(batch_start, batch_start + 4))
            for i in batch:
                await broker.publish(make_event(i))
            assert await take(fast, 4) == batch
        assert slow.lagging
        assert slow.dropped == 100  # the 4 queued ones are freed too
        assert slow._queue.qsize() == 0
        with pytest.raises(SubscriberLagging):
            await anext(slow)
        # After the lag signal the reader is live again: new events are queued.
        assert not slow.lagging
        await broker.publish(make_event(101))
        assert await take(slow, 1) == [101]


async def test_close_ends_every_subscription_and_later_ones() -> None:
    broker = InMemoryEventBroker()
    async with broker.subscribe(run_id="r1") as sub:
        await broker.publish(make_event(1))
        await broker.close()
        with pytest.raises(StopAsyncIteration):
            await anext(sub)
        with pytest.raises(StopAsyncIteration):
            await anext(sub)
    async with broker.subscribe() as late:
        assert [e async for e in late] == []


async def test_fan_out_to_600_readers() -> None:
    broker = InMemoryEventBroker()
    async with asyncio.TaskGroup() as tg:
        ready = asyncio.Event()
        subscribed = 0
        results: list[list[int]] = []

        async def reader() -> None:
            nonlocal subscribed
            async with broker.subscribe(run_id="r1") as sub:
                subscribed += 1
                await ready.wait()
                results.append(await take(sub, 20))

        for _ in range(600):
            tg.create_task(reader())
        while subscribed < 600:
            await asyncio.sleep(0.01)
        for i in range(1, 21):
            await broker.publish(make_event(i))
        ready.set()
    assert len(results) == 600
    assert all(r == list(range(1, 21)) for r in results)


def test_wire_shape_and_terminal() -> None:
    wire = to_wire(make_event(7, kind="run.succeeded"))
    assert wire["created_at"] == "2026-11-29T00:00:00+00:00"
    assert is_terminal_event(wire)
    assert not is_terminal_event(make_event(8, kind="node.progress"))
