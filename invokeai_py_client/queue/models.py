"""Queue records as the server sends them: items (``IvkJob``), statuses and results.

Every model is tolerant (``extra="allow"``) and every status is an open enum: a status a newer
server adds stays a plain string instead of breaking the parse.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from .._models import APIModel

__all__ = [
    "TERMINAL_STATUSES",
    "BatchStatus",
    "EnqueueResult",
    "IvkJob",
    "JobStatus",
    "OpenJobStatus",
    "ProcessorStatus",
    "QueueAndProcessorStatus",
    "QueueStatus",
    "failed_node_in",
    "is_terminal_status",
]


class JobStatus(StrEnum):
    """The status of a queue item (``QUEUE_ITEM_STATUS`` in InvokeAI)."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    # A parent item waiting for the child items of a workflow call (InvokeAI 6.x).
    WAITING = "waiting"


# left_to_right: a known value becomes the enum, an unknown one stays a str (smart mode
# would keep every str as a str, since a str matches ``str`` exactly).
OpenJobStatus = Annotated[JobStatus | str, Field(union_mode="left_to_right")]

TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED})


def failed_node_in(session: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(source node id, node type) of the failed node in a queue item's ``session``."""
    errors = session.get("errors") or {}
    if not errors:
        return None, None
    prepared_id = next(iter(errors))
    source_id = (session.get("prepared_source_mapping") or {}).get(prepared_id, prepared_id)
    # The prepared node is in the execution graph; the source graph has it by source id.
    prepared = ((session.get("execution_graph") or {}).get("nodes") or {}).get(prepared_id)
    source = ((session.get("graph") or {}).get("nodes") or {}).get(source_id)
    node = prepared or source or {}
    return source_id, node.get("type")


def is_terminal_status(status: str | None) -> bool:
    """Whether a queue item in this status will never change again."""
    return status in TERMINAL_STATUSES


class IvkJob(APIModel):
    """One session queue item: what ran, how it ended, and (for finished items) its results.

    ``session`` is the server's graph execution state: ``session["results"]`` keyed by prepared
    node id and ``session["source_prepared_mapping"]`` from the node ids that were sent.
    """

    item_id: int
    status: OpenJobStatus = JobStatus.PENDING
    batch_id: str = ""
    session_id: str = ""
    queue_id: str = ""
    status_sequence: int | None = None
    priority: int = 0
    origin: str | None = None
    destination: str | None = None
    user_id: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    field_values: list[dict[str, Any]] | None = None
    session: dict[str, Any] | None = None
    workflow: dict[str, Any] | None = None

    @property
    def is_terminal(self) -> bool:
        """True once the item is completed, failed or canceled."""
        return is_terminal_status(self.status)

    def failed_node(self) -> tuple[str | None, str | None]:
        """(source node id, node type) of the node that failed, read from ``session``."""
        return failed_node_in(self.session or {})


class QueueStatus(APIModel):
    """Counts of the queue's items by status, and the item being processed."""

    queue_id: str = ""
    item_id: int | None = None
    batch_id: str | None = None
    session_id: str | None = None
    pending: int = 0
    in_progress: int = 0
    waiting: int = 0
    completed: int = 0
    failed: int = 0
    canceled: int = 0
    total: int = 0


class ProcessorStatus(APIModel):
    """Whether the session processor is started and currently running an item."""

    is_started: bool = False
    is_processing: bool = False


class QueueAndProcessorStatus(APIModel):
    """The answer of ``GET /queue/{queue_id}/status``."""

    queue: QueueStatus
    processor: ProcessorStatus


class BatchStatus(QueueStatus):
    """Counts of one batch's items by status."""

    origin: str | None = None
    destination: str | None = None


class EnqueueResult(APIModel):
    """What ``enqueue_batch`` put on the queue.

    ``enqueued`` can be lower than ``requested`` when the queue is nearly full; ``partial``
    says so. ``recovered`` is True when the answer was lost (timeout, 5xx) and the items were
    found afterwards by the client-minted batch id.
    """

    queue_id: str = ""
    batch_id: str
    enqueued: int
    requested: int | None = None
    priority: int = 0
    item_ids: list[int] = Field(default_factory=list)
    recovered: bool = False

    @property
    def partial(self) -> bool:
        """True when the server enqueued fewer items than were asked for."""
        return self.requested is not None and self.enqueued < self.requested
