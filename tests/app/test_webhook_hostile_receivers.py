"""Webhook receivers are anyone's servers: the outbox must survive hostile or flaky ones.

The gateway is served by uvicorn with its real outbox worker; deliveries are put in the outbox
table (as the run service does) and sent to receivers on loopback that answer with a huge body,
drip their headers a byte at a time, or do not resolve. The attempt log says what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from app.core.config import Settings
from app.db.engine import make_engine
from app.db.tables import utcnow
from app.db.webhook_tables import WebhookAttempt, WebhookDelivery
from app.main import create_app
from tests.app.conftest import TIMEOUT, make_settings, wait_until
from tests.app.live_server import free_port, serve

HUGE_BYTES = 256 * 1024 * 1024
ATTEMPT_SECONDS = 2.0


class HostileReceiver:
    """A one-shot TCP server on loopback that answers the first request with ``answer``."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self._answer = answer
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/hook"
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        with connection:
            connection.settimeout(30)
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(65536)
            with contextlib.suppress(OSError):  # the gateway hung up: that is the point
                self._answer(connection)
        self.done.set()

    def close(self) -> None:
        self._listener.close()


def huge_body(sent: list[int]) -> Callable[[socket.socket], None]:
    def answer(connection: socket.socket) -> None:
        connection.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {HUGE_BYTES}\r\n\r\n".encode())
        block = b"x" * (1024 * 1024)
        while sent[0] < HUGE_BYTES:
            connection.sendall(block)
            sent[0] += len(block)

    return answer


def dripped_headers(connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    for _ in range(40):  # 10 s in all, one byte every 0.25 s
        connection.sendall(b"a")
        time.sleep(0.25)
    connection.sendall(b"\r\nContent-Length: 0\r\n\r\n")


@contextmanager
def receiver(answer: Callable[[socket.socket], None]) -> Iterator[HostileReceiver]:
    hostile = HostileReceiver(answer)
    try:
        yield hostile
    finally:
        hostile.close()


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Settings]:
    """A gateway (InvokeAI down: the outbox needs none) whose webhooks may go to loopback."""
    settings = make_settings(
        tmp_path,
        f"http://127.0.0.1:{free_port()}",
        webhook_allow_private=True,
        webhook_timeout_seconds=ATTEMPT_SECONDS,
    )
    async with serve(create_app(settings)):
        yield settings


def enqueue(settings: Settings, url: str) -> str:
    """Put a delivery in the outbox, due now; its id."""
    delivery = WebhookDelivery(
        url=url, event_type="run.succeeded", payload={"type": "run.succeeded", "data": {}}
    )
    delivery.next_attempt_at = utcnow()
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        session.add(delivery)
        session.commit()
        delivery_id = delivery.id
    engine.dispose()
    return delivery_id


def state(settings: Settings, delivery_id: str) -> tuple[WebhookDelivery, list[WebhookAttempt]]:
    engine = make_engine(settings.database_url)
    with Session(engine, expire_on_commit=False) as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        query = select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id)
        attempts = list(session.exec(query))
    engine.dispose()
    assert delivery is not None
    return delivery, attempts


async def first_attempt(settings: Settings, delivery_id: str) -> Any:
    def attempted() -> Any:
        delivery, attempts = state(settings, delivery_id)
        return (delivery, attempts[0]) if attempts else None

    return await wait_until(attempted, timeout=30)


async def test_a_huge_reply_is_not_read(outbox: Settings) -> None:
    sent = [0]
    with receiver(huge_body(sent)) as hostile:
        delivery_id = enqueue(outbox, hostile.url)
        delivery, attempt = await first_attempt(outbox, delivery_id)
        assert await asyncio.to_thread(hostile.done.wait, 30)
    assert attempt.status_code == 200 and delivery.status == "delivered"
    # Socket buffers hold a few MiB; reading the whole reply would have taken all 256.
    assert sent[0] < 32 * 1024 * 1024, f"the gateway read {sent[0] >> 20} MiB of the reply"


async def test_a_dripped_reply_has_one_deadline(outbox: Settings) -> None:
    with receiver(dripped_headers) as hostile:
        delivery_id = enqueue(outbox, hostile.url)
        started = time.monotonic()
        delivery, attempt = await first_attempt(outbox, delivery_id)
        took = time.monotonic() - started
    # httpx's per-read timeout restarts with every byte: 10 s of drip would have passed.
    assert took < ATTEMPT_SECONDS + 3, took
    assert attempt.status_code is None and "within" in attempt.error
    assert attempt.duration_ms < (ATTEMPT_SECONDS + 1) * 1000
    assert delivery.status == "pending" and delivery.next_attempt_at is not None  # retried


@pytest.fixture
async def public_only(tmp_path: Path) -> AsyncIterator[tuple[Settings, httpx.AsyncClient]]:
    """A gateway with the default outbound policy (public addresses only)."""
    settings = make_settings(tmp_path, f"http://127.0.0.1:{free_port()}")
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
    ):
        yield settings, http


async def test_a_name_that_does_not_resolve_is_retried(
    public_only: tuple[Settings, httpx.AsyncClient],
) -> None:
    settings, _http = public_only
    delivery_id = enqueue(settings, "http://receiver.invalid/hook")
    delivery, attempt = await first_attempt(settings, delivery_id)
    assert "cannot resolve" in attempt.error
    # A DNS failure may pass: the delivery waits for its next attempt instead of failing.
    assert delivery.status == "pending" and delivery.next_attempt_at is not None


@pytest.mark.parametrize("host", ["[fec0::1]", "[fec0:1:2::3]", "[feff::1]"])
async def test_site_local_ipv6_is_refused(
    public_only: tuple[Settings, httpx.AsyncClient], host: str
) -> None:
    _settings, http = public_only
    response = await http.post("/webhooks", json={"url": f"http://{host}/hook"})
    assert response.status_code == 422, response.text
    assert "site-local" in response.json()["detail"]
