"""Pure translation of InvokeAI's events and queue items into the gateway's run events.

The stable event types (the ``event`` member of every SSE message)::

    run.queued      {"item_id", "batch_id"}                       the run was accepted
    run.started     {"item_id", "session_id"}                     InvokeAI began executing it
    node.started    {"node_id", "node_type"}
    node.progress   {"node_id", "node_type", "percentage", "message"}
                                                                  percentage: 0..1 or null
    node.completed  {"node_id", "node_type", "output_type", "image_names"}
    node.failed     {"node_id", "node_type", "error_type", "error_message"}
    run.succeeded   {"outputs": [...]}                            terminal
    run.failed      {"error": {"error_type", "error_message", "node_id", "node_type"}}
                                                                  terminal
    run.canceled    {}                                            terminal
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

from invokeai_py_client.queue.models import failed_node_in

__all__ = [
    "NODE_EVENTS",
    "error_from_item",
    "image_names_in",
    "node_event",
    "outputs_with_urls",
    "run_status_for",
]

# InvokeAI event name -> gateway event type, for the per-node events.
NODE_EVENTS: dict[str, str] = {
    "invocation_started": "node.started",
    "invocation_progress": "node.progress",
    "invocation_complete": "node.completed",
    "invocation_error": "node.failed",
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


def node_event(event_type: str, payload: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The gateway event for one per-node InvokeAI event, or None for other events."""
    kind = NODE_EVENTS.get(event_type)
    if kind is None:
        return None
    invocation = payload.get("invocation") or {}
    data: dict[str, Any] = {
        "node_id": payload.get("invocation_source_id"),
        "node_type": invocation.get("type") if isinstance(invocation, Mapping) else None,
    }
    if kind == "node.progress":
        data["percentage"] = payload.get("percentage")
        data["message"] = payload.get("message") or ""
    elif kind == "node.completed":
        result = payload.get("result") or {}
        data["output_type"] = result.get("type") if isinstance(result, Mapping) else None
        data["image_names"] = list(dict.fromkeys(image_names_in(result)))
    elif kind == "node.failed":
        data["error_type"] = payload.get("error_type")
        data["error_message"] = payload.get("error_message")
    return kind, data


def error_from_item(
    item: Mapping[str, Any], hint: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The run's error from a failed queue item, completed by a ``node.failed`` event's data."""
    session = item.get("session")
    node_id, node_type = failed_node_in(session if isinstance(session, Mapping) else {})
    hint = hint or {}
    return {
        "error_type": item.get("error_type") or hint.get("error_type"),
        "error_message": item.get("error_message") or hint.get("error_message"),
        "node_id": hint.get("node_id") or node_id,
        "node_type": hint.get("node_type") or node_type,
    }


def image_url(name: str) -> str:
    """The gateway URL of an image."""
    return f"/images/{quote(name, safe='')}"


def outputs_with_urls(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored outputs with the gateway URLs of their images added."""
    shown = []
    for out in outputs:
        names = list(out.get("image_names") or [])
        images = [
            {"image_name": n, "url": image_url(n), "thumbnail_url": f"{image_url(n)}?thumbnail=1"}
            for n in names
        ]
        shown.append({**out, "image_names": names, "images": images})
    return shown
