"""A real webhook receiver on loopback for tests: records deliveries and checks signatures.

It runs a threaded HTTP server of its own (independent of the test's event loop, so a
gateway subprocess can reach it too) and can be told to answer with an error status or to
be down (its port closed; ``up()`` opens the same port again)::

    with WebhookReceiver(secrets=["whsec_..."]) as receiver:
        ... run with webhook_url=receiver.url ...
        receiver.wait_for(lambda got: len(got) >= 1)
        assert receiver.received[0].verified
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from invokeai_py_client.exceptions import InvalidWebhookSignatureError
from invokeai_py_client.webhooks import verify_signature

__all__ = ["Received", "WebhookReceiver"]


@dataclass
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    answered: int  # the status the receiver sent back
    verified: bool  # the signature checked out with the receiver's secrets
    error: str | None = None
    at: float = field(default_factory=time.time)

    @property
    def payload(self) -> Any:
        """The JSON body."""
        return json.loads(self.body)

    @property
    def msg_id(self) -> str:
        """The ``webhook-id`` header."""
        return self.headers["webhook-id"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256  # the stdlib's 5 refuses connections under a burst
    receiver: WebhookReceiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length)
        code = self.server.receiver.record(self.path, dict(self.headers.items()), body)
        self.send_response(code)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet tests


class WebhookReceiver:
    """Records every POST; answers ``status`` (200 by default), or is down."""

    def __init__(self, *, secrets: Sequence[str] = (), port: int = 0) -> None:
        self.secrets = list(secrets)
        self.status = 200
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The receiver's URL (the port stays the same across down/up)."""
        return f"http://127.0.0.1:{self._port}/hook"

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def up(self) -> None:
        """Listen (again) on the receiver's port."""
        if self._server is not None:
            return
        server = _Server(("127.0.0.1", self._port), _Handler)
        server.receiver = self
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        """Close the port: connections are refused until ``up()``."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> WebhookReceiver:
        self.up()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        """Check and keep one request; returns the status to answer."""
        lowered = {k.lower(): v for k, v in headers.items()}
        verified, error = False, None
        if self.secrets:
            try:
                verify_signature(body, lowered, self.secrets)
                verified = True
            except InvalidWebhookSignatureError as exc:
                error = str(exc)
        code = self.status
        with self._lock:
            self.received.append(Received(path, lowered, body, code, verified, error))
        return code

    def snapshot(self) -> list[Received]:
        """A copy of what was received so far."""
        with self._lock:
            return list(self.received)

    def accepted(self) -> list[Received]:
        """The deliveries answered with a 2xx."""
        return [r for r in self.snapshot() if 200 <= r.answered < 300]

    def wait_for(
        self, check: Callable[[list[Received]], bool], timeout: float = 60.0
    ) -> list[Received]:
        """Block until ``check(received)`` is true (for sync tests)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.snapshot()
            if check(got):
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"receiver: condition not met in {timeout} s; got {got}")
            time.sleep(0.05)

    async def until(
        self, check: Callable[[list[Received]], bool], timeout: float = 60.0
    ) -> list[Received]:
        """Wait until ``check(received)`` is true without blocking the event loop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            got = self.snapshot()
            if check(got):
                return got
            if loop.time() > deadline:
                raise AssertionError(f"receiver: condition not met in {timeout} s; got {got}")
            await asyncio.sleep(0.05)
