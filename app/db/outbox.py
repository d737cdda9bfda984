"""Database functions of the webhook tables, keyword-only.

``add_run_event_with_deliveries`` is the heart of the outbox: it stores a run event and the
deliveries it causes in ONE transaction, so an event is never stored without its deliveries
(or the other way round), whatever happens to the process right after.
"""

from __future__ import annotations

import threading
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, insert, or_, update
from sqlalchemy import select as core_select
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Session, col, select

from app.db.tables import Run, RunEvent, utcnow
from app.db.webhook_tables import (
    DeliveryStatus,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from app.webhooks.policy import build_payload, event_name_for, wants

__all__ = [
    "StoredEvent",
    "add_attempt",
    "add_run_event_with_deliveries",
    "claim_deliveries",
    "copy_delivery",
    "create_subscription",
    "delete_subscription",
    "due_deliveries",
    "get_delivery",
    "get_subscription",
    "list_attempts",
    "list_run_deliveries",
    "list_subscriptions",
]

# Standing subscriptions are read on every webhook-relevant event: they are kept in memory,
# re-read after every change made through this process and at least this often (a change
# made by another process on the same database is seen within this time).
SUBSCRIPTIONS_TTL_SECONDS = 2.0
_EVENT_TABLE: Table = RunEvent.__table__  # type: ignore[attr-defined]
_RUN_TABLE: Table = Run.__table__  # type: ignore[attr-defined]
_DELIVERY_TABLE: Table = WebhookDelivery.__table__  # type: ignore[attr-defined]
_INSERT_EVENT = insert(_EVENT_TABLE)
_INSERT_DELIVERY = insert(_DELIVERY_TABLE)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """A run event as committed (its id is the SSE id); what the broker publishes."""

    id: int
    run_id: str
    workflow_id: str
    event_type: str
    data: dict[str, Any]
    created_at: datetime

    def as_event(self) -> dict[str, Any]:
        """The event as the broker publishes it and the SSE streams send it."""
        return {
            "id": self.id,
            "run_id": self.run_id,
            "workflow_id": self.workflow_id,
            "event": self.event_type,
            "data": self.data,
            "created_at": self.created_at,
        }


@dataclass(frozen=True, slots=True)
class _StandingTarget:
    id: str
    url: str
    event_types: list[str] | None
    workflow_id: str | None


_SUBSCRIPTION_TABLE: Table = WebhookSubscription.__table__  # type: ignore[attr-defined]
_ALL_SUBSCRIPTIONS = core_select(
    _SUBSCRIPTION_TABLE.c.id,
    _SUBSCRIPTION_TABLE.c.url,
    _SUBSCRIPTION_TABLE.c.event_types,
    _SUBSCRIPTION_TABLE.c.workflow_id,
).order_by(_SUBSCRIPTION_TABLE.c.created_at, _SUBSCRIPTION_TABLE.c.id)


class _SubscriptionCache:
    """Every standing subscription of one database, oldest first, read at most every TTL."""

    def __init__(self) -> None:
        self._rows: list[_StandingTarget] | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()  # sync routes run in worker threads

    def invalidate(self) -> None:
        with self._lock:
            self._rows = None

    def matching(
        self, connection: Connection, workflow_id: str, name: str
    ) -> list[_StandingTarget]:
        """The subscriptions that want event ``name`` of a run of ``workflow_id``."""
        with self._lock:
            rows = self._rows
            if rows is None or time.monotonic() - self._read_at > SUBSCRIPTIONS_TTL_SECONDS:
                found = connection.execute(_ALL_SUBSCRIPTIONS)
                rows = self._rows = [_StandingTarget(*r) for r in found]
                self._read_at = time.monotonic()
        return [
            r for r in rows if r.workflow_id in (None, workflow_id) and wants(name, r.event_types)
        ]


_CACHES: weakref.WeakKeyDictionary[Engine, _SubscriptionCache] = weakref.WeakKeyDictionary()


def _subscriptions(holder: Session | Connection) -> _SubscriptionCache:
    engine = holder.get_bind() if isinstance(holder, Session) else holder.engine
    assert isinstance(engine, Engine)
    cache = _CACHES.get(engine)
    if cache is None:
        cache = _CACHES[engine] = _SubscriptionCache()
    return cache


# -- subscriptions --------------------------------------------------------------------------


def create_subscription(
    *,
    session: Session,
    url: str,
    event_types: list[str] | None,
    workflow_id: str | None,
    description: str = "",
) -> WebhookSubscription:
    """Store a standing subscription."""
    row = WebhookSubscription(
        url=url, event_types=event_types, workflow_id=workflow_id, description=description
    )
    session.add(row)
    session.commit()
    session.refresh(row)
    _subscriptions(session).invalidate()
    return row


def get_subscription(*, session: Session, subscription_id: str) -> WebhookSubscription | None:
    """One subscription, or None."""
    return session.get(WebhookSubscription, subscription_id)


def list_subscriptions(
    *, session: Session, workflow_id: str | None = None, event_type: str | None = None
) -> list[WebhookSubscription]:
    """Subscriptions, oldest first; filters keep those that would receive that workflow/event.

    A subscription for every workflow matches any ``workflow_id``; one with the default
    event types matches the terminal events.
    """
    query = select(WebhookSubscription)
    if workflow_id is not None:
        query = query.where(
            or_(
                col(WebhookSubscription.workflow_id).is_(None),
                col(WebhookSubscription.workflow_id) == workflow_id,
            )
        )
    query = query.order_by(col(WebhookSubscription.created_at), col(WebhookSubscription.id))
    rows = list(session.exec(query).all())
    if event_type is not None:
        rows = [r for r in rows if wants(event_type, r.event_types)]
    return rows


def delete_subscription(*, session: Session, subscription: WebhookSubscription) -> int:
    """Delete a subscription; its pending deliveries fail (returns how many)."""
    query = select(WebhookDelivery).where(
        WebhookDelivery.subscription_id == subscription.id,
        WebhookDelivery.status == DeliveryStatus.pending.value,
    )
    stopped = 0
    for delivery in session.exec(query):
        delivery.status = DeliveryStatus.failed.value
        delivery.next_attempt_at = None
        delivery.last_error = "the subscription was deleted"
        session.add(delivery)
        stopped += 1
    session.delete(subscription)
    session.commit()
    _subscriptions(session).invalidate()
    return stopped


# -- the outbox -----------------------------------------------------------------------------


def _run_columns(connection: Connection, run_id: str) -> dict[str, Any] | None:
    row = connection.execute(core_select(_RUN_TABLE).where(_RUN_TABLE.c.id == run_id)).first()
    return dict(row._mapping) if row is not None else None


def _targets(
    connection: Connection, run: Mapping[str, Any], name: str
) -> list[tuple[str, str | None]]:
    """(url, subscription id) of every target that wants event ``name`` of ``run``."""
    targets: list[tuple[str, str | None]] = []
    if run.get("webhook_url") and wants(name, run.get("webhook_events")):
        targets.append((run["webhook_url"], None))
    for sub in _subscriptions(connection).matching(connection, run["workflow_id"], name):
        targets.append((sub.url, sub.id))
    return targets


def add_run_event_with_deliveries(
    *,
    connection: Connection,
    run_id: str,
    workflow_id: str,
    event_type: str,
    data: dict[str, Any],
    run: Mapping[str, Any] | None = None,
    webhook: tuple[str | None, list[str] | None] | None = None,
) -> StoredEvent:
    """Store one run event and, in the same transaction, the deliveries it causes.

    The caller owns the transaction (``with engine.begin() as connection``) and may put
    more in it. ``run``, the run's columns when the caller holds them already, saves
    reading the row again; so does ``webhook``, the run's own (url, events), for an event
    that no target wants. Plain Core statements, no ORM session: this runs for every event
    of every run, between InvokeAI's event and the SSE streams.
    """
    created_at = utcnow()
    values: dict[str, Any] = {"run_id": run_id, "workflow_id": workflow_id}
    values |= {"event_type": event_type, "data": data, "created_at": created_at}
    key = connection.execute(_INSERT_EVENT, values).inserted_primary_key
    assert key is not None
    row = StoredEvent(id=int(key[0]), **values)
    name = event_name_for(event_type)
    if name is None:
        return row
    if run is None and webhook is not None:
        known = {"webhook_url": webhook[0], "webhook_events": webhook[1]}
        if not _targets(connection, known | {"workflow_id": workflow_id}, name):
            return row  # nobody wants it: no need to read the run
    columns = run if run is not None else _run_columns(connection, run_id)
    targets = _targets(connection, columns, name) if columns is not None else []
    if targets:
        assert columns is not None
        payload = build_payload(
            event_type=event_type,
            event_id=row.id,
            event_time=row.created_at,
            event_data=data,
            run=columns,
        )
        deliveries = [_delivery(row, url, subscription, payload) for url, subscription in targets]
        connection.execute(_INSERT_DELIVERY, deliveries)
    return row


def _delivery(
    event: StoredEvent, url: str, subscription_id: str | None, payload: dict[str, Any]
) -> dict[str, Any]:
    """A pending delivery row, due now, with every column set (a Core insert)."""
    now = utcnow()
    return {
        "id": str(uuid.uuid4()),
        "run_id": event.run_id,
        "subscription_id": subscription_id,
        "run_event_id": event.id,
        "url": url,
        "event_type": event.event_type,
        "payload": payload,
        "status": DeliveryStatus.pending.value,
        "attempts": 0,
        "next_attempt_at": now,
        "last_status_code": None,
        "last_error": None,
        "created_at": now,
        "delivered_at": None,
    }


def copy_delivery(*, session: Session, delivery: WebhookDelivery) -> WebhookDelivery:
    """A new pending delivery with the same target and payload (a redelivery: new id)."""
    row = WebhookDelivery(
        run_id=delivery.run_id,
        subscription_id=delivery.subscription_id,
        run_event_id=delivery.run_event_id,
        url=delivery.url,
        event_type=delivery.event_type,
        payload=delivery.payload,
        next_attempt_at=utcnow(),
    )
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def get_delivery(*, session: Session, delivery_id: str) -> WebhookDelivery | None:
    """One delivery, or None."""
    return session.get(WebhookDelivery, delivery_id)


def due_deliveries(
    *, session: Session, now: datetime, exclude: Sequence[str] = (), limit: int = 50
) -> Sequence[WebhookDelivery]:
    """Pending deliveries whose next attempt is due, oldest due first."""
    query = select(WebhookDelivery).where(
        WebhookDelivery.status == DeliveryStatus.pending.value,
        col(WebhookDelivery.next_attempt_at) <= now,
    )
    if exclude:
        query = query.where(col(WebhookDelivery.id).not_in(list(exclude)))
    query = query.order_by(col(WebhookDelivery.next_attempt_at), col(WebhookDelivery.created_at))
    return session.exec(query.limit(limit)).all()


def claim_deliveries(
    *, session: Session, deliveries: Sequence[WebhookDelivery], seconds: float
) -> list[WebhookDelivery]:
    """The ``deliveries`` this caller won, each pushed ``seconds`` into the future: a
    conditional UPDATE per row (still pending, still due when it was read), so of several
    processes reading the same due rows exactly one attempts each."""
    claimed = []
    until = utcnow() + timedelta(seconds=seconds)
    for delivery in deliveries:
        won = session.execute(
            update(WebhookDelivery)
            .where(
                col(WebhookDelivery.id) == delivery.id,
                col(WebhookDelivery.status) == DeliveryStatus.pending.value,
                col(WebhookDelivery.next_attempt_at) == delivery.next_attempt_at,
            )
            .values(next_attempt_at=until)
        )
        if getattr(won, "rowcount", 0):
            claimed.append(delivery)
    session.commit()
    return claimed


def add_attempt(
    *,
    session: Session,
    delivery: WebhookDelivery,
    status_code: int | None,
    error: str | None,
    duration_ms: float | None,
    next_at: datetime | None,
    delivered: bool,
) -> WebhookDelivery:
    """Record one attempt and move the delivery on (delivered, retried at ``next_at``, failed)."""
    now = utcnow()
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            attempted_at=now,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
        )
    )
    delivery.attempts += 1
    delivery.last_status_code = status_code
    delivery.last_error = error
    if delivered:
        delivery.status = DeliveryStatus.delivered.value
        delivery.delivered_at = now
        delivery.next_attempt_at = None
    elif next_at is None:
        delivery.status = DeliveryStatus.failed.value
        delivery.next_attempt_at = None
    else:
        delivery.next_attempt_at = next_at
    session.add(delivery)
    session.commit()
    session.refresh(delivery)
    return delivery


def list_run_deliveries(*, session: Session, run_id: str) -> Sequence[WebhookDelivery]:
    """Every delivery of a run, oldest first."""
    query = select(WebhookDelivery).where(WebhookDelivery.run_id == run_id)
    return session.exec(
        query.order_by(col(WebhookDelivery.created_at), col(WebhookDelivery.id))
    ).all()


def list_attempts(
    *, session: Session, delivery_ids: Sequence[str]
) -> dict[str, list[WebhookAttempt]]:
    """The attempts of these deliveries, oldest first, keyed by delivery id."""
    found: dict[str, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
    if not delivery_ids:
        return found
    query = select(WebhookAttempt).where(col(WebhookAttempt.delivery_id).in_(list(delivery_ids)))
    for attempt in session.exec(query.order_by(col(WebhookAttempt.id))):
        found[attempt.delivery_id].append(attempt)
    return found
