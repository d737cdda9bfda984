"""Many runs from many clients: all recorded, all finish, the history matches InvokeAI's queue.

The test starts its own InvokeAI (node cache off, so every run executes) and posts
``GATEWAY_LOAD_RUNS`` runs (default 150) of a tiny model-free workflow from 50 concurrent
clients. The queue then holds exactly one item per recorded run (matched by ``destination``,
the run id) and each run's status is its item's. The full soak of issue 4 is 500 runs::

    GATEWAY_LOAD_RUNS=500 pytest tests/app/test_load.py -s

It prints the figures (no timing is asserted).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.main import create_app
from app.runs.translate import run_status_for
from invokeai_py_client import InvokeAIClient
from tests.app.conftest import load_json, make_settings
from tests.app.live_server import serve
from tests.support import invokeai_server

pytestmark = pytest.mark.invokeai

CLIENTS = 50
RUNS = int(os.environ.get("GATEWAY_LOAD_RUNS", "150"))


@pytest.fixture(scope="module")
def fresh_invokeai() -> Iterator[str]:
    """An InvokeAI of this module alone: its queue holds only the runs posted here."""
    server = invokeai_server.start(extra_config="node_cache_size: 0\n")
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


async def _post_all(http: httpx.AsyncClient, url: str, count: int) -> list[dict[str, Any]]:
    numbers: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        numbers.put_nowait(n)
    accepted: list[dict[str, Any]] = []

    async def one_client() -> None:
        while not numbers.empty():
            n = numbers.get_nowait()
            body = {"inputs": {"0": f"load{n}", "2": f"#{n}"}}
            response = await http.post(url, json=body, headers={"Idempotency-Key": f"load-{n}"})
            assert response.status_code == 202, response.text
            accepted.append(response.json())

    await asyncio.gather(*(one_client() for _ in range(CLIENTS)))
    return accepted


async def _unfinished(http: httpx.AsyncClient) -> int:
    """How many runs are queued or running (``count`` is one page's: all pages are read)."""
    total, cursor = 0, None
    while True:
        params: dict[str, Any] = {"status": ["queued", "running"], "limit": 500}
        page = await http.get("/runs", params=params | ({"cursor": cursor} if cursor else {}))
        body = page.json()
        total += int(body["count"])
        cursor = body["next_cursor"]
        if not cursor:
            return total


async def _history(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/runs", params=params)).json()
        runs.extend(page["data"])
        cursor = page["next_cursor"]
        if not cursor:
            return runs


# InvokeAI runs one item at a time, about 0.5-1 s each here; how long the whole load takes is
# the machine's business. A run the gateway lost would leave the count stuck, so the wait
# fails when the count of unfinished runs has not moved for this long.
STALL_SECONDS = 60.0


async def _until_all_finished(http: httpx.AsyncClient) -> None:
    loop = asyncio.get_running_loop()
    last_count, last_change = -1, loop.time()
    while (count := await _unfinished(http)) > 0:
        if count != last_count:
            last_count, last_change = count, loop.time()
        elif loop.time() - last_change > STALL_SECONDS:
            raise AssertionError(f"{count} runs unfinished, none ended for {STALL_SECONDS} s")
        await asyncio.sleep(1.0)


@pytest.mark.timeout(900)  # the stall check above is what fails a stuck load
async def test_many_clients_many_runs_match_the_queue(
    tmp_path: Path, fresh_invokeai: str, workflows_dir: Path
) -> None:
    settings = make_settings(tmp_path, fresh_invokeai)
    limits = httpx.Limits(max_connections=CLIENTS)
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as http,
    ):
        definition = load_json(workflows_dir / "join_three_strings_exposed_fields.json")
        workflow = (await http.post("/workflows", json=definition)).json()
        started = time.monotonic()
        accepted = await _post_all(http, f"/workflows/{workflow['id']}/runs", RUNS)
        posted = time.monotonic()

        await _until_all_finished(http)
        finished = time.monotonic()
        history = await _history(http)
    async with InvokeAIClient.from_url(fresh_invokeai) as direct:
        items = await direct.queue_repo.alist_all_items()
    print(
        f"\n{RUNS} runs from {CLIENTS} clients: posted in {posted - started:.1f} s, "
        f"all finished after {finished - started:.1f} s "
        f"({RUNS / (finished - started):.1f} runs/s)"
    )
    assert len(accepted) == RUNS
    assert len({r["id"] for r in accepted}) == RUNS
    by_run = {r["id"]: r for r in history}
    assert set(by_run) == {r["id"] for r in accepted}  # all recorded, nothing else
    assert len(items) == RUNS  # one queue item per run, no more
    by_destination = {str(item.destination): item for item in items}
    assert set(by_destination) == set(by_run)
    for run_id, run in by_run.items():
        item = by_destination[run_id]
        assert run["item_id"] == item.item_id and run["batch_id"] == item.batch_id
        assert run["status"] == run_status_for(str(item.status)) == "succeeded"
    sample = by_run[accepted[0]["id"]]
    n = int(sample["inputs"]["0"].removeprefix("load"))
    assert sample["outputs"][0]["values"] == [f"load{n}green#{n}"]
