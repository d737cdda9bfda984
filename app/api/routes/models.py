"""Models installed on InvokeAI."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from app.api.deps import clients_of, run_service_of
from invokeai_py_client.dnn_model.models import IvkDnnModel
from invokeai_py_client.exceptions import InvokeAIError

__all__ = ["ModelPublic", "ModelsPublic", "router"]

router = APIRouter(prefix="/models", tags=["models"])


class ModelPublic(BaseModel):
    """One installed model; pass its ``key`` (or ``name``) as a model input of a run."""

    key: str
    name: str
    base: str
    type: str
    format: str | None = None
    hash: str | None = None
    description: str | None = None
    file_size: int | None = None
    variant: str | None = None
    backends: list[str] | None = None  # with several InvokeAI servers: those that have it


class ModelsPublic(BaseModel):
    """The installed models."""

    data: list[ModelPublic]
    count: int


def _public(model: IvkDnnModel) -> ModelPublic:
    fields = model.model_dump(include=set(ModelPublic.model_fields))
    # Open enums: a value this client does not know is already a plain string.
    for name in ("base", "type", "format"):
        if fields.get(name) is not None:
            fields[name] = str(fields[name])
    return ModelPublic.model_validate(fields)


@router.get("", response_model=ModelsPublic)
async def list_models(
    request: Request,
    base: Annotated[str | None, Query(description="Only this base, e.g. sdxl.")] = None,
    type: Annotated[str | None, Query(description="Only this type, e.g. main.")] = None,
) -> ModelsPublic:
    """The models installed on InvokeAI (with several servers: each model once, by name, base
    and type, with the servers that have it; its ``key`` is the first one's, and a run may
    name it by that key whichever server runs it)."""
    clients = clients_of(request)
    if len(clients) == 1:
        models = await clients[0].dnn_model_repo.alist_models(base=base, type=type)
        return ModelsPublic(data=[_public(m) for m in models], count=len(models))
    names = [lane.name for lane in run_service_of(request).lanes]
    lists = await asyncio.gather(
        *(c.dnn_model_repo.alist_models(base=base, type=type) for c in clients),
        return_exceptions=True,
    )
    merged: dict[tuple[str, str, str], ModelPublic] = {}
    for name, found in zip(names, lists, strict=True):
        if isinstance(found, InvokeAIError):
            continue  # a server that does not answer lists nothing
        if isinstance(found, BaseException):
            raise found
        for model in found:
            public = merged.setdefault(
                (model.name, str(model.base), str(model.type)), _public(model)
            )
            public.backends = [*(public.backends or []), name]
    return ModelsPublic(data=list(merged.values()), count=len(merged))
