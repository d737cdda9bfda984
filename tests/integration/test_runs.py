"""Runs on a real InvokeAI: submit, wait, events, failure, cancel, timeout, concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from invokeai_py_client import (
    InvokeAIClient,
    RunCanceledError,
    RunFailedError,
    RunTimeoutError,
)
from invokeai_py_client.queue import IvkJob, JobStatus
from invokeai_py_client.workflow.definition import WorkflowDefinition
from invokeai_py_client.workflow.handle import WorkflowHandle

pytestmark = pytest.mark.invokeai

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"


def load(name: str) -> WorkflowDefinition:
    return WorkflowDefinition.from_file(WORKFLOWS / f"{name}.json")


def sum_of(wf: WorkflowHandle, job: IvkJob) -> int:
    (value,) = [v for v in wf.map_output_values(job) if v.node_id == "add-sum"]
    return int(value.results[0]["value"])


@pytest.fixture
def paused(client: InvokeAIClient) -> Iterator[InvokeAIClient]:
    client.queue_repo.pause_processor()
    try:
        yield client
    finally:
        client.queue_repo.resume_processor()


@pytest.fixture
async def apaused(aclient: InvokeAIClient) -> AsyncIterator[InvokeAIClient]:
    await aclient.queue_repo.apause_processor()
    try:
        yield aclient
    finally:
        await aclient.queue_repo.aresume_processor()


def test_readme_flow_sync(invokeai_url: str) -> None:
    """The README's five lines, as written (with this repo's workflow and a fitting value)."""
    from invokeai_py_client import InvokeAIClient, WorkflowDefinition

    client = InvokeAIClient.from_url(invokeai_url)
    try:
        wf = client.workflow_repo.create_workflow(
            WorkflowDefinition.from_file(WORKFLOWS / "blur_blank_canvas.json")
        )
        listed = [
            (inp.input_index, inp.label, inp.field_name, type(inp.field).__name__)
            for inp in wf.list_inputs()
        ]
        assert listed[0] == (0, "Width", "width", "IvkIntegerField")
        wf.set_input_value(0, 72)
        item = wf.wait_for_completion_sync(timeout=120) if wf.submit_sync() else None
        assert item is not None and item.status is JobStatus.COMPLETED
        mappings = wf.map_outputs_to_images(item)
        assert [m.node_id for m in mappings] == ["blur-image"]
        assert len(mappings[0].image_names) == 1
        # The image is real and has the width we asked for.
        name = mappings[0].image_names[0]
        image = client._portal.call(client._http.get_json(f"/images/i/{name}"))
        assert image["width"] == 72 and image["height"] == 48
    finally:
        client.close()


async def test_async_submit_calls_back_with_its_own_events(aclient: InvokeAIClient) -> None:
    wf = await aclient.workflow_repo.acreate_workflow(load("add_two_integers"))
    wf.set_input_value(0, 20)
    seen: dict[str, list[dict[str, Any]]] = {"started": [], "complete": [], "status": []}

    async def on_complete(evt: dict[str, Any]) -> None:  # async callbacks work too
        seen["complete"].append(evt)

    run = await wf.submit(
        on_invocation_started=seen["started"].append,
        on_invocation_complete=on_complete,
        on_status_changed=seen["status"].append,
    )
    job = await wf.wait_for_completion(timeout=60)
    assert job.item_id == run.item_id and sum_of(wf, job) == 23
    assert {e["invocation_source_id"] for e in seen["complete"]} == {"add-a", "add-b", "add-sum"}
    assert {e["event_type"] for e in seen["started"]} == {"invocation_started"}
    assert all(e["item_id"] == run.item_id for lst in seen.values() for e in lst)
    assert seen["status"][-1]["status"] == "completed"
    assert run.finished and run.status is JobStatus.COMPLETED and run.job is job


async def test_monitor_yields_event_dicts_until_the_end(aclient: InvokeAIClient) -> None:
    wf = await aclient.workflow_repo.acreate_workflow(load("blur_blank_canvas"))
    events = [evt async for evt in wf.submit_sync_monitor_async()]
    kinds = [e["event_type"] for e in events]
    assert "invocation_started" in kinds and "invocation_complete" in kinds
    assert events[-1]["event_type"] == "queue_item_status_changed"
    assert events[-1]["status"] == "completed"
    run = wf.latest_run
    assert run is not None and all(e.get("item_id") in (None, run.item_id) for e in events)
    job = await wf.wait_for_completion(timeout=5)  # already over: answered at once
    assert len(wf.map_outputs_to_images(job)[0].image_names) == 1


async def test_failed_run_raises_with_the_servers_account(aclient: InvokeAIClient) -> None:
    wf = await aclient.workflow_repo.acreate_workflow(load("blur_missing_image"))
    errors: list[dict[str, Any]] = []
    await wf.submit(on_invocation_error=errors.append)
    with pytest.raises(RunFailedError) as info:
        await wf.wait_for_completion(timeout=60)
    err = info.value
    assert err.error_type == "ImageRecordNotFoundException"
    assert err.error_message == "Image record not found"
    assert err.error_traceback and "Traceback" in err.error_traceback
    assert err.node_id == "missing-source" and err.node_type == "image"
    assert "missing-source" in str(err) and "Unknown error" not in str(err)
    latest = wf.latest_run
    assert latest is not None and err.item_id == latest.item_id
    for _ in range(100):  # the invocation_error event comes after the failed status
        if errors:
            break
        await asyncio.sleep(0.05)
    assert [e["error_type"] for e in errors] == ["ImageRecordNotFoundException"]
    assert errors[0]["invocation_source_id"] == "missing-source"


def test_failed_run_sync(client: InvokeAIClient) -> None:
    wf = client.workflow_repo.create_workflow(load("blur_missing_image"))
    wf.submit_sync()
    with pytest.raises(RunFailedError) as info:
        wf.wait_for_completion_sync(timeout=60)
    assert info.value.node_id == "missing-source"


def test_canceled_run_raises(paused: InvokeAIClient) -> None:
    wf = paused.workflow_repo.create_workflow(load("add_two_integers"))
    run = wf.submit_sync()
    assert wf.cancel().status is JobStatus.CANCELED
    with pytest.raises(RunCanceledError) as info:
        wf.wait_for_completion_sync(timeout=30)
    assert info.value.item_id == run.item_id


async def test_bulk_cancel_by_batch_ends_the_wait(apaused: InvokeAIClient) -> None:
    wf = await apaused.workflow_repo.acreate_workflow(load("add_two_integers"))
    run = await wf.submit()
    waiter = asyncio.create_task(wf.wait_for_completion(timeout=60))
    await asyncio.sleep(0.2)
    assert await apaused.queue_repo.acancel_by_batch_ids([run.batch_id]) == 1
    with pytest.raises(RunCanceledError):
        await waiter


async def test_clearing_the_queue_ends_the_wait(apaused: InvokeAIClient) -> None:
    wf = await apaused.workflow_repo.acreate_workflow(load("add_two_integers"))
    await wf.submit(subscribe_events=False)
    waiter = asyncio.create_task(wf.wait_for_completion(timeout=60))
    await asyncio.sleep(0.2)
    await apaused.queue_repo.aclear()
    with pytest.raises(RunCanceledError):
        await waiter


async def test_timeout_raises_run_timeout(apaused: InvokeAIClient) -> None:
    wf = await apaused.workflow_repo.acreate_workflow(load("add_two_integers"))
    run = await wf.submit()
    with pytest.raises(RunTimeoutError) as info:
        await wf.wait_for_completion(timeout=0.3)
    assert info.value.item_id == run.item_id
    await wf.acancel()


def test_timeout_sync(paused: InvokeAIClient) -> None:
    wf = paused.workflow_repo.create_workflow(load("add_two_integers"))
    wf.submit_sync()
    with pytest.raises(RunTimeoutError):
        wf.wait_for_completion_sync(timeout=0.3)
    wf.cancel()


async def test_run_that_ended_before_waiting_began(aclient: InvokeAIClient) -> None:
    wf = await aclient.workflow_repo.acreate_workflow(load("add_two_integers"))
    wf.set_input_value(1, 100)
    run = await wf.submit(subscribe_events=False)  # nobody follows it
    assert run.item_id is not None
    for _ in range(600):
        if (await aclient.queue_repo.aget_item(run.item_id)).is_terminal:
            break
        await asyncio.sleep(0.05)
    job = await wf.wait_for_completion(timeout=5)
    assert sum_of(wf, job) == 102


def test_sync_wait_after_async_submit(client: InvokeAIClient) -> None:
    """A run submitted on one loop and waited for on another (the portal)."""
    wf = client.workflow_repo.create_workflow(load("add_two_integers"))
    wf.set_input_value(0, 5)

    async def submit_elsewhere() -> None:
        other = InvokeAIClient.from_url(client.base_url)
        try:
            wf._client = other  # a caller's own loop and hub
            await wf.submit()
            await asyncio.sleep(0)
        finally:
            wf._client = client
            await other.aclose()

    asyncio.run(submit_elsewhere())
    job = wf.wait_for_completion_sync(timeout=60)
    assert sum_of(wf, job) == 8


async def test_several_runs_of_one_handle_each_keep_their_job(aclient: InvokeAIClient) -> None:
    wf = await aclient.workflow_repo.acreate_workflow(load("add_two_integers"))
    wf.set_input_value(0, 1)
    first = await wf.submit()
    wf.set_input_value(0, 10)
    second = await wf.submit()
    assert wf.runs == [first, second] and wf.latest_run is second
    latest = await wf.wait_for_completion(timeout=60)
    earlier = await wf.wait_for_completion(timeout=60, run=first)
    assert latest.item_id == second.item_id and sum_of(wf, latest) == 13
    assert earlier.item_id == first.item_id and sum_of(wf, earlier) == 4


async def test_fifty_concurrent_runs_each_see_only_their_own_events(
    aclient: InvokeAIClient,
) -> None:
    async def one(i: int) -> tuple[int, Any, list[dict[str, Any]], IvkJob, WorkflowHandle]:
        wf = await aclient.workflow_repo.acreate_workflow(load("add_two_integers"))
        wf.set_input_value(0, i)
        events: list[dict[str, Any]] = []
        run = await wf.submit(
            on_invocation_started=events.append,
            on_invocation_complete=events.append,
            on_status_changed=events.append,
        )
        job = await wf.wait_for_completion(timeout=240)
        return i, run, events, job, wf

    results = await asyncio.gather(*(one(i) for i in range(50)))
    hub = await aclient.event_hub()
    for _ in range(200):  # late events may still be handed to callbacks for a moment
        if hub.subscription_count == 0:
            break
        await asyncio.sleep(0.05)
    assert hub.subscription_count == 0  # every run let go of its subscription
    item_ids = {run.item_id for _, run, _, _, _ in results}
    assert len(item_ids) == 50
    for i, run, events, job, wf in results:
        assert job.item_id == run.item_id and sum_of(wf, job) == i + 3
        assert events and {e["item_id"] for e in events} == {run.item_id}
        assert {e["batch_id"] for e in events} == {run.batch_id}
        completes = [e for e in events if e["event_type"] == "invocation_complete"]
        assert {e["invocation_source_id"] for e in completes} == {"add-a", "add-b", "add-sum"}


async def test_a_run_that_ends_during_a_reconnect_is_not_waited_on_forever(
    apaused: InvokeAIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import invokeai_py_client.queue.run as run_module

    # No safety re-check by timer: only the reconnect's resync can save the waiter.
    monkeypatch.setattr(run_module, "RECHECK_INTERVAL", 600.0)
    wf = await apaused.workflow_repo.acreate_workflow(load("add_two_integers"))
    wf.set_input_value(0, 1000)
    run = await wf.submit()
    assert run.item_id is not None
    waiter = asyncio.create_task(wf.wait_for_completion(timeout=60))
    hub = await apaused.event_hub()
    sio = hub._sio
    assert sio is not None
    sio.reconnection_delay = sio.reconnection_delay_max = 3.0  # stay away for a while
    await sio.eio.ws.close()  # the link drops...
    await apaused.queue_repo.aresume_processor()  # ...and the run ends meanwhile
    for _ in range(200):
        if (await apaused.queue_repo.aget_item(run.item_id)).is_terminal:
            break
        await asyncio.sleep(0.02)
    assert not hub.connected and not waiter.done()  # its events went nowhere
    job = await waiter
    assert job.item_id == run.item_id and sum_of(wf, job) == 1003
    sio.reconnection_delay, sio.reconnection_delay_max = 0.5, 5.0
