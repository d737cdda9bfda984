"""An ASGI middleware counting HTTP requests by route template and status, and SSE streams.

Routes are labeled by their template (``/runs/{run_id}``), never the raw path, so the series
stay few. A request answered before routing (a 401 of the key check) is matched here against
the path templates of the OpenAPI document (the one list of routes that every FastAPI version
builds the same way); a path no route matches is labeled ``unmatched``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.routing import compile_path

from app.metrics.registry import GatewayMetrics

__all__ = ["HttpMetricsMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UNMATCHED = "unmatched"


Schema = Callable[[], dict[str, Any]]


class Templates:
    """Finds the route template of a path from the OpenAPI document (read on first use)."""

    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        self._compiled: list[tuple[re.Pattern[str], str]] | None = None

    def of(self, scope: Scope) -> str:
        path = getattr(scope.get("route"), "path", None)
        if isinstance(path, str):
            return path  # routed: the router said which route
        if self._compiled is None:
            # Patterns are anchored; fewer parameters first, so a literal path beats a
            # template that would also match it.
            templates = sorted(self.schema().get("paths", {}), key=lambda t: (t.count("{"), t))
            self._compiled = [(compile_path(t)[0], t) for t in templates]
        raw = str(scope.get("path", ""))
        for pattern, template in self._compiled:
            if pattern.match(raw):
                return template
        return UNMATCHED


def _is_event_stream(message: Message) -> bool:
    for name, value in message.get("headers") or []:
        if name.lower() == b"content-type":
            return bytes(value).startswith(b"text/event-stream")
    return False


class HttpMetricsMiddleware:
    """Counts each HTTP request once its answer ends; tracks open event streams."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, schema: Schema) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = Templates(schema)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees when the app raises before answering
        streaming = False

        async def send_counted(message: Message) -> None:
            nonlocal status, streaming
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if _is_event_stream(message):
                    streaming = True
                    self.metrics.sse_streams.inc()
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            if streaming:
                self.metrics.sse_streams.dec()
            self._count(scope, status, time.perf_counter() - started, streaming)

    def _count(self, scope: Scope, status: int, elapsed: float, streaming: bool) -> None:
        method = str(scope.get("method", ""))
        route = self.templates.of(scope)
        self.metrics.http_requests.labels(method, route, str(status)).inc()
        if not streaming:
            self.metrics.http_duration.labels(method, route).observe(elapsed)
