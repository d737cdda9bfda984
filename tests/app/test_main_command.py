"""The README's main command starts the gateway."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.invokeai_server import free_port

pytestmark = pytest.mark.invokeai
ROOT = Path(__file__).resolve().parents[2]


def test_scripts_run_serves_the_gateway(invokeai_url: str, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "GATEWAY_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [str(ROOT / "scripts" / "run"), invokeai_url, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        body = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                if response.status_code == 200:
                    body = response.json()
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        assert body is not None, proc.stderr.read().decode() if proc.poll() is not None else ""
        assert body["status"] == "ok"
        assert list(tmp_path.glob("*.db")), "the SQLite file goes to the data folder"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
