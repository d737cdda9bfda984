"""The parts of the gateway's JSON answers that the client commands read.

Unknown members are kept (``extra="allow"``), so ``--json`` prints the gateway's answer whole.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

__all__ = ["RunImage", "RunInfo", "RunOutput", "RunsPage", "WorkflowInfo", "WorkflowInput"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class WorkflowInput(_Open):
    """One input of a registered workflow, as ``GET /workflows/{id}`` lists it."""

    index: int
    label: str
    type: str
    field_name: str = ""
    node_id: str = ""
    default: Any = None
    value: Any = None
    choices: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None


class WorkflowInfo(_Open):
    """A registered workflow."""

    id: str
    name: str
    version: int
    inputs: list[WorkflowInput] = []


class RunImage(_Open):
    image_name: str
    url: str


class RunOutput(_Open):
    node_id: str
    label: str | None = None
    node_type: str | None = None
    images: list[RunImage] = []
    values: list[Any] = []


class RunInfo(_Open):
    """A run as ``GET /runs/{id}`` answers it."""

    id: str
    workflow_id: str
    status: str
    created_at: str | None = None
    finished_at: str | None = None
    error: dict[str, Any] | None = None
    outputs: list[RunOutput] = []


class RunsPage(_Open):
    """One page of ``GET /runs``."""

    data: list[RunInfo]
    count: int
    next_cursor: str | None = None
