"""Domain errors of the gateway and the one place that renders errors as problem+json.

Services raise the exceptions below (each carries its HTTP status); ``install_handlers``
turns them, the client's connection and status errors, FastAPI's validation errors and
anything unexpected into an RFC 9457 ``application/problem+json`` body.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from invokeai_py_client.exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    WorkflowValidationError,
)

__all__ = [
    "PROBLEM_JSON",
    "GatewayError",
    "InputInvalid",
    "InvokeAIUnavailable",
    "NotFound",
    "PayloadTooLarge",
    "UpstreamError",
    "WorkflowInvalid",
    "install_handlers",
    "problem_response",
]

PROBLEM_JSON = "application/problem+json"
logger = logging.getLogger(__name__)


class GatewayError(Exception):
    """Root of the gateway's own errors; ``status_code`` and ``title`` drive the response."""

    status_code = 500
    title = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}  # extra response headers (Retry-After, ...)


class NotFound(GatewayError):
    """An unknown workflow, run or image."""

    status_code = 404
    title = "Not found"


class WorkflowInvalid(GatewayError):
    """A workflow file that cannot be registered (malformed JSON, broken form, ...)."""

    status_code = 422
    title = "Invalid workflow"


class InputInvalid(GatewayError):
    """Run inputs that do not fit; ``errors`` holds one entry per bad index."""

    status_code = 422
    title = "Invalid run inputs"


class PayloadTooLarge(GatewayError):
    """A body above the configured limit."""

    status_code = 413
    title = "Payload too large"


class InvokeAIUnavailable(GatewayError):
    """InvokeAI cannot be reached; the caller should retry later."""

    status_code = 503
    title = "InvokeAI unavailable"


class ServerRefused(InvokeAIUnavailable):
    """One InvokeAI server refused the connection before anything was sent or recorded: with
    several servers, the run may go to another one."""


class UpstreamError(GatewayError):
    """InvokeAI answered with an error the gateway cannot attribute to the caller."""

    status_code = 502
    title = "InvokeAI error"


def problem_response(
    *,
    status: int,
    title: str,
    detail: str,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    body["detail"] = detail
    if instance:
        body["instance"] = instance
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


def _retry_after(request: Request) -> dict[str, str]:
    settings = getattr(request.app.state, "settings", None)
    seconds = getattr(settings, "retry_after_seconds", 5)
    return {"Retry-After": str(seconds)}


async def _gateway_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    headers = {**(_retry_after(request) if exc.status_code == 503 else {}), **exc.headers}
    return problem_response(
        status=exc.status_code,
        title=exc.title,
        detail=exc.detail,
        instance=request.url.path,
        errors=exc.errors,
        headers=headers,
    )


async def _connection_error(request: Request, exc: Exception) -> JSONResponse:
    return await _gateway_error(request, InvokeAIUnavailable(f"InvokeAI is unreachable: {exc}"))


async def _odd_answer(request: Request, exc: Exception) -> JSONResponse:
    return await _gateway_error(request, UpstreamError(f"InvokeAI answered oddly: {exc}"))


async def _status_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, APIStatusError)
    if exc.status_code >= 500:
        return await _gateway_error(request, InvokeAIUnavailable(f"InvokeAI failed: {exc}"))
    return await _gateway_error(request, UpstreamError(f"InvokeAI refused the request: {exc}"))


async def _workflow_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WorkflowValidationError)
    errors = [{"reason": p} for p in exc.problems]
    return await _gateway_error(request, WorkflowInvalid(str(exc), errors=errors))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(e.get("loc", ())), "reason": e.get("msg", ""), "type": e.get("type", "")}
        for e in exc.errors()
    ]
    detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['reason']}" for e in errors)
    return problem_response(
        status=422,
        title="Invalid request",
        detail=detail or "the request is invalid",
        instance=request.url.path,
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return problem_response(
        status=exc.status_code,
        title=str(exc.detail) if exc.status_code < 500 else "Error",
        detail=str(exc.detail),
        instance=request.url.path,
        headers=dict(exc.headers or {}),
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The caller gets an id to quote, never the exception's text (SQL, paths, addresses);
    # the log has both, under that id.
    error_id = uuid.uuid4().hex[:16]
    logger.error(
        "unhandled error %s on %s %s",
        error_id,
        request.method,
        request.url.path,
        exc_info=(type(exc), exc, exc.__traceback__),
    )
    response = problem_response(
        status=500,
        title="Internal error",
        detail=f"an unexpected error occurred; quote error id {error_id} to the operator",
        instance=request.url.path,
    )
    response.headers["X-Error-Id"] = error_id
    return response


def install_handlers(app: FastAPI) -> None:
    """Register every error handler on ``app``."""
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(APIConnectionError, _connection_error)
    app.add_exception_handler(APIResponseValidationError, _odd_answer)
    app.add_exception_handler(APIStatusError, _status_error)
    app.add_exception_handler(WorkflowValidationError, _workflow_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
