"""Issue 2's client benchmarks, against a real InvokeAI on loopback.

(a) completion notice delay: the server's completion event (seen by an independent listener)
    to ``wait_for_completion`` / ``wait_for_completion_sync`` returning; 50 tiny runs each.
(b) preparation: list inputs and build the graph for the largest shipped workflow and a
    synthetic 1,000-node one.
(c) 50 tiny runs at once on one async client, against the same 50 one by one directly over
    HTTP (enqueue, then poll the item).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from invokeai_py_client import InvokeAIClient, WorkflowDefinition
from invokeai_py_client.workflow.graph import build_graph
from tests.support.invokeai_server import shipped_workflows_dir
from tests.support.workflow_factory import chain_workflow, tiny_blur_workflow

from ._listener import CompletionListener
from ._report import Report, Row

RUNS = 50


def _tiny(client: InvokeAIClient) -> Any:
    return client.workflow_repo.create_workflow(
        WorkflowDefinition.from_dict(tiny_blur_workflow(use_cache=False))
    )


async def completion_delay_async(url: str, listener: CompletionListener) -> list[float]:
    delays = []
    async with InvokeAIClient.from_url(url) as client:
        wf = await client.workflow_repo.acreate_workflow(
            WorkflowDefinition.from_dict(tiny_blur_workflow(use_cache=False))
        )
        for i in range(RUNS):
            wf.set_input_value(1, 1.0 + i / 100)
            run = await wf.submit()
            await wf.wait_for_completion(timeout=60)
            returned = time.perf_counter()
            assert run.item_id is not None
            delays.append((returned - listener.wait_for(run.item_id)) * 1000)
    return delays


def completion_delay_sync(url: str, listener: CompletionListener) -> list[float]:
    delays = []
    with InvokeAIClient.from_url(url) as client:
        wf = _tiny(client)
        for i in range(RUNS):
            wf.set_input_value(1, 2.0 + i / 100)
            run = wf.submit_sync()
            wf.wait_for_completion_sync(timeout=60)
            returned = time.perf_counter()
            assert run.item_id is not None
            delays.append((returned - listener.wait_for(run.item_id)) * 1000)
    return delays


def _largest_shipped() -> Path:
    files = sorted(shipped_workflows_dir().glob("*.json"))
    return max(files, key=lambda p: len(json.loads(p.read_text())["nodes"]))


def preparation_times(url: str, workflow: dict[str, Any], repeat: int = 30) -> list[float]:
    """create_workflow (schemas cached) + list_inputs + build_graph, in milliseconds.

    The graph is built by the pure core rather than ``preview()``, because the shipped files
    leave their model inputs empty and ``preview()`` rightly refuses to go on without them.
    """
    times = []
    with InvokeAIClient.from_url(url) as client:
        definition = WorkflowDefinition.from_dict(workflow)
        client.workflow_repo.create_workflow(definition)  # warm the schema cache
        for _ in range(repeat):
            start = time.perf_counter()
            wf = client.workflow_repo.create_workflow(definition)
            wf.list_inputs()
            build_graph(definition)
            times.append((time.perf_counter() - start) * 1000)
    return times


async def concurrent_runs_ours(url: str) -> float:
    async with InvokeAIClient.from_url(url) as client:
        definition = WorkflowDefinition.from_dict(tiny_blur_workflow(use_cache=False))
        handles = [await client.workflow_repo.acreate_workflow(definition) for _ in range(RUNS)]
        start = time.perf_counter()

        async def one(i: int) -> None:
            wf = handles[i]
            wf.set_input_value(1, 3.0 + i / 1000 + time.time() % 1)
            await wf.submit()
            await wf.wait_for_completion(timeout=300)

        await asyncio.gather(*(one(i) for i in range(RUNS)))
        return time.perf_counter() - start


def sequential_runs_direct(url: str) -> float:
    """The baseline: plain HTTP, one run after another, polling each item to its end."""
    with InvokeAIClient.from_url(url) as client:
        wf = _tiny(client)
    start = time.perf_counter()
    with httpx.Client(base_url=f"{url}/api/v1", timeout=60) as http:
        for i in range(RUNS):
            wf.set_input_value(1, 4.0 + i / 1000 + time.time() % 1)
            body = wf.preview(batch_id=str(uuid.uuid4()))
            item_id = http.post("/queue/default/enqueue_batch", json=body).json()["item_ids"][0]
            while http.get(f"/queue/default/i/{item_id}").json()["status"] not in (
                "completed",
                "failed",
                "canceled",
            ):
                time.sleep(0.005)
    return time.perf_counter() - start


def run(url: str, report: Report) -> None:
    with CompletionListener(url) as listener:
        for _ in range(1):  # one warm-up run each, not recorded
            completion_delay_sync(url, listener)
        a = asyncio.run(completion_delay_async(url, listener))
        s = completion_delay_sync(url, listener)
    report.add(Row("a. completion notice delay", "ours, async", "ms", a, target="< 10 ms"))
    report.add(Row("a. completion notice delay", "ours, sync", "ms", s, target="< 50 ms"))

    largest = _largest_shipped()
    report.add(
        Row(
            "b. inputs + graph",
            f"largest shipped ({largest.stem})",
            "ms",
            preparation_times(url, json.loads(largest.read_text())),
            target="< 5 ms",
        )
    )
    report.add(
        Row(
            "b. inputs + graph",
            "synthetic 1,000 nodes",
            "ms",
            preparation_times(url, chain_workflow(1000), repeat=10),
            target="< 100 ms",
        )
    )

    ours, direct = [], []
    for _ in range(3):  # alternate, so drift hits both
        ours.append(asyncio.run(concurrent_runs_ours(url)))
        direct.append(sequential_runs_direct(url))
    ours_row = report.add(Row("c. 50 tiny runs, wall time", "ours, 50 at once", "s", ours))
    direct_row = report.add(
        Row("c. 50 tiny runs, wall time", "direct HTTP, one by one", "s", direct)
    )
    ours_row.ratio = ours_row.median / direct_row.median
    direct_row.ratio = 1.0
