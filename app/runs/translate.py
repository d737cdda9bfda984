"""Pure translation of InvokeAI's events and queue statuses into the gateway's run events.

The event types and their payloads are defined once, in ``app.schemas.events``; this module
only says which InvokeAI event becomes which of them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from app.schemas.events import RunEventType
from invokeai_py_client.events import denoising_step

__all__ = ["NODE_EVENTS", "image_names_in", "node_event", "run_status_for"]

# InvokeAI event name -> gateway event type, for the per-node events.
NODE_EVENTS: dict[str, RunEventType] = {
    "invocation_started": RunEventType.node_started,
    "invocation_progress": RunEventType.node_progress,
    "invocation_complete": RunEventType.node_completed,
    "invocation_error": RunEventType.node_failed,
}

# Queue item status -> run status.
_RUN_STATUS: dict[str, str] = {
    "pending": "queued",
    "waiting": "queued",
    "in_progress": "running",
    "completed": "succeeded",
    "failed": "failed",
    "canceled": "canceled",
}


def run_status_for(item_status: str) -> str | None:
    """The run status of a queue item status (None for a status the gateway does not know)."""
    return _RUN_STATUS.get(str(item_status))


def image_names_in(value: Any) -> Iterator[str]:
    """Every ``image_name`` found in a node result (image outputs, collections of images)."""
    if isinstance(value, Mapping):
        name = value.get("image_name")
        if isinstance(name, str):
            yield name
        for key, inner in value.items():
            if key != "image_name":
                yield from image_names_in(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from image_names_in(inner)


def node_event(
    event_type: str, payload: Mapping[str, Any]
) -> tuple[RunEventType, dict[str, Any]] | None:
    """The gateway event for one per-node InvokeAI event, or None for other events."""
    kind = NODE_EVENTS.get(event_type)
    if kind is None:
        return None
    invocation = payload.get("invocation") or {}
    data: dict[str, Any] = {
        "node_id": payload.get("invocation_source_id"),
        "node_type": invocation.get("type") if isinstance(invocation, Mapping) else None,
    }
    if kind is RunEventType.node_progress:
        data["percentage"] = payload.get("percentage")
        data["message"] = payload.get("message") or ""
        data["step"], data["total_steps"] = denoising_step(invocation, data["percentage"])
    elif kind is RunEventType.node_completed:
        result = payload.get("result") or {}
        data["output_type"] = result.get("type") if isinstance(result, Mapping) else None
        data["image_names"] = list(dict.fromkeys(image_names_in(result)))
    elif kind is RunEventType.node_failed:
        data["error_type"] = payload.get("error_type")
        data["error_message"] = payload.get("error_message")
    return kind, data
