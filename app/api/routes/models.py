"""Models installed on InvokeAI."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from app.api.deps import client_of
from invokeai_py_client.dnn_model.models import IvkDnnModel

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
    """The models installed on InvokeAI."""
    models = await client_of(request).dnn_model_repo.alist_models(base=base, type=type)
    return ModelsPublic(data=[_public(m) for m in models], count=len(models))
