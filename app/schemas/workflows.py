"""The API's shapes of workflows (bodies and answers of the ``/workflows`` routes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import SQLModel

__all__ = [
    "InputChanges",
    "WorkflowDetail",
    "WorkflowInput",
    "WorkflowPublic",
    "WorkflowUpdated",
    "WorkflowsPublic",
]


class WorkflowInput(SQLModel):
    """One input of a workflow, addressed by its index in run bodies."""

    index: int
    label: str
    field_name: str
    node_id: str
    node_name: str | None = None
    type: str
    required: bool = False
    default: Any = None
    value: Any = None
    choices: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None


class WorkflowPublic(SQLModel):
    """A registered workflow as the API shows it."""

    id: str
    name: str
    description: str = ""
    version: int
    fingerprint: str
    inputs: list[WorkflowInput]
    created_at: datetime
    updated_at: datetime
    links: dict[str, str] = {}


class WorkflowDetail(WorkflowPublic):
    """One workflow with the JSON Schema of its run body."""

    run_schema: dict[str, Any]


class InputChanges(SQLModel):
    """How the inputs of a new version relate to the previous one (by node and field)."""

    moved: list[dict[str, Any]] = []
    vanished: list[dict[str, Any]] = []
    appeared: list[dict[str, Any]] = []


class WorkflowUpdated(WorkflowPublic):
    """The answer to ``PUT /workflows/{id}``."""

    previous_version: int
    input_changes: InputChanges


class WorkflowsPublic(SQLModel):
    """A list of workflows."""

    data: list[WorkflowPublic]
    count: int
