"""The README's main command starts the gateway, and its first-run walkthrough works on it.

``scripts/run`` is run as a user runs it: on a reachable InvokeAI it only starts the gateway;
with none answering at the URL it starts the embedded local InvokeAI (the cached one the tests
use), says so, and stops it again when it is stopped itself. The walkthrough is the README's
own shell block, run by bash with curl, only ``localhost:8080`` swapped for the test's port.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from app.local_invokeai import INVOKEAI_VERSION, answers
from tests.support.invokeai_server import free_port

pytestmark = pytest.mark.invokeai
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
EMBEDDED_START_TIMEOUT = 240.0  # InvokeAI's own start-up is ~20 s here; provisioning is done


def readme_walkthrough() -> tuple[str, str]:
    """The two ``sh`` blocks of the README's "First run": the main command, the walkthrough."""
    section = README.read_text().split("## First run", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 2, blocks
    return blocks[0].strip(), blocks[1]


def start_scripts_run(url: str, port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    main_command, _ = readme_walkthrough()
    assert main_command == "scripts/run"
    env = {**os.environ, "GATEWAY_DATA_DIR": str(data_dir)}
    env.pop("GATEWAY_LOCAL_INVOKEAI", None)
    return subprocess.Popen(
        [str(ROOT / main_command), url, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def wait_ready(proc: subprocess.Popen[bytes], port: int, timeout: float) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
            if response.status_code == 200:
                body: dict[str, str] = response.json()
                return body
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    stopped = proc.poll() is not None
    raise AssertionError(proc.stderr.read().decode() if stopped and proc.stderr else "not ready")


def stop(proc: subprocess.Popen[bytes]) -> str:
    """SIGTERM to ``scripts/run``'s process group (as a service manager does); its stderr."""
    os.killpg(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    return err.decode()


def run_walkthrough(port: int, workdir: Path) -> str:
    """The README's walkthrough, as written, in a folder like a checkout's; its output."""
    _, commands = readme_walkthrough()
    (workdir / "examples").symlink_to(ROOT / "examples")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", commands.replace("localhost:8080", f"127.0.0.1:{port}")],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    with Image.open(workdir / "out.png") as image:
        assert image.size == (96, 64)  # input 0 set the canvas width
    return done.stdout


def assert_streamed_a_whole_run(sse: str) -> None:
    events = re.findall(r"^event: (\S+)", sse, flags=re.MULTILINE)
    assert events[0] == "run.queued" and events[-1] == "run.succeeded", events
    assert "node.completed" in events


def test_scripts_run_serves_the_gateway_and_the_walkthrough_works(
    invokeai_url: str, tmp_path: Path
) -> None:
    port = free_port()
    proc = start_scripts_run(invokeai_url, port, tmp_path / "data")
    try:
        assert wait_ready(proc, port, 120)["status"] == "ok"
        assert list((tmp_path / "data").glob("*.db")), "the SQLite file goes to the data folder"
        assert_streamed_a_whole_run(run_walkthrough(port, tmp_path))
    finally:
        err = stop(proc)
    assert "embedded" not in err  # InvokeAI answered: nothing else was started


def test_scripts_run_starts_the_embedded_invokeai_when_none_answers(tmp_path: Path) -> None:
    nothing_there = f"http://127.0.0.1:{free_port()}"
    assert not answers(nothing_there)
    port = free_port()
    proc = start_scripts_run(nothing_there, port, tmp_path / "data")
    try:
        assert wait_ready(proc, port, EMBEDDED_START_TIMEOUT)["status"] == "ok"
        assert answers(nothing_there), "the embedded InvokeAI took the URL's own port"
        assert (tmp_path / "data" / "invokeai" / "invokeai.yaml").exists()
        assert_streamed_a_whole_run(run_walkthrough(port, tmp_path))
    finally:
        err = stop(proc)
    assert f"starting the embedded InvokeAI {INVOKEAI_VERSION}" in err, err
    assert "stopping the embedded InvokeAI" in err, err
    assert not answers(nothing_there), "stopping scripts/run stops the InvokeAI it started"
