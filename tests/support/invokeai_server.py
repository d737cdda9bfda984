"""A real InvokeAI 6.14.2 on loopback for tests and benchmarks: ``app.local_invokeai``'s recipe.

Each start here gets a temporary root folder, so runs never share state.

Command line::

    python -m tests.support.invokeai_server provision   # build the cached virtualenv
    python -m tests.support.invokeai_server serve       # start one and print its URL
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from app import local_invokeai
from app.local_invokeai import (
    INVOKEAI_VERSION,
    RunningServer,
    free_port,
    installed_package_dir,
    provision,
    shipped_workflows_dir,
    venv_dir,
)

__all__ = [
    "INVOKEAI_VERSION",
    "RunningServer",
    "free_port",
    "installed_package_dir",
    "provision",
    "running_server",
    "shipped_workflows_dir",
    "start",
    "venv_dir",
]


def start(
    root: Path | None = None, port: int | None = None, extra_config: str = ""
) -> RunningServer:
    """Start ``invokeai-web`` on loopback (in a fresh temporary root unless one is given)."""
    root = root or Path(tempfile.mkdtemp(prefix="invokeai-root-"))
    return local_invokeai.start(root, port=port, extra_config=extra_config)


@contextlib.contextmanager
def running_server() -> Iterator[str]:
    """The URL of a real server: ``INVOKEAI_TEST_URL`` if set, else one started here."""
    existing = os.environ.get("INVOKEAI_TEST_URL")
    if existing:
        yield existing.rstrip("/")
        return
    server = start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "provision"
    if command == "provision":
        print(provision())
        return 0
    if command == "serve":
        server = start()
        print(server.url, flush=True)
        try:
            server.process.wait()
        except KeyboardInterrupt:
            server.stop()
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
