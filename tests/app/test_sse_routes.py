"""The SSE routes over real HTTP (uvicorn) with a real SSE client, events fed by the test.

These pin the stream's contract independently of InvokeAI: ids, types, JSON data, replay
and resume without loss or repeats, fan-out, the end of a run's stream, heartbeats, 404.
The same contract against a real InvokeAI run is in ``test_sse.py``.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse

from app.api.routes.events import follow
from app.events import InMemoryEventBroker
from tests.app.sse_harness import Harness, running

TIMEOUT = httpx.Timeout(10.0)


async def collect(
    url: str, *, headers: dict[str, str] | None = None, limit: int | None = None
) -> list[ServerSentEvent]:
    """Every event of a stream until the server ends it (or ``limit`` events)."""
    got: list[ServerSentEvent] = []
    async with (
        httpx.AsyncClient(timeout=TIMEOUT) as http,
        aconnect_sse(http, "GET", url, headers=dict(headers or {})) as source,
    ):
        source.response.raise_for_status()
        async for sse in source.aiter_sse():
            got.append(sse)
            if limit is not None and len(got) >= limit:
                break
    return got


async def wait_for_subscribers(h: Harness, count: int) -> None:
    async def poll() -> None:
        while h.broker.subscriber_count < count:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 10)


async def run_to_completion(h: Harness, run_id: str, progress_steps: int = 3) -> list[int]:
    ids = [await h.emit(run_id, "run.started", {"status": "running"})]
    for step in range(progress_steps):
        ids.append(await h.emit(run_id, "node.progress", {"percentage": (step + 1) / 4}))
    h.set_status(run_id, "succeeded")
    ids.append(await h.emit(run_id, "run.succeeded", {"status": "succeeded"}))
    return ids


async def test_follow_a_run_from_first_event_to_last(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        h.add_run("run-a")
        reader = asyncio.create_task(collect(f"{h.url}/runs/run-a/events"))
        await wait_for_subscribers(h, 1)
        sent = await run_to_completion(h, "run-a")
        got = await asyncio.wait_for(reader, 10)  # returns only because the stream ended
    assert [int(e.id) for e in got] == sent
    assert [e.event for e in got] == ["run.started", *["node.progress"] * 3, "run.succeeded"]
    first = json.loads(got[1].data)
    assert first["id"] == sent[1] and first["run_id"] == "run-a"
    assert first["workflow_id"] == "wf-1" and first["event"] == "node.progress"
    assert first["data"] == {"percentage": 0.25}
    assert first["created_at"].endswith("+00:00")


async def test_headers_and_404(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        h.add_run("run-h", status="succeeded")
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            missing = await http.get(f"{h.url}/runs/nope/events")
            done = await http.get(f"{h.url}/runs/run-h/events")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert done.status_code == 200
    assert done.headers["content-type"].startswith("text/event-stream")
    assert done.headers["x-accel-buffering"] == "no"
    assert done.headers["cache-control"] == "no-store"


async def test_replay_of_a_finished_run_ends_the_stream(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        h.add_run("run-b")
        sent = await run_to_completion(h, "run-b")
        got = await collect(f"{h.url}/runs/run-b/events")
    assert [int(e.id) for e in got] == sent


async def test_terminal_run_without_terminal_event_ends_after_replay(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        h.add_run("run-c")
        first = await h.emit("run-c", "run.started")
        h.set_status("run-c", "failed")  # e.g. failed while the relay was down
        got = await collect(f"{h.url}/runs/run-c/events")
    assert [int(e.id) for e in got] == [first]


@pytest.mark.parametrize("how", ["header", "query"])
async def test_resume_with_last_event_id_has_no_loss_and_no_repeats(
    tmp_path: Path, how: str
) -> None:
    async with running(tmp_path) as h:
        h.add_run("run-d")
        stored = [await h.emit("run-d", "node.progress", {"n": n}) for n in range(4)]
        # A first connection reads two events and drops.
        first = await collect(f"{h.url}/runs/run-d/events", limit=2)
        last = first[-1].id
        url, headers = f"{h.url}/runs/run-d/events", {"Last-Event-ID": last}
        if how == "query":
            url, headers = f"{url}?last_event_id={last}", {}
        reader = asyncio.create_task(collect(url, headers=headers))
        await wait_for_subscribers(h, 1)
        live = await run_to_completion(h, "run-d", progress_steps=1)
        second = await asyncio.wait_for(reader, 10)
    seen = [int(e.id) for e in first + second]
    assert seen == stored + live


async def test_every_subscriber_gets_every_event(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        h.add_run("run-e")
        early = await h.emit("run-e", "run.queued")
        readers = [asyncio.create_task(collect(f"{h.url}/runs/run-e/events")) for _ in range(12)]
        await wait_for_subscribers(h, 12)
        sent = [early, *await run_to_completion(h, "run-e", progress_steps=5)]
        results = await asyncio.wait_for(asyncio.gather(*readers), 15)
    for got in results:
        assert [int(e.id) for e in got] == sent


async def test_heartbeat_comments_with_a_short_ping(tmp_path: Path) -> None:
    async with running(tmp_path, ping=0.2) as h:
        h.add_run("run-f", status="running")
        pings = 0
        async with (
            httpx.AsyncClient(timeout=TIMEOUT) as http,
            http.stream("GET", f"{h.url}/runs/run-f/events") as response,
        ):
            async for line in response.aiter_lines():
                if line.startswith(": ping"):
                    pings += 1
                if pings == 2:
                    break
    assert pings == 2


async def test_all_events_stream_filters_by_workflow_and_resumes(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        h.add_run("run-g1", workflow_id="wf-g1")
        h.add_run("run-g2", workflow_id="wf-g2")
        before = await h.emit("run-g1", "run.started")
        reader = asyncio.create_task(collect(f"{h.url}/events?workflow_id=wf-g1", limit=2))
        await wait_for_subscribers(h, 1)
        await h.emit("run-g2", "run.started")
        live = [await h.emit("run-g1", "node.progress"), await h.emit("run-g1", "run.succeeded")]
        fresh = await asyncio.wait_for(reader, 10)
        resumed = await collect(f"{h.url}/events?last_event_id={before - 1}", limit=4)
    assert [int(e.id) for e in fresh] == live  # starts now: `before` is not replayed
    assert [json.loads(e.data)["run_id"] for e in resumed] == [
        "run-g1",
        "run-g2",
        "run-g1",
        "run-g1",
    ]
    assert [int(e.id) for e in resumed] == sorted(int(e.id) for e in resumed)


async def test_lagging_reader_catches_up_from_the_database(tmp_path: Path) -> None:
    async with running(tmp_path, queue_size=2) as h:
        h.add_run("run-i")
        broker = InMemoryEventBroker(queue_size=2)
        stream = follow(engine=h.engine, broker=broker, last_id=0, run_id="run-i")
        first = await h.emit("run-i", "run.started")
        await broker.publish({"id": first, "run_id": "run-i", "event": "run.started"})
        got = [await anext(stream)]  # replayed; the stream is now subscribed and live
        sent = [first]
        for n in range(10):  # the reader does not read: its queue of 2 overflows
            event_id = h.store("run-i", "node.progress", {"n": n})
            sent.append(event_id)
            await broker.publish(
                {"id": event_id, "run_id": "run-i", "event": "node.progress", "data": {"n": n}}
            )
        h.set_status("run-i", "succeeded")
        sent.append(h.store("run-i", "run.succeeded"))
        got.extend([sse async for sse in stream])
    assert [int(e.id) for e in got] == sent
    assert json.loads(got[3].data)["data"] == {"n": 2}


async def test_terminal_event_stored_just_after_the_final_status_is_still_sent(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as h:
        h.add_run("run-j")
        started = await h.emit("run-j", "run.started")
        h.set_status("run-j", "succeeded")  # the run service writes the status first...
        reader = asyncio.create_task(collect(f"{h.url}/runs/run-j/events"))
        await wait_for_subscribers(h, 1)
        terminal = await h.emit("run-j", "run.succeeded")  # ...then stores the event
        got = await asyncio.wait_for(reader, 10)
    assert [int(e.id) for e in got] == [started, terminal]
