"""Scenario 8 (cold start to ``/readyz`` and idle memory) alone, for before/after checks.

    .venv/bin/python -m benchmarks.cold_start_only 4

Prints the medians of (seconds from process start to ``/readyz`` 200, resident MB after 3 s
idle), with a fresh data folder and with an existing database; writes no results file.
"""

from __future__ import annotations

import statistics
import sys

from benchmarks import compare_prep
from tests.support import invokeai_server


def main(times: int) -> None:
    with invokeai_server.running_server() as invokeai:
        got = compare_prep.cold_starts(invokeai, times)
    for kind, pairs in got.items():
        start = statistics.median(p[0] for p in pairs)
        rss = statistics.median(p[1] for p in pairs)
        print(f"{kind}: ready in {start:.2f} s, idle RSS {rss:.0f} MB ({len(pairs)} starts)")


if __name__ == "__main__":
    main(int(sys.argv[1]))
