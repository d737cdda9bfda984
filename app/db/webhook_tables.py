"""Tables of the webhook outbox: standing subscriptions, deliveries and their attempts.

A delivery row is written in the same transaction as the run event it reports, so a
delivery can never be lost between "event stored" and "delivery queued"; the worker then
sends pending rows until they succeed or their retry window closes.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlmodel import Field, SQLModel

from app.db.tables import _json, _new_id, _time

__all__ = [
    "DeliveryStatus",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookSubscription",
]


class DeliveryStatus(StrEnum):
    pending = "pending"  # waiting for its first or next attempt
    delivered = "delivered"  # a 2xx answer was received
    failed = "failed"  # the retry window closed without a 2xx


class WebhookSubscription(SQLModel, table=True):
    """A standing subscription: deliver matching run events of any run to ``url``."""

    id: str = Field(default_factory=_new_id, primary_key=True)
    url: str
    event_types: list[str] | None = _json()  # None: the terminal ones
    workflow_id: str | None = Field(default=None, index=True)  # None: every workflow
    description: str = ""
    created_at: datetime = _time(nullable=False)


class WebhookDelivery(SQLModel, table=True):
    """One message to one URL (its id is the Standard Webhooks ``webhook-id``)."""

    id: str = Field(default_factory=_new_id, primary_key=True)
    run_id: str | None = Field(default=None, foreign_key="run.id", index=True)
    subscription_id: str | None = Field(default=None, index=True)
    run_event_id: int | None = None
    url: str
    event_type: str
    payload: dict[str, Any] = _json(nullable=False)
    status: str = Field(default=DeliveryStatus.pending.value, index=True)
    attempts: int = 0
    next_attempt_at: datetime | None = _time(index=True)
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime = _time(nullable=False)
    delivered_at: datetime | None = _time()


class WebhookAttempt(SQLModel, table=True):
    """One attempt at a delivery: when, what came back, how long it took."""

    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(foreign_key="webhookdelivery.id", index=True)
    attempted_at: datetime = _time(nullable=False)
    status_code: int | None = None
    error: str | None = None
    duration_ms: float | None = None
