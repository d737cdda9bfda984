"""One request-body limit for every route, enforced before any route or FastAPI reads a byte.

Two sizes, by what a route takes:

- the routes that take files (workflow files, images, run bodies with base64 images) accept
  ``GATEWAY_MAX_UPLOAD_BYTES`` plus ``MULTIPART_OVERHEAD`` for multipart framing (each of
  them also checks its exact limit while it reads);
- every other route takes small JSON objects (a board name, a webhook subscription):
  ``SMALL_BODY_BYTES``.

A declared ``Content-Length`` above the limit is answered 413 at once, without reading the
body; a chunked body is counted as it arrives and refused as soon as it passes the limit.
"""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.asgi import send_problem

__all__ = [
    "MULTIPART_OVERHEAD",
    "SMALL_BODY_BYTES",
    "BodyLimit",
    "BodyTooLarge",
    "accepts_multipart",
    "body_limit_for",
    "has_body",
]

# Multipart framing (boundaries, part headers) on top of the file itself.
MULTIPART_OVERHEAD = 64 * 1024
# The largest small JSON body: a subscription with a 2 KiB URL and a 1,000-character
# description is about 3 KiB.
SMALL_BODY_BYTES = 64 * 1024

# How much of a refused body is still read, so the client gets to read the 413 (see _drain).
DRAIN_BYTES = 1024 * 1024

_ID = r"[^/]+"
# (method, path) of the routes that take files; these take multipart, run bodies only JSON.
_MULTIPART_ROUTES = (
    ("POST", re.compile(r"^/workflows/?$")),
    ("PUT", re.compile(rf"^/workflows/{_ID}/?$")),
    ("POST", re.compile(r"^/images/?$")),
    ("POST", re.compile(r"^/v1/images/edits/?$")),  # OpenAI's edits: the image as a file
)
_LARGE_ROUTES = (*_MULTIPART_ROUTES, ("POST", re.compile(rf"^/workflows/{_ID}/runs/?$")))


def _matches(routes: tuple[tuple[str, re.Pattern[str]], ...], method: str, path: str) -> bool:
    return any(method == m and pattern.match(path) for m, pattern in routes)


def accepts_multipart(method: str, path: str) -> bool:
    """Whether the route takes a multipart upload (a workflow file or an image)."""
    return _matches(_MULTIPART_ROUTES, method, path)


def body_limit_for(method: str, path: str, max_upload_bytes: int) -> tuple[int, int]:
    """The largest body the route takes on the wire, and the limit its callers are told."""
    if _matches(_LARGE_ROUTES, method, path):
        return max_upload_bytes + MULTIPART_OVERHEAD, max_upload_bytes
    small = min(SMALL_BODY_BYTES, max_upload_bytes)
    return small, small


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers") or []:
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


def has_body(scope: Scope) -> bool:
    """Whether the request announces a body (a non-zero length, or chunked)."""
    for name, value in scope.get("headers") or []:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


class BodyTooLarge(HTTPException):
    """A body that passed the limit while it was read.

    An ``HTTPException``, so FastAPI's own body parsing lets it through as it is (it turns
    any other error of a body read into a 400).
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than the limit of {limit} bytes")


class BodyLimit:
    """Refuses bodies above the route's limit (413 problem+json); pure ASGI."""

    def __init__(self, app: ASGIApp, max_upload_bytes: int) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not has_body(scope):
            await self.app(scope, receive, send)
            return
        method, path = str(scope["method"]), str(scope["path"])
        limit, stated = body_limit_for(method, path, self.max_upload_bytes)
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            if declared - limit <= DRAIN_BYTES:
                await _drain(receive, DRAIN_BYTES + limit)
            await _too_large(scope, send, stated)
            return
        await self.app(scope, _counting(receive, limit, stated), send)


async def _drain(receive: Receive, budget: int) -> None:
    """Read and drop the rest of a refused body, up to ``budget`` bytes.

    uvicorn closes a connection whose request body was not read to its end; a client still
    sending then gets a reset instead of our 413. A body a little over the limit is read
    first, so an honest client learns why; a huge one is not worth reading.
    """
    while budget > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        budget -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def _counting(receive: Receive, limit: int, stated: int) -> Receive:
    seen = 0

    async def receive_counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                if message.get("more_body", False):
                    await _drain(receive, DRAIN_BYTES)
                raise BodyTooLarge(stated)
        return message

    return receive_counted


async def _too_large(scope: Scope, send: Send, limit: int) -> None:
    detail = f"the body is larger than the limit of {limit} bytes"
    await send_problem(scope, send, status=413, title="Payload too large", detail=detail)
