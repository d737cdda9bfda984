"""Batches: many runs of one workflow in one request (a sweep over input values), the whole
reported at once, its runs' events in one stream."""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response, status
from pydantic import ValidationError

from app.api.deps import RunServiceDep, WorkflowToRunDep, broker_of, engine_of, settings_of
from app.api.limits import read_body_limited
from app.api.routes.events import (
    SEND_TIMEOUT_SECONDS,
    LastEventIdHeader,
    LastEventIdQuery,
    resume_point,
)
from app.core.errors import InputInvalid
from app.db.claims import request_hash
from app.db.tables import Run, RunStatus, Sweep
from app.runs.outputs import outputs_with_urls
from app.runs.sweeps import SweepRequest, SweepService
from app.schemas.batches import BatchCounts, BatchCreate, BatchPublic, BatchStatus
from app.streaming.relay import relay
from app.streaming.wire import EventStreamResponse
from app.webhooks.policy import check_target

__all__ = ["batch_public", "router"]

router = APIRouter(tags=["batches"])

BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": BatchCreate.model_json_schema(),
                "example": {
                    "inputs": {"0": "a lighthouse at dusk"},
                    "vary": {"1": [1, 2, 3], "3": [4.5, 7.5]},
                    "mode": "product",
                },
            }
        },
    }
}


def _status(counts: BatchCounts, size: int) -> BatchStatus:
    ended = counts.succeeded + counts.failed + counts.canceled
    if ended < size:
        return "queued" if counts.queued == size else "running"
    if counts.failed:
        return "failed"
    return "canceled" if counts.canceled else "succeeded"


def batch_public(sweep: Sweep, runs: list[Run]) -> dict[str, Any]:
    """The API view of a sweep and its runs."""
    counts = BatchCounts()
    for run in runs:
        setattr(counts, run.status, getattr(counts, run.status) + 1)
    return {
        **sweep.model_dump(include={"id", "workflow_id", "workflow_version", "mode", "size"}),
        "status": _status(counts, len(runs)),
        "finished": all(RunStatus(r.status).terminal for r in runs),
        "one_batch": sweep.one_batch,
        "counts": counts,
        "inputs": sweep.fixed,
        "vary": sweep.vary,
        "created_at": sweep.created_at,
        "runs": [
            {
                "index": run.sweep_index,
                "run_id": run.id,
                "status": run.status,
                "values": {key: run.inputs.get(key) for key in sweep.vary},
                "item_id": run.item_id,
                "error": run.error,
                "outputs": outputs_with_urls(run.outputs or []),
            }
            for run in runs
        ],
        "links": {
            "self": f"/batches/{sweep.id}",
            "events": f"/batches/{sweep.id}/events",
            "cancel": f"/batches/{sweep.id}/cancel",
            "workflow": f"/workflows/{sweep.workflow_id}",
        },
    }


def _response(sweep: Sweep, runs: list[Run], code: int, extra: dict[str, str]) -> Response:
    body = BatchPublic.model_validate(batch_public(sweep, runs)).model_dump_json()
    headers = {"Location": f"/batches/{sweep.id}", **extra}
    return Response(body, status_code=code, media_type="application/json", headers=headers)


async def _batch_body(request: Request, limit: int) -> BatchCreate:
    raw = await read_body_limited(request, limit)
    try:
        return BatchCreate.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        errors = [
            {"index": None, "label": None, "reason": f"{'.'.join(map(str, e['loc']))}: {e['msg']}"}
            for e in exc.errors()
        ]
        raise InputInvalid("the batch body is not valid", errors=errors) from exc


@router.post(
    "/workflows/{workflow_id}/batches",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchPublic,
    openapi_extra=BATCH_BODY,
    responses={
        404: {"description": "Unknown workflow."},
        409: {"description": "The Idempotency-Key was used with another request."},
        413: {"description": "The body is above GATEWAY_MAX_UPLOAD_BYTES."},
        422: {
            "description": "Bad inputs (each named by index, label and, for a varied value, "
            "`run_index`), or more runs than GATEWAY_MAX_BATCH_RUNS."
        },
        429: {"description": "Its runs would pass the cap on unfinished runs (see Retry-After)."},
        503: {"description": "InvokeAI is unreachable (nothing was submitted)."},
    },
)
async def create_batch(
    request: Request,
    workflow: WorkflowToRunDep,
    service: RunServiceDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="Retry safely: the same key and body return the original batch.",
        ),
    ] = None,
) -> Response:
    """Run a workflow once per combination of values: fixed `inputs`, and per input index in
    `vary` a list of values. The runs reach InvokeAI together (as one InvokeAI batch when it
    can vary those fields), in order; each is an ordinary run."""
    body = await _batch_body(request, service.settings.max_upload_bytes)
    if body.webhook_url:
        await check_target(body.webhook_url, allow_private=service.settings.webhook_allow_private)
    fingerprint = None
    if idempotency_key is not None:
        fingerprint = request_hash(workflow.id, body.model_dump(mode="json") | {"kind": "batch"})
    sweep_request = SweepRequest(
        workflow=workflow,
        fixed=body.inputs,
        vary=body.vary,
        mode=body.mode,
        board_id=body.board_id,
        key=idempotency_key,
        request_hash=fingerprint,
        cancel_after=body.cancel_after,
        webhook_url=body.webhook_url or None,
        webhook_events=body.webhook_events or None,
    )
    sweeps = SweepService(service)
    sweep, replayed = await sweeps.submit(sweep_request)
    _, runs = await sweeps.load(sweep.id)
    extra = {"Idempotent-Replayed": "true"} if replayed else {}
    return _response(sweep, runs, status.HTTP_202_ACCEPTED, extra)


@router.get(
    "/batches/{batch_id}",
    response_model=BatchPublic,
    responses={404: {"description": "Unknown batch."}},
)
async def get_batch(batch_id: str, service: RunServiceDep) -> Response:
    """A batch: counts by status, and each run in order with its values, status and outputs."""
    sweep, runs = await SweepService(service).load(batch_id)
    return _response(sweep, runs, status.HTTP_200_OK, {})


@router.post(
    "/batches/{batch_id}/cancel",
    response_model=BatchPublic,
    responses={404: {"description": "Unknown batch."}, 503: {"description": "InvokeAI is down."}},
)
async def cancel_batch(batch_id: str, service: RunServiceDep) -> Response:
    """Cancel every unfinished run of the batch (finished ones stay as they are)."""
    sweep, runs = await SweepService(service).cancel(batch_id)
    ended = all(RunStatus(r.status).terminal for r in runs)
    return _response(sweep, runs, status.HTTP_200_OK if ended else status.HTTP_202_ACCEPTED, {})


@router.get(
    "/batches/{batch_id}/events",
    response_class=EventStreamResponse,
    responses={404: {"description": "Unknown batch."}},
)
async def batch_events(
    batch_id: str,
    request: Request,
    service: RunServiceDep,
    last_event_id_header: LastEventIdHeader = None,
    last_event_id: LastEventIdQuery = None,
) -> EventStreamResponse:
    """Follow every run of the batch in one stream (resumable with Last-Event-ID), ending
    after the last run's terminal event."""
    sweep, runs = await SweepService(service).load(batch_id)
    stream = functools.partial(
        relay,
        engine=engine_of(request),
        broker=broker_of(request),
        last_id=resume_point(last_event_id_header, last_event_id),
        ping=float(settings_of(request).sse_ping_seconds),
        workflow_id=sweep.workflow_id,
        run_ids=frozenset(r.id for r in runs),
    )
    return EventStreamResponse(stream, send_timeout=SEND_TIMEOUT_SECONDS)
