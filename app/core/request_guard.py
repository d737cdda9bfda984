"""Per-request checks that keep a gateway without API keys private to its own desktop user.

Without ``GATEWAY_API_KEYS`` nothing authenticates a request, so the gateway must make sure,
request by request, that it comes from a program of the local user and not from a web page
that user has open (every page can send requests to loopback ports):

- the peer is a loopback address (``uvicorn --host 0.0.0.0`` cannot expose it);
- ``Host`` is a loopback name (``localhost``, ``127.0.0.0/8``, ``[::1]``), so a page whose
  DNS name rebinds to 127.0.0.1 is refused;
- a browser's cross-site request is refused: an ``Origin`` other than the gateway's own (and
  not on the CORS allowlist), ``Origin: null``, or ``Sec-Fetch-Site: cross-site``.

Whatever the mode, a request with a body must say it is JSON (or multipart on the upload
routes): browsers send ``text/plain``, form and multipart bodies cross-site without a CORS
preflight, never ``application/json``.

Both are pure ASGI middleware (no task per request), so SSE streams pass through untouched.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.asgi import send_problem
from app.core.body_limit import BodyLimit, accepts_multipart, has_body
from app.core.config import Settings
from app.core.stream_slots import StreamLimit

__all__ = [
    "ContentTypeGuard",
    "LocalOnlyGuard",
    "install_request_guards",
    "is_json_media_type",
    "is_loopback_host_header",
    "is_loopback_peer",
]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def is_loopback_peer(client: Iterable[object] | None) -> bool:
    """Whether an ASGI ``client`` (host, port) is a loopback address (IPv4-mapped too)."""
    if client is None:
        return False  # no TCP peer (a Unix socket): its file mode is not ours to trust
    host = str(next(iter(client), ""))
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _host_name(authority: str) -> str:
    """The host of a ``Host`` header value (port and IPv6 brackets removed)."""
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    name, _, port = authority.rpartition(":")
    return name if name and port.isdigit() else authority


def is_loopback_host_header(authority: str | None) -> bool:
    """Whether a ``Host`` header names this machine by a loopback name or address."""
    if not authority:
        return False
    name = _host_name(authority.strip()).lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_json_media_type(content_type: str | None) -> bool:
    """``application/json`` or a ``+json`` type such as ``application/problem+json``."""
    media = (content_type or "").partition(";")[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def _shown(value: str | None) -> str:
    """A caller's header value as an error message quotes it (bounded)."""
    return repr(value if value is None or len(value) <= 100 else value[:100] + "...")


class LocalOnlyGuard:
    """Refuses (403) what a gateway without keys must not answer: see the module docstring."""

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str] = ()) -> None:
        self.app = app
        self.allowed_origins = frozenset(o.rstrip("/") for o in allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        reason = self.refusal(scope)
        if reason is None:
            await self.app(scope, receive, send)
            return
        detail = f"{reason}; without GATEWAY_API_KEYS only local programs are answered"
        await send_problem(scope, send, status=403, title="Forbidden", detail=detail)

    def refusal(self, scope: Scope) -> str | None:
        """Why this request is refused (None: it may pass)."""
        if not is_loopback_peer(scope.get("client")):
            return "the client is not on a loopback address"
        host = _header(scope, b"host")
        if not is_loopback_host_header(host):
            return f"the Host header {_shown(host)} is not a loopback name"
        origin = _header(scope, b"origin")
        allowed = origin is not None and origin.rstrip("/") in self.allowed_origins
        if origin is not None and not allowed and origin != f"{scope.get('scheme')}://{host}":
            return f"cross-origin requests from {_shown(origin)} are refused"
        if _header(scope, b"sec-fetch-site") == "cross-site" and not allowed:
            return "cross-site requests are refused"
        return None


class ContentTypeGuard:
    """Answers 415 to a request whose body is not JSON (multipart only where files go)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not has_body(scope):
            await self.app(scope, receive, send)
            return
        content_type = _header(scope, b"content-type")
        media = (content_type or "").partition(";")[0].strip().lower()
        method, path = str(scope.get("method")), str(scope.get("path"))
        if is_json_media_type(media) or (
            media == "multipart/form-data" and accepts_multipart(method, path)
        ):
            await self.app(scope, receive, send)
            return
        wanted = "application/json" + (
            " or multipart/form-data" if accepts_multipart(method, path) else ""
        )
        detail = f"the body must be {wanted} (got {media or 'no Content-Type'})"
        await send_problem(scope, send, status=415, title="Unsupported media type", detail=detail)


def install_request_guards(app: FastAPI, settings: Settings) -> None:
    """Add the body checks (size, then type), the cap on event streams, and the local-only
    checks when no key is set.

    Call before ``install_security``: middleware added later wraps what was added before,
    so the key check (when keys are set) runs before the body checks, and CORS stays
    outermost, adding its headers to these refusals too.
    """
    app.add_middleware(
        StreamLimit,
        total=settings.max_streams,
        per_key=settings.max_streams_per_key,
        keyed=bool(settings.api_key_list),
    )
    app.add_middleware(ContentTypeGuard)
    app.add_middleware(BodyLimit, max_upload_bytes=settings.max_upload_bytes)
    if not settings.api_key_list:
        app.add_middleware(LocalOnlyGuard, allowed_origins=settings.cors_origin_list)
