"""The SSE routes over real HTTP (uvicorn) with a real SSE client, events fed by the test.

These pin the stream's contract independently of InvokeAI: ids, types, JSON data, replay
and resume without loss or repeats, fan-out, the end of a run's stream, heartbeats, 404.
The same contract against a real InvokeAI run is in ``test_sse.py``.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse
from sse_starlette.sse import AppStatus

from app.api.routes import events as events_routes
from tests.app.sse_harness import Harness, build_app, running

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


def test_the_event_routes_are_documented_as_event_streams(tmp_path: Path) -> None:
    spec = build_app(tmp_path, ping=15, queue_size=4).openapi()
    for path in ("/runs/{run_id}/events", "/events"):
        ok = spec["paths"][path]["get"]["responses"]["200"]
        assert "text/event-stream" in ok["content"]


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


async def test_a_reader_arriving_after_the_end_gets_the_terminal_event_at_once(
    tmp_path: Path,
) -> None:
    # The final status and the terminal event are one transaction: a run whose status is
    # final has its terminal event stored, so the replay alone ends the stream.
    async with running(tmp_path) as h:
        h.add_run("run-j")
        started = await h.emit("run-j", "run.started")
        h.set_status("run-j", "succeeded")
        terminal = await h.emit("run-j", "run.succeeded")
        got = await asyncio.wait_for(collect(f"{h.url}/runs/run-j/events"), 10)
    assert [int(e.id) for e in got] == [started, terminal]


async def test_a_finished_stream_ends_once_the_broker_has_settled(tmp_path: Path) -> None:
    """A stream whose run is over sends its terminal event at once and ends the response
    only when the broker's delivery under way has settled (``EventBroker.settled``), so that
    ending a thousand responses does not slow the delivery to the readers still waiting."""
    async with running(tmp_path) as h:
        gate = asyncio.Event()
        settled_calls = 0
        real_settled = h.broker.settled

        async def gated() -> None:
            nonlocal settled_calls
            settled_calls += 1
            await gate.wait()
            await real_settled()

        h.broker.settled = gated  # type: ignore[method-assign]
        h.add_run("run-s")
        got: list[str] = []
        ended = asyncio.Event()

        async def read() -> None:
            async with (
                httpx.AsyncClient(timeout=TIMEOUT) as http,
                aconnect_sse(http, "GET", f"{h.url}/runs/run-s/events") as source,
            ):
                async for sse in source.aiter_sse():
                    got.append(sse.event)
            ended.set()

        reader = asyncio.create_task(read())
        await wait_for_subscribers(h, 1)
        await run_to_completion(h, "run-s", progress_steps=1)
        for _ in range(500):  # the terminal event arrives...
            if "run.succeeded" in got:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        assert got[-1] == "run.succeeded" and settled_calls == 1
        assert not ended.is_set()  # ...and the response stays open while the broker is busy
        gate.set()
        await asyncio.wait_for(reader, 10)
    assert ended.is_set()


# -- readers that stop reading, resuming mid-burst, shutdown (the direct-write path) ----------

BIG = "x" * 256_000  # a few dozen of these fill any socket buffer on loopback


async def open_raw(h: Harness, path: str) -> socket.socket:
    """A connection that reads nothing until ``raw_ids``, with a tiny receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    url = httpx.URL(h.url)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, (url.host, url.port))
    await loop.sock_sendall(sock, f"GET {path} HTTP/1.1\r\nHost: {url.host}\r\n\r\n".encode())
    return sock


async def raw_ids(sock: socket.socket) -> tuple[list[int], bool]:
    """The ids read until the terminal event (True) or the end of the connection (False)."""
    loop = asyncio.get_running_loop()
    chunks, tail, end = [], b"", b"event: run.succeeded"
    while end not in tail and (chunk := await loop.sock_recv(sock, 2**16)):
        chunks.append(chunk)
        tail = tail[-len(end) :] + chunk
    sock.close()
    data = b"".join(chunks)
    ids = [int(line[3:]) for line in data.split(b"\r\n") if line.startswith(b"id:")]
    return ids, end in data


def run_subscriptions(h: Harness, run_id: str) -> list[Any]:
    return list(h.broker._by_run.get(run_id, ()))


async def test_a_reader_that_stops_reading_holds_up_no_one_and_catches_up(tmp_path: Path) -> None:
    async with running(tmp_path, queue_size=4) as h:
        h.add_run("run-s")
        first = await h.emit("run-s", "run.started")
        slow_socket = await open_raw(h, "/runs/run-s/events")
        fast = asyncio.create_task(collect(f"{h.url}/runs/run-s/events"))
        await wait_for_subscribers(h, 2)
        for _ in range(200):  # both streams are live: they have replayed the first event
            if all(s.attached for s in run_subscriptions(h, "run-s")):
                break
            await asyncio.sleep(0.01)
        sent = [first]
        for n in range(60):  # ~15 MB: far more than the stopped reader's buffers hold
            sent.append(await h.emit("run-s", "node.progress", {"n": n, "blob": BIG}))
            await asyncio.sleep(0)
        h.set_status("run-s", "succeeded")
        sent.append(await h.emit("run-s", "run.succeeded"))
        got = await asyncio.wait_for(fast, 20)  # ends while the other reader still reads nothing
        assert [int(e.id) for e in got] == sent
        (slow,) = run_subscriptions(h, "run-s")
        assert slow.dropped > 0  # its queue overflowed: the database catch-up path was taken
        slow_ids, ended = await asyncio.wait_for(raw_ids(slow_socket), 20)  # it reads again
    assert ended and slow_ids == sent  # every event, in order, once


async def test_a_stuck_reader_is_dropped_after_the_send_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_routes, "SEND_TIMEOUT_SECONDS", 0.3)
    async with running(tmp_path) as h:
        h.add_run("run-t", status="running")
        stuck = await open_raw(h, "/runs/run-t/events")
        await wait_for_subscribers(h, 1)
        for n in range(60):
            await h.emit("run-t", "node.progress", {"n": n, "blob": BIG})
            await asyncio.sleep(0)
        for _ in range(500):  # the server gives up on it and leaves the broker
            if h.broker.subscriber_count == 0:
                break
            await asyncio.sleep(0.01)
        assert h.broker.subscriber_count == 0
        seen, ended = await asyncio.wait_for(raw_ids(stuck), 10)
    assert not ended and len(seen) < 60  # the connection was closed mid-stream


async def test_resume_during_a_burst_has_no_loss_and_no_repeats(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        h.add_run("run-u")
        stored = [await h.emit("run-u", "node.progress", {"n": n}) for n in range(5)]
        readers: list[tuple[int, asyncio.Task[list[ServerSentEvent]]]] = []
        for n in range(40):
            if n % 5 == 0:  # connect mid-burst, resuming from an event already sent
                resume = stored[n // 5]
                url = f"{h.url}/runs/run-u/events?last_event_id={resume}"
                readers.append((resume, asyncio.create_task(collect(url))))
            stored.append(await h.emit("run-u", "node.progress", {"n": n}))
            await asyncio.sleep(0.002 * (n % 3))
        h.set_status("run-u", "succeeded")
        stored.append(await h.emit("run-u", "run.succeeded"))
        for resume, task in readers:
            got = await asyncio.wait_for(task, 10)
            assert [int(e.id) for e in got] == [i for i in stored if i > resume]


async def test_server_shutdown_ends_open_streams(tmp_path: Path) -> None:
    async with running(tmp_path) as h:
        h.add_run("run-v", status="running")
        reader = asyncio.create_task(collect(f"{h.url}/runs/run-v/events"))
        await wait_for_subscribers(h, 1)
        live = await h.emit("run-v", "node.progress")
        AppStatus.should_exit = True  # what uvicorn's exit signal handler sets
        try:
            got = await asyncio.wait_for(reader, 10)  # the stream ends, the run does not
        finally:
            AppStatus.should_exit = False
        assert [int(e.id) for e in got] == [live]
        after = asyncio.create_task(collect(f"{h.url}/runs/run-v/events", limit=2))
        await wait_for_subscribers(h, 1)  # the next server life streams again
        await h.emit("run-v", "node.progress")
        assert len(await asyncio.wait_for(after, 10)) == 2
