"""The SQLModel tables of workflows and runs (the webhook tables: ``webhook_tables``).

Tables: ``workflow`` (the current version), ``workflowversion`` (every version ever
registered), ``run`` and ``runevent`` (every relayed event, with a monotonic id that SSE
streams use as their event id), ``sweep`` (a batch of runs asked for in one request).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column, DateTime, MetaData, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

__all__ = [
    "Run",
    "RunEvent",
    "RunStatus",
    "Sweep",
    "UTCDateTime",
    "Workflow",
    "WorkflowVersion",
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
    # A run of a sweep (``POST /workflows/{id}/batches``): which one, and its place in it.
    sweep_id: str | None = Field(default=None, foreign_key="sweep.id", index=True)
    sweep_index: int | None = None
    # The InvokeAI server that runs it (``app.backends``), by name; None: the first one listed
    # (runs recorded before there were several, or not yet placed).
    backend: str | None = None


class AbandonedBatch(SQLModel, table=True):
    """A batch left on the queue of an InvokeAI server that stopped answering, whose runs were
    sent to another server: it is canceled there when that server answers again, so no run
    yields two results."""

    __tablename__ = "abandoned_batch"

    batch_id: str = Field(primary_key=True)
    backend: str = Field(index=True)
    created_at: datetime = _time(nullable=False)


class Lease(SQLModel, table=True):
    """Who does a cluster-wide job (``GATEWAY_CLUSTER``), until when: following one InvokeAI
    server (``name`` is the server's), or moving runs off lost servers. The holder renews it
    well before ``expires_at``; another replica takes it over once it expired (its holder
    died). It also tells the other replicas how the job goes (``healthy``, ``unfinished``)."""

    name: str = Field(primary_key=True)
    holder: str
    expires_at: datetime = _time(nullable=False)
    healthy: bool = False  # the server's events are followed by the holder
    unfinished: int = 0  # runs the holder is sending or following there


class Sweep(SQLModel, table=True):
    """Runs asked for in one request (the API's *batch*), each a ``Run`` with its place.

    ``fixed`` holds the inputs every run shares, ``vary`` the lists of values per input index
    and ``mode`` how they combine (``product``: every combination; ``zip``: the i-th value of
    each list together). ``one_batch``: the runs went to InvokeAI as one batch (sharing its
    batch id, in order), or else one batch each (an input InvokeAI cannot vary in a batch).
    """

    id: str = Field(default_factory=_new_id, primary_key=True)
    workflow_id: str = Field(foreign_key="workflow.id", index=True)
    workflow_version: int
    mode: str = "product"
    fixed: dict[str, Any] = _json(nullable=False)
    vary: dict[str, Any] = _json(nullable=False)
    size: int = 0
    one_batch: bool = True
    idempotency_key: str | None = Field(default=None, unique=True)
    request_hash: str | None = None
    created_at: datetime = _time(nullable=False)


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
