"""Runs: start one with index-keyed inputs, list the history, show one, cancel."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request, Response, status
from pydantic import Field, ValidationError

from app.api.deps import RunDep, RunServiceDep, SessionDep, WorkflowToRunDep
from app.api.limits import read_body_limited
from app.core.errors import GatewayError, InputInvalid
from app.core.timestamps import UTCTimestamp
from app.db import queries
from app.db.claims import PUBLIC_STATUSES, request_hash
from app.db.tables import Run, RunStatus
from app.runs.outputs import outputs_with_urls
from app.runs.service import Submission
from app.schemas.runs import RunCreate, RunPublic, RunsPublic
from app.webhooks.policy import check_target

__all__ = ["parse_prefer_wait", "router", "run_public"]

router = APIRouter(tags=["runs"])

_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\d+(?:\.\d+)?)", re.I)
MAX_CANCEL_AFTER = 7 * 24 * 3600.0


class RunRequest(RunCreate):
    """The run body, with an optional deadline."""

    cancel_after: float | None = Field(
        None,
        gt=0,
        le=MAX_CANCEL_AFTER,
        description="Seconds after which the run, if unfinished, is canceled on InvokeAI "
        "(the `Cancel-After` header, when given, wins).",
    )


RUN_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": RunRequest.model_json_schema(),
                "example": {"inputs": {"0": "a prompt", "3": 30}, "board_id": None},
            }
        },
    }
}


class BadCursor(GatewayError):
    """A ``cursor`` this service did not hand out."""

    status_code = 400
    title = "Invalid cursor"


def parse_prefer_wait(prefer: str | None, cap: float) -> float | None:
    """Seconds asked for by ``Prefer: wait=N`` (RFC 7240), capped; None when absent."""
    if not prefer:
        return None
    match = _PREFER_WAIT.search(prefer)
    return min(float(match.group(1)), cap) if match else None


def run_public(run: Run) -> dict[str, Any]:
    """The API view of a run row."""
    batch = None
    if run.sweep_id is not None:
        batch = {"id": run.sweep_id, "index": run.sweep_index, "url": f"/batches/{run.sweep_id}"}
    return {
        **run.model_dump(exclude={"outputs", "error", "sweep_id", "sweep_index"}),
        "batch": batch,
        "error": run.error,
        "outputs": outputs_with_urls(run.outputs or []),
        "links": {
            "self": f"/runs/{run.id}",
            "events": f"/runs/{run.id}/events",
            "cancel": f"/runs/{run.id}/cancel",
            "workflow": f"/workflows/{run.workflow_id}",
        },
    }


def _run_response(run: Run, code: int, extra: dict[str, str] | None = None) -> Response:
    body = RunPublic.model_validate(run_public(run)).model_dump_json()
    headers = {"Location": f"/runs/{run.id}", **(extra or {})}
    return Response(body, status_code=code, media_type="application/json", headers=headers)


async def _run_body(request: Request, limit: int) -> RunRequest:
    raw = await read_body_limited(request, limit)
    try:
        return RunRequest.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        errors = [
            {"index": None, "label": None, "reason": f"{'.'.join(map(str, e['loc']))}: {e['msg']}"}
            for e in exc.errors()
        ]
        raise InputInvalid("the run body is not valid", errors=errors) from exc


@router.post(
    "/workflows/{workflow_id}/runs",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunPublic,
    openapi_extra=RUN_BODY,
    responses={
        200: {"model": RunPublic, "description": "Finished within `Prefer: wait=N`."},
        404: {"description": "Unknown workflow."},
        409: {"description": "The Idempotency-Key was used with another request."},
        413: {"description": "The body is above GATEWAY_MAX_UPLOAD_BYTES."},
        422: {"description": "Bad inputs: `errors` names each index, its label and why."},
        429: {"description": "Too many unfinished runs (see Retry-After)."},
        503: {"description": "InvokeAI is unreachable (the run was not submitted)."},
    },
)
async def create_run(
    request: Request,
    workflow: WorkflowToRunDep,
    service: RunServiceDep,
    prefer: Annotated[str | None, Header(description="`wait=N`: block up to N s")] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            pattern=r"^[\x21-\x7e]+$",
            description="Retry safely: the same key and body return the original run "
            "(with `Idempotent-Replayed: true`); the same key with another body is 409. "
            "Keys are remembered for GATEWAY_IDEMPOTENCY_TTL seconds (default 24 h).",
        ),
    ] = None,
    cancel_after: Annotated[
        float | None,
        Header(gt=0, le=MAX_CANCEL_AFTER, description="Deadline in seconds from now."),
    ] = None,
) -> Response:
    """Run a workflow with values keyed by input index (unset inputs keep their value)."""
    settings = service.settings  # one dependency less on the path of every submission
    body = await _run_body(request, settings.max_upload_bytes)
    if body.webhook_url:  # 422 before anything is claimed or sent
        await check_target(body.webhook_url, allow_private=settings.webhook_allow_private)
    deadline = cancel_after if cancel_after is not None else body.cancel_after
    fingerprint = None
    if idempotency_key is not None:  # only a request with a key can be replayed
        fields = body.model_dump(mode="json") | {"cancel_after": deadline}
        fingerprint = request_hash(workflow.id, fields)
    submission = Submission(
        workflow=workflow,
        inputs=body.inputs,
        board_id=body.board_id,
        key=idempotency_key,
        request_hash=fingerprint,
        cancel_after=deadline,
        webhook_url=body.webhook_url or None,
        webhook_events=body.webhook_events or None,
    )
    run, replayed = await service.submit(submission)
    extra = {"Idempotent-Replayed": "true"} if replayed else {}
    wait = parse_prefer_wait(prefer, settings.max_wait_seconds)
    if wait is not None:
        await service.wait(run.id, wait)
        run = await service.load(run.id)
        extra["Preference-Applied"] = f"wait={prefer_value(wait)}"
    finished = RunStatus(run.status).terminal and (wait is not None or replayed)
    return _run_response(run, status.HTTP_200_OK if finished else status.HTTP_202_ACCEPTED, extra)


def prefer_value(wait: float) -> str:
    """``wait`` as it goes back in ``Preference-Applied``."""
    return str(int(wait)) if float(wait).is_integer() else str(wait)


@router.get("/runs", response_model=RunsPublic, responses={400: {"description": "Bad cursor."}})
def list_runs(
    session: SessionDep,
    workflow_id: Annotated[str | None, Query(description="Only runs of this workflow.")] = None,
    status_: Annotated[
        list[RunStatus] | None, Query(alias="status", description="Only runs in these statuses.")
    ] = None,
    created_after: Annotated[UTCTimestamp | None, Query(description="ISO 8601, inclusive.")] = None,
    created_before: Annotated[
        UTCTimestamp | None, Query(description="ISO 8601, exclusive.")
    ] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the last page.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """The run history, newest first, with cursor paging."""
    try:
        position = queries.decode_cursor(cursor) if cursor else None
    except ValueError as exc:
        raise BadCursor(str(exc)) from exc
    rows = queries.list_runs(
        session=session,
        workflow_id=workflow_id,
        status=[s.value for s in status_] if status_ else PUBLIC_STATUSES,
        created_after=created_after,
        created_before=created_before,
        cursor=position,
        limit=limit,
    )
    page, more = rows[:limit], len(rows) > limit
    return {
        "data": [run_public(r) for r in page],
        "count": len(page),
        "next_cursor": queries.encode_cursor(page[-1]) if more and page else None,
    }


@router.get(
    "/runs/{run_id}", response_model=RunPublic, responses={404: {"description": "Unknown run."}}
)
def get_run(run: RunDep) -> dict[str, Any]:
    """One run: status, timestamps, error with the failing node, outputs with image URLs."""
    return run_public(run)


@router.post(
    "/runs/{run_id}/cancel",
    response_model=RunPublic,
    responses={404: {"description": "Unknown run."}, 503: {"description": "InvokeAI is down."}},
)
async def cancel_run(run: RunDep, service: RunServiceDep) -> Response:
    """Cancel a run (a finished run is returned as it is)."""
    updated = await service.cancel(run.id)
    code = status.HTTP_200_OK if RunStatus(updated.status).terminal else status.HTTP_202_ACCEPTED
    return _run_response(updated, code)
