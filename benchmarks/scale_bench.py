"""Past one machine (issue 15): several InvokeAI servers, PostgreSQL, several replicas.

``scripts/bench scale`` writes ``benchmarks/scale_results.md`` and ``.json``. Every gateway
is a real ``python -m app serve`` process; the InvokeAI servers are real.

1. **Throughput, 2 servers against 1.** ``SCALE_RUNS`` (30) runs of the model-free noise
   workflow at 512x512, each with a fresh seed (nothing cached), POSTed at once to a gateway
   in front of one server, then to one in front of two (a second InvokeAI started here);
   runs/s from the first POST to the last run's end. The two set-ups alternate over
   ``SCALE_ROUNDS`` (3) rounds so machine noise hits both. Target: >= 1.6x. On a 2-core
   machine two InvokeAI processes share the same two cores, so this measures how much of a
   run is waiting rather than computing; on separate machines each server brings its own.
2. **The gateway's own CPU per run, PostgreSQL against SQLite:** the gateway process's user
   and system time (``/proc/<pid>/stat``) over 40 tiny runs (32x32), divided by 40.
3. **Replicas on one PostgreSQL** (``GATEWAY_CLUSTER``), one InvokeAI followed by replica A:
   dispatch latency, from ``POST .../runs`` to its ``run.queued`` on A's SSE stream, for runs
   POSTed to A and to B (B stores it, ``NOTIFY gateway_wake``, A sends it); and the delay of
   each event on B's SSE stream after A's (the event table tail), p50/p99. Baseline: one
   gateway on SQLite, POST to its own ``run.queued``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from tests.support import invokeai_server
from tests.support.postgres_server import running_postgres

from ._report import Report, Row

ROOT = Path(__file__).resolve().parents[1]
NOISE = ROOT / "tests" / "workflows" / "noise_on_blank_canvas.json"  # 0 width, 1 height, 3 seed
RUNS = int(os.environ.get("SCALE_RUNS", "30"))
ROUNDS = int(os.environ.get("SCALE_ROUNDS", "3"))
CPU_RUNS = 40
LATENCY_RUNS = 40
DONE = {"succeeded", "failed", "canceled"}
TICKS = os.sysconf("SC_CLK_TCK")


def run(url: str, report: Report) -> None:
    second = invokeai_server.start()
    try:
        asyncio.run(_all(url, second.url, report))
    finally:
        second.stop()
        shutil.rmtree(second.root, ignore_errors=True)


async def _all(first: str, second: str, report: Report) -> None:
    await _throughput(first, second, report)
    with running_postgres() as postgres:
        await _cpu_per_run(first, postgres.fresh_database, report)
        await _replicas(first, postgres.fresh_database(), report)


# -- processes ----------------------------------------------------------------------------


@contextlib.contextmanager
def _gateway(invokeai_url: str, port: int, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    data = tempfile.mkdtemp(prefix="gateway-bench-")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    command = [sys.executable, "-m", "app", "serve", "--invokeai-url", invokeai_url]
    command += ["--port", str(port), "--data-dir", data, "--log-level", "warning"]
    settings = {"GATEWAY_MAX_UNFINISHED_RUNS": "5000", **env}
    proc = subprocess.Popen(command, cwd=ROOT, env={**clean, **settings})
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(data, ignore_errors=True)


@contextlib.asynccontextmanager
async def _http(port: int) -> AsyncIterator[httpx.AsyncClient]:
    url = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=url, timeout=60) as http:
        for _ in range(300):
            with contextlib.suppress(httpx.TransportError):
                listed = (await http.get("/backends")).json()["data"]
                if all(b["healthy"] for b in listed):
                    break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError(f"the gateway on {url} did not follow its servers")
        yield http


async def _register(http: httpx.AsyncClient) -> str:
    response = await http.post("/workflows", json=json.loads(NOISE.read_text()))
    response.raise_for_status()
    return str(response.json()["id"])


async def _post(http: httpx.AsyncClient, workflow_id: str, inputs: dict[str, Any]) -> str:
    response = await http.post(f"/workflows/{workflow_id}/runs", json={"inputs": inputs})
    response.raise_for_status()
    return str(response.json()["id"])


async def _until_done(http: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]]:
    """Every run once it ended; one request per 10 ms at most (the gateway's CPU is measured)."""
    left, done = list(ids), {}
    while left:
        run = (await http.get(f"/runs/{left[0]}")).json()
        if run["status"] in DONE:
            done[left.pop(0)] = run
        else:
            await asyncio.sleep(0.01)
    return [done[run_id] for run_id in ids]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _port() -> int:
    return invokeai_server.free_port()


# -- 1. throughput ------------------------------------------------------------------------


async def _throughput(first: str, second: str, report: Report) -> None:
    setups = {"1 server": first, "2 servers": f"a={first},b={second}"}
    rates: dict[str, list[float]] = {name: [] for name in setups}
    spread: list[dict[str, int]] = []
    seed = 0
    for round_index in range(ROUNDS):
        order = list(setups) if round_index % 2 == 0 else list(reversed(setups))
        for name in order:
            port = _port()
            with _gateway(setups[name], port):
                async with _http(port) as http:
                    workflow_id = await _register(http)
                    started = time.perf_counter()
                    ids = await asyncio.gather(
                        *(
                            _post(http, workflow_id, {"0": 512, "1": 512, "3": seed + i})
                            for i in range(RUNS)
                        )
                    )
                    runs = await _until_done(http, ids)
                    elapsed = time.perf_counter() - started
            seed += RUNS
            assert {r["status"] for r in runs} == {"succeeded"}, [r["error"] for r in runs]
            rates[name].append(RUNS / elapsed)
            if name == "2 servers":
                spread.append({b: sum(r["backend"] == b for r in runs) for b in ("a", "b")})
    one, two = statistics.median(rates["1 server"]), statistics.median(rates["2 servers"])
    scenario = f"throughput, {RUNS} runs of 512x512 noise at once"
    report.add(Row(scenario, "1 InvokeAI server", "runs/s", rates["1 server"]))
    report.add(
        Row(
            scenario,
            "2 InvokeAI servers",
            "runs/s",
            rates["2 servers"],
            target=">= 1.6x",
            note=f"runs per server (a, b) each round: {[(s['a'], s['b']) for s in spread]}",
            ratio=two / one,
        )
    )


# -- 2. CPU per run -----------------------------------------------------------------------


async def _cpu_per_run(invokeai_url: str, fresh_database: Any, report: Report) -> None:
    per_run: dict[str, list[float]] = {"SQLite": [], "PostgreSQL": []}
    seed = 10_000
    for round_index in range(2):
        order = list(per_run) if round_index % 2 == 0 else list(reversed(per_run))
        for name in order:
            env = {} if name == "SQLite" else {"GATEWAY_DATABASE_URL": fresh_database()}
            port = _port()
            with _gateway(invokeai_url, port, **env) as proc:
                async with _http(port) as http:
                    workflow_id = await _register(http)
                    await _until_done(http, [await _post(http, workflow_id, {"0": 32})])
                    before = _cpu_seconds(proc.pid)
                    ids = [
                        await _post(http, workflow_id, {"0": 32, "1": 32, "3": seed + i})
                        for i in range(CPU_RUNS)
                    ]
                    await _until_done(http, ids)
                    await asyncio.sleep(0.5)  # the last events' writes
                    spent = _cpu_seconds(proc.pid) - before
            seed += CPU_RUNS
            per_run[name].append(spent / CPU_RUNS * 1000)
    sqlite = statistics.median(per_run["SQLite"])
    scenario = f"gateway CPU per tiny run ({CPU_RUNS} runs, sent one by one)"
    report.add(Row(scenario, "SQLite", "ms", per_run["SQLite"]))
    report.add(
        Row(
            scenario,
            "PostgreSQL",
            "ms",
            per_run["PostgreSQL"],
            ratio=statistics.median(per_run["PostgreSQL"]) / sqlite,
        )
    )


# -- 3. replicas --------------------------------------------------------------------------


class _Stream:
    """Arrival time of each event on one SSE stream (``GET /events``)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.at: dict[int, float] = {}
        self.queued: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Stream:
        self._task = asyncio.create_task(self._read())
        await asyncio.sleep(0.5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _read(self) -> None:
        async with aconnect_sse(self.http, "GET", "/events") as source:
            async for sse in source.aiter_sse():
                now = time.perf_counter()
                if sse.id and sse.event.startswith(("run.", "node.")):
                    self.at[int(sse.id)] = now
                    if sse.event == "run.queued":
                        self.queued[json.loads(sse.data)["run_id"]] = now


async def _dispatch_ms(
    post_to: httpx.AsyncClient, workflow_id: str, stream: _Stream, seed: int
) -> float:
    sent = time.perf_counter()
    run_id = await _post(post_to, workflow_id, {"0": 32, "1": 32, "3": seed})
    while run_id not in stream.queued:
        await asyncio.sleep(0.0005)
    await _until_done(post_to, [run_id])
    return (stream.queued[run_id] - sent) * 1000


async def _replicas(invokeai_url: str, database: str, report: Report) -> None:
    cluster = {
        "GATEWAY_CLUSTER": "1",
        "GATEWAY_DATABASE_URL": database,
        "GATEWAY_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }
    holder_ms: list[float] = []
    other_ms: list[float] = []
    across_ms: list[float] = []
    port_a, port_b = _port(), _port()
    with _gateway(invokeai_url, port_a, **cluster):
        async with _http(port_a) as a:  # A follows the server before B starts
            with _gateway(invokeai_url, port_b, **cluster):
                async with _http(port_b) as b:
                    workflow_id = await _register(a)
                    async with _Stream(a) as on_a, _Stream(b) as on_b:
                        for i in range(LATENCY_RUNS):
                            holder_ms.append(await _dispatch_ms(a, workflow_id, on_a, 20_000 + i))
                            other_ms.append(await _dispatch_ms(b, workflow_id, on_a, 30_000 + i))
                        await asyncio.sleep(1.0)
                        across_ms = [
                            (on_b.at[i] - t) * 1000 for i, t in on_a.at.items() if i in on_b.at
                        ]
    baseline: list[float] = []
    port = _port()
    with _gateway(invokeai_url, port):
        async with _http(port) as alone:
            workflow_id = await _register(alone)
            async with _Stream(alone) as stream:
                for i in range(LATENCY_RUNS):
                    baseline.append(await _dispatch_ms(alone, workflow_id, stream, 40_000 + i))
    scenario = "dispatch: POST to run.queued on SSE"
    base = statistics.median(baseline)
    report.add(Row(scenario, "one gateway, SQLite", "ms", baseline))
    report.add(
        Row(
            scenario,
            "cluster: POST to the replica following the server",
            "ms",
            holder_ms,
            ratio=statistics.median(holder_ms) / base,
        )
    )
    report.add(
        Row(
            scenario,
            "cluster: POST to the other replica",
            "ms",
            other_ms,
            ratio=statistics.median(other_ms) / base,
            note="stored, NOTIFY gateway_wake, looked up by batch id, sent",
        )
    )
    report.add(
        Row(
            "SSE delay on replica B after replica A, same event",
            "cluster",
            "ms",
            across_ms,
            note=f"{len(across_ms)} events",
        )
    )
