"""Run the benchmarks against a real InvokeAI and write the results table (+ JSON).

Usage: ``python -m benchmarks [client|gateway|compare|denoise|backends ...]`` (default: every
suite). Uses the server named by ``INVOKEAI_TEST_URL``, or starts one as the tests do. A
run that includes ``compare`` (issue 5's side-by-side run) writes ``benchmarks/results.md``
and ``results.json`` with a targets section; any other selection writes
``<suites>_results.md`` (for example ``client_results.md``), so it never overwrites the
combined results.
"""

from __future__ import annotations

import sys

from tests.support.invokeai_server import running_server

from . import (
    backends_bench,
    client_bench,
    compare_bench,
    denoise_bench,
    gateway_bench,
    replicas_bench,
)
from ._report import Report

SUITES = {
    "client": client_bench.run,
    "gateway": gateway_bench.run,
    "compare": compare_bench.run,
    "denoise": denoise_bench.run,
    "replicas": replicas_bench.run,
    "backends": backends_bench.run,
}


def main(argv: list[str]) -> int:
    chosen = argv or list(SUITES)
    unknown = [name for name in chosen if name not in SUITES]
    if unknown:
        print(f"unknown suite(s) {unknown}; choose from {list(SUITES)}", file=sys.stderr)
        return 2
    report = Report("Benchmarks")
    with running_server() as url:
        for name in chosen:
            print(f"running {name} ...", flush=True)
            SUITES[name](url, report)
    stem = "results" if "compare" in chosen else "_".join(chosen) + "_results"
    path = report.write(stem)
    if "compare" in chosen:
        compare_bench.append_targets(path)
    print(path.read_text())
    print(f"written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
