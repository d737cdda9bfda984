"""``GET /metrics`` in Prometheus' text format, and ``install_metrics`` that wires it all.

The route sits behind the API key check like every route (Prometheus sends the key with
``authorization.credentials`` in its scrape config).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.engine import Engine

from app.api.deps import run_service_of
from app.metrics.backend import probe_invokeai
from app.metrics.database import DatabaseCollector
from app.metrics.http import HttpMetricsMiddleware
from app.metrics.registry import GatewayMetrics
from app.metrics.runs import RunTimings
from app.streaming.broker import EventBroker

__all__ = ["install_metrics", "router", "start_metrics"]

router = APIRouter(tags=["health"])


def _metrics(request: Request) -> GatewayMetrics:
    metrics: GatewayMetrics = request.app.state.metrics
    return metrics


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "The metrics."}},
)
async def metrics(request: Request) -> Response:
    """Prometheus metrics: HTTP, runs, webhooks, InvokeAI health and queue depth."""
    gathered = _metrics(request)
    lanes = run_service_of(request).lanes
    await probe_invokeai([(lane.name, lane.ctx.client) for lane in lanes], gathered)
    # The database collector queries SQLite: a worker thread, not the event loop.
    body = await asyncio.to_thread(generate_latest, gathered.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def install_metrics(app: FastAPI) -> GatewayMetrics:
    """Make the app's metrics and count its HTTP requests (call once, in ``create_app``)."""
    gathered = GatewayMetrics()
    app.state.metrics = gathered
    app.add_middleware(HttpMetricsMiddleware, metrics=gathered, schema=app.openapi)
    return gathered


async def start_metrics(app: FastAPI, engine: Engine, broker: EventBroker) -> RunTimings:
    """Start what needs the lifespan's resources; ``stop()`` the result on shutdown."""
    gathered: GatewayMetrics = app.state.metrics
    gathered.registry.register(DatabaseCollector(engine))
    timings = RunTimings(gathered, engine, broker)
    await timings.start()
    return timings
