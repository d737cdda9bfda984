"""The gateway closes a completed run from its events when they tell everything, and reads
the queue item only when they do not (a missed event): real gateway, real InvokeAI."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from app.runs.outputs import compute_outputs
from invokeai_py_client import InvokeAIClient
from invokeai_py_client.events.models import InvocationCompleteEvent, InvokeAIEvent
from invokeai_py_client.events.session import Subscription
from invokeai_py_client.queue.models import IvkJob
from tests.app.live_server import Served, serve_gateway
from tests.support.workflow_factory import tiny_blur_workflow

pytestmark = pytest.mark.invokeai

WAIT = {"Prefer": "wait=60"}


@pytest.fixture
async def served(invokeai_url: str, tmp_path: Any) -> AsyncIterator[tuple[Served, list[int]]]:
    """A gateway whose reads of queue items are counted."""
    async with serve_gateway(tmp_path, invokeai_url) as gw:
        client: InvokeAIClient = gw.app.state.client
        reads: list[int] = []
        original: Callable[[int], Awaitable[IvkJob]] = client.queue_repo.aget_item

        async def counted(item_id: int) -> IvkJob:
            reads.append(item_id)
            return await original(item_id)

        client.queue_repo.aget_item = counted  # type: ignore[method-assign]
        yield gw, reads


async def run_blur(gw: Served) -> tuple[dict[str, Any], dict[str, Any]]:
    async with httpx.AsyncClient(base_url=gw.url, timeout=60) as http:
        workflow = tiny_blur_workflow(use_cache=False)
        wf = (await http.post("/workflows", json=workflow)).json()
        body = {"inputs": {"1": round(random.uniform(1.0, 9.0), 4)}}  # nothing from the cache
        run = (await http.post(f"/workflows/{wf['id']}/runs", json=body, headers=WAIT)).json()
    assert run["status"] == "succeeded", run
    return workflow, run


async def outputs_read_back(aclient: InvokeAIClient, workflow: dict[str, Any], item_id: int) -> Any:
    item = await aclient.queue_repo.aget_item(item_id)
    return [
        (o["node_id"], o["image_names"])
        for o in compute_outputs(workflow, item.model_dump(mode="json"))
    ]


async def test_a_completed_run_is_closed_from_its_events(
    served: tuple[Served, list[int]], aclient: InvokeAIClient
) -> None:
    gw, reads = served
    workflow, run = await run_blur(gw)
    assert run["item_id"] not in reads, "the gateway read the item although its events told all"
    ours = [(o["node_id"], o["image_names"]) for o in run["outputs"]]
    assert ours and ours == await outputs_read_back(aclient, workflow, run["item_id"])


async def test_a_missed_node_event_means_the_item_is_read(
    served: tuple[Served, list[int]], aclient: InvokeAIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw, reads = served
    dropped: list[str] = []
    original = Subscription.put

    def put(self: Subscription, event: InvokeAIEvent) -> None:
        if isinstance(event, InvocationCompleteEvent) and not dropped:
            dropped.append(event.invocation_source_id)  # lost on its way to the follower
            return
        original(self, event)

    monkeypatch.setattr(Subscription, "put", put)
    workflow, run = await run_blur(gw)
    assert dropped and reads.count(run["item_id"]) == 1
    ours = [(o["node_id"], o["image_names"]) for o in run["outputs"]]
    assert ours and ours == await outputs_read_back(aclient, workflow, run["item_id"])
