"""Issue 3's gateway benchmarks (SSE and images), with the gateway in its own process.

(d) SSE delivery delay: InvokeAI's ``invocation_complete`` seen by an independent Socket.IO
    listener, to the matching ``node.completed`` read from the gateway's ``/events`` stream.
(e) 500 SSE streams on one run: all get every event; the gateway's resident memory.
(f) a 20 MB image downloaded through the gateway against directly from InvokeAI.

Usage: ``python -m benchmarks.gateway_bench`` (writes ``benchmarks/gateway_results.md``), or
as the ``gateway`` suite of ``python -m benchmarks`` once registered there.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse, connect_sse

from tests.support.invokeai_server import free_port, running_server
from tests.support.workflow_factory import tiny_blur_workflow

from ._listener import NodeCompleteListener
from ._report import Report, Row

ROOT = Path(__file__).resolve().parents[1]
DELAY_RUNS = 50
STREAMS = 500
DOWNLOADS = 10


# -- the gateway in its own process ------------------------------------------------------------


@contextmanager
def gateway_process(invokeai_url: str) -> Iterator[tuple[str, int]]:
    """``python -m app serve`` on a free port with a fresh database; yields (url, pid)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as data:
        command = [sys.executable, "-m", "app", "serve", "--invokeai-url", invokeai_url]
        command += ["--port", str(port), "--data-dir", data, "--log-level", "warning"]
        proc = subprocess.Popen(command, cwd=ROOT)
        url = f"http://127.0.0.1:{port}"
        try:
            with httpx.Client(timeout=2) as http:
                wait_ready(http, f"{url}/readyz", proc)
            yield url, proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def wait_ready(
    http: httpx.Client, url: str, proc: subprocess.Popen[bytes], *, every: float = 0.2
) -> float:
    """Poll ``url`` every ``every`` seconds until it answers 200, while ``proc`` (the server
    started for it) runs; the ``perf_counter`` of that answer.

    Raises:
        RuntimeError: ``proc`` exited first, or 60 s passed.
    """
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited during start-up")
        try:
            if http.get(url).status_code == 200:
                return time.perf_counter()
        except httpx.TransportError:
            pass
        time.sleep(every)
    raise RuntimeError(f"{url} did not answer 200 within 60 s")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def register_tiny(url: str) -> str:
    response = httpx.post(f"{url}/workflows", json=tiny_blur_workflow(use_cache=False), timeout=30)
    response.raise_for_status()
    return str(response.json()["id"])


def start_run(url: str, workflow_id: str, salt: int) -> dict[str, Any]:
    body = {"inputs": {"1": 1.0 + salt / 1000}}
    response = httpx.post(f"{url}/workflows/{workflow_id}/runs", json=body, timeout=30)
    response.raise_for_status()
    run: dict[str, Any] = response.json()
    return run


# -- (d) delivery delay ------------------------------------------------------------------------


def _read_events(url: str, received: dict[tuple[str, str], float], stop: threading.Event) -> None:
    with (
        httpx.Client(timeout=None) as http,
        connect_sse(http, "GET", f"{url}/events") as source,
    ):
        for sse in source.iter_sse():
            if sse.event == "node.completed":
                event = json.loads(sse.data)
                received[(event["run_id"], event["data"]["node_id"])] = time.perf_counter()
            if stop.is_set():
                return


def delivery_delays(invokeai_url: str, url: str, workflow_id: str) -> list[float]:
    received: dict[tuple[str, str], float] = {}
    stop = threading.Event()
    reader = threading.Thread(target=_read_events, args=(url, received, stop), daemon=True)
    # One client for the status polls: a new httpx.Client per poll builds an SSL context
    # (about 40 ms of CPU here, every 50 ms), and that load on the 2-core machine, in the
    # process that stamps the events, was most of the delay's tail.
    with NodeCompleteListener(invokeai_url) as listener, httpx.Client(timeout=30) as http:
        reader.start()
        time.sleep(0.5)  # the /events stream starts at connect: let it subscribe
        runs = []
        for salt in range(DELAY_RUNS):
            run = start_run(url, workflow_id, salt)
            runs.append(_wait_terminal(http, url, run["id"]))  # its item id, known by now
        time.sleep(0.5)
    stop.set()
    delays = []
    for run in runs:
        for (item_id, node_id), at_socketio in listener.seen.items():
            if item_id == run["item_id"] and (run["id"], node_id) in received:
                delays.append((received[(run["id"], node_id)] - at_socketio) * 1000)
    return delays


def _wait_terminal(http: httpx.Client, url: str, run_id: str) -> dict[str, Any]:
    while True:
        run: dict[str, Any] = http.get(f"{url}/runs/{run_id}").json()
        if run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.05)


# -- (e) 500 streams on one run ----------------------------------------------------------------


async def many_streams(invokeai_url: str, url: str, pid: int, workflow_id: str) -> dict[str, Any]:
    queue = f"{invokeai_url}/api/v1/queue/default/processor"
    limits = httpx.Limits(max_connections=STREAMS + 10)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120), limits=limits) as http:
        await http.put(f"{queue}/pause")
        try:
            run = start_run(url, workflow_id, 99_999)
            ready = asyncio.Semaphore(0)
            readers = [
                asyncio.create_task(_one_stream(http, f"{url}/runs/{run['id']}/events", ready))
                for _ in range(STREAMS)
            ]
            for _ in range(STREAMS):  # every stream has its first event: all are subscribed
                await ready.acquire()
            before = rss_mb(pid)
        finally:
            await http.put(f"{queue}/resume")
        peak = before
        while not all(r.done() for r in readers):
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.05)
        results = [r.result() for r in readers]
    expected = results[0]
    return {
        "all_equal": all(r == expected for r in results),
        "events": len(expected),
        "terminal": expected[-1],
        "rss_mb": peak,
    }


async def _one_stream(http: httpx.AsyncClient, url: str, ready: asyncio.Semaphore) -> list[str]:
    got: list[str] = []
    async with aconnect_sse(http, "GET", url) as source:
        async for sse in source.aiter_sse():
            got.append(f"{sse.id}:{sse.event}")
            if len(got) == 1:
                ready.release()
    return got


# -- (f) a 20 MB image -------------------------------------------------------------------------


def big_png() -> bytes:
    from PIL import Image

    side = 2600  # about 20 MB of incompressible pixels
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG")
    return buffer.getvalue()


def throughput(url: str) -> float:
    start = time.perf_counter()
    size = 0
    with httpx.stream("GET", url, timeout=120) as response:
        response.raise_for_status()
        for chunk in response.iter_raw():
            size += len(chunk)
    return size / (time.perf_counter() - start) / 1e6


def image_downloads(invokeai_url: str, url: str) -> tuple[list[float], list[float], int]:
    data = big_png()
    files = {"file": ("big.png", data, "image/png")}
    upload = httpx.post(f"{url}/images", files=files, timeout=120)
    upload.raise_for_status()
    name = upload.json()["image_name"]
    direct_url = f"{invokeai_url}/api/v1/images/i/{name}/full"
    ours, direct = [], []
    for _ in range(DOWNLOADS):  # alternate, so drift hits both
        ours.append(throughput(f"{url}/images/{name}"))
        direct.append(throughput(direct_url))
    return ours, direct, len(data)


# -- the suite ---------------------------------------------------------------------------------


def run(invokeai_url: str, report: Report) -> None:
    with gateway_process(invokeai_url) as (url, pid):
        workflow_id = register_tiny(url)
        start_run(url, workflow_id, -1)  # warm-up
        delays = delivery_delays(invokeai_url, url, workflow_id)
        report.add(
            Row("d. SSE delivery delay", "gateway", "ms", delays, target="p50 < 5, p99 < 20")
        )

        fan = asyncio.run(many_streams(invokeai_url, url, pid, workflow_id))
        note = (
            f"{fan['events']} events each, all equal: {fan['all_equal']}, "
            f"last {fan['terminal'].split(':')[1]}"
        )
        report.add(
            Row(
                "e. 500 SSE streams, one run",
                "gateway RSS peak",
                "MB",
                [fan["rss_mb"]],
                target="< 250 MB",
                note=note,
            )
        )

        ours, direct, size = image_downloads(invokeai_url, url)
        ours_row = report.add(
            Row(
                "f. 20 MB image download",
                "through gateway",
                "MB/s",
                ours,
                target="ratio > 0.8",
                note=f"{size / 1e6:.1f} MB",
            )
        )
        direct_row = report.add(Row("f. 20 MB image download", "direct", "MB/s", direct))
        ours_row.ratio = ours_row.median / direct_row.median
        direct_row.ratio = 1.0


def main() -> int:
    report = Report("Gateway benchmarks")
    with running_server() as invokeai_url:
        run(invokeai_url, report)
    path = report.write("gateway_results")
    print(report.markdown())
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
