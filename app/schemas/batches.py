"""The API's shapes of batches: many runs of one workflow asked for in one request."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlmodel import Field, SQLModel

from app.db.tables import RunStatus
from app.schemas.runs import RunCreate, RunError, RunOutput

__all__ = [
    "BatchCounts",
    "BatchCreate",
    "BatchLinks",
    "BatchPublic",
    "BatchRunPublic",
    "BatchStatus",
]

BatchStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]


class BatchCreate(RunCreate):
    """The body of ``POST /workflows/{id}/batches``: the inputs every run shares, and per input
    index the list of values to vary."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"inputs": {"0": "a lighthouse"}, "vary": {"2": [1, 2, 3]}}]
        }
    )

    vary: dict[str, list[Any]] = Field(
        description="Per input index, the values to try: one run per combination.",
    )
    mode: Literal["product", "zip"] = Field(
        "product",
        description="`product`: every combination (the first index varies slowest); "
        "`zip`: the i-th value of each list together (lists of one length).",
    )
    cancel_after: float | None = Field(
        None,
        gt=0,
        le=7 * 24 * 3600.0,
        description="Seconds after which each unfinished run of the batch is canceled.",
    )


class BatchCounts(BaseModel):
    """How many runs of the batch are in each status."""

    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0


class BatchRunPublic(SQLModel):
    """One run of a batch, at its place."""

    index: int
    run_id: str
    status: RunStatus
    values: dict[str, Any] = Field(description="The varied inputs of this run.")
    item_id: int | None = None
    error: RunError | None = None
    outputs: list[RunOutput] = []


class BatchLinks(SQLModel):
    """Where to find a batch and act on it."""

    self: str
    events: str
    cancel: str
    workflow: str


class BatchPublic(SQLModel):
    """A batch as the API shows it: the whole, and each run in order."""

    id: str
    workflow_id: str
    workflow_version: int
    mode: str
    size: int
    status: BatchStatus = Field(
        description="`queued` until a run starts; `running` until every run ended; then "
        "`succeeded` (all did), `failed` (one or more did) or `canceled`."
    )
    finished: bool
    one_batch: bool = Field(
        description="Whether InvokeAI got the runs as one batch (else one batch per run: an "
        "input its batches cannot vary, such as a model)."
    )
    counts: BatchCounts
    inputs: dict[str, Any]
    vary: dict[str, list[Any]]
    created_at: datetime
    runs: list[BatchRunPublic]
    links: BatchLinks
