"""``client.queue_repo``: the session queue (status, items, cancel, enqueue).

Routes are those of ``invokeai/app/api/routers/session_queue.py`` (InvokeAI 6.14), all under
``/queue/{queue_id}``. Async methods carry an ``a`` prefix; the plain name is the sync twin.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx

from .._portal import sync_twin
from ..exceptions import APIConnectionError, InvokeAIError, ServerError
from .models import (
    BatchStatus,
    EnqueueResult,
    IvkJob,
    ProcessorStatus,
    QueueAndProcessorStatus,
)

if TYPE_CHECKING:
    from ..client import InvokeAIClient

__all__ = ["QueueRepository"]

logger = logging.getLogger(__name__)

# The server refuses more ids per request (MAX_QUEUE_ITEM_IDS_PER_REQUEST).
MAX_IDS_PER_REQUEST = 1000
BATCH_SCAN_CHUNK = 200
# After an unclear enqueue failure the server may still be writing the batch: look a few times.
ENQUEUE_LOOKUP_DELAYS = (0.0, 0.5, 1.5)


def ensure_batch_id(body: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The ``enqueue_batch`` body with a batch id (the body's own, or a uuid4 minted here).

    Only the two top levels are copied (the caller's body is never changed): the graph and
    workflow below are sent as they are, and a deep copy of them cost more than the rest of
    the submission.
    """
    batch = dict(body.get("batch") or {})
    batch_id = batch.get("batch_id") or str(uuid.uuid4())
    batch["batch_id"] = batch_id
    return {**body, "batch": batch}, batch_id


def requested_count(body: Mapping[str, Any]) -> int | None:
    """How many items a batch asks for, when it has no batch ``data`` (runs only)."""
    batch = body.get("batch") or {}
    if batch.get("data"):
        return None
    runs = batch.get("runs", 1)
    return runs if isinstance(runs, int) else None


class QueueRepository:
    """Operations on the client's session queue (``client.queue_id``)."""

    def __init__(self, client: InvokeAIClient) -> None:
        self._client = client
        self._http = client._http
        self._portal = client._portal

    @property
    def _base(self) -> str:
        return f"/queue/{self._client.queue_id}"

    async def aget_queue_status(self) -> QueueAndProcessorStatus:
        """Counts by status, the current item, and whether the processor runs."""
        body = await self._http.get_json(f"{self._base}/status")
        return QueueAndProcessorStatus.model_validate(body)

    get_queue_status = sync_twin(aget_queue_status)

    async def aget_item(self, item_id: int) -> IvkJob:
        """One queue item with its session (results, errors).

        Raises:
            NotFoundError: no such item in this queue.
        """
        body = await self._http.get_json(f"{self._base}/i/{item_id}")
        return IvkJob.model_validate(body)

    get_item = sync_twin(aget_item)

    async def acancel_item(self, item_id: int) -> IvkJob:
        """Cancel one item (``PUT .../i/{id}/cancel``); returns the item as it now stands."""
        body = await self._http.put_json(f"{self._base}/i/{item_id}/cancel")
        return IvkJob.model_validate(body)

    cancel_item = sync_twin(acancel_item)

    async def acancel_by_batch_ids(self, batch_ids: Iterable[str]) -> int:
        """Cancel every item of these batches; returns how many were canceled."""
        body = await self._http.put_json(
            f"{self._base}/cancel_by_batch_ids", json_body={"batch_ids": list(batch_ids)}
        )
        return int(body.get("canceled", 0))

    cancel_by_batch_ids = sync_twin(acancel_by_batch_ids)

    async def alist_item_ids(self, *, newest_first: bool = True) -> list[int]:
        """The ids of every item in the queue, newest (highest id) first by default."""
        body = await self._http.get_json(f"{self._base}/item_ids")
        # The server orders by created_at, whole seconds: items of one second come in any
        # order. Ids grow with creation, so sort by id here.
        return sorted((int(i) for i in body.get("item_ids", [])), reverse=newest_first)

    list_item_ids = sync_twin(alist_item_ids)

    async def aget_items_by_ids(self, item_ids: Sequence[int]) -> list[IvkJob]:
        """Full items for these ids, in the same order (missing ones are left out)."""
        jobs: list[IvkJob] = []
        for start in range(0, len(item_ids), MAX_IDS_PER_REQUEST):
            chunk = list(item_ids[start : start + MAX_IDS_PER_REQUEST])
            body = await self._post_read(f"{self._base}/items_by_ids", {"item_ids": chunk})
            jobs.extend(IvkJob.model_validate(item) for item in body)
        return jobs

    get_items_by_ids = sync_twin(aget_items_by_ids)

    async def alist_items(
        self, *, offset: int = 0, limit: int = 50, newest_first: bool = True
    ) -> list[IvkJob]:
        """A page of queue items (InvokeAI 6.14 pages by id list, then fetches the items)."""
        ids = await self.alist_item_ids(newest_first=newest_first)
        return await self.aget_items_by_ids(ids[offset : offset + limit])

    list_items = sync_twin(alist_items)

    async def alist_all_items(self, *, destination: str | None = None) -> list[IvkJob]:
        """Every item, optionally only those sent with ``destination``."""
        params = {"destination": destination} if destination is not None else None
        body = await self._http.get_json(f"{self._base}/list_all", params=params)
        return [IvkJob.model_validate(item) for item in body]

    list_all_items = sync_twin(alist_all_items)

    async def aget_batch_status(self, batch_id: str) -> BatchStatus:
        """Counts of one batch's items by status (all zero for an unknown batch)."""
        body = await self._http.get_json(f"{self._base}/b/{batch_id}/status")
        return BatchStatus.model_validate(body)

    get_batch_status = sync_twin(aget_batch_status)

    async def aget_items_by_batch(self, batch_id: str) -> list[IvkJob]:
        """The items of one batch, oldest first.

        The server has no route for this; the batch's size comes from its status, and the
        newest items are scanned (as light summaries) until all of them are found.
        """
        status = await self.aget_batch_status(batch_id)
        if status.total == 0:
            return []
        found = await self._scan_batch_item_ids(batch_id, status.total)
        return await self.aget_items_by_ids(sorted(found))

    get_items_by_batch = sync_twin(aget_items_by_batch)

    async def _scan_batch_item_ids(self, batch_id: str, total: int) -> list[int]:
        ids = await self.alist_item_ids(newest_first=True)
        found: list[int] = []
        for start in range(0, len(ids), BATCH_SCAN_CHUNK):
            chunk = ids[start : start + BATCH_SCAN_CHUNK]
            body = await self._post_read(f"{self._base}/item_summaries_by_ids", {"item_ids": chunk})
            found.extend(int(s["item_id"]) for s in body if s.get("batch_id") == batch_id)
            if len(found) >= total:
                break
        return found

    async def _post_read(self, path: str, json_body: Any) -> Any:
        # These POSTs only read, so they are safe to retry.
        return await self._http.post_json(path, json_body=json_body, retry=True)

    async def apause_processor(self) -> ProcessorStatus:
        """Stop taking new items (the current one finishes)."""
        body = await self._http.put_json(f"{self._base}/processor/pause")
        return ProcessorStatus.model_validate(body)

    pause_processor = sync_twin(apause_processor)

    async def aresume_processor(self) -> ProcessorStatus:
        """Start taking items again."""
        body = await self._http.put_json(f"{self._base}/processor/resume")
        return ProcessorStatus.model_validate(body)

    resume_processor = sync_twin(aresume_processor)

    async def aclear(self) -> int:
        """Cancel the running item and delete every item; returns how many were deleted."""
        body = await self._http.put_json(f"{self._base}/clear")
        return int(body.get("deleted", 0))

    clear = sync_twin(aclear)

    async def aprune(self) -> int:
        """Delete finished (completed, failed, canceled) items; returns how many."""
        body = await self._http.put_json(f"{self._base}/prune")
        return int(body.get("deleted", 0))

    prune = sync_twin(aprune)

    async def aenqueue_batch(self, body: Mapping[str, Any]) -> EnqueueResult:
        """Enqueue a batch exactly once.

        The batch id is minted here when the body has none. The POST is never resent: when
        its answer is lost (connection error, timeout, 5xx) the batch is looked up by id, and
        what the server did enqueue is returned (``recovered=True``). A queue that took fewer
        items than asked shows as ``result.partial``.

        Args:
            body: an ``enqueue_batch`` body: ``{"batch": {...}, "prepend": bool}``.

        Raises:
            UnprocessableEntityError: the server refused the batch (``detail`` says where).
            APIConnectionError: the server could not be reached and has no such batch.
        """
        body, batch_id = ensure_batch_id(body)
        try:
            answer = await self._http.post_json(
                f"{self._base}/enqueue_batch", json_body=body, retry=False
            )
        except (APIConnectionError, ServerError) as exc:
            if isinstance(exc.__cause__, httpx.ConnectError):
                raise  # no connection was made, so nothing was sent
            recovered = await self._recover_enqueue(batch_id, requested_count(body))
            if recovered is None:
                raise
            return recovered
        result = _enqueue_result(answer)
        if result.partial:
            logger.warning(
                "queue nearly full: batch %s enqueued %d of %d items",
                batch_id,
                result.enqueued,
                result.requested,
            )
        return result

    enqueue_batch = sync_twin(aenqueue_batch)

    async def _recover_enqueue(self, batch_id: str, requested: int | None) -> EnqueueResult | None:
        for delay in ENQUEUE_LOOKUP_DELAYS:
            await asyncio.sleep(delay)
            try:
                items = await self.aget_items_by_batch(batch_id)
            except InvokeAIError:
                continue
            if items:
                return EnqueueResult(
                    queue_id=self._client.queue_id,
                    batch_id=batch_id,
                    enqueued=len(items),
                    requested=requested,
                    item_ids=[job.item_id for job in items],
                    recovered=True,
                )
        return None


def _enqueue_result(answer: Mapping[str, Any]) -> EnqueueResult:
    batch = answer.get("batch") or {}
    return EnqueueResult(
        queue_id=answer.get("queue_id", ""),
        batch_id=batch.get("batch_id", ""),
        enqueued=answer.get("enqueued", 0),
        requested=answer.get("requested"),
        priority=answer.get("priority", 0),
        item_ids=sorted(answer.get("item_ids", [])),
    )
