"""The API's shapes of runs (bodies and answers of the run routes)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlmodel import Field, SQLModel

from app.core.names import BOARD_ID_PATTERN, ID_MAX_CHARS, MAX_URL_CHARS
from app.db.tables import RunStatus
from app.schemas.events import WEBHOOK_EVENT_NAMES, WebhookEventName, webhook_events_help

__all__ = [
    "RunBatchRef",
    "RunCreate",
    "RunError",
    "RunImage",
    "RunLinks",
    "RunOutput",
    "RunPublic",
    "RunVideo",
    "RunsPublic",
]


class RunCreate(BaseModel):
    """The body of ``POST /workflows/{id}/runs``: values keyed by input index."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"inputs": {"0": "a prompt", "3": 30}, "board_id": None}]}
    )

    inputs: dict[str, Any] = {}
    board_id: str | None = Field(
        default=None, max_length=ID_MAX_CHARS, schema_extra={"pattern": BOARD_ID_PATTERN}
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=MAX_URL_CHARS,
        description="POST signed notices of this run here (Standard Webhooks).",
    )
    webhook_events: list[WebhookEventName] | None = Field(
        default=None,
        max_length=len(WEBHOOK_EVENT_NAMES),
        description=f"Which notices: {webhook_events_help()}.",
    )


class RunError(SQLModel):
    """Why a run failed, as InvokeAI reported it."""

    error_type: str | None = None
    error_message: str | None = None
    node_id: str | None = None
    node_type: str | None = None


class RunImage(SQLModel):
    """One output image with its gateway URLs."""

    image_name: str
    url: str
    thumbnail_url: str


class RunVideo(SQLModel):
    """One output video (an MP4 file) with its gateway URL."""

    video_name: str
    url: str


class RunOutput(SQLModel):
    """What one output node produced."""

    node_id: str
    label: str | None = None
    node_type: str | None = None
    images: list[RunImage] = []
    image_names: list[str] = []
    videos: list[RunVideo] = []
    video_names: list[str] = []
    board_id: str | None = None
    values: list[Any] = []


class RunLinks(SQLModel):
    """Where to find a run and act on it."""

    self: str
    events: str
    cancel: str
    workflow: str


class RunBatchRef(SQLModel):
    """The batch (``POST /workflows/{id}/batches``) a run belongs to, and its place in it."""

    id: str
    index: int
    url: str


class RunPublic(SQLModel):
    """A run as the API shows it."""

    id: str
    workflow_id: str
    workflow_version: int
    status: RunStatus
    inputs: dict[str, Any]
    board_id: str | None = None
    batch_id: str | None = None
    item_id: int | None = Field(
        None, description="InvokeAI's queue item; null until InvokeAI took the run."
    )
    session_id: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: RunError | None = None
    outputs: list[RunOutput] = []
    webhook_url: str | None = None
    webhook_events: list[str] | None = None
    batch: RunBatchRef | None = Field(
        None, description="The gateway batch this run is part of (null: a run of its own)."
    )
    backend: str | None = Field(
        None,
        description="The InvokeAI server that runs it, by its name in INVOKEAI_URL (null when"
        " the gateway has one server).",
    )
    links: RunLinks


class RunsPublic(SQLModel):
    """One page of runs; pass ``next_cursor`` as ``cursor`` for the next page."""

    data: list[RunPublic]
    count: int
    next_cursor: str | None = None
