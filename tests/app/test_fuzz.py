"""Property-based fuzzing of every route from the OpenAPI spec (schemathesis): no 5xx.

The gateway runs as a real process with an API key, against the real InvokeAI; schemathesis
(its CLI, as a user would run it) reads ``/openapi.json`` and sends generated requests to
every operation, in its example, coverage, fuzzing and stateful phases, with the check
``not_a_server_error``. The run route gets a registered workflow's id (random ids would only
ever meet 404). ``GET /events`` is left out: it streams for ever, by design.

More cases: ``GATEWAY_FUZZ_EXAMPLES=500 pytest tests/app/test_fuzz.py -s``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.app.live_server import free_port

pytestmark = pytest.mark.invokeai

ROOT = Path(__file__).resolve().parents[2]
KEY = "fuzz-key-123"
EXAMPLES = int(os.environ.get("GATEWAY_FUZZ_EXAMPLES", "50"))
ENDLESS = ["/events"]


@contextmanager
def gateway(data_dir: Path, invokeai_url: str) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"GATEWAY_API_KEYS": KEY, "GATEWAY_MAX_WAIT": "2", "GATEWAY_RECONCILE_INTERVAL": "1"}
    command = [sys.executable, "-m", "app", "serve", "--port", str(port)]
    command += ["--data-dir", str(data_dir), "--invokeai-url", invokeai_url]
    log = (data_dir / "gateway.log").open("wb")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/livez").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield url
    finally:
        process.kill()
        process.wait(10)
        log.close()


def test_fuzz_every_route_no_server_error(
    tmp_path: Path, invokeai_url: str, workflows_dir: Path
) -> None:
    with gateway(tmp_path, invokeai_url) as url:
        auth = {"Authorization": f"Bearer {KEY}"}
        workflow = json.loads(
            (workflows_dir / "join_three_strings_exposed_fields.json").read_text()
        )
        registered = httpx.post(f"{url}/workflows", json=workflow, headers=auth, timeout=30)
        assert registered.status_code == 201, registered.text
        operations = sum(
            len([m for m in item if m in ("get", "post", "put", "delete", "patch")])
            for path, item in httpx.get(f"{url}/openapi.json", headers=auth).json()["paths"].items()
            if path not in ENDLESS
        )
        config = tmp_path / "schemathesis.toml"
        config.write_text(
            "[[operations]]\n"
            'include-path = "/workflows/{workflow_id}/runs"\n'
            f'parameters = {{ "workflow_id" = "{registered.json()["id"]}" }}\n'
        )
        command = [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config)]
        command += ["run", f"{url}/openapi.json", "-H", f"Authorization: Bearer {KEY}"]
        command += ["--checks", "not_a_server_error", "--max-examples", str(EXAMPLES)]
        command += ["--request-timeout", "20", "--seed", "20261129", "--no-color"]
        for path in ENDLESS:
            command += ["--exclude-path", path]
        result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    output = result.stdout + result.stderr
    print(output[-3000:])
    tested = re.search(r"Tested:\s+(\d+)", output)
    cases = re.search(r"(\d+) generated", output)
    assert tested and cases, output[-3000:]
    assert int(tested.group(1)) == operations  # every route was fuzzed
    assert int(cases.group(1)) > operations * 10
    assert not re.search(r"\[5\d\d\]", output), output[-6000:]
    assert result.returncode == 0, output[-6000:]
