"""The session queue: items, statuses, cancel, and exactly-once enqueue."""

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
    "EnqueueResult",
    "IvkJob",
    "JobStatus",
    "ProcessorStatus",
    "QueueAndProcessorStatus",
    "QueueRepository",
    "QueueStatus",
]
