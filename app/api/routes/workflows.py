"""Workflows: register an editor-exported file, list, show, replace with a new version, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from app.api.deps import ClientDep, SessionDep, SettingsDep, WorkflowDep, workflow_cache
from app.api.limits import read_body_limited
from app.core.errors import WorkflowInvalid
from app.db import queries
from app.db.tables import Workflow
from app.schemas.workflows import (
    InputChanges,
    WorkflowDetail,
    WorkflowPublic,
    WorkflowsPublic,
    WorkflowUpdated,
)
from app.workflows import (
    DescribedWorkflow,
    describe_workflow,
    input_changes,
    parse_workflow_json,
    run_body_schema,
)

__all__ = ["router", "workflow_public"]

router = APIRouter(prefix="/workflows", tags=["workflows"])

EXAMPLE_WORKFLOW: dict[str, Any] = {
    "name": "Join three words",
    "meta": {"version": "3.0.0", "category": "user"},
    "exposedFields": [{"nodeId": "a", "fieldName": "value"}],
    "nodes": [
        {
            "id": "a",
            "type": "invocation",
            "data": {
                "id": "a",
                "type": "string",
                "version": "1.0.1",
                "label": "",
                "isOpen": True,
                "isIntermediate": True,
                "useCache": True,
                "inputs": {"value": {"name": "value", "label": "Word", "value": "red"}},
            },
            "position": {"x": 0, "y": 0},
        }
    ],
    "edges": [],
}

WORKFLOW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "An editor-exported workflow file, as the JSON body or a multipart upload.",
        "content": {
            "application/json": {
                "schema": {"type": "object", "additionalProperties": True},
                "example": EXAMPLE_WORKFLOW,
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        },
    }
}

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown workflow."},
    413: {"description": "The body is above GATEWAY_MAX_UPLOAD_BYTES."},
    422: {"description": "Malformed or unusable workflow (problem+json with `errors`)."},
}


def workflow_public(workflow: Workflow) -> dict[str, Any]:
    """The API view of a workflow row."""
    return {
        "id": workflow.id,
        "name": workflow.name,
        "description": workflow.description,
        "version": workflow.version,
        "fingerprint": workflow.fingerprint,
        "inputs": workflow.inputs,
        "created_at": workflow.created_at,
        "updated_at": workflow.updated_at,
        "links": {
            "self": f"/workflows/{workflow.id}",
            "runs": f"/workflows/{workflow.id}/runs",
        },
    }


async def _read_workflow_file(request: Request, limit: int) -> dict[str, Any]:
    body = await read_body_limited(request, limit)
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=10) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise WorkflowInvalid("send the workflow file as the multipart field 'file'")
            body = await upload.read()
    return parse_workflow_json(body)


async def _described(
    request: Request, settings: SettingsDep, client: ClientDep
) -> DescribedWorkflow:
    data = await _read_workflow_file(request, settings.max_upload_bytes)
    return await describe_workflow(client, data)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=WorkflowPublic,
    openapi_extra=WORKFLOW_BODY,
    responses=ERRORS,
)
async def create_workflow(
    request: Request, session: SessionDep, settings: SettingsDep, client: ClientDep
) -> dict[str, Any]:
    """Register a workflow file; answers with its id and its inputs by index."""
    described = await _described(request, settings, client)
    workflow = await run_in_threadpool(
        queries.create_workflow,
        session=session,
        name=described.name,
        description=described.description,
        definition=described.definition,
        inputs=described.inputs,
        fingerprint=described.fingerprint,
    )
    return workflow_public(workflow)


@router.get("", response_model=WorkflowsPublic)
def list_workflows(session: SessionDep) -> dict[str, Any]:
    """Every registered workflow."""
    rows = queries.list_workflows(session=session)
    return {"data": [workflow_public(w) for w in rows], "count": len(rows)}


@router.get("/{workflow_id}", response_model=WorkflowDetail, responses=ERRORS)
def get_workflow(workflow: WorkflowDep) -> dict[str, Any]:
    """One workflow, with the JSON Schema of its run body."""
    return {**workflow_public(workflow), "run_schema": run_body_schema(workflow.inputs)}


@router.put(
    "/{workflow_id}",
    response_model=WorkflowUpdated,
    openapi_extra=WORKFLOW_BODY,
    responses=ERRORS,
)
async def replace_workflow(
    request: Request,
    workflow: WorkflowDep,
    session: SessionDep,
    settings: SettingsDep,
    client: ClientDep,
) -> dict[str, Any]:
    """Register a new version of a workflow; says which input indices moved."""
    described = await _described(request, settings, client)
    previous_version, previous_inputs = workflow.version, workflow.inputs
    updated = await run_in_threadpool(
        queries.add_workflow_version,
        session=session,
        workflow=workflow,
        name=described.name,
        description=described.description,
        definition=described.definition,
        inputs=described.inputs,
        fingerprint=described.fingerprint,
    )
    workflow_cache(request).forget(updated.id)  # runs from now on use the new version
    changes = InputChanges(**input_changes(previous_inputs, described.inputs))
    return {
        **workflow_public(updated),
        "previous_version": previous_version,
        "input_changes": changes,
    }


@router.delete("/{workflow_id}", status_code=status.HTTP_204_NO_CONTENT, responses=ERRORS)
def delete_workflow(request: Request, workflow: WorkflowDep, session: SessionDep) -> Response:
    """Delete a workflow (its runs stay in the history)."""
    queries.delete_workflow(session=session, workflow=workflow)
    workflow_cache(request).forget(workflow.id)  # no run starts from it from now on
    return Response(status_code=status.HTTP_204_NO_CONTENT)
