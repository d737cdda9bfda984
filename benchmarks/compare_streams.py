"""Issue 5, scenarios 5 and 6: SSE fan-out and a 20 MB image, with the gateway's memory.

5. 1, 100 and 1,000 SSE subscribers on one run. Every stream opens while InvokeAI's processor
   is paused and has read its first event before the run is let go, so all of them are live
   when the nodes complete. The delay of each ``node.completed`` on each stream is measured from
   InvokeAI's own ``invocation_complete`` (an independent Socket.IO listener, same clock).
   The readers are bare asyncio connections (not an HTTP client) sharing one process and
   event loop, so at 1,000 streams a part of the measured delay is still the readers' own
   work on the same 2 cores; see benchmarks/README.md.
6. A 20 MB PNG through the gateway and directly (reuses gateway_bench's helpers).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

import httpx

from ._listener import NodeCompleteListener
from .gateway_bench import image_downloads, rss_mb

Received = tuple[str, str, float]


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


async def _follow(gateway: str, path: str, ready: asyncio.Semaphore) -> list[Received]:
    """(event, node or item id, perf_counter when read) for every event of one run's stream.

    A bare asyncio reader, not httpx: with 1,000 streams in one process, a full HTTP client's
    per-event cost would be measured as the gateway's delay. The gateway sends each event in
    one chunk of the chunked body, so its lines arrive whole; chunk-size lines and comments
    never start with ``event:`` or ``data:``.
    """
    url = httpx.URL(gateway)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    request = f"GET {path} HTTP/1.1\r\nHost: {url.host}\r\nAccept: text/event-stream\r\n\r\n"
    writer.write(request.encode())
    got: list[Received] = []
    name = ""
    try:
        while (line := await reader.readline()) not in (b"\r\n", b""):
            pass  # the response head
        while line := await reader.readline():
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                now = time.perf_counter()
                data = json.loads(line[5:]).get("data", {})
                got.append((name, str(data.get("node_id") or data.get("item_id") or ""), now))
                if len(got) == 1:
                    ready.release()
                if name in ("run.succeeded", "run.failed", "run.canceled"):
                    break
    finally:
        writer.close()
    return got


async def _one_run(
    invokeai: str, gateway: str, workflow_id: str, subscribers: int, salt: int
) -> list[list[Received]]:
    async with httpx.AsyncClient(timeout=120) as http:
        processor = f"{invokeai}/api/v1/queue/default/processor"
        (await http.put(f"{processor}/pause")).raise_for_status()
        try:
            body = {"inputs": {"1": 1.0 + salt / 1000}}
            response = await http.post(f"{gateway}/workflows/{workflow_id}/runs", json=body)
            response.raise_for_status()
            path = f"/runs/{response.json()['id']}/events"
            ready = asyncio.Semaphore(0)
            readers = [
                asyncio.create_task(_follow(gateway, path, ready)) for _ in range(subscribers)
            ]
            for _ in range(subscribers):
                await asyncio.wait_for(ready.acquire(), 120)
        finally:
            (await http.put(f"{processor}/resume")).raise_for_status()
        return list(await asyncio.wait_for(asyncio.gather(*readers), 300))


def fan_out(
    invokeai: str, gateway: str, pid: int, workflow_id: str, subscribers: int, runs: int
) -> FanOut:
    result = FanOut(subscribers)
    with NodeCompleteListener(invokeai) as listener:
        for r in range(runs):
            result.rss_before = max(result.rss_before, rss_mb(pid))
            with RssSampler(pid) as sampler:
                streams = asyncio.run(
                    _one_run(invokeai, gateway, workflow_id, subscribers, 10_000 + r)
                )
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
