"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``.

The ``/v1`` routes answer every error this way (OpenAI SDKs read ``error.message``), with
the status codes OpenAI uses: 400 for a bad parameter, 404 for an unknown model, 429 when
the gateway is full, 5xx when the gateway or InvokeAI cannot serve. A run that failed on
InvokeAI is a 500 with ``x-should-retry: false``: the SDKs retry 5xx by default, and
running the same failing workflow again would only fail again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, ParamSpec

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from app.core.errors import GatewayError
from invokeai_py_client.exceptions import APIConnectionError, APIStatusError

__all__ = ["OpenAIError", "openai_errors"]

logger = logging.getLogger(__name__)

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"


class OpenAIError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type_: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type_
        self.param = param
        self.code = code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }
        return JSONResponse(body, status_code=self.status, headers=self.headers)


def _gateway_error(exc: GatewayError) -> OpenAIError:
    message = exc.detail
    if exc.errors:
        reasons = [str(e.get("reason") or e.get("msg") or e) for e in exc.errors]
        message = f"{message}: " + "; ".join(reasons)
    status = exc.status_code
    if status == 429:
        return OpenAIError(
            message,
            status=429,
            type_="rate_limit_error",
            code="rate_limit_exceeded",
            headers=exc.headers,
        )
    if status >= 500:
        return OpenAIError(message, status=status, type_=SERVER_ERROR, headers=exc.headers)
    if status == 404:
        return OpenAIError(message, status=404, code="not_found")
    return OpenAIError(message, status=400, code=f"gateway_{status}")


def as_openai_error(exc: Exception) -> OpenAIError:
    """Any error met while serving a ``/v1`` request, in OpenAI's terms."""
    if isinstance(exc, OpenAIError):
        return exc
    if isinstance(exc, GatewayError):
        return _gateway_error(exc)
    if isinstance(exc, HTTPException):  # Starlette's own: a malformed multipart body, ...
        kind = INVALID_REQUEST if exc.status_code < 500 else SERVER_ERROR
        return OpenAIError(str(exc.detail), status=exc.status_code, type_=kind)
    if isinstance(exc, APIConnectionError):
        return OpenAIError(
            f"InvokeAI is unreachable: {exc}",
            status=503,
            type_=SERVER_ERROR,
            code="service_unavailable",
        )
    if isinstance(exc, APIStatusError):
        return OpenAIError(
            f"InvokeAI answered {exc.status_code}: {exc}",
            status=502,
            type_=SERVER_ERROR,
            code="upstream_error",
        )
    logger.exception("unexpected error in the OpenAI images API")
    return OpenAIError("internal error", status=500, type_=SERVER_ERROR)


P = ParamSpec("P")


def openai_errors(
    route: Callable[P, Awaitable[Any]],
) -> Callable[P, Awaitable[Any]]:
    """Answer whatever ``route`` raises in OpenAI's error shape (not problem+json)."""

    @wraps(route)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> Any:
        try:
            return await route(*args, **kwargs)
        except Exception as exc:  # every error becomes an OpenAI error body
            return as_openai_error(exc).response()

    return wrapped
