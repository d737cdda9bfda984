"""The session queue: items, statuses, cancel, and exactly-once enqueue."""

from .from_events import CompletedNodes
from .models import (
    BatchStatus,
    EnqueueResult,
    IvkJob,
    JobStatus,
    ProcessorStatus,
    QueueAndProcessorStatus,
    QueueStatus,
)
from .repo import QueueRepository

__all__ = [
    "BatchStatus",
    "CompletedNodes",
    "EnqueueResult",
    "IvkJob",
    "JobStatus",
    "ProcessorStatus",
    "QueueAndProcessorStatus",
    "QueueRepository",
    "QueueStatus",
]
