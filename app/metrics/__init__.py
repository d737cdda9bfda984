"""Prometheus metrics at ``/metrics``: HTTP, runs, webhooks and the InvokeAI backend."""
