"""Typed Socket.IO events of the session queue.

The server emits each event under its name with a JSON payload (``EventBase`` subclasses in
``invokeai/app/services/events/events_common.py``). ``parse_event`` turns a name and payload
into one of the models below; an event this module does not know, or a payload that does not
fit, becomes a plain ``InvokeAIEvent`` that keeps every member, so nothing is ever lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field, ValidationError, computed_field

from .._models import APIModel
from ..queue.models import OpenJobStatus, is_terminal_status

__all__ = [
    "BatchEnqueuedEvent",
    "EventsResyncEvent",
    "InvocationCompleteEvent",
    "InvocationErrorEvent",
    "InvocationEvent",
    "InvocationProgressEvent",
    "InvocationStartedEvent",
    "InvokeAIEvent",
    "ProgressImage",
    "QueueClearedEvent",
    "QueueItemEvent",
    "QueueItemStatusChangedEvent",
    "QueueItemsCanceledEvent",
    "QueueItemsRetriedEvent",
    "denoising_step",
    "parse_event",
]


class InvokeAIEvent(APIModel):
    """Any event from the server; ``event_type`` is the Socket.IO event name."""

    EVENT_NAME: ClassVar[str] = ""

    event_type: str = ""
    timestamp: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The payload as plain JSON data, with ``event_type`` added."""
        data = self.model_dump(mode="json")
        data["event_type"] = self.event_type
        return data


class QueueItemEvent(InvokeAIEvent):
    """An event about one queue item."""

    queue_id: str = ""
    item_id: int
    batch_id: str = ""
    origin: str | None = None
    destination: str | None = None
    user_id: str | None = None


class InvocationEvent(QueueItemEvent):
    """An event about one node of a running session."""

    session_id: str = ""
    invocation: dict[str, Any] = Field(default_factory=dict)
    invocation_source_id: str = ""

    @property
    def node_id(self) -> str:
        """The node id as it was sent in the graph (the source of the prepared node)."""
        return self.invocation_source_id

    @property
    def node_type(self) -> str | None:
        """The invocation type of the node, e.g. ``"img_blur"``."""
        node_type = self.invocation.get("type")
        return node_type if isinstance(node_type, str) else None


class InvocationStartedEvent(InvocationEvent):
    EVENT_NAME = "invocation_started"
    event_type: str = EVENT_NAME


def denoising_step(invocation: Any, percentage: Any) -> tuple[int | None, int | None]:
    """``(step, total_steps)`` of a denoising node's progress, or ``None`` where unknowable.

    InvokeAI's progress event carries the running invocation with its inputs but no step
    number: a denoising node's ``steps`` input is the total, and the ``percentage`` it sends is
    ``step / total`` (half steps for second-order schedulers, which send twice per step).
    Other progress of the same node ("Loading model ...") has no percentage: no step.
    """
    total = invocation.get("steps") if isinstance(invocation, Mapping) else None
    if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
        return None, None
    if not isinstance(percentage, int | float) or isinstance(percentage, bool):
        return None, total
    return round(percentage * total), total


class ProgressImage(APIModel):
    """A preview of a node's output while it runs (a small JPEG as a ``data:`` URL)."""

    width: int
    height: int
    data_url: str = Field(alias="dataURL")


class InvocationProgressEvent(InvocationEvent):
    """Progress of a node: a message, a fraction done and, while denoising, a preview."""

    EVENT_NAME = "invocation_progress"
    event_type: str = EVENT_NAME
    message: str = ""
    percentage: float | None = None
    image: dict[str, Any] | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def step(self) -> int | None:
        """The denoising step this progress reports (None: not a denoising step)."""
        return denoising_step(self.invocation, self.percentage)[0]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def total_steps(self) -> int | None:
        """The denoising node's number of steps (None: not a denoising node)."""
        return denoising_step(self.invocation, self.percentage)[1]

    @property
    def preview(self) -> ProgressImage | None:
        """The preview image sent with this progress, if any."""
        return None if self.image is None else ProgressImage.model_validate(self.image)


class InvocationCompleteEvent(InvocationEvent):
    EVENT_NAME = "invocation_complete"
    event_type: str = EVENT_NAME
    result: dict[str, Any] = Field(default_factory=dict)


class InvocationErrorEvent(InvocationEvent):
    EVENT_NAME = "invocation_error"
    event_type: str = EVENT_NAME
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None


class QueueItemStatusChangedEvent(QueueItemEvent):
    """A queue item changed status; the terminal ones end a run."""

    EVENT_NAME = "queue_item_status_changed"
    event_type: str = EVENT_NAME
    status: OpenJobStatus
    session_id: str = ""
    status_sequence: int | None = None
    error_type: str | None = None
    error_message: str | None = None
    error_traceback: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    batch_status: dict[str, Any] | None = None
    queue_status: dict[str, Any] | None = None

    @property
    def is_terminal(self) -> bool:
        return is_terminal_status(self.status)


class BatchEnqueuedEvent(InvokeAIEvent):
    EVENT_NAME = "batch_enqueued"
    event_type: str = EVENT_NAME
    queue_id: str = ""
    batch_id: str
    enqueued: int = 0
    requested: int = 0
    priority: int = 0
    origin: str | None = None
    user_id: str | None = None


class QueueItemsCanceledEvent(InvokeAIEvent):
    """Bulk cancels (by batch, destination, clear) send this instead of one event per item."""

    EVENT_NAME = "queue_items_canceled"
    event_type: str = EVENT_NAME
    queue_id: str = ""
    canceled_item_ids: list[int] = Field(default_factory=list)
    user_ids: list[str] = Field(default_factory=list)


class QueueItemsRetriedEvent(InvokeAIEvent):
    EVENT_NAME = "queue_items_retried"
    event_type: str = EVENT_NAME
    queue_id: str = ""
    retried_item_ids: list[int] = Field(default_factory=list)


class QueueClearedEvent(InvokeAIEvent):
    EVENT_NAME = "queue_cleared"
    event_type: str = EVENT_NAME
    queue_id: str = ""
    user_id: str | None = None


class EventsResyncEvent(InvokeAIEvent):
    """Made by the client, not the server: events may have been missed (a reconnect, or a
    reader too slow for its bounded queue). Whoever waits on an item should re-check it."""

    EVENT_NAME = "events_resync"
    event_type: str = EVENT_NAME
    reason: str = ""


_EVENT_CLASSES: dict[str, type[InvokeAIEvent]] = {
    cls.EVENT_NAME: cls
    for cls in (
        InvocationStartedEvent,
        InvocationProgressEvent,
        InvocationCompleteEvent,
        InvocationErrorEvent,
        QueueItemStatusChangedEvent,
        BatchEnqueuedEvent,
        QueueItemsCanceledEvent,
        QueueItemsRetriedEvent,
        QueueClearedEvent,
        EventsResyncEvent,
    )
}


def parse_event(event_type: str, payload: Any) -> InvokeAIEvent:
    """Parse one event into its model; unknown or odd payloads become ``InvokeAIEvent``."""
    data = dict(payload) if isinstance(payload, dict) else {"data": payload}
    data["event_type"] = event_type
    cls = _EVENT_CLASSES.get(event_type, InvokeAIEvent)
    try:
        return cls.model_validate(data)
    except ValidationError:
        return InvokeAIEvent.model_validate(data)
