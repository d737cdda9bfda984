"""The queue repository against a real InvokeAI (and its enqueue recovery with a lossy link)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from invokeai_py_client import (
    APIConnectionError,
    InvokeAIClient,
    NotFoundError,
    UnprocessableEntityError,
)
from invokeai_py_client.queue import EnqueueResult, IvkJob, JobStatus

pytestmark = pytest.mark.invokeai


def add_body(a: int = 1, *, runs: int = 1, batch_id: str | None = None) -> dict[str, Any]:
    """A one-node graph (integer addition) as an enqueue_batch body; no model needed."""
    graph = {
        "id": str(uuid.uuid4()),
        "nodes": {"sum": {"id": "sum", "type": "add", "a": a, "b": 2, "use_cache": False}},
        "edges": [],
    }
    batch: dict[str, Any] = {"graph": graph, "runs": runs, "origin": "client-tests"}
    if batch_id:
        batch["batch_id"] = batch_id
    return {"batch": batch, "prepend": False}


@pytest.fixture
def paused(client: InvokeAIClient) -> Iterator[InvokeAIClient]:
    """The processor paused (items stay pending) and the queue cleared afterwards."""
    client.queue_repo.pause_processor()
    try:
        yield client
    finally:
        client.queue_repo.clear()
        client.queue_repo.resume_processor()


def test_status_enqueue_get_list_and_batch_lookup(paused: InvokeAIClient) -> None:
    repo = paused.queue_repo
    result = repo.enqueue_batch(add_body(runs=3))
    assert isinstance(result, EnqueueResult)
    assert result.enqueued == result.requested == 3 and not result.partial
    assert result.item_ids == sorted(result.item_ids) and len(result.item_ids) == 3

    status = repo.get_queue_status()
    assert status.processor.is_started is False or status.processor.is_processing is False
    assert status.queue.pending >= 3

    job = repo.get_item(result.item_ids[0])
    assert isinstance(job, IvkJob)
    assert job.status is JobStatus.PENDING and job.batch_id == result.batch_id
    assert job.origin == "client-tests" and job.session is not None

    by_batch = repo.get_items_by_batch(result.batch_id)
    assert [j.item_id for j in by_batch] == result.item_ids
    assert repo.get_batch_status(result.batch_id).pending == 3
    assert repo.get_items_by_batch(str(uuid.uuid4())) == []

    assert set(result.item_ids) <= set(repo.list_item_ids())
    page = repo.list_items(limit=2)
    assert [j.item_id for j in page] == sorted(result.item_ids, reverse=True)[:2]
    assert {j.item_id for j in repo.list_all_items()} >= set(result.item_ids)


def test_cancel_item_and_cancel_by_batch(paused: InvokeAIClient) -> None:
    repo = paused.queue_repo
    first = repo.enqueue_batch(add_body())
    canceled = repo.cancel_item(first.item_ids[0])
    assert canceled.status is JobStatus.CANCELED
    assert repo.get_item(first.item_ids[0]).status is JobStatus.CANCELED

    second = repo.enqueue_batch(add_body(runs=2))
    assert repo.cancel_by_batch_ids([second.batch_id]) == 2
    assert {j.status for j in repo.get_items_by_batch(second.batch_id)} == {JobStatus.CANCELED}


def test_pause_resume_and_clear(client: InvokeAIClient) -> None:
    repo = client.queue_repo
    assert repo.pause_processor().is_started is False
    try:
        repo.enqueue_batch(add_body())
        assert repo.clear() >= 1
        assert repo.get_queue_status().queue.total == 0
    finally:
        assert repo.resume_processor().is_started is True


def test_unknown_item_and_refused_batch_raise_typed_errors(client: InvokeAIClient) -> None:
    with pytest.raises(NotFoundError):
        client.queue_repo.get_item(987654321)
    body = add_body()
    body["batch"]["graph"]["nodes"]["sum"]["type"] = "no_such_node"
    with pytest.raises(UnprocessableEntityError) as info:
        client.queue_repo.enqueue_batch(body)
    assert "no_such_node" in json.dumps(info.value.detail)


class LossyTransport(httpx.AsyncBaseTransport):
    """Sends enqueue_batch to the real server, then loses the answer (timeout or 503)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.enqueue_posts = 0
        self._real = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/enqueue_batch"):
            return await self._real.handle_async_request(request)
        self.enqueue_posts += 1
        if self.mode == "refused":
            raise httpx.ConnectError("connection refused", request=request)
        response = await self._real.handle_async_request(request)
        await response.aread()
        if self.mode == "timeout":
            raise httpx.ReadTimeout("answer lost", request=request)
        return httpx.Response(503, json={"detail": "proxy lost the answer"}, request=request)

    async def aclose(self) -> None:
        await self._real.aclose()


@pytest.fixture
async def lossy(invokeai_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    transport = LossyTransport(request.param)
    client = InvokeAIClient.from_url(invokeai_url, transport=transport)
    await client.queue_repo.apause_processor()
    try:
        yield client, transport
    finally:
        await client.queue_repo.aclear()
        await client.queue_repo.aresume_processor()
        await client.aclose()


@pytest.mark.parametrize("lossy", ["timeout", "503"], indirect=True)
async def test_lost_enqueue_answer_is_recovered_by_batch_id_never_resent(lossy: Any) -> None:
    client, transport = lossy
    batch_id = str(uuid.uuid4())
    result = await client.queue_repo.aenqueue_batch(add_body(runs=2, batch_id=batch_id))
    assert transport.enqueue_posts == 1
    assert result.recovered and result.batch_id == batch_id
    assert result.enqueued == 2 and result.requested == 2
    items = await client.queue_repo.aget_items_by_batch(batch_id)
    assert [j.item_id for j in items] == result.item_ids


@pytest.mark.parametrize("lossy", ["refused"], indirect=True)
async def test_enqueue_that_never_arrived_raises(lossy: Any) -> None:
    client, transport = lossy
    body = add_body()
    with pytest.raises(APIConnectionError):
        await client.queue_repo.aenqueue_batch(body)
    assert transport.enqueue_posts == 1
    assert "batch_id" not in body["batch"]  # the caller's body is not modified


async def test_partial_enqueue_is_reported() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)
        answer = {
            "queue_id": "default",
            "enqueued": 1,
            "requested": 5,
            "priority": 0,
            "item_ids": [9],
            "batch": sent["batch"],
        }
        return httpx.Response(200, json=answer)

    client = InvokeAIClient("fake", 1, transport=httpx.MockTransport(handler))
    try:
        result = await client.queue_repo.aenqueue_batch(add_body(runs=5))
        assert result.partial and result.enqueued == 1 and result.requested == 5
        assert uuid.UUID(result.batch_id)  # minted on our side
    finally:
        await client.aclose()
