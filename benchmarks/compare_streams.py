"""Issue 5, scenarios 5 and 6: SSE fan-out and a 20 MB image, with the gateway's memory.

5. 1, 100 and 1,000 SSE subscribers on one run. Every stream opens while InvokeAI's processor
   is paused and has read its first event before the run is let go, so all of them are live
   when the nodes complete. The delay of each ``node.completed`` on each stream is measured from
   InvokeAI's own ``invocation_complete`` to the moment the bytes of that event were read by
   the reader's process. Both ends run in processes of their own, and their stamps are
   ``time.perf_counter`` (CLOCK_MONOTONIC, one clock for every process):
   - InvokeAI's side: an independent Socket.IO listener (``NodeCompleteListenerProcess``). On a
     thread of the readers' process it waited for the GIL behind 1,000 readers and stamped late,
     which made the gateway look faster than it was (some delays came out negative);
   - the readers (``benchmarks._epoll_readers``): raw non-blocking sockets on ``epoll``, one
     ``recv`` per ready socket, stamped then; parsed after the run. They are spread over
     ``READER_PROCESSES`` processes; they share the 2 cores with the gateway and InvokeAI, so
     the time the readers' process waits for a core is part of the figure.
   See benchmarks/README.md.
6. A 20 MB PNG through the gateway and directly (reuses gateway_bench's helpers).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import threading
import time
from dataclasses import dataclass, field

import httpx

from ._epoll_readers import READER_PROCESSES, ReaderProcesses
from ._listener import NodeCompleteListenerProcess
from .gateway_bench import image_downloads, rss_mb

Received = tuple[str, str, float]
# Streams that have read their first event may still be ending their replay; the run starts
# this long after, so that what is measured is the delivery of live events.
SETTLE_SECONDS = 1.0


class RssSampler:
    """Samples a process's resident memory every 20 ms on a thread; keeps the peak."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@dataclass
class FanOut:
    subscribers: int
    delays: list[float] = field(default_factory=list)
    rss_before: float = 0.0
    rss_peak: float = 0.0
    complete_streams: int = 0
    streams: int = 0


TERMINAL_MARKS = (b"event: run.succeeded", b"event: run.failed", b"event: run.canceled")
BODY_END = b"\r\n0\r\n\r\n"  # the last chunk of a chunked body: the stream has ended


class _StreamReader(asyncio.Protocol):
    """One SSE connection that only stamps and keeps what arrives; parsing comes later.

    With 1,000 streams in one process, whatever a reader does per event delays the readers
    after it; a reader that split lines and decoded JSON before stamping counted that work
    (and the wait behind other streams' work) as the gateway's delay.
    """

    def __init__(self, request: bytes, ready: asyncio.Semaphore) -> None:
        self.request = request
        self.ready = ready
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.chunks: list[tuple[float, bytes]] = []
        self._tail = b""
        self._first = False
        self._terminal = False
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.chunks.append((time.perf_counter(), data))
        scan = self._tail + data  # markers may straddle two reads
        self._tail = scan[-40:]
        if not self._first and b"\ndata:" in scan:
            self._first = True
            self.ready.release()
        self._terminal = self._terminal or any(m in scan for m in TERMINAL_MARKS)
        if self._terminal and BODY_END in scan and self._transport is not None:
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


def parse_stream(chunks: list[tuple[float, bytes]]) -> list[Received]:
    """(event, node or item id, arrival time) per event: the time of the read that completed
    its ``data:`` line. Chunk-size lines and comments never start with ``event:``/``data:``."""
    body = b"".join(data for _, data in chunks)
    ends = list(itertools.accumulate(len(data) for _, data in chunks))
    got: list[Received] = []
    name, pos = "", body.find(b"\r\n\r\n") + 4  # after the response head
    while (newline := body.find(b"\n", pos)) >= 0:
        line, pos = body[pos:newline], newline + 1
        if line.startswith(b"event:"):
            name = line[6:].strip().decode()
        elif line.startswith(b"data:"):
            arrived = chunks[bisect.bisect_right(ends, newline)][0]
            data = json.loads(line[5:]).get("data", {})
            got.append((name, str(data.get("node_id") or data.get("item_id") or ""), arrived))
            if name in ("run.succeeded", "run.failed", "run.canceled"):
                break
    return got


async def _follow(gateway: str, path: str, ready: asyncio.Semaphore) -> list[Received]:
    """(event, node or item id, perf_counter at arrival) for every event of one run's stream."""
    url = httpx.URL(gateway)
    request = f"GET {path} HTTP/1.1\r\nHost: {url.host}\r\nAccept: text/event-stream\r\n\r\n"
    loop = asyncio.get_running_loop()
    transport, reader = await loop.create_connection(
        lambda: _StreamReader(request.encode(), ready), url.host, url.port or 80
    )
    try:
        await reader.done
    finally:
        transport.close()
    return parse_stream(reader.chunks)


def _one_run(
    invokeai: str, gateway: str, workflow_id: str, subscribers: int, salt: int
) -> list[list[Received]]:
    processor = f"{invokeai}/api/v1/queue/default/processor"
    with httpx.Client(timeout=120) as http:
        http.put(f"{processor}/pause").raise_for_status()
        readers = None
        try:
            body = {"inputs": {"1": 1.0 + salt / 1000}}
            response = http.post(f"{gateway}/workflows/{workflow_id}/runs", json=body)
            response.raise_for_status()
            path = f"/runs/{response.json()['id']}/events"
            readers = ReaderProcesses(gateway, path, subscribers, READER_PROCESSES)
            readers.wait_ready()
            time.sleep(SETTLE_SECONDS)
        except BaseException:
            if readers is not None:
                readers.close()
            raise
        finally:
            http.put(f"{processor}/resume").raise_for_status()
    try:
        return [parse_stream(chunks) for chunks in readers.results()]
    finally:
        readers.close()


def fan_out(
    invokeai: str, gateway: str, pid: int, workflow_id: str, subscribers: int, runs: int
) -> FanOut:
    result = FanOut(subscribers)
    with NodeCompleteListenerProcess(invokeai) as listener:
        for r in range(runs):
            result.rss_before = max(result.rss_before, rss_mb(pid))
            with RssSampler(pid) as sampler:
                streams = _one_run(invokeai, gateway, workflow_id, subscribers, 10_000 + r)
            result.rss_peak = max(result.rss_peak, sampler.peak)
            time.sleep(0.3)  # the listener's last events
            _collect(result, streams, listener.seen)
    return result


def _collect(
    result: FanOut,
    streams: list[list[Received]],
    seen: dict[tuple[int, str], float],
) -> None:
    for events in streams:
        result.streams += 1
        item_id = next((int(node) for name, node, _ in events if name == "run.queued"), None)
        if events and events[-1][0] == "run.succeeded":
            result.complete_streams += 1
        for name, node, at in events:
            if name == "node.completed" and item_id is not None and (item_id, node) in seen:
                result.delays.append((at - seen[(item_id, node)]) * 1000)


def downloads(invokeai: str, gateway: str, pid: int) -> tuple[list[float], list[float], int, float]:
    """Scenario 6: (gateway MB/s, direct MB/s, size in bytes, the gateway's peak RSS MB)."""
    with RssSampler(pid) as sampler:
        ours, direct, size = image_downloads(invokeai, gateway)
    return ours, direct, size, sampler.peak
