"""Run the benchmarks against a real InvokeAI and write ``benchmarks/results.md`` (+ JSON).

Usage: ``python -m benchmarks [client ...]`` (default: every suite). Uses the server named by
``INVOKEAI_TEST_URL``, or starts one as the tests do.
"""

from __future__ import annotations

import sys

from tests.support.invokeai_server import running_server

from . import client_bench
from ._report import Report

SUITES = {"client": client_bench.run}


def main(argv: list[str]) -> int:
    chosen = argv or list(SUITES)
    report = Report("Benchmarks")
    with running_server() as url:
        for name in chosen:
            print(f"running {name} ...", flush=True)
            SUITES[name](url, report)
    path = report.write("results")
    print(report.markdown())
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
