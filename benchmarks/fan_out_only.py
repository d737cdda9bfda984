"""Scenario 5 (the SSE fan-out) alone, for quick before/after checks and profiles.

    .venv/bin/python -m benchmarks.fan_out_only 1000 3                 # 1,000 readers, 3 runs
    .venv/bin/python -m benchmarks.fan_out_only 1000 2 /tmp/fan.raw    # and a py-spy profile

Prints the delay of each ``node.completed`` on the streams after InvokeAI's
``invocation_complete`` (p50 / p99, ms) per run; writes no results file (``scripts/bench
compare`` is the record). The profile needs ``pip install py-spy`` in the venv.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

from benchmarks import compare_streams
from benchmarks.gateway_bench import gateway_process, register_tiny
from tests.support import invokeai_server


def main(readers: int, runs: int, profile: str | None) -> None:
    with invokeai_server.running_server() as invokeai, gateway_process(invokeai) as (url, pid):
        workflow_id = register_tiny(url)
        compare_streams.fan_out(invokeai, url, pid, workflow_id, 10, 1)  # warm-up
        spy = None
        if profile:
            # --nonblocking: sampling without stopping the gateway, which would delay its writes
            command = ["py-spy", "record", "-p", str(pid), "-f", "raw", "-r", "1000"]
            command += ["--nonblocking", "-o", profile]
            spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
        for _ in range(runs):
            got = compare_streams.fan_out(invokeai, url, pid, workflow_id, readers, 1)
            delays = sorted(got.delays)
            p99 = delays[max(0, int(len(delays) * 0.99) - 1)]
            print(
                f"{readers} readers: p50 {statistics.median(delays):.1f} ms, p99 {p99:.1f} ms "
                f"({len(delays)} deliveries; {got.complete_streams}/{got.streams} streams whole)",
                flush=True,
            )
        if spy is not None:
            spy.send_signal(2)
            spy.wait(30)


if __name__ == "__main__":
    args = sys.argv[1:]
    main(int(args[0]), int(args[1]), args[2] if len(args) > 2 else None)
