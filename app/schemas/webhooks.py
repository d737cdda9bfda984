"""The API's shapes of webhook subscriptions and deliveries (the ``/webhooks`` routes and a
run's delivery log)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.names import ID_MAX_CHARS, MAX_URL_CHARS
from app.schemas.events import WEBHOOK_EVENT_NAMES, WebhookEventName, webhook_events_help

__all__ = [
    "AttemptPublic",
    "DeliveriesPublic",
    "DeliveryPublic",
    "SubscriptionCreate",
    "SubscriptionPublic",
    "SubscriptionsPublic",
]

EVENTS_HELP = webhook_events_help()


class SubscriptionCreate(BaseModel):
    """The body of ``POST /webhooks``."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "url": "https://example.com/hooks/invokeai",
                    "event_types": ["completed", "failed"],
                    "workflow_id": None,
                    "description": "notify the CMS",
                }
            ]
        }
    )

    url: str = Field(
        max_length=MAX_URL_CHARS, description="http(s) URL that receives the signed POSTs."
    )
    event_types: list[WebhookEventName] | None = Field(
        None, max_length=len(WEBHOOK_EVENT_NAMES), description=EVENTS_HELP
    )
    workflow_id: str | None = Field(
        None, max_length=ID_MAX_CHARS, description="Only runs of this workflow (None: all)."
    )
    description: str = Field("", max_length=1000)


class SubscriptionPublic(BaseModel):
    """A standing subscription."""

    id: str
    url: str
    event_types: list[str]
    workflow_id: str | None
    description: str
    created_at: datetime


class SubscriptionsPublic(BaseModel):
    """Subscriptions."""

    data: list[SubscriptionPublic]
    count: int


class AttemptPublic(BaseModel):
    """One attempt at a delivery."""

    attempted_at: datetime
    status_code: int | None = Field(description="The receiver's HTTP status (None: no answer).")
    error: str | None
    duration_ms: float | None


class DeliveryPublic(BaseModel):
    """One delivery (its ``id`` is the ``webhook-id`` header) with every attempt."""

    id: str
    run_id: str | None
    subscription_id: str | None = Field(description="None: the run's own webhook_url.")
    run_event_id: int | None
    url: str
    event_type: str
    status: str = Field(description="pending, delivered or failed (retry window over).")
    attempt_count: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]
    attempts: list[AttemptPublic]


class DeliveriesPublic(BaseModel):
    """The delivery log of a run."""

    data: list[DeliveryPublic]
    count: int
