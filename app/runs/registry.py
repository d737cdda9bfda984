"""What the follower keeps about one run, and the errors it gives a run that cannot finish.

Pure data and pure functions (no I/O), used by ``follower``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.runs.translate import run_status_for
from invokeai_py_client.queue.models import IvkJob

__all__ = ["Tracked", "checks_after_bulk_read", "deadline_error", "lost_error"]


@dataclass
class Tracked:
    """A run being followed."""

    run_id: str
    workflow_id: str
    item_id: int
    status: str
    batch_id: str | None = None
    failure_hint: dict[str, Any] | None = None
    # Whether InvokeAI told the end over Socket.IO; if not, the terminal event is synthetic.
    evented: bool = False
    finishing: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # Everything about one run is handled in order by one task reading this inbox:
    # ("event", type, payload), ("check",), ("check", item) or ("finish",).
    inbox: asyncio.Queue[tuple[Any, ...]] = field(default_factory=asyncio.Queue)


def lost_error(tracked: Tracked) -> dict[str, Any]:
    """The error of a run whose queue item InvokeAI no longer has."""
    return {
        "error_type": "QueueItemNotFound",
        "error_message": (
            f"InvokeAI no longer has queue item {tracked.item_id} of batch {tracked.batch_id} "
            "(its queue was cleared, pruned or replaced); the run's outcome is unknown"
        ),
        "node_id": None,
        "node_type": None,
    }


def deadline_error(cancel_at: datetime | None, now: datetime) -> dict[str, Any] | None:
    """The error of a canceled run whose deadline had passed (None: canceled for another cause).

    Example:
        >>> from datetime import UTC
        >>> deadline_error(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))[
        ...     "error_type"
        ... ]
        'DeadlineExceeded'
    """
    if cancel_at is None or cancel_at > now:
        return None
    return {
        "error_type": "DeadlineExceeded",
        "error_message": f"canceled: unfinished at its deadline {cancel_at.isoformat()}",
        "node_id": None,
        "node_type": None,
    }


def checks_after_bulk_read(
    followed: list[Tracked], items: list[IvkJob]
) -> list[tuple[Tracked, tuple[Any, ...]]]:
    """The inbox messages a bulk read of queue items calls for (runs already in step: none)."""
    by_id = {item.item_id: item for item in items}
    messages: list[tuple[Tracked, tuple[Any, ...]]] = []
    for tracked in followed:
        item = by_id.get(tracked.item_id)
        if item is None:
            messages.append((tracked, ("check",)))  # gone? confirmed by a read of its own
        elif run_status_for(str(item.status)) != tracked.status:
            messages.append((tracked, ("check", item)))
    return messages
