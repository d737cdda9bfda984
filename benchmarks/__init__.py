"""Benchmarks, run by ``scripts/bench`` (``python -m benchmarks``), never by the test suite."""
