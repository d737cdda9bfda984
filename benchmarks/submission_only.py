"""Scenario 3 (submission overhead) alone, for quick before/after checks and profiles.

    .venv/bin/python -m benchmarks.submission_only 60                  # 60 calls per side
    .venv/bin/python -m benchmarks.submission_only 60 /tmp/post.raw    # and a py-spy profile

Prints the medians (ms) of: the direct ``enqueue_batch`` call, the gateway's ``POST run``
(202), and each until InvokeAI announced the batch (``batch_enqueued``), with the ratio of the
last two; writes no results file (``scripts/bench compare`` is the record). The profile needs
``pip install py-spy`` in the venv.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time

from benchmarks import compare_runs
from benchmarks._legacy import WORK
from benchmarks.gateway_bench import gateway_process, register_tiny
from tests.support import invokeai_server
from tests.support.workflow_factory import tiny_blur_workflow


def main(calls: int, profile: str | None) -> None:
    with invokeai_server.running_server() as invokeai, gateway_process(invokeai) as (url, pid):
        WORK.mkdir(exist_ok=True)
        tiny_path = WORK / "tiny-blur.json"
        tiny_path.write_text(json.dumps(tiny_blur_workflow(use_cache=False)))
        ctx = compare_runs.Ctx(invokeai, url, register_tiny(url), tiny_path)
        compare_runs.submission_overhead(ctx, 5)  # warm-up
        spy = None
        if profile:
            command = ["py-spy", "record", "-p", str(pid), "-f", "raw", "-r", "2000", "-o", profile]
            spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        got = compare_runs.submission_overhead(ctx, calls)
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)
    med = statistics.median
    print(
        f"direct enqueue {med(got.direct):.2f} ms, gateway 202 {med(got.gateway):.2f} ms; "
        f"until announced: direct {med(got.direct_held):.2f} ms, gateway "
        f"{med(got.gateway_held):.2f} ms, ratio {med(got.gateway_held) / med(got.direct_held):.2f}"
    )


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]), args[1] if len(args) > 1 else None)
