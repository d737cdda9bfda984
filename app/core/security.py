"""API keys, the loopback-only rule, CORS, and errors that carry their own headers.

With ``GATEWAY_API_KEYS`` set, every request but the health probes (``/livez``, ``/readyz``)
and the web console's static files (``/ui/``) needs ``Authorization: Bearer <key>``; this
includes ``/docs`` and ``/openapi.json`` (the spec maps the whole API, so it is not shown to
strangers), CORS preflights and unknown paths (a 401 rather than a 404, so paths cannot be
probed). The check is an ASGI middleware, so it also covers the SSE routes and routes FastAPI
adds by itself. Keys are compared in constant time against every configured key.

With no keys, the service refuses a non-loopback host: an open, unauthenticated port on a
network is never the default; ``app.core.request_guard`` then checks every request's peer,
``Host`` and ``Origin`` (a server started another way may still listen elsewhere).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app.core.config import Settings
from app.core.errors import PROBLEM_JSON

__all__ = [
    "PUBLIC_PATHS",
    "ApiKeyMiddleware",
    "InsecureBind",
    "check_bind",
    "install_security",
    "is_loopback",
    "key_matches",
    "quiet_header_loggers",
]

logger = logging.getLogger(__name__)

PUBLIC_PATHS = frozenset({"/livez", "/readyz"})
# The web console's static files hold no data; the calls the page makes carry the key.
PUBLIC_PREFIXES = ("/ui/",)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class InsecureBind(ValueError):
    """No API keys are set and the host is not a loopback address."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (``127.0.0.0/8``, ``::1``)."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# Loggers that print raw HTTP headers at DEBUG: InvokeAI's Set-Cookie and our Authorization.
HEADER_LOGGERS = ("httpcore", "hpack")


def quiet_header_loggers() -> None:
    """Keep loggers that dump raw headers above DEBUG, so tokens never reach a log."""
    for name in HEADER_LOGGERS:
        logger_ = logging.getLogger(name)
        if logger_.getEffectiveLevel() < logging.INFO:
            logger_.setLevel(logging.INFO)


def check_bind(settings: Settings) -> None:
    """Refuse to serve without keys on anything but loopback; say what is served.

    Raises:
        InsecureBind: no ``GATEWAY_API_KEYS`` and a non-loopback ``GATEWAY_HOST``.
    """
    if settings.api_key_list:
        logger.info("API keys required on every route but /livez and /readyz")
        return
    if not is_loopback(settings.host):
        raise InsecureBind(
            f"refusing to serve on {settings.host!r} without API keys: set GATEWAY_API_KEYS "
            "(comma-separated) or bind to a loopback host such as 127.0.0.1"
        )
    # Said of every request, not of the socket: a server started by hand may listen elsewhere.
    logger.warning(
        "no GATEWAY_API_KEYS set: answering loopback clients only (peer, Host and Origin "
        "checked on every request)"
    )


def key_matches(presented: str, keys: Iterable[str]) -> bool:
    """Whether ``presented`` is one of ``keys``, in time independent of where it matches."""
    given = presented.encode()
    found = False
    for key in keys:
        # No short-circuit: every key is compared, so timing says nothing about which matched.
        found |= hmac.compare_digest(given, key.encode())
    return found


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or []:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return str(token.strip())
    return None


def _is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path == "/ui" or path.startswith(PUBLIC_PREFIXES)


class ApiKeyMiddleware:
    """Answers 401 problem+json unless the request carries one of the keys."""

    def __init__(self, app: ASGIApp, keys: list[str]) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Preflights too: with CORS configured its middleware answers them before this one;
        # without, a preflight that skipped the key would tell which paths exist (405/404).
        if scope["type"] != "http" or _is_public(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        if token is not None and key_matches(token, self.keys):
            await self.app(scope, receive, send)
            return
        detail = "a valid API key is required (Authorization: Bearer <key>)"
        body = {"type": "about:blank", "title": "Unauthorized", "status": 401, "detail": detail}
        body["instance"] = scope.get("path", "")
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"www-authenticate", b'Bearer realm="invokeai-gateway"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})


def _document_bearer(app: FastAPI) -> None:
    """Declare the bearer scheme in the OpenAPI document (Swagger UI gets an Authorize box)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schemes = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes["bearer"] = {"type": "http", "scheme": "bearer"}
            for path, operations in schema.get("paths", {}).items():
                if path in PUBLIC_PATHS:
                    continue
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_security(app: FastAPI, settings: Settings) -> None:
    """Add the API key check (when keys are set) and CORS (when allowed)."""
    quiet_header_loggers()
    keys = settings.api_key_list
    if keys:
        app.add_middleware(ApiKeyMiddleware, keys=keys)
        _document_bearer(app)
    origins = settings.cors_origin_list
    if origins:
        # Added last, so it is outermost: preflights are answered before the key check.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "Cancel-After",
                "Last-Event-ID",
                "Prefer",
            ],
            expose_headers=["Location", "Retry-After", "Idempotent-Replayed"],
        )
