"""Webhooks: standing subscriptions, a run's delivery log, and redelivery.

Every delivery is a Standard Webhooks message (``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64>``) signed with ``GATEWAY_WEBHOOK_SECRET``; receivers check it
with ``invokeai_py_client.webhooks.verify_signature`` or any Standard Webhooks library.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from app import crud, crud_webhooks
from app.api.deps import RunDep, SessionDep, SettingsDep
from app.core.errors import GatewayError, NotFound, WorkflowInvalid
from app.core.names import ID_MAX_CHARS, MAX_URL_CHARS
from app.models import WebhookEventName
from app.services.webhooks import check_target
from app.webhook_models import WebhookDelivery, WebhookSubscription

__all__ = ["router"]

router = APIRouter(tags=["webhooks"])

EVENTS_HELP = (
    "queued (run.queued), started (run.started), progress (node.progress), completed "
    "(run.succeeded), failed (run.failed), canceled (run.canceled); default: the terminal three"
)


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
        None, max_length=len(get_args(WebhookEventName)), description=EVENTS_HELP
    )
    workflow_id: str | None = Field(
        None, max_length=ID_MAX_CHARS, description="Only runs of this workflow (None: all)."
    )
    description: str = Field("", max_length=1000)


class TooManySubscriptions(GatewayError):
    """The cap on standing subscriptions (``GATEWAY_WEBHOOK_MAX_SUBSCRIPTIONS``) is reached."""

    status_code = 409
    title = "Too many subscriptions"


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


def _subscription(row: WebhookSubscription) -> SubscriptionPublic:
    return SubscriptionPublic(
        id=row.id,
        url=row.url,
        event_types=list(row.event_types or ["completed", "failed", "canceled"]),
        workflow_id=row.workflow_id,
        description=row.description,
        created_at=row.created_at,
    )


def _delivery(row: WebhookDelivery, attempts: list[Any]) -> DeliveryPublic:
    return DeliveryPublic(
        **row.model_dump(exclude={"attempts"}),
        attempt_count=row.attempts,
        attempts=[AttemptPublic.model_validate(a, from_attributes=True) for a in attempts],
    )


def _notify(request: Request) -> None:
    worker = getattr(request.app.state, "webhook_worker", None)
    if worker is not None:
        worker.notify()


@router.post(
    "/webhooks",
    status_code=status.HTTP_201_CREATED,
    response_model=SubscriptionPublic,
    responses={
        409: {"description": "As many subscriptions as GATEWAY_WEBHOOK_MAX_SUBSCRIPTIONS."},
        422: {"description": "Bad body, unknown workflow, or a refused URL."},
    },
)
async def create_subscription(
    body: SubscriptionCreate, session: SessionDep, settings: SettingsDep, response: Response
) -> SubscriptionPublic:
    """Deliver matching events of every run (of one workflow, or all) to a URL."""
    cap = settings.webhook_max_subscriptions
    if len(crud_webhooks.list_subscriptions(session=session)) >= cap:
        raise TooManySubscriptions(f"there are already {cap} subscriptions: delete one first")
    await check_target(body.url, allow_private=settings.webhook_allow_private)
    if (
        body.workflow_id is not None
        and crud.get_workflow(session=session, workflow_id=body.workflow_id) is None
    ):
        raise WorkflowInvalid(f"no workflow with id {body.workflow_id!r}")
    row = crud_webhooks.create_subscription(
        session=session,
        url=body.url,
        event_types=list(dict.fromkeys(body.event_types)) if body.event_types else None,
        workflow_id=body.workflow_id,
        description=body.description,
    )
    response.headers["Location"] = f"/webhooks/{row.id}"
    return _subscription(row)


@router.get("/webhooks", response_model=SubscriptionsPublic)
def list_subscriptions(
    session: SessionDep,
    workflow_id: Annotated[
        str | None, Query(description="Only those that receive runs of this workflow.")
    ] = None,
    event_type: Annotated[
        WebhookEventName | None, Query(description="Only those that receive this event.")
    ] = None,
) -> SubscriptionsPublic:
    """Standing subscriptions, oldest first."""
    rows = crud_webhooks.list_subscriptions(
        session=session, workflow_id=workflow_id, event_type=event_type
    )
    return SubscriptionsPublic(data=[_subscription(r) for r in rows], count=len(rows))


def _found(session: SessionDep, subscription_id: str) -> WebhookSubscription:
    row = crud_webhooks.get_subscription(session=session, subscription_id=subscription_id)
    if row is None:
        raise NotFound(f"no webhook subscription with id {subscription_id!r}")
    return row


@router.get(
    "/webhooks/{subscription_id}",
    response_model=SubscriptionPublic,
    responses={404: {"description": "Unknown subscription."}},
)
def get_subscription(subscription_id: str, session: SessionDep) -> SubscriptionPublic:
    """One subscription."""
    return _subscription(_found(session, subscription_id))


@router.delete(
    "/webhooks/{subscription_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"description": "Unknown subscription."}},
)
def delete_subscription(subscription_id: str, session: SessionDep) -> Response:
    """Stop a subscription; its deliveries still pending are marked failed."""
    crud_webhooks.delete_subscription(
        session=session, subscription=_found(session, subscription_id)
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/runs/{run_id}/deliveries",
    response_model=DeliveriesPublic,
    responses={404: {"description": "Unknown run."}},
)
def list_deliveries(run: RunDep, session: SessionDep) -> DeliveriesPublic:
    """The run's webhook deliveries, oldest first, each with all its attempts."""
    rows = crud_webhooks.list_run_deliveries(session=session, run_id=run.id)
    attempts = crud_webhooks.list_attempts(session=session, delivery_ids=[r.id for r in rows])
    data = [_delivery(r, attempts[r.id]) for r in rows]
    return DeliveriesPublic(data=data, count=len(data))


@router.post(
    "/runs/{run_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryPublic,
    responses={404: {"description": "Unknown run or delivery."}},
)
def redeliver(
    run: RunDep, delivery_id: str, session: SessionDep, request: Request, response: Response
) -> DeliveryPublic:
    """Send a delivery's payload again, as a new delivery (new ``webhook-id``, same
    ``data.event_id``), whatever became of the original; it is retried like any other."""
    original = crud_webhooks.get_delivery(session=session, delivery_id=delivery_id)
    if original is None or original.run_id != run.id:
        raise NotFound(f"run {run.id!r} has no delivery {delivery_id!r}")
    row = crud_webhooks.copy_delivery(session=session, delivery=original)
    _notify(request)
    response.headers["Location"] = f"/runs/{run.id}/deliveries"
    return _delivery(row, [])
