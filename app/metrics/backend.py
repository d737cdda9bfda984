"""InvokeAI's health and queue depth, asked at scrape time through the client's public API."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence

from app.metrics.registry import GatewayMetrics
from invokeai_py_client import InvokeAIClient
from invokeai_py_client.exceptions import InvokeAIError

__all__ = ["QUEUE_STATUSES", "STATUS_TIMEOUT_SECONDS", "probe_invokeai"]

# A scrape must answer even when InvokeAI hangs (Prometheus' default scrape timeout is 10 s).
STATUS_TIMEOUT_SECONDS = 3.0
QUEUE_STATUSES = ("pending", "in_progress")


async def probe_invokeai(
    backends: Sequence[tuple[str, InvokeAIClient]], metrics: GatewayMetrics
) -> None:
    """Set ``gateway_invokeai_up`` and the queue depth of each server (``backend`` label:
    its name in ``INVOKEAI_URL``), from one queue status request each, all at once."""
    await asyncio.gather(*(_probe(name, client, metrics) for name, client in backends))


async def _probe(name: str, client: InvokeAIClient, metrics: GatewayMetrics) -> None:
    started = time.perf_counter()
    try:
        status = await asyncio.wait_for(
            client.queue_repo.aget_queue_status(), STATUS_TIMEOUT_SECONDS
        )
    except (TimeoutError, InvokeAIError):
        metrics.invokeai_up.labels(name).set(0)
        for queue_status in QUEUE_STATUSES:  # no depth is known: none is exported
            with contextlib.suppress(KeyError):
                metrics.invokeai_queue.remove(name, queue_status)
        return
    finally:
        metrics.invokeai_status_seconds.labels(name).set(time.perf_counter() - started)
    metrics.invokeai_up.labels(name).set(1)
    for queue_status in QUEUE_STATUSES:
        metrics.invokeai_queue.labels(name, queue_status).set(getattr(status.queue, queue_status))
