"""Losing one of several InvokeAI servers: its runs go to another, and none runs twice.

A server of its own here (fixed root folder and port, node cache off) is killed with SIGKILL
while runs wait on its queue; past the grace they run on the session's server instead. When
it starts again (InvokeAI's queue is durable: they are still there, pending), the gateway
cancels them there. Runs it never got move at once, without waiting for the grace.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from app.db import claims
from app.db.engine import make_engine
from app.db.tables import Run, RunStatus
from app.main import create_app
from invokeai_py_client import InvokeAIClient
from tests.app.conftest import (
    TIMEOUT,
    load_json,
    make_settings,
    register,
    run_if,
    run_on_queue,
    servers_followed,
    wait_until,
)
from tests.app.live_server import free_port, serve
from tests.support import invokeai_server

pytestmark = pytest.mark.invokeai

CONFIG = "node_cache_size: 0\n"
DONE = {"succeeded", "failed", "canceled"}
NOISE = "noise_on_blank_canvas.json"  # 0 width, 1 height, 3 seed


@pytest.fixture
def database_url() -> None:
    return None


@pytest.fixture
def own_root(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    root = tmp_path / "invokeai-root"
    yield root, free_port()
    shutil.rmtree(root, ignore_errors=True)


async def _events(http: httpx.AsyncClient, run_id: str) -> list[tuple[str, dict[str, Any]]]:
    """Every stored event of a finished run, in order (its stream replays them, then ends)."""
    found = []
    async with aconnect_sse(http, "GET", f"/runs/{run_id}/events") as source:
        async for sse in source.aiter_sse():
            found.append((sse.event, json.loads(sse.data)["data"]))
    return found


async def test_runs_on_a_killed_server_run_elsewhere_once(
    tmp_path: Path, own_root: tuple[Path, int], invokeai_url: str, workflows_dir: Path
) -> None:
    root, port = own_root
    lost = invokeai_server.start(root=root, port=port, extra_config=CONFIG)
    settings = make_settings(
        tmp_path,
        f"k={lost.url}, a={invokeai_url}",
        backend_grace_seconds=2.0,
        reconcile_interval_seconds=0.5,
    )
    try:
        async with (
            serve(create_app(settings)) as url,
            httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
        ):
            await wait_until(lambda: servers_followed(http, {"k", "a"}), timeout=30)
            async with InvokeAIClient.from_url(lost.url) as direct:
                await direct.queue_repo.apause_processor()  # k's runs wait on its queue
            workflow = await register(http, load_json(workflows_dir / NOISE))
            big = {"0": 4096, "1": 4096}  # slow: still running if k starts one again
            posted = await asyncio.gather(
                *(
                    http.post(
                        f"/workflows/{workflow['id']}/runs",
                        json={"inputs": big | {"3": seed}},
                    )
                    for seed in range(3)
                )
            )
            runs = [response.json() for response in posted]
            on_k = [r["id"] for r in runs if r["backend"] == "k"]
            assert on_k, [r["backend"] for r in runs]
            for run_id in on_k:
                await wait_until(lambda run_id=run_id: run_on_queue(http, run_id))

            lost.kill()  # SIGKILL: its queue holds k's runs, pending
            finished = [
                await wait_until(lambda r=r: run_if(http, r["id"], DONE), timeout=180) for r in runs
            ]
            assert [(r["status"], r["backend"]) for r in finished] == [("succeeded", "a")] * 3, [
                (r["status"], r["error"]) for r in finished
            ]
            abandoned = []
            for run_id in on_k:
                events = await _events(http, run_id)
                queued = [data for kind, data in events if kind == "run.queued"]
                assert [q["backend"] for q in queued] == ["k", "a"], events
                assert [kind for kind, _ in events].count("run.succeeded") == 1
                abandoned.append(queued[0]["batch_id"])
                assert queued[1]["batch_id"] != queued[0]["batch_id"]

            lost = invokeai_server.start(root=root, port=port, extra_config=CONFIG)
            await wait_until(lambda: servers_followed(http, {"k"}), timeout=30)
            async with InvokeAIClient.from_url(lost.url) as direct:
                # Canceled there when it answered again: no run yields two results.
                statuses = await wait_until(
                    lambda: _all_ended(direct, abandoned), timeout=60, interval=0.5
                )
            assert set(statuses) == {"canceled"}, statuses
            engine = make_engine(settings.database_url)
            with engine.connect() as connection:
                left = connection.exec_driver_sql("SELECT count(*) FROM abandoned_batch")
                assert left.scalar_one() == 0
            engine.dispose()
    finally:
        lost.stop()


async def _all_ended(direct: InvokeAIClient, batch_ids: list[str]) -> list[str] | None:
    statuses = []
    for batch_id in batch_ids:
        items = await direct.queue_repo.aget_items_by_batch(batch_id)
        statuses += [str(item.status) for item in items]
    if not statuses or any(s in ("pending", "in_progress") for s in statuses):
        return None
    return statuses


async def test_runs_a_dead_server_never_got_move_at_once(
    tmp_path: Path, invokeai_url: str, workflows_dir: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(
        tmp_path,
        f"a={invokeai_url}, k={dead}",
        backend_grace_seconds=3600.0,  # only runs k holds wait that long
        reconcile_interval_seconds=0.5,
    )
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
    ):
        workflow = await register(http, load_json(workflows_dir / NOISE))
        # Accepted for k but never sent (as a gateway that stopped before sending leaves
        # them): claims written the way the gateway writes them.
        engine = make_engine(settings.database_url)
        ids = []
        for seed in range(2):
            run = Run(
                workflow_id=workflow["id"],
                workflow_version=workflow["version"],
                inputs={"0": 32, "1": 32, "3": seed},
                batch_id=str(uuid.uuid4()),
                status=RunStatus.queued.value,
                backend="k",
            )
            assert claims.claim_run(engine, run) is claims.Claim.CLAIMED
            ids.append(run.id)
        engine.dispose()
        finished = [await wait_until(lambda i=i: run_if(http, i, DONE), timeout=60) for i in ids]
        assert [(r["status"], r["backend"]) for r in finished] == [("succeeded", "a")] * 2, [
            r["error"] for r in finished
        ]
        for run in finished:
            (output,) = run["outputs"]
            assert (await http.get(f"/images/{output['image_names'][0]}")).status_code == 200
