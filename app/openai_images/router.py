"""The OpenAI-compatible images API (``/v1``) and the routes that set a workflow's mapping.

``model`` is a registered workflow's name (or id); ``GET /v1/models`` lists the workflows
served this way. Errors on ``/v1`` are in OpenAI's shape (``errors.py``); the mapping routes
under ``/workflows`` answer problem+json like the rest of the gateway.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy.engine import Engine
from starlette.datastructures import FormData, UploadFile

from app.api.deps import (
    BrokerDep,
    ClientDep,
    RunServiceDep,
    SettingsDep,
    WorkflowDep,
    from_any_server,
)
from app.api.limits import read_body_limited
from app.core.errors import InputInvalid, NotFound
from app.openai_images.errors import OpenAIError, openai_errors
from app.openai_images.mapping import Role, role_kind_problem
from app.openai_images.requests import ImageRequest, parse_request, parse_size
from app.openai_images.runner import ImageJob, run_images
from app.openai_images.store import (
    ServedWorkflow,
    find_model,
    load_served,
    save_mapping,
    served_workflows,
)
from invokeai_py_client import InvokeAIClient
from invokeai_py_client.exceptions import APIStatusError

__all__ = ["mapping_router", "router"]

router = APIRouter(prefix="/v1", tags=["openai"])
mapping_router = APIRouter(prefix="/workflows", tags=["workflows"])

OWNER = "invokeai-gateway"


def _engine(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def _model_card(served: ServedWorkflow) -> dict[str, Any]:
    return {
        "id": served.workflow.name,
        "object": "model",
        "created": int(served.workflow.created_at.timestamp()),
        "owned_by": OWNER,
    }


@router.get("/models")
@openai_errors
async def list_models(request: Request) -> Any:
    """The workflows served as OpenAI image models, one per name (the newest of a name)."""
    served = await asyncio.to_thread(served_workflows, _engine(request))
    newest: dict[str, ServedWorkflow] = {}
    for item in served:
        if item.exposed:
            kept = newest.get(item.workflow.name)
            if kept is None or item.workflow.updated_at >= kept.workflow.updated_at:
                newest[item.workflow.name] = item
    return {"object": "list", "data": [_model_card(s) for s in newest.values()]}


async def _find(request: Request, model: str) -> ServedWorkflow:
    served = await asyncio.to_thread(find_model, _engine(request), model)
    if served is None:
        raise OpenAIError(
            f"the model {model!r} does not exist: no exposed workflow has this name or id "
            "(GET /v1/models lists them)",
            status=404,
            param="model",
            code="model_not_found",
        )
    return served


@router.get("/models/{model}")
@openai_errors
async def get_model(request: Request, model: str) -> Any:
    """One workflow served as an OpenAI image model."""
    return _model_card(await _find(request, model))


async def _download(client: InvokeAIClient, *, name: str) -> bytes:
    return await client.board_repo.get_uncategorized_handle().adownload_image(name)


async def _answer(
    request: Request, names: list[str], response_format: str | None
) -> dict[str, Any]:
    data: list[dict[str, Any]] = []
    if response_format == "url":
        data = [{"url": str(request.url_for("download_image", image_name=n))} for n in names]
    else:
        for name in names:
            content = await from_any_server(
                request, functools.partial(_download, name=name), what=f"image {name}"
            )
            data.append({"b64_json": base64.b64encode(content).decode("ascii")})
    return {"created": int(time.time()), "data": data}


async def _generate(
    request: Request,
    params: ImageRequest,
    service: RunServiceDep,
    broker: BrokerDep,
    client: ClientDep,
    image: UploadFile | None = None,
) -> dict[str, Any]:
    size = parse_size(params.size)
    served = await _find(request, params.model)
    image_name = None
    if image is not None:
        if Role.image not in served.roles:
            raise OpenAIError(
                f"the model {params.model!r} has no image input to edit",
                param="image",
                code="no_image_input",
            )
        image_name = await _upload(client, image)
    job = ImageJob(served=served, request=params, size=size, image_name=image_name)
    names = await run_images(service, _engine(request), broker, job)
    return await _answer(request, names, params.response_format)


GENERATION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": ImageRequest.model_json_schema()}},
    }
}


@router.post("/images/generations", openapi_extra=GENERATION_BODY)
@openai_errors
async def create_image(
    request: Request,
    settings: SettingsDep,
    service: RunServiceDep,
    broker: BrokerDep,
    client: ClientDep,
) -> Any:
    """Generate images with a workflow: OpenAI's ``images.generate``."""
    raw = await read_body_limited(request, settings.max_upload_bytes)
    try:
        body = await request.json() if raw else None
    except ValueError as exc:
        raise OpenAIError("the body is not valid JSON", code="invalid_json") from exc
    params = parse_request(body)
    return await _generate(request, params, service, broker, client)


def _form_fields(form: FormData) -> dict[str, Any]:
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _first_image(form: FormData) -> UploadFile:
    for name in ("image", "image[]"):
        for value in form.getlist(name):
            if isinstance(value, UploadFile):
                return value
    raise OpenAIError("send the image to edit as the multipart file 'image'", param="image")


async def _upload(client: InvokeAIClient, image: UploadFile) -> str:
    data = await image.read()
    handle = client.board_repo.get_uncategorized_handle()
    try:
        uploaded = await handle.aupload_image_data(data, image.filename or "image.png")
    except APIStatusError as exc:
        if exc.status_code == 415:
            raise OpenAIError(
                "InvokeAI cannot read the uploaded image", param="image", code="invalid_image"
            ) from exc
        raise
    return str(uploaded.image_name)


EDIT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image", "prompt", "model"],
                    "properties": {
                        "image": {"type": "string", "format": "binary"},
                        **ImageRequest.model_json_schema()["properties"],
                    },
                }
            }
        },
    }
}


@router.post("/images/edits", openapi_extra=EDIT_BODY)
@openai_errors
async def edit_image(
    request: Request,
    settings: SettingsDep,
    service: RunServiceDep,
    broker: BrokerDep,
    client: ClientDep,
) -> Any:
    """Run a workflow on an uploaded image: OpenAI's ``images.edit`` (no mask)."""
    await read_body_limited(request, settings.max_upload_bytes)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise OpenAIError("send the edit as multipart/form-data", code="invalid_body")
    async with request.form(max_files=8, max_fields=32) as form:
        if form.get("mask") is not None:
            raise OpenAIError(
                "masks are not supported: the workflow decides what changes", param="mask"
            )
        params = parse_request(_form_fields(form))
        return await _generate(request, params, service, broker, client, _first_image(form))


# -- the mapping of a workflow ----------------------------------------------------------------


class MappingBody(BaseModel):
    """The inputs (by index) that play each role; an omitted role is detected, null: none."""

    model_config = ConfigDict(extra="forbid")

    exposed: bool = True
    prompt: int | None = None
    negative_prompt: int | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    image: int | None = None


MAPPING_EXAMPLE = {"exposed": True, "prompt": 0, "width": 1, "height": 2, "seed": None}


def _explicit_roles(body: MappingBody, inputs: list[dict[str, Any]]) -> dict[str, Any]:
    by_index = {int(i["index"]): i for i in inputs}
    roles: dict[str, Any] = {}
    problems: list[dict[str, Any]] = []
    used: dict[int, str] = {}
    for role in Role:
        if role.value not in body.model_fields_set:
            continue
        index = getattr(body, role.value)
        if index is None:
            roles[role.value] = None
            continue
        item = by_index.get(index)
        reason = f"no input has index {index}" if item is None else role_kind_problem(role, item)
        if reason is None and index in used:
            reason = f"input {index} already plays {used[index]}"
        if reason is not None:
            label = item.get("label") if item is not None else None
            problems.append({"index": index, "label": label, "role": role.value, "reason": reason})
            continue
        assert item is not None
        used[index] = role.value
        roles[role.value] = {"node_id": item["node_id"], "field_name": item["field_name"]}
    if problems:
        raise InputInvalid("the OpenAI mapping does not fit the workflow", errors=problems)
    return roles


@mapping_router.get("/{workflow_id}/openai")
async def get_mapping(request: Request, workflow: WorkflowDep) -> dict[str, Any]:
    """Which inputs the OpenAI images API sets, explicit or detected."""
    served = await asyncio.to_thread(load_served, _engine(request), workflow.id)
    if served is None:
        raise NotFound(f"no workflow with id {workflow.id!r}")
    return served.public()


@mapping_router.put("/{workflow_id}/openai")
async def put_mapping(
    request: Request,
    workflow: WorkflowDep,
    body: Annotated[MappingBody, Body(examples=[MAPPING_EXAMPLE])],
) -> dict[str, Any]:
    """Set which inputs (by index) the OpenAI images API sets, and whether it is listed."""
    roles = _explicit_roles(body, workflow.inputs)
    engine = _engine(request)
    await asyncio.to_thread(save_mapping, engine, workflow.id, exposed=body.exposed, roles=roles)
    return await get_mapping(request, workflow)
