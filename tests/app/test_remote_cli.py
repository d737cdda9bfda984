"""The client commands (``workflows``, ``run``, ``runs``) in a subprocess, against a real gateway.

The gateway is served by uvicorn on the test's loop, in front of the real InvokeAI; the CLI is
a separate process (``python -m app ...``) that reaches it only over HTTP, so what is tested is
what a shell script sees: exit codes, ``--json`` on stdout, files in ``--out``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from app.core.config import Settings
from invokeai_py_client import InvokeAIClient
from tests.app.conftest import run_if, wait_until
from tests.app.live_server import ROOT, free_port, serve_gateway
from tests.support.workflow_factory import WorkflowBuilder, tiny_blur_workflow

pytestmark = pytest.mark.invokeai


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


async def cli(*args: str, gateway: str, key: str | None = None, timeout: float = 120) -> Result:
    """Run ``python -m app ARGS --gateway URL`` to its end."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    if key is not None:
        env["GATEWAY_API_KEY"] = key
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "app",
        *args,
        "--gateway",
        gateway,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())


def image_blur_workflow() -> dict[str, Any]:
    """img_blur of an image given as input 0 (saved)."""
    b = WorkflowBuilder(name="blur an upload")
    blur = b.node(
        "img_blur",
        {"image": None, "radius": 1.5, "blur_type": "gaussian"},
        is_intermediate=False,
        use_cache=False,
        field_labels={"image": "Picture"},
    )
    b.expose(blur, "image")
    return b.build()


def write_json(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data))
    return path


async def test_add_list_run_by_name_and_download(gateway: str, tmp_path: Path) -> None:
    file = write_json(tmp_path / "blur.json", tiny_blur_workflow())
    added = await cli("workflows", "add", str(file), "--json", gateway=gateway)
    assert added.code == 0, added.stderr
    workflow = added.json()
    assert [i["label"] for i in workflow["inputs"]] == ["Width", "Radius"]

    listed = await cli("workflows", "ls", "--json", gateway=gateway)
    assert listed.code == 0 and workflow["id"] in [w["id"] for w in listed.json()["data"]]

    out = tmp_path / "out"
    ran = await cli(
        "run", "tiny blur", "-i", "0=48", "-i", "Radius=2.5", "--out", str(out), "--json",
        gateway=gateway,
    )  # fmt: skip
    assert ran.code == 0, ran.stderr
    body = ran.json()
    assert body["run"]["status"] == "succeeded"
    assert body["run"]["inputs"] == {"0": 48, "1": 2.5}
    [saved] = body["files"]
    assert Path(saved).parent == out
    with Image.open(saved) as image:
        assert image.format == "PNG" and image.size == (48, 64)

    listed_runs = await cli("runs", "ls", "--json", "--workflow", "tiny blur", gateway=gateway)
    assert listed_runs.code == 0
    assert [r["id"] for r in listed_runs.json()["data"]] == [body["run"]["id"]]
    table = await cli("runs", "ls", gateway=gateway)  # for people: whole ids, even when piped
    assert table.code == 0 and body["run"]["id"] in table.stdout and "succeeded" in table.stdout


async def test_run_shows_a_bar_per_node_and_uploads_an_image(gateway: str, tmp_path: Path) -> None:
    file = write_json(tmp_path / "upload.json", image_blur_workflow())
    workflow = (await cli("workflows", "add", str(file), "--json", gateway=gateway)).json()
    picture = tmp_path / "in.png"
    Image.new("RGB", (40, 30), "orange").save(picture)

    ran = await cli(
        "run", workflow["id"], "-i", f"0=@{picture}", "--out", str(tmp_path / "o"), gateway=gateway
    )
    assert ran.code == 0, ran.stderr
    assert "run: succeeded" in ran.stderr and "img_blur" in ran.stderr  # the progress bars
    assert "100%" in ran.stderr
    saved = [line.split("saved ", 1)[1] for line in ran.stdout.splitlines() if "saved " in line]
    assert len(saved) == 1
    with Image.open(saved[0]) as image:
        assert image.size == (40, 30)


async def test_bad_input_and_unknown_workflow_exit_2(gateway: str, tmp_path: Path) -> None:
    file = write_json(tmp_path / "blur.json", tiny_blur_workflow())
    workflow = (await cli("workflows", "add", str(file), "--json", gateway=gateway)).json()

    refused = await cli("run", workflow["id"], "-i", "1=very blurry", gateway=gateway)
    assert refused.code == 2
    assert "Invalid run inputs (HTTP 422)" in refused.stderr
    assert "input 1 (Radius)" in refused.stderr  # the gateway's 422, input named
    assert "Traceback" not in refused.stderr

    unknown = await cli("run", "no such workflow", gateway=gateway)
    assert unknown.code == 2 and "no workflow has the id or name" in unknown.stderr
    no_index = await cli("run", workflow["id"], "-i", "7=1", gateway=gateway)
    assert no_index.code == 2 and "0 (Width), 1 (Radius)" in no_index.stderr
    bad_file = await cli("workflows", "add", str(tmp_path / "missing.json"), gateway=gateway)
    assert bad_file.code == 2
    usage = await cli("run", gateway=gateway)
    assert usage.code == 2


async def test_unreachable_or_refused_key_exit_4(invokeai_url: str, tmp_path: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    down = await cli("workflows", "ls", gateway=nobody)
    assert down.code == 4 and "cannot reach the gateway" in down.stderr

    async with serve_gateway(tmp_path / "gw", invokeai_url, api_keys="k-1") as gw:
        refused = await cli("workflows", "ls", gateway=gw.url)
        assert refused.code == 4 and "GATEWAY_API_KEY" in refused.stderr
        wrong = await cli("runs", "ls", gateway=gw.url, key="k-2")
        assert wrong.code == 4
        allowed = await cli("runs", "ls", "--json", gateway=gw.url, key="k-1")
        assert allowed.code == 0 and allowed.json()["data"] == []


async def test_canceled_run_exits_3_and_runs_cancel(
    gateway: str, gateway_settings: Settings, aclient: InvokeAIClient, tmp_path: Path
) -> None:
    file = write_json(tmp_path / "blur.json", tiny_blur_workflow())
    workflow = (await cli("workflows", "add", str(file), "--json", gateway=gateway)).json()
    await aclient.queue_repo.apause_processor()
    try:
        detached = await cli("run", workflow["id"], "--detach", "--json", gateway=gateway)
        assert detached.code == 0
        run_id = detached.json()["id"]
        queued = await cli("runs", "ls", "--status", "queued", "--json", gateway=gateway)
        assert [r["id"] for r in queued.json()["data"]] == [run_id]

        follower = asyncio.create_task(cli("run", workflow["id"], "--json", gateway=gateway))
        async with httpx.AsyncClient(base_url=gateway) as http:
            page = await wait_until(
                lambda: _second_run(http, run_id), timeout=30
            )  # the follower's run exists
            canceled = await cli("runs", "cancel", run_id, page, "--json", gateway=gateway)
            assert canceled.code == 0
            assert {r["status"] for r in canceled.json()} == {"canceled"}
            assert await run_if(http, page, {"canceled"})
        followed = await follower
    finally:
        await aclient.queue_repo.aresume_processor()
    assert followed.code == 3, followed.stderr
    assert followed.json()["run"]["status"] == "canceled" and followed.json()["files"] == []


async def _second_run(http: httpx.AsyncClient, first: str) -> str | None:
    runs = (await http.get("/runs")).json()["data"]
    others = [r["id"] for r in runs if r["id"] != first]
    return others[0] if others else None
