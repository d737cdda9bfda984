"""The gateway's metrics: one registry per application, and every metric it exports.

Per application, not the process-wide default registry: several apps in one process (the
tests) must not share counters. Where each value comes from:

- HTTP requests and open SSE streams: an ASGI middleware (``http.py``).
- Run duration, queue wait and dispatch latency: a subscriber of the event broker
  (``runs.py``), observed as runs reach those points.
- Runs by workflow and final status, webhook deliveries by outcome and their lag: counted in
  the database at scrape time (``database.py``), so they are exact and survive restarts.
- InvokeAI health and queue depth: asked of InvokeAI at scrape time (``backend.py``).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

__all__ = ["DURATION_BUCKETS", "FAST_BUCKETS", "GatewayMetrics"]

# Seconds: a model-free run takes tens of milliseconds, a real generation up to minutes.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
# Seconds: HTTP answers and dispatching are expected well under a second.
FAST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class GatewayMetrics:
    """The registry and the metrics the gateway updates itself (the rest are collectors)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)  # process_cpu_seconds_total, resident memory, open fds
        self.http_requests = Counter(
            "gateway_http_requests",
            "HTTP requests answered, by method, route template and status code.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "gateway_http_request_duration_seconds",
            "Time to the end of the answer (SSE streams excluded), by method and route.",
            ["method", "route"],
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.sse_streams = Gauge(
            "gateway_sse_streams_open", "Server-Sent Event streams open right now.", registry=r
        )
        self.run_duration = Histogram(
            "gateway_run_duration_seconds",
            "From a run's start on InvokeAI to its end, by workflow name and final status.",
            ["workflow", "status"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.queue_wait = Histogram(
            "gateway_run_queue_wait_seconds",
            "From a run's acceptance by the gateway to its start on InvokeAI.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.dispatch_latency = Histogram(
            "gateway_run_dispatch_latency_seconds",
            "From a run's acceptance by the gateway to InvokeAI holding it (run.queued).",
            buckets=FAST_BUCKETS,
            registry=r,
        )
        self.invokeai_up = Gauge(
            "gateway_invokeai_up",
            "1 when the InvokeAI server answered its queue status at the last scrape, else 0.",
            ["backend"],
            registry=r,
        )
        self.invokeai_status_seconds = Gauge(
            "gateway_invokeai_status_seconds",
            "How long the InvokeAI server took to answer its queue status at the last scrape.",
            ["backend"],
            registry=r,
        )
        self.invokeai_queue = Gauge(
            "gateway_invokeai_queue_items",
            "Items in the InvokeAI server's default queue at the last scrape, by status.",
            ["backend", "status"],
            registry=r,
        )
