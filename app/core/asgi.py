"""Answering from pure ASGI middleware: a problem+json response sent without the framework."""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.types import Scope, Send

from app.core.errors import PROBLEM_JSON

__all__ = ["send_problem"]


async def send_problem(
    scope: Scope,
    send: Send,
    *,
    status: int,
    title: str,
    detail: str,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Send a whole ``application/problem+json`` response (RFC 9457)."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    body["instance"] = scope.get("path", "")
    start_headers = [(b"content-type", PROBLEM_JSON.encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": start_headers})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
