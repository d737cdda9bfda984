"""InvokeAI's health and queue depth, asked at scrape time through the client's public API."""

from __future__ import annotations

import asyncio
import time

from app.metrics.registry import GatewayMetrics
from invokeai_py_client import InvokeAIClient
from invokeai_py_client.exceptions import InvokeAIError

__all__ = ["QUEUE_STATUSES", "STATUS_TIMEOUT_SECONDS", "probe_invokeai"]

# A scrape must answer even when InvokeAI hangs (Prometheus' default scrape timeout is 10 s).
STATUS_TIMEOUT_SECONDS = 3.0
QUEUE_STATUSES = ("pending", "in_progress")


async def probe_invokeai(client: InvokeAIClient, metrics: GatewayMetrics) -> None:
    """Set ``gateway_invokeai_up`` and the queue depth from one queue status request."""
    started = time.perf_counter()
    try:
        status = await asyncio.wait_for(
            client.queue_repo.aget_queue_status(), STATUS_TIMEOUT_SECONDS
        )
    except (TimeoutError, InvokeAIError):
        metrics.invokeai_up.set(0)
        metrics.invokeai_queue.clear()  # no depth is known: none is exported
        return
    finally:
        metrics.invokeai_status_seconds.set(time.perf_counter() - started)
    metrics.invokeai_up.set(1)
    for name in QUEUE_STATUSES:
        metrics.invokeai_queue.labels(name).set(getattr(status.queue, name))
