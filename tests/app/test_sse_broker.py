"""The in-memory event broker: fan-out, filters, bounded queues, lagging readers, close."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import pytest

from app.streaming.broker import (
    DELIVERY_SLICE,
    Event,
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


# -- pushed to (the SSE streams' live path) ------------------------------------------------------


async def settle() -> None:
    """Let the broker's writer finish (it works in slices, one per loop iteration)."""
    for _ in range(100):
        await asyncio.sleep(0)


async def test_a_reader_attaches_only_when_caught_up_and_is_pushed_to() -> None:
    broker = InMemoryEventBroker()
    got: list[list[int]] = []
    async with broker.subscribe(run_id="r1") as sub:
        await broker.publish(make_event(1))
        await settle()
        assert not sub.attach(lambda events: got.append([e["id"] for e in events]))
        assert [e["id"] for e in sub.take_ready()] == [1]
        assert sub.attach(lambda events: got.append([e["id"] for e in events]))
        await broker.publish(make_event(2))
        await broker.publish(make_event(3))
        await settle()
        assert got == [[2, 3]]  # published together, delivered in one call
        assert sub.take_ready() == []  # nothing was queued
        sub.detach()
        await broker.publish(make_event(4))
        await settle()
        assert got == [[2, 3]] and [e["id"] for e in sub.take_ready()] == [4]


async def test_wait_detached_sleeps_until_a_detach_or_a_close() -> None:
    broker = InMemoryEventBroker()
    async with broker.subscribe(run_id="r1") as sub:
        assert sub.attach(lambda events: None)
        assert not await sub.wait_detached(0.01)  # a heartbeat's worth of nothing
        asyncio.get_running_loop().call_soon(sub.detach)
        assert await sub.wait_detached(5)
        assert sub.attach(lambda events: None)
        asyncio.get_running_loop().call_soon(asyncio.ensure_future, broker.close())
        assert await sub.wait_detached(5)
        assert sub.closed and not sub.attached


async def test_a_failing_sink_is_closed_and_the_others_still_get_the_event() -> None:
    broker = InMemoryEventBroker()
    got: list[int] = []

    def broken(events: list[Event]) -> None:
        raise RuntimeError("a broken reader")

    async with broker.subscribe(run_id="r1") as bad, broker.subscribe(run_id="r1") as good:
        assert bad.attach(broken)
        assert good.attach(lambda events: got.extend(e["id"] for e in events))
        await broker.publish(make_event(1))
        await settle()
        assert got == [1]
        assert bad.closed


async def test_events_published_during_a_fan_out_join_it() -> None:
    broker = InMemoryEventBroker()
    readers = DELIVERY_SLICE * 4
    calls: list[list[int]] = [[] for _ in range(readers)]
    received: list[list[int]] = [[] for _ in range(readers)]
    async with contextlib.AsyncExitStack() as stack:
        for n in range(readers):
            sub = await stack.enter_async_context(broker.subscribe(run_id="r1"))

            def sink(events: list[Event], n: int = n) -> None:
                calls[n].append(len(events))
                received[n].extend(e["id"] for e in events)

            assert sub.attach(sink)
        await broker.publish(make_event(1))
        await asyncio.sleep(0)  # one slice of readers has event 1
        await broker.publish(make_event(2))
        await settle()
    assert all(r == [1, 2] for r in received)  # every reader, in order, once each
    assert sum(len(c) for c in calls) < 2 * readers  # later readers got both in one write


async def test_a_reader_that_subscribes_or_leaves_during_a_fan_out() -> None:
    broker = InMemoryEventBroker()
    early: list[int] = []
    late: list[int] = []
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(DELIVERY_SLICE * 2):
            sub = await stack.enter_async_context(broker.subscribe(run_id="r1"))
            assert sub.attach(lambda events: early.extend(e["id"] for e in events))
        leaving = broker.subscribe(run_id="r1")
        gone = await leaving.__aenter__()
        assert gone.attach(lambda events: pytest.fail("a reader that left got an event"))
        await broker.publish(make_event(1))
        await leaving.__aexit__(None, None, None)
        async with broker.subscribe(run_id="r1") as newcomer:
            # Event 1 was stored before this reader subscribed: its replay has it, not us.
            assert newcomer.attach(lambda events: late.extend(e["id"] for e in events))
            await broker.publish(make_event(2))
            await settle()
    assert late == [2]
    assert early.count(1) == early.count(2) == DELIVERY_SLICE * 2


async def test_a_steady_flow_of_events_keeps_the_log_short() -> None:
    broker = InMemoryEventBroker()
    readers = DELIVERY_SLICE * 3  # a round takes three loop iterations
    received: list[list[int]] = [[] for _ in range(readers)]
    longest = 0
    async with contextlib.AsyncExitStack() as stack:
        for n in range(readers):
            sub = await stack.enter_async_context(broker.subscribe(run_id="r1"))
            assert sub.attach(lambda events, n=n: received[n].extend(e["id"] for e in events))
        for i in range(1, 301):  # one new event per loop iteration: every round gets more
            await broker.publish(make_event(i))
            await asyncio.sleep(0)
            longest = max(longest, *(len(w.log) for w in broker._rounds.values()))
        await settle()
    assert all(r == list(range(1, 301)) for r in received)
    assert longest < 20  # what one round lets pile up, not everything published


# -- settled: what can wait for a fan-out under way ----------------------------------------------


async def test_settled_returns_once_the_readers_still_due_have_the_event() -> None:
    broker = InMemoryEventBroker()
    readers = DELIVERY_SLICE * 3  # three slices, one per loop iteration
    received: list[list[int]] = [[] for _ in range(readers)]
    async with contextlib.AsyncExitStack() as stack:
        for n in range(readers):
            sub = await stack.enter_async_context(broker.subscribe(run_id="r1"))
            assert sub.attach(lambda events, n=n: received[n].extend(e["id"] for e in events))
        await broker.publish(make_event(1))
        await asyncio.sleep(0)  # the first slice has it
        assert sum(r == [1] for r in received) == DELIVERY_SLICE
        await asyncio.wait_for(broker.settled(), 5)
        assert all(r == [1] for r in received)


async def test_settled_is_bounded_under_a_steady_flow_of_events() -> None:
    """Events published while it waits do not extend the wait: the writer never goes idle
    here, and ``settled`` still returns once the readers due when it was called had theirs."""
    broker = InMemoryEventBroker()
    readers = DELIVERY_SLICE * 3
    received: list[list[int]] = [[] for _ in range(readers)]
    stop = asyncio.Event()

    async def publish_forever() -> None:
        for i in range(2, 10_000):
            if stop.is_set():
                return
            await broker.publish(make_event(i))
            await asyncio.sleep(0)

    async with contextlib.AsyncExitStack() as stack:
        for n in range(readers):
            sub = await stack.enter_async_context(broker.subscribe(run_id="r1"))
            assert sub.attach(lambda events, n=n: received[n].extend(e["id"] for e in events))
        await broker.publish(make_event(1))
        flow = asyncio.create_task(publish_forever())
        await asyncio.wait_for(broker.settled(), 5)
        busy = bool(broker._rounds)
        stop.set()
        await flow
        await settle()
    assert busy  # returned while the writer still had work
    assert all(r[0] == 1 for r in received)


async def test_settled_returns_at_once_when_idle_and_on_close() -> None:
    broker = InMemoryEventBroker()
    idle = broker.settled().__await__()
    with pytest.raises(StopIteration):  # finished without waiting
        idle.send(None)
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(DELIVERY_SLICE * 2):
            sub = await stack.enter_async_context(broker.subscribe(run_id="r1"))
            assert sub.attach(lambda events: None)
        await broker.publish(make_event(1))
        canceled = asyncio.create_task(broker.settled())
        waiting = asyncio.create_task(broker.settled())
        await asyncio.sleep(0)
        canceled.cancel()
        await broker.close()  # the writer's work is dropped; its next slice lets them go
        await asyncio.wait_for(waiting, 5)
    assert canceled.cancelled()
