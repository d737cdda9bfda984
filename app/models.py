"""SQLModel tables and the API schemas built on them (``Workflow*``, ``Run*``, ``RunEvent``).

Tables: ``workflow`` (the current version), ``workflowversion`` (every version ever
registered), ``run`` and ``runevent`` (every relayed event, with a monotonic id that SSE
streams use as their event id).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, Column, DateTime, MetaData, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from app.core.names import BOARD_ID_PATTERN, ID_MAX_CHARS, MAX_URL_CHARS

__all__ = [
    "InputChanges",
    "Run",
    "RunCreate",
    "RunError",
    "RunEvent",
    "RunEventPublic",
    "RunImage",
    "RunLinks",
    "RunOutput",
    "RunPublic",
    "RunStatus",
    "RunsPublic",
    "UTCDateTime",
    "WebhookEventName",
    "Workflow",
    "WorkflowDetail",
    "WorkflowInput",
    "WorkflowPublic",
    "WorkflowUpdated",
    "WorkflowVersion",
    "WorkflowsPublic",
    "utcnow",
]

# Explicit names keep Alembic's batch migrations on SQLite able to find constraints.
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
METADATA: MetaData = SQLModel.metadata


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime stored as naive UTC and read back timezone-aware (SQLite keeps no zone)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _time(*, index: bool = False, nullable: bool = True) -> Any:
    column: Column[datetime] = Column(UTCDateTime(), index=index, nullable=nullable)
    if nullable:
        return Field(default=None, sa_column=column)
    return Field(default_factory=utcnow, sa_column=column)


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(JSON, nullable=nullable))


def _new_id() -> str:
    return str(uuid.uuid4())


# Webhook event names (per-run ``webhook_events``, subscriptions) -> run event types:
# queued: run.queued, started: run.started, progress: node.progress,
# completed: run.succeeded, failed: run.failed, canceled: run.canceled.
WebhookEventName = Literal["queued", "started", "progress", "completed", "failed", "canceled"]


class RunStatus(StrEnum):
    """The one status enum of a run."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"

    @property
    def terminal(self) -> bool:
        """True for a status a run never leaves."""
        return self in (RunStatus.succeeded, RunStatus.failed, RunStatus.canceled)


# -- tables ---------------------------------------------------------------------------------


class Workflow(SQLModel, table=True):
    """A registered workflow at its current version (older versions: ``WorkflowVersion``)."""

    id: str = Field(default_factory=_new_id, primary_key=True)
    name: str = ""
    description: str = ""
    version: int = 1
    definition: dict[str, Any] = _json(nullable=False)
    inputs: list[dict[str, Any]] = _json(nullable=False)
    fingerprint: str = ""
    created_at: datetime = _time(nullable=False)
    updated_at: datetime = _time(nullable=False)
    # Deleting hides a workflow but keeps the row, so its runs stay in the history.
    deleted_at: datetime | None = _time()


class WorkflowVersion(SQLModel, table=True):
    """One registered version of a workflow."""

    __table_args__ = (UniqueConstraint("workflow_id", "version"),)

    id: int | None = Field(default=None, primary_key=True)
    workflow_id: str = Field(foreign_key="workflow.id", index=True)
    version: int
    definition: dict[str, Any] = _json(nullable=False)
    inputs: list[dict[str, Any]] = _json(nullable=False)
    fingerprint: str = ""
    created_at: datetime = _time(nullable=False)


class Run(SQLModel, table=True):
    """One accepted run: what was sent, where it is on InvokeAI, and how it ended."""

    id: str = Field(default_factory=_new_id, primary_key=True)
    workflow_id: str = Field(foreign_key="workflow.id", index=True)
    workflow_version: int
    inputs: dict[str, Any] = _json(nullable=False)
    board_id: str | None = None
    # Not indexed: runs are found by batch or item on InvokeAI's side, never here, and every
    # index costs each submission's two writes a page more.
    batch_id: str | None = None
    item_id: int | None = None
    session_id: str | None = None
    status: str = Field(default=RunStatus.queued.value, index=True)
    created_at: datetime = _time(index=True, nullable=False)
    started_at: datetime | None = _time()
    finished_at: datetime | None = _time()
    error: dict[str, Any] | None = _json()
    outputs: list[dict[str, Any]] | None = _json()
    # Idempotency: the caller's key and a hash of the request body it came with.
    idempotency_key: str | None = Field(default=None, unique=True)
    request_hash: str | None = None
    # Deadline: a run still unfinished at this moment is canceled on InvokeAI.
    cancel_at: datetime | None = _time(index=True)
    # Per-run webhook: where to deliver, and which run event types (None: the terminal ones).
    webhook_url: str | None = None
    webhook_events: list[str] | None = _json()


class RunEvent(SQLModel, table=True):
    """One relayed event; ``id`` is monotonic and is the SSE event id."""

    # AUTOINCREMENT: SQLite never reuses an id, so Last-Event-ID can never repeat an event.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="run.id", index=True)
    workflow_id: str = Field(index=True)
    event_type: str
    data: dict[str, Any] = _json(nullable=False)
    created_at: datetime = _time(nullable=False)


# -- API schemas ----------------------------------------------------------------------------


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
        max_length=len(get_args(WebhookEventName)),
        description="Which notices (default: completed, failed, canceled).",
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


class RunOutput(SQLModel):
    """What one output node produced."""

    node_id: str
    label: str | None = None
    node_type: str | None = None
    images: list[RunImage] = []
    image_names: list[str] = []
    board_id: str | None = None
    values: list[Any] = []


class RunLinks(SQLModel):
    """Where to find a run and act on it."""

    self: str
    events: str
    cancel: str
    workflow: str


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
    links: RunLinks


class RunsPublic(SQLModel):
    """One page of runs; pass ``next_cursor`` as ``cursor`` for the next page."""

    data: list[RunPublic]
    count: int
    next_cursor: str | None = None


class RunEventPublic(SQLModel):
    """A relayed event in its stable shape (also the SSE ``data``)."""

    id: int
    run_id: str
    workflow_id: str
    event: str
    data: dict[str, Any]
    created_at: datetime
