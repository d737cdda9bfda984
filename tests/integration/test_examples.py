"""The examples in examples/ run as written against the real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.invokeai

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("script", ["01_quickstart.py", "02_async_events.py"])
def test_example_runs(script: str, invokeai_url: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script), invokeai_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert ".png" in done.stdout
