"""``/metrics`` scraped from the real gateway (uvicorn) after real runs on the real InvokeAI,
parsed with prometheus_client's own text-format parser."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from app.db.engine import make_engine, run_migrations
from app.main import create_app
from app.metrics.database import DatabaseCollector
from app.metrics.registry import GatewayMetrics
from tests.app.conftest import TIMEOUT, make_settings, register, run_if, wait_until
from tests.app.live_server import serve
from tests.support.webhook_receiver import WebhookReceiver
from tests.support.workflow_factory import WorkflowBuilder, tiny_blur_workflow

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "docs" / "grafana-dashboard.json"
WAIT = {"Prefer": "wait=60"}


def failing_workflow() -> dict[str, Any]:
    """A random integer whose low bound is above its high one: InvokeAI fails the node."""
    b = WorkflowBuilder(name="always fails")
    node = b.node("rand_int", {"low": 10, "high": 5}, use_cache=False)
    b.expose(node, "low")
    return b.build()


async def scrape(http: httpx.AsyncClient) -> list[Sample]:
    response = await http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return [s for f in text_string_to_metric_families(response.text) for s in f.samples]


def value(samples: Iterable[Sample], name: str, **labels: str) -> float | None:
    """The sample's value, or None when no sample has that name and those labels."""
    for sample in samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    return None


async def test_metrics_after_real_runs(tmp_path: Path, invokeai_url: str) -> None:
    settings = make_settings(tmp_path, invokeai_url, webhook_allow_private=True)
    with WebhookReceiver() as receiver:
        async with (
            serve(create_app(settings)) as url,
            httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
        ):
            blur = await register(http, tiny_blur_workflow())
            broken = await register(http, failing_workflow())
            for radius in (1.0, 2.0):
                body = {"inputs": {"1": radius}, "webhook_url": receiver.url}
                answer = await http.post(f"/workflows/{blur['id']}/runs", json=body, headers=WAIT)
                assert answer.status_code == 200 and answer.json()["status"] == "succeeded"
            failed = await http.post(f"/workflows/{broken['id']}/runs", json={"inputs": {}})
            assert failed.status_code == 202, failed.text
            await wait_until(lambda: run_if(http, failed.json()["id"], {"failed"}))
            await http.get("/runs/no-such-run")  # a 404 on a route with a parameter

            async def observed() -> list[Sample] | None:
                samples = await scrape(http)
                count = value(
                    samples,
                    "gateway_run_duration_seconds_count",
                    workflow="tiny blur",
                    status="succeeded",
                )
                delivered = value(samples, "gateway_webhook_deliveries_total", outcome="delivered")
                return samples if count == 2 and delivered == 2 else None

            samples: list[Sample] = await wait_until(observed, timeout=30)
            async with http.stream("GET", "/events") as stream:  # one SSE stream stays open
                assert stream.status_code == 200
                while_open = await scrape(http)
            after = await wait_until(
                lambda: _closed(http), timeout=10
            )  # the stream's end is counted too

    runs = "gateway_runs_finished_total"
    assert value(samples, runs, workflow="tiny blur", status="succeeded") == 2
    assert value(samples, runs, workflow="always fails", status="failed") == 1
    assert value(samples, runs, workflow="tiny blur", workflow_id=blur["id"]) == 2
    assert value(samples, "gateway_run_queue_wait_seconds_count") == 3
    assert value(samples, "gateway_run_dispatch_latency_seconds_count") == 3
    assert value(samples, "gateway_run_duration_seconds_count", workflow="always fails") == 1
    http_total = "gateway_http_requests_total"
    route = "/workflows/{workflow_id}/runs"
    assert value(samples, http_total, method="POST", route=route, status="200") == 2
    assert value(samples, http_total, method="POST", route=route, status="202") == 1
    assert value(samples, http_total, method="GET", route="/runs/{run_id}", status="404") == 1
    assert value(samples, "gateway_http_request_duration_seconds_count", route=route) == 3
    assert value(samples, "gateway_webhook_delivery_lag_seconds_count") == 2
    assert value(samples, "gateway_webhook_deliveries_pending") == 0
    assert value(samples, "gateway_invokeai_up") == 1
    assert value(samples, "gateway_invokeai_queue_items", status="pending") is not None
    assert value(while_open, "gateway_sse_streams_open") == 1
    assert value(after, "gateway_sse_streams_open") == 0


async def _closed(http: httpx.AsyncClient) -> list[Sample] | None:
    samples = await scrape(http)
    return samples if value(samples, "gateway_sse_streams_open") == 0 else None


async def test_metrics_need_the_key_when_keys_are_set(tmp_path: Path, invokeai_url: str) -> None:
    settings = make_settings(tmp_path, invokeai_url, api_keys="metrics-key")
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
    ):
        assert (await http.get("/metrics")).status_code == 401
        wrong = await http.get("/metrics", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401
        right = await http.get("/metrics", headers={"authorization": "Bearer metrics-key"})
        assert right.status_code == 200
        samples = [s for f in text_string_to_metric_families(right.text) for s in f.samples]
    # The refused scrapes are counted under their route, not as unmatched paths.
    total = "gateway_http_requests_total"
    assert value(samples, total, method="GET", route="/metrics", status="401") == 2


def _exported_names(tmp_path: Path) -> set[str]:
    """Every sample name the gateway exports: its own metrics and the database collector's
    (collected from a migrated, empty database)."""
    url = f"sqlite:///{tmp_path / 'names.db'}"
    run_migrations(url)
    families = [
        *GatewayMetrics().registry.collect(),
        *DatabaseCollector(make_engine(url)).collect(),
    ]
    names: set[str] = set()
    for family in families:
        names.add(family.name)
        names.update(_suffixed(family.name, family.type))
    return names


def _suffixed(name: str, kind: str) -> set[str]:
    if kind == "counter":
        return {f"{name}_total", f"{name}_created"}
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_count", f"{name}_sum", f"{name}_created"}
    return set()


def test_grafana_dashboard_is_json_and_uses_only_exported_metrics(tmp_path: Path) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert len(expressions) >= 8
    used = {name for expr in expressions for name in re.findall(r"\bgateway_[a-z_]+", expr)}
    assert used, "the dashboard queries no gateway metric"
    unknown = used - _exported_names(tmp_path)
    assert not unknown, f"the dashboard queries metrics the gateway does not export: {unknown}"
