"""Enqueueing one run: the handle's ``enqueue_batch`` body, the run's board, exactly once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from app.core.errors import InputInvalid, InvokeAIUnavailable, WorkflowInvalid
from invokeai_py_client.exceptions import (
    InputValidationError,
    UnprocessableEntityError,
    WorkflowValidationError,
)
from invokeai_py_client.workflow.handle import WorkflowHandle

__all__ = [
    "Enqueued",
    "QueueFull",
    "apply_board",
    "build_body",
    "nothing_sent",
    "send_body",
    "server_problems",
]

ORIGIN = "invokeai-gateway"


class QueueFull(InvokeAIUnavailable):
    """InvokeAI's queue took no item of the batch (it is at its ``max_queue_size``)."""


@dataclass(frozen=True)
class Enqueued:
    """Where InvokeAI put a run (``item_id``), or each run of a sweep (``item_ids``, in order)."""

    batch_id: str
    item_id: int
    item_ids: tuple[int, ...] = ()


def apply_board(body: dict[str, Any], definition: dict[str, Any], board_id: str) -> None:
    """Send every image-writing node's output to ``board_id`` unless its board was set."""
    has_board = {
        n["id"]
        for n in definition.get("nodes") or []
        if "board" in ((n.get("data") or {}).get("inputs") or {})
    }
    for node_id, node in body["batch"]["graph"]["nodes"].items():
        if node_id in has_board and not node.get("board"):
            node["board"] = {"board_id": board_id}


def server_problems(exc: UnprocessableEntityError, handle: WorkflowHandle) -> list[dict[str, Any]]:
    """InvokeAI's validation errors, each tied to the input index it concerns when one does."""
    by_target = {(i.node_id, i.field_name): i for i in handle.list_inputs()}
    problems = []
    detail = exc.detail if isinstance(exc.detail, list) else [{"msg": str(exc.detail)}]
    for entry in detail:
        loc = [str(part) for part in entry.get("loc", [])] if isinstance(entry, dict) else []
        reason = entry.get("msg", str(entry)) if isinstance(entry, dict) else str(entry)
        item = next((i for (n, f), i in by_target.items() if n in loc and f in loc), None)
        problems.append(
            {
                "index": item.input_index if item else None,
                "label": item.label if item else None,
                "field_name": item.field_name if item else None,
                "node_id": item.node_id if item else None,
                "reason": f"InvokeAI refused it: {reason} (at {'.'.join(loc)})",
            }
        )
    return problems


def _body(handle: WorkflowHandle, batch_id: str) -> dict[str, Any]:
    try:
        return handle.preview(batch_id=batch_id)
    except InputValidationError as exc:
        problem = {
            "index": exc.index,
            "label": exc.label,
            "field_name": exc.field_name,
            "node_id": exc.node_id,
            "reason": exc.reason,
        }
        raise InputInvalid(str(exc), errors=[problem]) from exc
    except WorkflowValidationError as exc:
        raise WorkflowInvalid(str(exc), errors=[{"reason": p} for p in exc.problems]) from exc


def nothing_sent(exc: BaseException) -> bool:
    """Whether a failed enqueue surely never reached InvokeAI (the connection was refused)."""
    return isinstance(exc.__cause__, httpx.ConnectError)


def build_body(
    handle: WorkflowHandle, *, board_id: str | None, destination: str | None, batch_id: str
) -> dict[str, Any]:
    """The ``enqueue_batch`` body of the handle's current values, as batch ``batch_id``.

    Raises:
        InputInvalid: a required input has no value.
        WorkflowInvalid: the workflow cannot be sent to this server.
    """
    handle.origin = ORIGIN
    handle.destination = destination
    body = _body(handle, batch_id)
    if board_id:
        apply_board(body, handle.definition.to_dict(), board_id)
    return body


async def send_body(handle: WorkflowHandle, body: dict[str, Any]) -> Enqueued:
    """Enqueue ``body`` (built from ``handle``) once, on the handle's server.

    The client never re-sends an enqueue: when the answer is lost it looks the batch up by
    its id and returns what InvokeAI did take.

    Raises:
        InputInvalid: InvokeAI refused a value (each problem tied to its input index).
        QueueFull: InvokeAI's queue is full (nothing was enqueued).
        APIConnectionError: InvokeAI is unreachable and the batch was not found there
            (``nothing_sent(exc)`` tells whether it surely was never sent).
    """
    try:
        result = await handle.client.queue_repo.aenqueue_batch(body)
    except UnprocessableEntityError as exc:
        problems = server_problems(exc, handle)
        raise InputInvalid("InvokeAI refused the run: " + str(exc), errors=problems) from exc
    if not result.item_ids:
        raise QueueFull(f"InvokeAI's queue is full: it took no item of batch {result.batch_id}")
    # InvokeAI answers newest first; its items were made in the batch's order.
    in_order = tuple(sorted(result.item_ids))
    return Enqueued(batch_id=result.batch_id, item_id=result.item_ids[0], item_ids=in_order)
