"""InvokeAI killed mid-run and started again: every run ends in its true final state, none stuck.

Each test starts its own InvokeAI on a fixed root folder and port (node cache off), so it can
be killed with SIGKILL and started again on the same database and address. What InvokeAI
6.14.2 does on start: items left ``in_progress`` become ``canceled``
(``SqliteSessionQueue._set_in_progress_to_canceled``), pending items stay and run. The
gateway's verdict for each run is compared with the queue item InvokeAI reports afterwards.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.runs.translate import run_status_for
from invokeai_py_client import InvokeAIClient
from tests.app.conftest import TIMEOUT, load_json, make_settings, run_on_queue, wait_until
from tests.app.live_server import free_port, serve
from tests.support import invokeai_server

pytestmark = pytest.mark.invokeai

CONFIG = "node_cache_size: 0\n"
TERMINAL = {"succeeded", "failed", "canceled"}


@pytest.fixture
def own_root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    root = tmp_path / "invokeai-root"
    yield root, free_port()
    shutil.rmtree(root, ignore_errors=True)


def _index(workflow: dict[str, Any], field_name: str) -> str:
    return next(str(i["index"]) for i in workflow["inputs"] if i["field_name"] == field_name)


async def _status(http: httpx.AsyncClient, run_id: str) -> str:
    return str((await http.get(f"/runs/{run_id}")).json()["status"])


async def _terminal(http: httpx.AsyncClient, run_id: str) -> dict[str, Any] | None:
    body: dict[str, Any] = (await http.get(f"/runs/{run_id}")).json()
    return body if body["status"] in TERMINAL else None


async def test_invokeai_killed_mid_run_and_restarted(
    tmp_path: Path, own_root: tuple[Path, int], workflows_dir: Path
) -> None:
    root, port = own_root
    server = invokeai_server.start(root=root, port=port, extra_config=CONFIG)
    settings = make_settings(tmp_path, server.url)
    try:
        async with (
            serve(create_app(settings)) as url,
            httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
        ):
            workflow = (
                await http.post(
                    "/workflows", json=load_json(workflows_dir / "noise_on_blank_canvas.json")
                )
            ).json()
            width, height, seed = (_index(workflow, f) for f in ("width", "height", "seed"))
            runs_url = f"/workflows/{workflow['id']}/runs"
            big = {width: 4096, height: 4096}
            runs = []
            for i in range(5):  # one large image in progress at the kill, the rest pending
                inputs = {**(big if i == 0 else {}), seed: 1000 + i}
                response = await http.post(runs_url, json={"inputs": inputs})
                assert response.status_code == 202, response.text
                runs.append(response.json())
            await wait_until(lambda: _is(http, runs[0]["id"], "running"), interval=0.05)
            server.kill()  # SIGKILL mid-run

            # Until the gateway sees the event stream drop it still accepts (such a run waits
            # for InvokeAI to come back); then it refuses, and records nothing.
            runs += await _post_until_refused(http, runs_url, seed)
            assert (await http.get("/runs")).json()["count"] == len(runs)

            server = invokeai_server.start(root=root, port=port, extra_config=CONFIG)
            assert server.url == settings.invokeai_url
            finished = [await _wait_terminal(http, run["id"]) for run in runs]
            again = await http.post(runs_url, json={"inputs": {seed: 9}, "cancel_after": 120})
            assert again.status_code == 202, again.text  # events and submits work again
            after = await _wait_terminal(http, again.json()["id"])
        async with InvokeAIClient.from_url(server.url) as direct:
            for run in [*finished, after]:
                item = await direct.queue_repo.aget_item(run["item_id"])
                assert run["status"] == run_status_for(str(item.status)), (run, item.status)
    finally:
        server.stop()
    assert finished[0]["status"] == "canceled"  # InvokeAI cancels what was in progress
    assert [r["status"] for r in finished[1:]] == ["succeeded"] * (len(runs) - 1), [
        (r["status"], r["error"]) for r in finished
    ]
    assert all(r["outputs"] for r in finished[1:])
    assert after["status"] == "succeeded"


async def _post_until_refused(
    http: httpx.AsyncClient, runs_url: str, seed: str
) -> list[dict[str, Any]]:
    """POST runs while InvokeAI is down until one is refused (503); the ones accepted."""
    accepted: list[dict[str, Any]] = []
    for attempt in range(200):
        response = await http.post(runs_url, json={"inputs": {seed: 100 + attempt}})
        if response.status_code == 503:
            assert response.headers["retry-after"]
            return accepted
        assert response.status_code == 202, response.text
        accepted.append(response.json())
        await asyncio.sleep(0.05)
    raise AssertionError("the gateway kept accepting runs while InvokeAI was down")


async def _is(http: httpx.AsyncClient, run_id: str, wanted: str) -> bool:
    return await _status(http, run_id) == wanted


async def _wait_terminal(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    found: dict[str, Any] = await wait_until(lambda: _terminal(http, run_id), timeout=120)
    return found


async def test_invokeai_restarted_without_its_queue(
    tmp_path: Path, own_root: tuple[Path, int], workflows_dir: Path
) -> None:
    root, port = own_root
    server = invokeai_server.start(root=root, port=port, extra_config=CONFIG)
    settings = make_settings(tmp_path, server.url)
    try:
        async with (
            serve(create_app(settings)) as url,
            httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
        ):
            async with InvokeAIClient.from_url(server.url) as direct:
                await direct.queue_repo.apause_processor()
            workflow = (
                await http.post(
                    "/workflows",
                    json=load_json(workflows_dir / "join_three_strings_exposed_fields.json"),
                )
            ).json()
            runs = []
            for i in range(2):
                response = await http.post(
                    f"/workflows/{workflow['id']}/runs", json={"inputs": {"0": f"lost{i}"}}
                )
                assert response.status_code == 202, response.text
                run_id = response.json()["id"]
                runs.append(await wait_until(lambda: run_on_queue(http, run_id)))  # noqa: B023
            server.kill()
            shutil.rmtree(root / "databases")  # the queue is gone with the database
            server = invokeai_server.start(root=root, port=port, extra_config=CONFIG)
            finished = [await _wait_terminal(http, run["id"]) for run in runs]
    finally:
        server.stop()
    for run in finished:
        assert run["status"] == "failed"
        assert run["error"]["error_type"] == "QueueItemNotFound"
        assert str(run["item_id"]) in run["error"]["error_message"]
