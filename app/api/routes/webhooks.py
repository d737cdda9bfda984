"""Webhooks: standing subscriptions, a run's delivery log, and redelivery.

Every delivery is a Standard Webhooks message (``webhook-id``, ``webhook-timestamp``,
``webhook-signature: v1,<base64>``) signed with ``GATEWAY_WEBHOOK_SECRET``; receivers check it
with ``invokeai_py_client.webhooks.verify_signature`` or any Standard Webhooks library.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from starlette.concurrency import run_in_threadpool

from app.api.deps import RunDep, SessionDep, SettingsDep, webhook_worker_of
from app.core.errors import GatewayError, NotFound, WorkflowInvalid
from app.db import outbox, queries
from app.db.webhook_tables import WebhookDelivery, WebhookSubscription
from app.schemas.events import DEFAULT_WEBHOOK_EVENTS, WebhookEventName
from app.schemas.webhooks import (
    AttemptPublic,
    DeliveriesPublic,
    DeliveryPublic,
    SubscriptionCreate,
    SubscriptionPublic,
    SubscriptionsPublic,
)
from app.webhooks.policy import check_target

__all__ = ["router"]

router = APIRouter(tags=["webhooks"])


class TooManySubscriptions(GatewayError):
    """The cap on standing subscriptions (``GATEWAY_WEBHOOK_MAX_SUBSCRIPTIONS``) is reached."""

    status_code = 409
    title = "Too many subscriptions"


def _subscription(row: WebhookSubscription) -> SubscriptionPublic:
    return SubscriptionPublic(
        id=row.id,
        url=row.url,
        event_types=list(row.event_types or DEFAULT_WEBHOOK_EVENTS),
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
    worker = webhook_worker_of(request)
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
    if len(await run_in_threadpool(outbox.list_subscriptions, session=session)) >= cap:
        raise TooManySubscriptions(f"there are already {cap} subscriptions: delete one first")
    await check_target(body.url, allow_private=settings.webhook_allow_private)
    if body.workflow_id is not None:
        found = await run_in_threadpool(
            queries.get_workflow, session=session, workflow_id=body.workflow_id
        )
        if found is None:
            raise WorkflowInvalid(f"no workflow with id {body.workflow_id!r}")
    row = await run_in_threadpool(
        outbox.create_subscription,
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
    rows = outbox.list_subscriptions(
        session=session, workflow_id=workflow_id, event_type=event_type
    )
    return SubscriptionsPublic(data=[_subscription(r) for r in rows], count=len(rows))


def _found(session: SessionDep, subscription_id: str) -> WebhookSubscription:
    row = outbox.get_subscription(session=session, subscription_id=subscription_id)
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
    outbox.delete_subscription(session=session, subscription=_found(session, subscription_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/runs/{run_id}/deliveries",
    response_model=DeliveriesPublic,
    responses={404: {"description": "Unknown run."}},
)
def list_deliveries(run: RunDep, session: SessionDep) -> DeliveriesPublic:
    """The run's webhook deliveries, oldest first, each with all its attempts."""
    rows = outbox.list_run_deliveries(session=session, run_id=run.id)
    attempts = outbox.list_attempts(session=session, delivery_ids=[r.id for r in rows])
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
    original = outbox.get_delivery(session=session, delivery_id=delivery_id)
    if original is None or original.run_id != run.id:
        raise NotFound(f"run {run.id!r} has no delivery {delivery_id!r}")
    row = outbox.copy_delivery(session=session, delivery=original)
    _notify(request)
    response.headers["Location"] = f"/runs/{run.id}/deliveries"
    return _delivery(row, [])
