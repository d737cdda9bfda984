"""The floor under scenario 8's idle memory: the gateway's libraries imported, nothing else.

A fresh interpreter marks absent what ``serve`` marks absent (``app.cli.UNUSED_BY_SERVE``),
imports the third-party libraries the serving process holds (the web framework and server
with its event loop and HTTP parser, the ORM, both HTTP clients, Socket.IO, SSE, settings,
metrics) and reports its resident memory: no module of the gateway or of the client, no
application built, no connection, no thread. Whatever the gateway does stands on top of this.

    .venv/bin/python -m benchmarks._memory_floor 3
"""

from __future__ import annotations

import statistics
import subprocess
import sys

from app.cli import UNUSED_BY_SERVE

LIBRARIES = (
    "fastapi",
    "uvicorn",
    "uvicorn.protocols.http.httptools_impl",
    "uvloop",
    "sqlmodel",
    "httpx",
    "aiohttp",
    "socketio",
    "sse_starlette",
    "pydantic_settings",
    "prometheus_client",
)

_PROBE = """
import sys
for name in {unused!r}:
    sys.modules.setdefault(name, None)
{imports}
for line in open("/proc/self/status"):
    if line.startswith("VmRSS:"):
        print(int(line.split()[1]) / 1024, len(sys.modules))
"""


def libraries_rss(times: int) -> tuple[list[float], int]:
    """Resident MB of ``times`` fresh interpreters holding ``LIBRARIES``; and their modules."""
    imports = "\n".join(f"import {name}" for name in LIBRARIES)
    code = _PROBE.format(unused=UNUSED_BY_SERVE, imports=imports)
    sizes: list[float] = []
    modules = 0
    for _ in range(times):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True)
        size, count = out.stdout.split()
        sizes.append(float(size))
        modules = int(count)
    return sizes, modules


def main(times: int) -> None:
    sizes, modules = libraries_rss(times)
    print(f"the libraries alone: {statistics.median(sizes):.1f} MB resident, {modules} modules")


if __name__ == "__main__":
    main(int(sys.argv[1]))
