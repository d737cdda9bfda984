"""The run events: one enum, and everything about each type in one table (``EVENT_SPECS``).

The OpenAPI schema of the SSE routes (``RunEventPublic``), the webhook event names and their
defaults, the terminal set the streams stop at, and the table in docs/events.md are all read
from here; a new event type is one member, one entry in ``EVENT_SPECS`` (its payload model,
meaning, webhook name) and the code that produces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

__all__ = [
    "DEFAULT_WEBHOOK_EVENTS",
    "EVENT_SPECS",
    "TERMINAL_EVENT_TYPES",
    "WEBHOOK_EVENT_NAMES",
    "CanceledData",
    "EventSpec",
    "FailedData",
    "NodeCompletedData",
    "NodeData",
    "NodeFailedData",
    "NodeProgressData",
    "QueuedData",
    "RunEventPublic",
    "RunEventType",
    "StartedData",
    "SucceededData",
    "WebhookEventName",
    "event_table_markdown",
    "run_event_type_for_webhook",
    "webhook_events_help",
    "webhook_table_markdown",
]


class RunEventType(StrEnum):
    """The ``event`` of every relayed run event (and the ``type`` of a webhook payload)."""

    run_queued = "run.queued"
    run_started = "run.started"
    node_started = "node.started"
    node_progress = "node.progress"
    node_completed = "node.completed"
    node_failed = "node.failed"
    node_preview = "node.preview"
    run_succeeded = "run.succeeded"
    run_failed = "run.failed"
    run_canceled = "run.canceled"

    @property
    def spec(self) -> EventSpec:
        """Everything about this type."""
        return EVENT_SPECS[self]

    @property
    def terminal(self) -> bool:
        """True for the last event of a run (a per-run stream ends after it)."""
        return self.spec.terminal


# -- payloads (the ``data`` member) ---------------------------------------------------------


class _Payload(BaseModel):
    # Stored payloads are checked against these in the tests; extra keys would be undocumented.
    model_config = ConfigDict(extra="forbid")


class QueuedData(_Payload):
    item_id: int
    batch_id: str | None
    backend: str | None = None  # several InvokeAI servers: the one that took it
    synthetic: bool = False


class StartedData(_Payload):
    item_id: int
    session_id: str | None
    synthetic: bool = False


class NodeData(_Payload):
    node_id: str | None
    node_type: str | None


class NodeProgressData(NodeData):
    percentage: float | None
    message: str
    step: int | None = None
    total_steps: int | None = None


class NodePreviewData(NodeData):
    step: int | None
    width: int
    height: int
    url: str


class NodeCompletedData(NodeData):
    output_type: str | None
    image_names: list[str]


class NodeFailedData(NodeData):
    error_type: str | None
    error_message: str | None


class _RunErrorData(_Payload):
    error_type: str | None = None
    error_message: str | None = None
    node_id: str | None = None
    node_type: str | None = None


class _OutputData(_Payload):
    node_id: str
    node_type: str | None = None
    label: str | None = None
    image_names: list[str] = []
    video_names: list[str] = []
    board_id: str | None = None
    values: list[Any] = []


class SucceededData(_Payload):
    outputs: list[_OutputData]
    synthetic: bool = False


class FailedData(_Payload):
    error: _RunErrorData
    synthetic: bool = False


class CanceledData(_Payload):
    error: _RunErrorData | None = None
    synthetic: bool = False


@dataclass(frozen=True)
class EventSpec:
    """One event type: its payload, what it means, and how webhooks name it."""

    payload: type[_Payload]
    meaning: str
    webhook_name: str | None = None  # None: never delivered by webhook
    terminal: bool = False
    stored: bool = True  # False: live only (no id, never replayed nor delivered by webhook)


EVENT_SPECS: dict[RunEventType, EventSpec] = {
    RunEventType.run_queued: EventSpec(
        QueuedData,
        "InvokeAI took the run (the 202 can come before it: the run's `item_id` is `null` "
        "until then); with several InvokeAI servers, `backend` names the one (a run moved "
        "off a lost server is queued again on another)",
        webhook_name="queued",
    ),
    RunEventType.run_started: EventSpec(
        StartedData, "InvokeAI began executing it", webhook_name="started"
    ),
    RunEventType.node_started: EventSpec(
        NodeData, "a node began (`node_id` is the workflow's node id)"
    ),
    RunEventType.node_progress: EventSpec(
        NodeProgressData,
        "progress of a node; `percentage` 0..1 or `null`; `step` of `total_steps` for a "
        "denoising node (else `null`)",
        webhook_name="progress",
    ),
    RunEventType.node_preview: EventSpec(
        NodePreviewData,
        "**live only, with `?previews=true`**: the image of a denoising step (`url` a small "
        "JPEG `data:` URL standing for an image of `width` x `height`); no `id`, never "
        "stored nor replayed, and a reader that fell behind gets the latest one only",
        stored=False,
    ),
    RunEventType.node_completed: EventSpec(NodeCompletedData, "a node finished"),
    RunEventType.node_failed: EventSpec(NodeFailedData, "a node raised an error"),
    RunEventType.run_succeeded: EventSpec(
        SucceededData,
        "the run finished; `outputs` has one entry per output node (`GET /runs/{id}` adds "
        "image and video URLs)",
        webhook_name="completed",
        terminal=True,
    ),
    RunEventType.run_failed: EventSpec(
        FailedData,
        "the run failed; `error` says why and names the failing node",
        webhook_name="failed",
        terminal=True,
    ),
    RunEventType.run_canceled: EventSpec(
        CanceledData,
        "the run was canceled; `error.error_type` is `DeadlineExceeded` when its deadline "
        "(Cancel-After) did it",
        webhook_name="canceled",
        terminal=True,
    ),
}

TERMINAL_EVENT_TYPES: frozenset[str] = frozenset(t.value for t in RunEventType if t.terminal)

# -- webhook names --------------------------------------------------------------------------

_BY_WEBHOOK_NAME: dict[str, RunEventType] = {
    spec.webhook_name: kind for kind, spec in EVENT_SPECS.items() if spec.webhook_name
}
WEBHOOK_EVENT_NAMES: tuple[str, ...] = tuple(_BY_WEBHOOK_NAME)
# Without a choice, a webhook target gets the end of each run.
DEFAULT_WEBHOOK_EVENTS: tuple[str, ...] = tuple(
    spec.webhook_name for spec in EVENT_SPECS.values() if spec.terminal and spec.webhook_name
)


def run_event_type_for_webhook(name: str) -> RunEventType:
    """The run event type a webhook event name reports (KeyError: not a webhook name)."""
    return _BY_WEBHOOK_NAME[name]


def _known_webhook_name(name: str) -> str:
    if name not in _BY_WEBHOOK_NAME:
        raise ValueError(f"unknown webhook event {name!r}; known: {', '.join(_BY_WEBHOOK_NAME)}")
    return name


WebhookEventName = Annotated[
    str,
    AfterValidator(_known_webhook_name),
    WithJsonSchema({"type": "string", "enum": list(WEBHOOK_EVENT_NAMES)}),
]


def webhook_events_help() -> str:
    """The webhook event names with the run event each reports, and the default."""
    names = ", ".join(
        f"{spec.webhook_name} ({kind.value})"
        for kind, spec in EVENT_SPECS.items()
        if spec.webhook_name
    )
    return f"{names}; default: {', '.join(DEFAULT_WEBHOOK_EVENTS)}"


# -- the wire shape -------------------------------------------------------------------------


class RunEventPublic(BaseModel):
    """One run event as the SSE streams send it (the JSON of each message's ``data:``)."""

    id: int | None = Field(
        description="The event's id, also its SSE id; null only for live-only `node.preview`."
    )
    run_id: str
    workflow_id: str
    event: RunEventType
    data: (
        QueuedData
        | StartedData
        | NodeProgressData
        | NodePreviewData
        | NodeCompletedData
        | NodeFailedData
        | NodeData
        | SucceededData
        | FailedData
        | CanceledData
    )
    created_at: datetime


def _members(payload: type[BaseModel]) -> str:
    """``{a, b: {c, d}, e: [{f}]}``: the members of a payload, nested models spelt out."""
    parts = []
    for name, info in payload.model_fields.items():
        if name == "synthetic":
            continue  # documented once, below the table
        annotation = info.annotation
        args = get_args(annotation)
        model = next(a for a in args if a is not type(None)) if type(None) in args else annotation
        if get_origin(model) is list and isinstance(get_args(model)[0], type):
            item = get_args(model)[0]
            if issubclass(item, BaseModel):
                parts.append(f"{name}: [{_members(item)}]")
                continue
        if isinstance(model, type) and issubclass(model, BaseModel):
            parts.append(f"{name}: {_members(model)}")
        else:
            parts.append(name)
    return "{" + ", ".join(parts) + "}"


def event_table_markdown() -> str:
    """The event-type table of docs/events.md (a test keeps the two equal)."""
    lines = ["| `event` | `data` | meaning |", "| --- | --- | --- |"]
    for kind, spec in EVENT_SPECS.items():
        meaning = f"**terminal**: {spec.meaning}" if spec.terminal else spec.meaning
        lines.append(f"| `{kind.value}` | `{_members(spec.payload)}` | {meaning} |")
    return "\n".join(lines)


def webhook_table_markdown() -> str:
    """The webhook-name table of docs/webhooks.md (a test keeps the two equal)."""
    lines = [
        "| event name (what you send) | run event (`type` of the payload) | when |",
        "| --- | --- | --- |",
    ]
    for kind, spec in EVENT_SPECS.items():
        if spec.webhook_name:
            meaning = f"**terminal**: {spec.meaning}" if spec.terminal else spec.meaning
            lines.append(f"| `{spec.webhook_name}` | `{kind.value}` | {meaning} |")
    return "\n".join(lines)
