"""Counts read from the database at scrape time: runs by workflow and status, webhook
deliveries by outcome, and the lag of delivered webhooks as a histogram.

A Prometheus collector: ``collect`` runs a few grouped queries (the scrape calls it on a
worker thread, never on the event loop). Counting where the rows are keeps these exact
across restarts and whatever process changed the rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import Select, Table, case, func, select
from sqlalchemy.engine import Connection, Engine

from app.db.tables import Run, RunStatus, Workflow
from app.db.webhook_tables import DeliveryStatus, WebhookDelivery
from app.metrics.registry import DURATION_BUCKETS

__all__ = ["DatabaseCollector"]

_RUNS: Table = Run.__table__  # type: ignore[attr-defined]
_WORKFLOWS: Table = Workflow.__table__  # type: ignore[attr-defined]
_DELIVERIES: Table = WebhookDelivery.__table__  # type: ignore[attr-defined]

FINAL = [s.value for s in RunStatus if s.terminal]
UNFINISHED = [s.value for s in RunStatus if not s.terminal]

_RUN_COUNTS = (
    select(_RUNS.c.workflow_id, _WORKFLOWS.c.name, _RUNS.c.status, func.count())
    .select_from(_RUNS.join(_WORKFLOWS, _WORKFLOWS.c.id == _RUNS.c.workflow_id))
    .where(_RUNS.c.status.in_(FINAL + UNFINISHED))
    .group_by(_RUNS.c.workflow_id, _WORKFLOWS.c.name, _RUNS.c.status)
)
_DELIVERY_COUNTS = select(_DELIVERIES.c.status, func.count()).group_by(_DELIVERIES.c.status)
# Seconds from a delivery's creation to its 2xx answer (SQLite's julianday: days).
_lag_seconds = (
    func.julianday(_DELIVERIES.c.delivered_at) - func.julianday(_DELIVERIES.c.created_at)
) * 86400.0


def _lag_query(buckets: Sequence[float]) -> Select[Any]:
    # Materialized: each row's lag is computed once, not once per bucket (measured: 48 ms
    # instead of 135 ms for 50,000 delivered rows).
    lags = (
        select(_lag_seconds.label("lag"))
        .where(
            _DELIVERIES.c.status == DeliveryStatus.delivered.value,
            _DELIVERIES.c.delivered_at.is_not(None),
        )
        .cte("lags")
        .prefix_with("MATERIALIZED")
    )
    lag = lags.c.lag
    columns = [func.sum(case((lag <= b, 1), else_=0)) for b in buckets]
    return select(func.count(), func.coalesce(func.sum(lag), 0.0), *columns).select_from(lags)


class DatabaseCollector(Collector):
    """Runs and webhook deliveries as counted in the database at each scrape."""

    def __init__(self, engine: Engine, buckets: Sequence[float] = DURATION_BUCKETS) -> None:
        self.engine = engine
        self.buckets = list(buckets)
        self._lag = _lag_query(self.buckets)

    def describe(self) -> list[Metric]:
        return []  # families are only known at collect time (no scrape at registration)

    def collect(self) -> Iterator[Metric]:
        with self.engine.connect() as connection:
            yield from self._runs(connection)
            yield from self._deliveries(connection)
            yield self._delivery_lag(connection)

    def _runs(self, connection: Connection) -> Iterator[Metric]:
        final = CounterMetricFamily(
            "gateway_runs_finished",
            "Runs that reached a final status, by workflow and status.",
            labels=["workflow", "workflow_id", "status"],
        )
        unfinished = GaugeMetricFamily(
            "gateway_runs_unfinished",
            "Runs accepted and not finished, by workflow and status (queued, running).",
            labels=["workflow", "workflow_id", "status"],
        )
        for workflow_id, name, status, count in connection.execute(_RUN_COUNTS):
            family = final if status in FINAL else unfinished
            family.add_metric([str(name), str(workflow_id), str(status)], float(count))
        yield final
        yield unfinished

    def _deliveries(self, connection: Connection) -> Iterator[Metric]:
        counts = {str(status): int(n) for status, n in connection.execute(_DELIVERY_COUNTS)}
        done = CounterMetricFamily(
            "gateway_webhook_deliveries",
            "Webhook deliveries that ended, by outcome (delivered: a 2xx; failed: retries "
            "exhausted).",
            labels=["outcome"],
        )
        for outcome in (DeliveryStatus.delivered, DeliveryStatus.failed):
            done.add_metric([outcome.value], float(counts.get(outcome.value, 0)))
        yield done
        yield GaugeMetricFamily(
            "gateway_webhook_deliveries_pending",
            "Webhook deliveries waiting for their first or next attempt.",
            value=float(counts.get(DeliveryStatus.pending.value, 0)),
        )

    def _delivery_lag(self, connection: Connection) -> Metric:
        row = connection.execute(self._lag).one()
        count, total, cumulative = int(row[0]), float(row[1]), [int(v or 0) for v in row[2:]]
        buckets = [(str(float(b)), float(c)) for b, c in zip(self.buckets, cumulative, strict=True)]
        buckets.append(("+Inf", float(count)))
        return HistogramMetricFamily(
            "gateway_webhook_delivery_lag_seconds",
            "From a webhook delivery's creation (its run event) to its 2xx answer.",
            buckets=buckets,
            sum_value=total,
        )
