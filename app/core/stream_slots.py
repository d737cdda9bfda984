"""A cap on open Server-Sent Events streams: in all, and per API key.

Each stream holds a connection, a broker subscription and a task for as long as the client
keeps it open, so without a cap one caller could hold them all. The check is a pure ASGI
middleware around the SSE routes, inside the key check: only a caller with a valid key (or a
local one, without keys) takes a slot. Past the cap per key: 429; past the cap in all: 503;
both with ``Retry-After``. A slot is freed when its response ends.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter

from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.asgi import send_problem

__all__ = ["StreamLimit", "StreamSlots", "is_stream_path"]

_STREAM_PATH = re.compile(r"^/(?:events|(?:runs|batches)/[^/]+/events)/?$")
RETRY_AFTER_SECONDS = 5


def is_stream_path(path: str) -> bool:
    """Whether ``path`` is one of the SSE routes."""
    return _STREAM_PATH.match(path) is not None


class StreamSlots:
    """Counts of open streams, in all and per caller."""

    def __init__(self, total: int, per_key: int) -> None:
        self.total = total
        self.per_key = per_key
        self.open = 0
        self.by_key: Counter[str] = Counter()

    def refusal(self, key: str) -> tuple[int, str] | None:
        """Why a new stream of ``key`` cannot open now (status, detail), or None."""
        if self.by_key[key] >= self.per_key:
            return 429, f"this API key has {self.per_key} event streams open already"
        if self.open >= self.total:
            return 503, f"the gateway serves {self.total} event streams already"
        return None

    def take(self, key: str) -> None:
        """Count one more open stream of ``key``."""
        self.open += 1
        self.by_key[key] += 1

    def give_back(self, key: str) -> None:
        """Count one stream of ``key`` less."""
        self.open -= 1
        self.by_key[key] -= 1
        if self.by_key[key] <= 0:
            del self.by_key[key]


def _caller(scope: Scope) -> str:
    """Who opens the stream: a digest of its bearer token ("" without one)."""
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            return hashlib.sha256(value).hexdigest()[:32]
    return ""


class StreamLimit:
    """Refuses an SSE request past the caps of ``slots``; holds a slot while it streams."""

    def __init__(self, app: ASGIApp, total: int, per_key: int, keyed: bool = True) -> None:
        self.app = app
        self.slots = StreamSlots(total, per_key)
        self.keyed = keyed  # without keys every caller is the same local user

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_stream_path(str(scope.get("path"))):
            await self.app(scope, receive, send)
            return
        key = _caller(scope) if self.keyed else ""
        refusal = self.slots.refusal(key)
        if refusal is not None:
            status, detail = refusal
            title = "Too many streams" if status == 429 else "Stream capacity reached"
            retry = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
            await send_problem(
                scope, send, status=status, title=title, detail=detail, headers=retry
            )
            return
        self.slots.take(key)
        try:
            await self.app(scope, receive, send)
        finally:
            self.slots.give_back(key)
