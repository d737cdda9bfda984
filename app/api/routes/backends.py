"""The InvokeAI servers behind the gateway (``INVOKEAI_URL``), as it sees them now."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from app.api.deps import run_service_of
from app.runs.lanes import Lane
from app.schemas.backends import BackendPublic, BackendQueue, BackendsPublic
from invokeai_py_client.exceptions import InvokeAIError

__all__ = ["router"]

router = APIRouter(prefix="/backends", tags=["backends"])

STATUS_TIMEOUT_SECONDS = 5.0


@router.get("", response_model=BackendsPublic)
async def list_backends(request: Request) -> BackendsPublic:
    """Each InvokeAI server: whether new runs may go there, its queue and its models."""
    lanes = run_service_of(request).lanes
    data = await asyncio.gather(*(_describe(lane) for lane in lanes))
    return BackendsPublic(data=list(data), count=len(data))


async def _describe(lane: Lane) -> BackendPublic:
    client = lane.ctx.client
    queue: BackendQueue | None = None
    models: list[str] | None = None
    try:
        status, found = await asyncio.wait_for(
            asyncio.gather(
                client.queue_repo.aget_queue_status(), client.dnn_model_repo.alist_models()
            ),
            STATUS_TIMEOUT_SECONDS,
        )
        queue = BackendQueue.model_validate(status.queue, from_attributes=True)
        models = [f"{m.name} ({m.base}, {m.type})" for m in found]
    except (InvokeAIError, TimeoutError):
        pass
    return BackendPublic(
        name=lane.name,
        url=lane.spec.url,
        weight=lane.spec.weight,
        healthy=lane.healthy,
        reachable=queue is not None,
        unfinished_runs=lane.unfinished(),
        queue=queue,
        models=models,
    )
