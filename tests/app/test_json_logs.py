"""``GATEWAY_LOG_FORMAT=json``: a real gateway process writes one JSON line per request and per
run state change, with request and run ids, and never the API key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.live_server import ROOT, free_port
from tests.support.workflow_factory import tiny_blur_workflow

pytestmark = pytest.mark.invokeai

KEY = "log-test-secret-key"


def _wait_live(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the gateway exited during startup"
        try:
            if httpx.get(f"{url}/livez", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the gateway did not start")


def _lines(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    assert KEY not in text  # the key is never logged
    return [json.loads(line) for line in text.splitlines() if line.strip()]  # all JSON


def test_json_lines_per_request_and_run_state(invokeai_url: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"GATEWAY_LOG_FORMAT": "json", "GATEWAY_API_KEYS": KEY}
    command = [sys.executable, "-m", "app", "serve", "--port", str(port)]
    command += ["--data-dir", str(tmp_path / "data"), "--invokeai-url", invokeai_url]
    log = tmp_path / "gateway.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=stderr, stderr=stderr)
        try:
            _wait_live(url, process)
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60
            ) as http:
                workflow = http.post("/workflows", json=tiny_blur_workflow()).json()
                run = http.post(
                    f"/workflows/{workflow['id']}/runs",
                    json={"inputs": {"1": 1.5}},
                    headers={"Prefer": "wait=30", "X-Request-ID": "script-42"},
                )
                assert run.status_code == 200, run.text
                assert run.headers["x-request-id"] == "script-42"
                run_id = run.json()["id"]
                shown = http.get(f"/runs/{run_id}")
                generated = shown.headers["x-request-id"]
                assert len(generated) == 32
                refused = httpx.get(f"{url}/runs", headers={"X-Request-ID": "bad id!"})
                assert refused.status_code == 401
        finally:
            process.terminate()
            process.wait(20)

    lines = _lines(log)
    requests = [line for line in lines if line.get("event") == "request"]
    [submitted] = [r for r in requests if r["request_id"] == "script-42"]
    assert submitted["method"] == "POST" and submitted["status"] == 200
    assert submitted["path"] == f"/workflows/{workflow['id']}/runs"
    assert (submitted["run_id"], submitted["workflow_id"]) == (run_id, workflow["id"])
    assert submitted["duration_ms"] > 0 and submitted["level"] == "info"
    [read] = [r for r in requests if r["request_id"] == generated]
    assert read["path"] == f"/runs/{run_id}" and read["run_id"] == run_id
    [unauthorized] = [r for r in requests if r["status"] == 401]
    assert len(unauthorized["request_id"]) == 32  # "bad id!" is not a sane token: replaced

    states = [
        line for line in lines if line.get("run_id") == run_id and line["logger"] == "app.runs"
    ]
    assert [s["event"] for s in states] == ["run.queued", "run.started", "run.succeeded"]
    assert {s["workflow_id"] for s in states} == {workflow["id"]}
    assert all(isinstance(s["event_id"], int) and "request_id" not in s for s in states)
    assert not [line for line in lines if "color_message" in line]
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # uvicorn's lines too
