"""Installed models, and matching a workflow's model references to them."""

from .models import BaseModelEnum, IvkDnnModel, ModelFormat, ModelInstallJob, ModelType
from .repo import DnnModelRepository, ModelInstallError, ModelNotFoundError
from .sync import (
    MatchMethod,
    ModelSyncReport,
    ResolvedModel,
    UnresolvedModel,
    resolve_model_references,
)

__all__ = [
    "BaseModelEnum",
    "DnnModelRepository",
    "IvkDnnModel",
    "MatchMethod",
    "ModelFormat",
    "ModelInstallError",
    "ModelInstallJob",
    "ModelNotFoundError",
    "ModelSyncReport",
    "ModelType",
    "ResolvedModel",
    "UnresolvedModel",
    "resolve_model_references",
]
