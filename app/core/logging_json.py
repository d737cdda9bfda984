"""Logs operators can use: with ``GATEWAY_LOG_FORMAT=json``, one JSON line per event on stderr.

Three kinds of lines, each a JSON object with ``ts`` (ISO 8601, UTC), ``level``, ``logger``,
``message`` and, where known, ``request_id`` and ``run_id``:

- ``"event": "request"``: one per HTTP request when its response is complete (for an SSE
  stream, when the stream ends): ``method``, ``path``, ``status``, ``duration_ms``,
  ``client``. The request id is the caller's ``X-Request-ID`` when it is a sane token, else a
  new one; it is echoed in the response's ``X-Request-ID``. A run id in the path, or in the
  ``Location`` of a new run, is logged as ``run_id``; a workflow id in the path as
  ``workflow_id``.
- ``"event": "run.<status>"``: one per run state change (queued, started, succeeded, failed,
  canceled) with ``run_id``, ``workflow_id``, ``event_id`` (the SSE id) and, for a failure,
  ``error``. They are read off the event broker, where every state change is published after
  it is stored; ``log_run_state`` writes the same line for a caller that has no broker.
- every other log line of the process (uvicorn's included), with the request id of the
  request it was written in.

Secrets never reach these lines: headers are not logged, and the path is logged without its
query string.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI

from app.core.config import Settings
from app.streaming.broker import Event, EventBroker

__all__ = [
    "JsonFormatter",
    "RequestLogMiddleware",
    "configure_json_logging",
    "install_json_logging",
    "log_run_state",
    "request_id_var",
]

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "gateway_request_id", default=None
)
request_logger = logging.getLogger("app.requests")
run_logger = logging.getLogger("app.runs")

_SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_RUN_PATH = re.compile(r"^/runs/([^/]+)")
_WORKFLOW_PATH = re.compile(r"^/workflows/([^/]+)")
# Attributes every LogRecord has; anything else was passed with ``extra=`` and is logged.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's ANSI-coloured twin of the message
}

QUIET_LOGGERS = ("httpx", "httpcore", "hpack", "aiohttp.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class JsonFormatter(logging.Formatter):
    """One JSON object per record; ``extra=`` fields become members."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id is not None:
            line["request_id"] = request_id
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, separators=(",", ":"))


def configure_json_logging(level: int = logging.INFO) -> None:
    """Send every logger's records to stderr as JSON lines (replaces the root's handlers)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers = []
        uvicorn_logger.propagate = True
    for name in QUIET_LOGGERS:  # one line per call to InvokeAI would drown the request log
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _ids_from_path(path: str) -> dict[str, str]:
    ids = {}
    run = _RUN_PATH.match(path)
    if run:
        ids["run_id"] = run.group(1)
    workflow = _WORKFLOW_PATH.match(path)
    if workflow:
        ids["workflow_id"] = workflow.group(1)
    return ids


class RequestLogMiddleware:
    """Gives each request an id and logs one line when its response is complete."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if given and _SANE_REQUEST_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        path = str(scope.get("path", ""))
        fields: dict[str, Any] = {"status": 500, **_ids_from_path(path)}

        async def send_logged(message: Message) -> None:
            if message["type"] == "http.response.start":
                fields["status"] = message["status"]
                location = _response_location(message)
                if location and "run_id" not in fields:
                    fields.update(_ids_from_path(location))
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            client = scope.get("client")
            request_logger.info(
                "%s %s %s",
                scope.get("method"),
                path,
                fields["status"],
                extra={
                    "event": "request",
                    "method": scope.get("method"),
                    "path": path,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "client": f"{client[0]}:{client[1]}" if client else None,
                    **fields,
                },
            )
            request_id_var.reset(token)


def _response_location(message: Message) -> str | None:
    for key, value in message.get("headers", []):
        if key.lower() == b"location":
            return str(value.decode("latin-1"))
    return None


def log_run_state(run_id: str, workflow_id: str | None, status: str, **fields: Any) -> None:
    """Write the line of one run state change (``status``: queued, started, succeeded...)."""
    run_logger.info(
        "run %s %s",
        run_id,
        status,
        extra={"event": f"run.{status}", "run_id": run_id, "workflow_id": workflow_id, **fields},
    )


def _log_run_events(events: list[Event]) -> None:
    # The broker may deliver in the context of whichever request published last: a run's
    # state lines carry its run id, not a request id that may belong to another request.
    token = request_id_var.set(None)
    try:
        _log_each(events)
    finally:
        request_id_var.reset(token)


def _log_each(events: list[Event]) -> None:
    for event in events:
        kind = str(event.get("event", ""))
        if not kind.startswith("run."):
            continue
        data = event.get("data") or {}
        extra: dict[str, Any] = {"event_id": event.get("id")}
        for name in ("item_id", "error"):
            if data.get(name) is not None:
                extra[name] = data[name]
        if data.get("synthetic"):
            extra["synthetic"] = True
        log_run_state(
            str(event.get("run_id")), event.get("workflow_id"), kind.removeprefix("run."), **extra
        )


@contextlib.asynccontextmanager
async def run_state_log(broker: EventBroker) -> AsyncIterator[None]:
    """Log every run state change published on ``broker`` while the block runs."""
    async with broker.subscribe() as subscription:
        if subscription.attach(_log_run_events):  # pushed to: no task, no queue
            yield
            return
        yield  # the broker is closed already: nothing will be published


def install_json_logging(app: FastAPI, settings: Settings) -> None:
    """With ``log_format == "json"``: JSON lines, the request log, the run state log."""
    if settings.log_format != "json":
        return
    configure_json_logging()
    app.add_middleware(RequestLogMiddleware)
    inner = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[Any]:
        async with inner(app_) as state, run_state_log(app_.state.broker):
            yield state

    app.router.lifespan_context = lifespan
