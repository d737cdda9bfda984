"""Why a run ended badly: every ``RunError`` the gateway stores, built in one place.

A run's ``error`` column and the ``error`` of its ``run.failed`` / ``run.canceled`` event hold
one of these (as JSON): InvokeAI's own report of a failed item, or the gateway's reason when
InvokeAI never ran it or lost it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.core.errors import GatewayError, WorkflowInvalid
from app.schemas.runs import RunError
from invokeai_py_client.exceptions import APIStatusError
from invokeai_py_client.queue.models import failed_node_in

__all__ = ["deadline_error", "from_item", "lost_error", "refusal_error", "status_error"]

StoredError = dict[str, Any]  # a RunError as the run's JSON column holds it


def _stored(error: RunError) -> StoredError:
    return error.model_dump()


def from_item(item: Mapping[str, Any], hint: Mapping[str, Any] | None = None) -> StoredError:
    """The error of a failed queue item, completed by its ``node.failed`` event's data."""
    session = item.get("session")
    node_id, node_type = failed_node_in(session if isinstance(session, Mapping) else {})
    hint = hint or {}
    return _stored(
        RunError(
            error_type=item.get("error_type") or hint.get("error_type"),
            error_message=item.get("error_message") or hint.get("error_message"),
            node_id=hint.get("node_id") or node_id,
            node_type=hint.get("node_type") or node_type,
        )
    )


def lost_error(item_id: int, batch_id: str | None) -> StoredError:
    """The error of a run whose queue item InvokeAI no longer has."""
    return _stored(
        RunError(
            error_type="QueueItemNotFound",
            error_message=(
                f"InvokeAI no longer has queue item {item_id} of batch {batch_id} "
                "(its queue was cleared, pruned or replaced); the run's outcome is unknown"
            ),
        )
    )


def deadline_error(cancel_at: datetime | None, now: datetime) -> StoredError | None:
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
    return _stored(
        RunError(
            error_type="DeadlineExceeded",
            error_message=f"canceled: unfinished at its deadline {cancel_at.isoformat()}",
        )
    )


def refusal_error(exc: GatewayError) -> StoredError:
    """The error of a pending run that InvokeAI (or its stored workflow) refused."""
    problems = list(exc.errors or [])
    node_id = next((p.get("node_id") for p in problems if p.get("node_id")), None)
    return _stored(
        RunError(
            error_type="WorkflowInvalid" if isinstance(exc, WorkflowInvalid) else "InputInvalid",
            error_message=str(exc),
            node_id=node_id,
        )
    )


def status_error(exc: APIStatusError) -> StoredError:
    """The error of a pending run whose enqueue InvokeAI answered with an error status."""
    return _stored(
        RunError(error_type="EnqueueRefused", error_message=f"InvokeAI refused the enqueue: {exc}")
    )
