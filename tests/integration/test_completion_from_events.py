"""A completed run is known from its events: every node's result came with its
``invocation_complete``, so the queue item is not read back; when an event is missed, it is.

Against the real InvokeAI: the outputs rebuilt from the events equal those of the item read
over HTTP, and a run whose events have a hole (a dropped ``invocation_complete``, a resync)
still ends with the right outputs, from one read of its item.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from invokeai_py_client import InvokeAIClient
from invokeai_py_client.events.models import (
    EventsResyncEvent,
    InvocationCompleteEvent,
    InvokeAIEvent,
)
from invokeai_py_client.events.session import Subscription
from invokeai_py_client.queue.models import IvkJob
from tests.support.workflow_factory import tiny_blur_workflow

pytestmark = pytest.mark.invokeai


@pytest.fixture
def item_reads(client: InvokeAIClient, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The item ids the client reads back over HTTP (``queue_repo.aget_item``)."""
    reads: list[int] = []
    original: Callable[[int], Awaitable[IvkJob]] = client.queue_repo.aget_item

    async def counted(item_id: int) -> IvkJob:
        reads.append(item_id)
        return await original(item_id)

    monkeypatch.setattr(client.queue_repo, "aget_item", counted)
    yield reads


def outputs(client: InvokeAIClient, wf: Any, job: IvkJob) -> tuple[Any, Any]:
    return (
        [dataclasses.asdict(o) for o in wf.map_outputs_to_images(job)],
        [(v.node_id, v.results) for v in wf.map_output_values(job)],
    )


def blur(client: InvokeAIClient) -> Any:
    wf = client.workflow_repo.create_workflow(tiny_blur_workflow(use_cache=False))
    wf.set_input_value(1, round(random.uniform(1.0, 9.0), 4))  # nothing from the node cache
    return wf


def caption(client: InvokeAIClient, workflows_dir: Path) -> Any:
    data = json.loads((workflows_dir / "caption_and_blurred_canvas.json").read_text())
    for node in data["nodes"]:
        node["data"]["useCache"] = False
    return client.workflow_repo.create_workflow(data)


def test_a_completed_run_is_known_from_its_events_without_reading_the_item(
    client: InvokeAIClient, item_reads: list[int], workflows_dir: Path
) -> None:
    for wf in (blur(client), caption(client, workflows_dir)):
        run = wf.submit_sync()
        job = wf.wait_for_completion_sync(timeout=120)
        assert item_reads == [], "the item was read back although its events told all"
        assert job.status == "completed" and job.item_id == run.item_id
        assert job.session is not None and job.session["results"]
        read = client.queue_repo.get_item(job.item_id)
        assert outputs(client, wf, job) == outputs(client, wf, read)  # the same outputs
        assert outputs(client, wf, job)[0] or outputs(client, wf, job)[1]
        item_reads.clear()


def _drop_first_complete(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Lose one ``invocation_complete`` on its way to the runs (as a dropped frame would)."""
    dropped: list[str] = []
    original = Subscription.put

    def put(self: Subscription, event: InvokeAIEvent) -> None:
        if isinstance(event, InvocationCompleteEvent) and not dropped:
            dropped.append(event.invocation_source_id)
            return
        original(self, event)

    monkeypatch.setattr(Subscription, "put", put)
    return dropped


def test_a_missed_node_event_means_the_item_is_read_and_the_outputs_stay_right(
    client: InvokeAIClient, item_reads: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = blur(client)
    dropped = _drop_first_complete(monkeypatch)
    run = wf.submit_sync()
    job = wf.wait_for_completion_sync(timeout=120)
    assert dropped, "no event was dropped: the test proves nothing"
    assert item_reads == [run.item_id]  # read back once, because an event was missing
    assert [o.image_names for o in wf.map_outputs_to_images(job)] != [[]]
    assert outputs(client, wf, job) == outputs(client, wf, client.queue_repo.get_item(job.item_id))


def test_a_resync_during_the_run_means_the_item_is_read(
    client: InvokeAIClient, item_reads: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = blur(client)
    original = Subscription.put
    resynced: list[bool] = []

    def put(self: Subscription, event: InvokeAIEvent) -> None:
        if isinstance(event, InvocationCompleteEvent) and not resynced:
            resynced.append(True)  # as after a reconnect: events may have been lost
            original(self, EventsResyncEvent(reason="reconnected"))
        original(self, event)

    monkeypatch.setattr(Subscription, "put", put)
    run = wf.submit_sync()
    job = wf.wait_for_completion_sync(timeout=120)
    assert resynced and run.item_id in item_reads
    assert [o.image_names for o in wf.map_outputs_to_images(job)] != [[]]
