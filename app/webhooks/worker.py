"""The outbox worker: sends due webhook deliveries, records every attempt, retries, gives up.

All state is in the database (``webhookdelivery``, ``webhookattempt``), so a restart, even
after SIGKILL, picks up where the last process stopped: a delivery whose attempt was cut off
is still pending and is sent again (at least once; receivers dedupe by ``webhook-id``).

One attempt::

    load the pending row -> check the URL against the policy (resolving its host again,
    and connecting to the address that was checked) -> sign (Standard Webhooks) -> POST
    -> 2xx: delivered | else: retry at now + backoff, or failed once the window is over
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app._version import gateway_version
from app.core.config import Settings
from app.db import outbox
from app.db.tables import utcnow
from app.db.thread import DatabaseThread
from app.db.webhook_tables import DeliveryStatus, WebhookDelivery
from app.webhooks.policy import TargetUnresolved, WebhookTargetRefused, check_target, next_attempt
from app.webhooks.post import post_bounded
from invokeai_py_client.webhooks import (
    generate_secret,
    parse_retry_after,
    parse_secrets,
    webhook_headers,
)

__all__ = ["SECRET_FILE", "WebhookWorker", "signing_secrets"]

logger = logging.getLogger(__name__)

SECRET_FILE = "webhook-secret"
POLL_SECONDS = 0.5  # the longest a new delivery waits before its first attempt
BATCH = 50
CLAIM_MARGIN_SECONDS = 30.0  # beyond an attempt's timeout, before a claimed delivery is due again
CONCURRENCY = 16  # attempts sent at once
MAX_IN_FLIGHT = 4 * CONCURRENCY  # deliveries taken from the outbox at once (bounded memory)
MAX_ERROR_CHARS = 500


def signing_secrets(settings: Settings) -> list[str]:
    """The configured secrets (first signs), or one generated once and kept in data_dir.

    The secret is never logged; only where a generated one is kept.
    """
    configured = parse_secrets(settings.webhook_secret.get_secret_value())
    if configured:
        return configured
    path = Path(settings.data_dir) / SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(generate_secret() + "\n")
        logger.warning("GATEWAY_WEBHOOK_SECRET is not set: generated one in %s", path)
    return parse_secrets(path.read_text())


def body_bytes(payload: object) -> bytes:
    """The exact bytes sent (and signed) for a stored payload."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


class WebhookWorker:
    """Sends the outbox; one per process, started and stopped by the app's lifespan."""

    def __init__(
        self,
        *,
        engine: Engine,
        db: DatabaseThread,
        settings: Settings,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.engine = engine
        self.db = db
        self.settings = settings
        self._transport = transport
        self._secrets: list[str] = []
        self._http: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._in_flight: set[str] = set()
        self._sends: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(CONCURRENCY)
        self._rng = random.Random()

    async def start(self) -> None:
        """Load the secrets and start sending (pending rows of earlier processes included)."""
        self._secrets = signing_secrets(self.settings)
        for secret in self._secrets:  # fail at start, not at the first delivery
            webhook_headers(b"", secret, msg_id="check", timestamp=0)
        self._task = asyncio.create_task(self._run_forever(), name="gateway-webhook-worker")

    def _client(self) -> httpx.AsyncClient:
        """The HTTP client of deliveries, made at the first one: its TLS context (the CA
        bundle loaded) costs a start-up tens of milliseconds and a few MB that a gateway
        without webhooks never needs."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=self.settings.webhook_timeout_seconds,
                follow_redirects=False,  # a redirect could lead past the URL policy
                trust_env=False,
                transport=self._transport,
                headers={"user-agent": f"invokeai-gateway/{gateway_version()}"},
            )
        return self._http

    async def stop(self) -> None:
        """Stop sending; an attempt cut off here stays pending and is retried next start."""
        tasks = [t for t in (self._task, *self._sends) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._http is not None:
            await self._http.aclose()

    def notify(self) -> None:
        """Look for due deliveries now (after a redelivery was queued)."""
        self._wake.set()

    async def _run_forever(self) -> None:
        while True:
            try:
                await self._dispatch_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not stop the outbox
                logger.exception("webhook worker: cannot read the outbox")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
            self._wake.clear()

    async def _dispatch_due(self) -> None:
        room = min(BATCH, MAX_IN_FLIGHT - len(self._in_flight))
        if room <= 0:
            return  # a finishing attempt wakes the loop
        exclude = list(self._in_flight)
        # Claimed for as long as an attempt may take (then due again if this process died
        # sending it): with several processes on one database, each attempt is made once.
        lease = self.settings.webhook_timeout_seconds + CLAIM_MARGIN_SECONDS
        due = await self.db.run(_due, self.engine, exclude, room, lease)
        for delivery in due:
            self._in_flight.add(delivery.id)
            task = asyncio.create_task(self._send_guarded(delivery))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _send_guarded(self, delivery: WebhookDelivery) -> None:
        try:
            async with self._slots:
                await self._send(delivery)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("webhook delivery %s: unexpected error", delivery.id)
            # Logged as a failed attempt and retried later: never a tight loop on one row.
            with contextlib.suppress(Exception):
                error = f"internal error: {type(exc).__name__}"
                await self._record(delivery, None, error, None, self._retry_at(delivery, None))
        finally:
            self._in_flight.discard(delivery.id)
            self._wake.set()  # room for the next due delivery (a backlog drains steadily)

    async def _send(self, delivery: WebhookDelivery) -> None:
        try:
            target = await check_target(
                delivery.url, allow_private=self.settings.webhook_allow_private
            )
        except TargetUnresolved as exc:  # a DNS failure may pass: try again later
            retry_at = self._retry_at(delivery, None)
            await self._record(delivery, None, exc.detail[:MAX_ERROR_CHARS], None, retry_at)
            return
        except WebhookTargetRefused as exc:
            # Checked again at send time: DNS may have changed since the URL was accepted.
            await self._record(
                delivery, None, f"refused by the URL policy: {exc.detail}", None, None
            )
            return
        body = body_bytes(delivery.payload)
        headers = webhook_headers(
            body, self._secrets[0], msg_id=delivery.id, timestamp=int(time.time())
        )
        headers.update({"content-type": "application/json", "host": target.host_header()})
        extensions = {"sni_hostname": target.host} if target.address else None
        started = time.perf_counter()
        try:
            response = await post_bounded(
                self._client(),
                target.pinned_url(),
                content=body,
                headers=headers,
                extensions=extensions,
                deadline=self.settings.webhook_timeout_seconds,
            )
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
            await self._record(delivery, None, error, _ms(started), self._retry_at(delivery, None))
            return
        duration = _ms(started)
        if response.is_success:
            await self._record(delivery, response.status_code, None, duration, None, delivered=True)
            return
        error = f"HTTP {response.status_code}"
        next_at = self._retry_at(delivery, parse_retry_after(response))
        await self._record(delivery, response.status_code, error, duration, next_at)

    def _retry_at(self, delivery: WebhookDelivery, retry_after: float | None) -> datetime | None:
        settings = self.settings
        return next_attempt(
            attempts=delivery.attempts + 1,
            created_at=delivery.created_at,
            now=utcnow(),
            window=settings.webhook_retry_window_seconds,
            base=settings.webhook_backoff_base_seconds,
            cap=settings.webhook_backoff_cap_seconds,
            rng=self._rng,
            retry_after=retry_after,
        )

    async def _record(
        self,
        delivery: WebhookDelivery,
        status_code: int | None,
        error: str | None,
        duration_ms: float | None,
        next_at: datetime | None,
        *,
        delivered: bool = False,
    ) -> None:
        attempt = _Attempt(status_code, error, duration_ms, next_at, delivered)
        await self.db.run(_record_attempt, self.engine, delivery.id, attempt)
        if not delivered:
            logger.info(
                "webhook delivery %s attempt failed (%s)", delivery.id, error or status_code
            )


@dataclass(frozen=True)
class _Attempt:
    status_code: int | None
    error: str | None
    duration_ms: float | None
    next_at: datetime | None
    delivered: bool


def _due(
    engine: Engine, exclude: list[str], limit: int, lease_seconds: float
) -> list[WebhookDelivery]:
    with Session(engine, expire_on_commit=False) as session:
        due = outbox.due_deliveries(session=session, now=utcnow(), exclude=exclude, limit=limit)
        return outbox.claim_deliveries(session=session, deliveries=due, seconds=lease_seconds)


def _record_attempt(engine: Engine, delivery_id: str, attempt: _Attempt) -> None:
    with Session(engine, expire_on_commit=False) as session:
        row = outbox.get_delivery(session=session, delivery_id=delivery_id)
        if row is None or row.status != DeliveryStatus.pending.value:
            return  # deleted subscription: its row was closed meanwhile
        outbox.add_attempt(
            session=session,
            delivery=row,
            status_code=attempt.status_code,
            error=attempt.error,
            duration_ms=attempt.duration_ms,
            next_at=attempt.next_at,
            delivered=attempt.delivered,
        )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
