"""Issue 5, scenarios 1-4: tiny runs by every contender, against the same real InvokeAI.

1. end to end (submit to completion known) and 2. completion notice delay (the server's
   completion event, seen by an independent listener, to the caller knowing) come from the
   same runs: direct httpx + Socket.IO, our client sync and async, the older client sync and
   async (in its own venv), and the gateway (POST run, follow its SSE stream).
3. submission overhead: the gateway's ``POST /workflows/{id}/runs`` (202) against a direct
   ``enqueue_batch``, with InvokeAI's processor paused so nothing else runs meanwhile.
4. throughput: tiny runs from 20 concurrent callers, direct against the gateway.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse, connect_sse

from invokeai_py_client import InvokeAIClient, WorkflowDefinition
from tests.support.workflow_factory import tiny_blur_workflow

from ._direct import DirectCaller, enqueue_body
from ._legacy import run_driver
from ._listener import BatchEnqueuedListener, CompletionListener

SSE_TERMINAL = {"run.succeeded", "run.failed", "run.canceled"}
_salt = itertools.count(1)


def radius() -> float:
    """A fresh blur radius per run, so no run is ever answered from a cache."""
    return 1.0 + next(_salt) % 5000 / 1000


@dataclass
class Ctx:
    """What every contender needs: the two servers and the tiny workflow in both forms."""

    invokeai: str
    gateway: str
    workflow_id: str
    tiny_path: Path


@dataclass
class Sample:
    item_id: int | None
    start: float
    known: float | None = None
    error: str = ""


@dataclass
class Outcome:
    """One contender's runs over all rounds: end-to-end times and notice delays (ms)."""

    e2e: list[float] = field(default_factory=list)
    delay: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    note: str = ""


# -- the contenders: each does 1 warm-up run + n measured runs ----------------------------------


def direct(ctx: Ctx, n: int) -> list[Sample]:
    async def go() -> list[Sample]:
        async with DirectCaller(ctx.invokeai) as caller:
            out = []
            for _ in range(n + 1):
                start = time.perf_counter()
                item_id, known = await caller.run(radius())
                out.append(Sample(item_id, start, known))
            return out[1:]

    return asyncio.run(go())


def _tiny_definition() -> WorkflowDefinition:
    return WorkflowDefinition.from_dict(tiny_blur_workflow(use_cache=False))


def ours_sync(ctx: Ctx, n: int) -> list[Sample]:
    out = []
    with InvokeAIClient.from_url(ctx.invokeai) as client:
        wf = client.workflow_repo.create_workflow(_tiny_definition())
        for _ in range(n + 1):
            wf.set_input_value(1, radius())
            start = time.perf_counter()
            run = wf.submit_sync()
            wf.wait_for_completion_sync(timeout=60)
            out.append(Sample(run.item_id, start, time.perf_counter()))
    return out[1:]


def ours_async(ctx: Ctx, n: int) -> list[Sample]:
    async def go() -> list[Sample]:
        out = []
        async with InvokeAIClient.from_url(ctx.invokeai) as client:
            wf = await client.workflow_repo.acreate_workflow(_tiny_definition())
            for _ in range(n + 1):
                wf.set_input_value(1, radius())
                start = time.perf_counter()
                run = await wf.submit()
                await wf.wait_for_completion(timeout=60)
                out.append(Sample(run.item_id, start, time.perf_counter()))
        return out[1:]

    return asyncio.run(go())


def _older(mode: str) -> Callable[[Ctx, int], list[Sample]]:
    def older(ctx: Ctx, n: int) -> list[Sample]:
        answer = run_driver(["runs", ctx.invokeai, str(ctx.tiny_path), mode, str(n + 1), "10"])
        if "error" in answer:
            return [Sample(None, 0.0, error=answer["error"])]
        older.note = _older_note(answer)  # type: ignore[attr-defined]
        samples = [
            Sample(r.get("item_id"), r["start"], r.get("known"), r.get("error", ""))
            for r in answer["runs"]
        ]
        return samples[1:]

    older.note = ""  # type: ignore[attr-defined]
    return older


def _older_note(answer: dict[str, Any]) -> str:
    parts = []
    if answer.get("refused"):
        parts.append(
            f"default create_workflow refused ({answer['refused']}); ran with validate=False"
        )
    parts.append(f"it found {answer['inputs']} of 2 form inputs")
    return "; ".join(parts)


def service(ctx: Ctx, n: int) -> list[Sample]:
    out = []
    with httpx.Client(base_url=ctx.gateway, timeout=60) as http:
        for _ in range(n + 1):
            start = time.perf_counter()
            out.append(_service_run(http, ctx.workflow_id, start))
    return out[1:]


def _service_run(http: httpx.Client, workflow_id: str, start: float) -> Sample:
    response = http.post(f"/workflows/{workflow_id}/runs", json={"inputs": {"1": radius()}})
    if response.status_code != 202:
        return Sample(None, start, error=f"POST run answered {response.status_code}")
    run = response.json()
    item_id = run.get("item_id")  # None in a 202 answered before InvokeAI took the run
    with connect_sse(http, "GET", f"/runs/{run['id']}/events") as source:
        for sse in source.iter_sse():
            if sse.event == "run.queued":
                item_id = json.loads(sse.data)["data"]["item_id"]
            elif sse.event in SSE_TERMINAL:
                known = time.perf_counter()
                error = "" if sse.event == "run.succeeded" else sse.event
                return Sample(item_id, start, known, error)
    return Sample(item_id, start, error="the stream ended without a terminal event")


CONTENDERS: dict[str, Callable[[Ctx, int], list[Sample]]] = {
    "direct (httpx + Socket.IO)": direct,
    "ours, sync": ours_sync,
    "ours, async": ours_async,
    "older 1.1.1, sync": _older("sync"),
    "older 1.1.1, async": _older("async"),
    "gateway (POST run + SSE)": service,
}


def tiny_runs(
    ctx: Ctx, rounds: int, per_round: int, names: tuple[str, ...] = tuple(CONTENDERS)
) -> dict[str, Outcome]:
    """Scenarios 1 and 2: every contender in turn, ``rounds`` times (drift hits them all)."""
    outcomes = {name: Outcome() for name in names}
    with CompletionListener(ctx.invokeai) as listener:
        for r in range(rounds):
            order = list(names) if r % 2 == 0 else list(reversed(names))
            for name in order:
                print(f"  round {r + 1}/{rounds}: {name}", flush=True)
                try:
                    samples = CONTENDERS[name](ctx, per_round)
                except Exception as exc:  # the row says how this contender failed
                    samples = [Sample(None, 0.0, error=f"{type(exc).__name__}: {exc}"[:200])]
                _record(outcomes[name], samples, listener)
    for name in names:
        outcomes[name].note = getattr(CONTENDERS[name], "note", "")
    return outcomes


def _record(outcome: Outcome, samples: list[Sample], listener: CompletionListener) -> None:
    for s in samples:
        if s.error or s.known is None:
            outcome.errors.append(s.error or "no completion seen")
            continue
        outcome.e2e.append((s.known - s.start) * 1000)
        if s.item_id is None:
            continue
        try:
            ended = listener.wait_for(s.item_id, timeout=10)
        except TimeoutError:  # the reference listener missed it: no delay to compute
            continue
        outcome.delay.append((s.known - ended) * 1000)


# -- 3. submission overhead ----------------------------------------------------------------------


@dataclass
class Submissions:
    """Milliseconds per call: until the answer, and until InvokeAI announced the batch."""

    direct: list[float] = field(default_factory=list)
    gateway: list[float] = field(default_factory=list)
    direct_held: list[float] = field(default_factory=list)
    gateway_held: list[float] = field(default_factory=list)


def submission_overhead(ctx: Ctx, n: int) -> Submissions:
    """Direct ``enqueue_batch`` against the gateway's POST run, alternating, with the
    processor paused.

    The gateway answers 202 once the run is stored, before its background enqueue, so each
    call is also timed until an independent Socket.IO listener sees InvokeAI announce its
    batch enqueued (``*_held``); waiting for that keeps the gateway's enqueue from
    overlapping the next timed call.
    """
    out = Submissions()
    with (
        httpx.Client(base_url=f"{ctx.invokeai}/api/v1", timeout=60) as ivk,
        httpx.Client(base_url=ctx.gateway, timeout=60) as gw,
        BatchEnqueuedListener(ctx.invokeai) as listener,
    ):
        ivk.put("/queue/default/processor/pause").raise_for_status()
        try:
            for i in range(n + 1):
                first_direct = i % 2 == 0
                for direct in (first_direct, not first_direct):
                    start = time.perf_counter()
                    if direct:
                        r = ivk.post("/queue/default/enqueue_batch", json=enqueue_body(radius()))
                    else:
                        body = {"inputs": {"1": radius()}}
                        r = gw.post(f"/workflows/{ctx.workflow_id}/runs", json=body)
                    if r.status_code not in (200, 202):
                        raise RuntimeError(f"{r.request.url.path} answered {r.status_code}")
                    took = (time.perf_counter() - start) * 1000
                    batch_id = r.json()["batch"]["batch_id"] if direct else r.json()["batch_id"]
                    held = (listener.wait_for(batch_id) - start) * 1000
                    if i:  # the first pair warms connections up
                        (out.direct if direct else out.gateway).append(took)
                        (out.direct_held if direct else out.gateway_held).append(held)
        finally:
            ivk.put("/queue/default/cancel_all_except_current").raise_for_status()
            ivk.put("/queue/default/processor/resume").raise_for_status()
    time.sleep(1)  # let the gateway record its canceled runs before the next scenario
    return out


# -- 4. throughput -------------------------------------------------------------------------------


@dataclass
class Rate:
    """Runs per second of one round, counting only runs that succeeded; the failures' errors."""

    per_second: float
    errors: list[str] = field(default_factory=list)


async def _callers(runs: int, callers: int, one_run: Callable[[], Any]) -> Rate:
    todo = iter(range(runs))
    errors: list[str] = []

    async def one_caller() -> None:
        for _ in todo:
            try:
                await one_run()
            except Exception as exc:  # a failed run is reported, and the callers go on
                errors.append(f"{type(exc).__name__}: {exc}"[:200])

    start = time.perf_counter()
    await asyncio.gather(*(one_caller() for _ in range(callers)))
    return Rate((runs - len(errors)) / (time.perf_counter() - start), errors)


async def throughput_direct(ctx: Ctx, runs: int, callers: int) -> Rate:
    """``runs`` tiny runs from ``callers`` concurrent direct callers."""
    async with DirectCaller(ctx.invokeai) as caller:
        return await _callers(runs, callers, lambda: caller.run(radius()))


async def throughput_service(ctx: Ctx, runs: int, callers: int) -> Rate:
    """The same through the gateway: each run is POST run, then its SSE stream to the end."""
    limits = httpx.Limits(max_connections=callers * 2 + 10)
    async with httpx.AsyncClient(base_url=ctx.gateway, timeout=300, limits=limits) as http:
        return await _callers(runs, callers, lambda: _service_run_async(http, ctx.workflow_id))


async def _service_run_async(http: httpx.AsyncClient, workflow_id: str) -> None:
    response = await http.post(f"/workflows/{workflow_id}/runs", json={"inputs": {"1": radius()}})
    if response.status_code != 202:
        raise RuntimeError(f"POST run answered {response.status_code}: {response.text[:120]}")
    run_id = response.json()["id"]
    async with aconnect_sse(http, "GET", f"/runs/{run_id}/events") as source:
        async for sse in source.aiter_sse():
            if sse.event in SSE_TERMINAL:
                if sse.event != "run.succeeded":
                    raise RuntimeError(f"gateway run {run_id}: {sse.data[:120]}")
                return
    raise RuntimeError(f"gateway run {run_id}: the stream ended without a terminal event")


def throughput(ctx: Ctx, rounds: int, runs: int, callers: int) -> tuple[list[Rate], list[Rate]]:
    """(direct rounds, gateway rounds), alternating which goes first."""
    direct_rates: list[Rate] = []
    gateway_rates: list[Rate] = []
    for r in range(rounds):
        order = ["d", "g"] if r % 2 == 0 else ["g", "d"]
        for who in order:
            print(f"  round {r + 1}/{rounds}: {'direct' if who == 'd' else 'gateway'}", flush=True)
            if who == "d":
                direct_rates.append(asyncio.run(throughput_direct(ctx, runs, callers)))
            else:
                gateway_rates.append(asyncio.run(throughput_service(ctx, runs, callers)))
    return direct_rates, gateway_rates
