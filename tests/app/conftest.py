"""Fixtures of the gateway tests: settings on a temporary database, the app served over HTTP."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from app.core.config import Settings
from app.main import create_app
from app.runs.enqueue import Enqueued, build_body, send_body
from invokeai_py_client import WorkflowHandle
from tests.app.live_server import serve
from tests.support import invokeai_server
from tests.support.postgres_server import PostgresServer

TIMEOUT = httpx.Timeout(30.0)


@pytest.fixture(autouse=True)
def _clean_gateway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment of the machine must not leak into the settings under test."""
    import os

    for name in list(os.environ):
        if name.startswith("GATEWAY_") or name in (
            "INVOKEAI_URL",
            "INVOKEAI_USERNAME",
            "INVOKEAI_PASSWORD",
        ):
            monkeypatch.delenv(name)


def make_settings(tmp_path: Path, invokeai_url: str, **extra: Any) -> Settings:
    """Settings for one test: its own SQLite file, quick reconciling."""
    return Settings(
        invokeai_url=invokeai_url,
        data_dir=tmp_path / "data",
        **({"reconcile_interval_seconds": 1.0} | extra),
    )


@pytest.fixture(scope="session")
def second_invokeai() -> Iterator[str]:
    """A second real InvokeAI (its own root folder), for the tests of several servers."""
    server = invokeai_server.start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str | None:
    """The database of one test: its own SQLite file (None), or a fresh PostgreSQL database.

    Tests built on ``gateway_settings`` (the ``gateway`` and ``http`` fixtures) run on both.
    """
    if request.param == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.fresh_database()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def module_database(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings naming the database of a module's gateway: none (its own SQLite file), or a
    fresh PostgreSQL database; the module's tests run on both."""
    if request.param == "sqlite":
        return {}
    server: PostgresServer = request.getfixturevalue("postgres")
    return {"database_url": server.fresh_database()}


@pytest.fixture
def gateway_settings(tmp_path: Path, invokeai_url: str, database_url: str | None) -> Settings:
    if database_url is None:
        return make_settings(tmp_path, invokeai_url)
    return make_settings(tmp_path, invokeai_url, database_url=database_url)


@pytest.fixture
async def gateway(gateway_settings: Settings) -> AsyncIterator[str]:
    """The gateway served by uvicorn on a free port, against the real InvokeAI."""
    async with serve(create_app(gateway_settings)) as url:
        yield url


@pytest.fixture
async def http(gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the served gateway."""
    async with httpx.AsyncClient(base_url=gateway, timeout=TIMEOUT) as client:
        yield client


def load_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


async def register(http: httpx.AsyncClient, workflow: dict[str, Any]) -> dict[str, Any]:
    """POST a workflow file; asserts 201 and returns the body."""
    response = await http.post("/workflows", json=workflow)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def run_by_labels(
    http: httpx.AsyncClient, workflow: dict[str, Any], by_label: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Post a run with inputs given by form label, follow its SSE stream to ``run.succeeded``;
    its finished record and its ``node.progress`` data, in order."""
    index = {inp["label"]: str(inp["index"]) for inp in workflow["inputs"]}
    body = {"inputs": {index[label]: value for label, value in by_label.items()}}
    response = await http.post(f"/workflows/{workflow['id']}/runs", json=body)
    assert response.status_code == 202, response.text
    run = response.json()
    kinds: list[str] = []
    progress: list[dict[str, Any]] = []
    async with aconnect_sse(http, "GET", run["links"]["events"]) as source:
        async for sse in source.aiter_sse():
            kinds.append(sse.event)
            data = json.loads(sse.data)["data"]
            if sse.event == "node.progress":
                progress.append(data)
    assert kinds[-1] == "run.succeeded", kinds
    finished: dict[str, Any] = (await http.get(f"/runs/{run['id']}")).json()
    # The terminal event names the same outputs as the run's record (less the URLs).
    assert [o["video_names"] for o in data["outputs"]] == [
        o["video_names"] for o in finished["outputs"]
    ]
    return finished, progress


async def wait_until(
    check: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.2
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def run_if(http: httpx.AsyncClient, run_id: str, wanted: set[str]) -> dict[str, Any] | None:
    """The run once its status is one of ``wanted``, else None (also while it is unknown)."""
    response = await http.get(f"/runs/{run_id}")
    if response.status_code != 200:
        return None
    body: dict[str, Any] = response.json()
    return body if body["status"] in wanted else None


async def submit_run(http: httpx.AsyncClient, workflow_id: str, inputs: dict[str, Any]) -> str:
    """POST a run (answered 202) and return its id."""
    response = await http.post(f"/workflows/{workflow_id}/runs", json={"inputs": inputs})
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


async def servers_followed(http: httpx.AsyncClient, names: set[str] | None = None) -> bool:
    """Whether the gateway follows the events of these InvokeAI servers (None: all of them)."""
    listed = (await http.get("/backends")).json()["data"]
    wanted = {b["name"] for b in listed} if names is None else names
    return wanted <= {b["name"] for b in listed if b["healthy"]}


async def run_on_queue(http: httpx.AsyncClient, run_id: str) -> dict[str, Any] | None:
    """The run once InvokeAI holds it (its queue item is known), else None."""
    body: dict[str, Any] = (await http.get(f"/runs/{run_id}")).json()
    return body if body["item_id"] is not None else None


async def enqueue_run(
    handle: WorkflowHandle, *, board_id: str | None, destination: str, batch_id: str | None
) -> Enqueued:
    """Enqueue a handle's values as the gateway would (a run InvokeAI has, the gateway not)."""
    assert batch_id is not None
    body = build_body(handle, board_id=board_id, destination=destination, batch_id=batch_id)
    return await send_body(handle, body)
