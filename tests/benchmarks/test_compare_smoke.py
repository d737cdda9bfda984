"""The comparison harness runs end to end against the real server with a few samples.

Checks the shape of what it writes (rows, contenders, ratios, the targets section), never the
speeds: benchmarks measure speed, tests do not.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmarks import compare_bench, compare_runs
from benchmarks._report import Report, Row

pytestmark = pytest.mark.invokeai


@pytest.fixture(scope="module")
def report(invokeai_url: str) -> Report:
    report = Report("smoke")
    compare_bench.run(invokeai_url, report, compare_bench.smoke_plan())
    return report


def _rows(report: Report, prefix: str) -> dict[str, Row]:
    return {r.contender: r for r in report.rows if r.scenario.startswith(prefix)}


def test_tiny_runs_have_a_row_per_contender_with_samples(report: Report) -> None:
    expected = {n for n in compare_runs.CONTENDERS if not n.startswith("older")}
    for prefix in ("1.", "2."):
        rows = _rows(report, prefix)
        assert set(rows) == expected
        for row in rows.values():
            assert len(row.samples) == 2, row
            assert "FAILED" not in row.note
    assert _rows(report, "1.")["direct (httpx + Socket.IO)"].ratio == 1.0


def test_submission_overhead_compares_gateway_to_direct(report: Report) -> None:
    rows = _rows(report, "3. submission overhead")
    assert set(rows) == {"direct enqueue_batch", "gateway POST run (202)"}
    gateway = rows["gateway POST run (202)"]
    assert gateway.ratio is not None and gateway.ratio > 0
    held = _rows(report, "3. submission until")
    assert set(held) == {"direct enqueue_batch", "gateway POST run"}
    assert len(held["gateway POST run"].samples) == len(gateway.samples)
    # InvokeAI announces the gateway's batch only after the gateway answered.
    assert min(held["gateway POST run"].samples) >= min(gateway.samples)
    floor = _rows(report, "3. submission floor")
    assert set(floor) == {"bare FastAPI: body read", "bare FastAPI: + row committed"}
    entered, committed = floor.values()
    assert len(entered.samples) == len(committed.samples) == 10
    assert all(c >= e > 0 for e, c in zip(entered.samples, committed.samples, strict=True))
    assert "the 1.2x target leaves" in entered.note


def test_fan_out_streams_saw_the_whole_run(report: Report) -> None:
    (row,) = _rows(report, "5.").values()
    assert "2/2 streams saw the whole run" in row.note
    assert len(row.samples) == 4  # 2 streams x 2 nodes


def test_preparation_rows_cover_the_synthetic_workflow(report: Report) -> None:
    names = [r.scenario for r in report.rows if r.scenario.startswith("7.")]
    assert len(names) == 3
    assert names[-1] == "7. prep: synthetic 1,000 nodes (1000 nodes)"


def test_rows_are_in_scenario_order_and_serialise(report: Report) -> None:
    numbers = [int(r.scenario.split(".")[0]) for r in report.rows]
    assert numbers == sorted(numbers)
    targets = compare_bench.targets_section()
    assert "| 3. gateway/direct submission < 1.3 |" in targets
    # Issue 16's targets, checked on the same rows.
    assert "| 1. gateway (POST run + SSE) / direct <= 1.03 |" in targets
    assert "| 2. ours, async notice p50 < 1 ms |" in targets
    assert "| 3. in InvokeAI's queue after POST <= 1.2x direct enqueue |" in targets
    md = report.markdown()
    assert md.count("\n| ") == len(report.rows) + 1  # header + one line per row
    json.dumps([r.samples for r in report.rows])


def test_memory_floor_holds_only_libraries_the_gateway_imports() -> None:
    """The floor of idle memory must not count a library the gateway does without."""
    from benchmarks import _memory_floor

    served_by_uvicorn = {"uvicorn", "uvicorn.protocols.http.httptools_impl", "uvloop"}
    code = "import sys, app.main; print(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    missing = set(_memory_floor.LIBRARIES) - served_by_uvicorn - set(out.stdout.split())
    assert not missing, f"app.main does not import {missing}"
    sizes, modules = _memory_floor.libraries_rss(1)
    assert sizes[0] > 0 and modules > len(_memory_floor.LIBRARIES)
