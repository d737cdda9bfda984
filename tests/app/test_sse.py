"""Following real runs over SSE: the gateway served by uvicorn, a real InvokeAI, httpx-sse.

Every stream is compared with the run's stored events (``RunEvent`` rows): the stream must
carry exactly those, in id order, once each.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse
from sqlmodel import Session, col, select

from app.db.engine import make_engine
from app.db.tables import RunEvent
from tests.app.live_server import Served, serve_gateway
from tests.support.workflow_factory import tiny_blur_workflow

pytestmark = pytest.mark.invokeai

TIMEOUT = httpx.Timeout(60.0)


@pytest.fixture(scope="module")
async def gw(
    invokeai_url: str, tmp_path_factory: pytest.TempPathFactory, module_database: dict[str, Any]
) -> AsyncIterator[Served]:
    data_dir = tmp_path_factory.mktemp("sse")
    async with serve_gateway(data_dir, invokeai_url, **module_database) as served:
        yield served


@pytest.fixture
async def http(gw: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gw.url, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture(scope="module")
async def workflow_id(gw: Served) -> str:
    async with httpx.AsyncClient(base_url=gw.url, timeout=TIMEOUT) as http:
        response = await http.post("/workflows", json=tiny_blur_workflow(use_cache=False))
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


_salt = iter(range(1, 10_000))


async def start_run(http: httpx.AsyncClient, workflow_id: str) -> dict[str, Any]:
    # A new radius each time: no output comes from InvokeAI's node cache.
    radius = 1.0 + next(_salt) / 100
    response = await http.post(f"/workflows/{workflow_id}/runs", json={"inputs": {"1": radius}})
    assert response.status_code == 202, response.text
    run: dict[str, Any] = response.json()
    return run


async def read_stream(
    http: httpx.AsyncClient,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    stop_after: int | None = None,
    until: Any = None,
) -> list[ServerSentEvent]:
    """Events until the server ends the stream, ``stop_after`` events, or ``until(event)``."""
    got: list[ServerSentEvent] = []
    async with aconnect_sse(http, "GET", url, headers=dict(headers or {})) as source:
        assert source.response.status_code == 200
        async for sse in source.aiter_sse():
            got.append(sse)
            if stop_after is not None and len(got) >= stop_after:
                break
            if until is not None and until(sse):
                break
    return got


def stored_ids(gw: Served, run_id: str) -> list[int]:
    engine = make_engine(gw.app.state.settings.database_url)
    try:
        with Session(engine) as session:
            query = select(RunEvent.id).where(RunEvent.run_id == run_id)
            return [int(i) for i in session.exec(query.order_by(col(RunEvent.id))).all()]
    finally:
        engine.dispose()


def newest_id(gw: Served) -> int:
    engine = make_engine(gw.app.state.settings.database_url)
    try:
        with Session(engine) as session:
            top = session.exec(select(RunEvent.id).order_by(col(RunEvent.id).desc())).first()
            return int(top or 0)
    finally:
        engine.dispose()


def ids(events: list[ServerSentEvent]) -> list[int]:
    return [int(e.id) for e in events]


async def test_follow_a_run_from_first_event_to_last(
    http: httpx.AsyncClient, gw: Served, workflow_id: str
) -> None:
    run = await start_run(http, workflow_id)
    assert run["links"]["events"] == f"/runs/{run['id']}/events"
    events = await read_stream(http, run["links"]["events"])  # returns when the stream ends

    kinds = [e.event for e in events]
    assert kinds[0] == "run.queued"
    assert kinds[-1] == "run.succeeded"
    assert "run.started" in kinds
    for node_kind in ("node.started", "node.completed"):
        assert kinds.count(node_kind) == 2  # blank_image and img_blur
    assert ids(events) == stored_ids(gw, run["id"])

    payloads = [json.loads(e.data) for e in events]
    assert all(p["run_id"] == run["id"] and p["workflow_id"] == workflow_id for p in payloads)
    assert [p["id"] for p in payloads] == ids(events)
    assert [p["event"] for p in payloads] == kinds
    completed = [p["data"] for p in payloads if p["event"] == "node.completed"]
    assert {c["node_type"] for c in completed} == {"blank_image", "img_blur"}
    final = payloads[-1]["data"]["outputs"]
    assert final and final[0]["image_names"]

    finished = (await http.get(f"/runs/{run['id']}")).json()
    assert finished["status"] == "succeeded"


@pytest.mark.parametrize("how", ["header", "query"])
async def test_resume_with_last_event_id(
    http: httpx.AsyncClient, gw: Served, workflow_id: str, how: str
) -> None:
    run = await start_run(http, workflow_id)
    url = run["links"]["events"]
    first = await read_stream(http, url, stop_after=2)  # then the client drops
    last = first[-1].id
    if how == "header":
        rest = await read_stream(http, url, headers={"Last-Event-ID": last})
    else:
        rest = await read_stream(http, f"{url}?last_event_id={last}")
    assert rest[-1].event == "run.succeeded"
    assert ids(first + rest) == stored_ids(gw, run["id"])  # no loss, no repeats


async def test_every_subscriber_gets_every_event(
    http: httpx.AsyncClient, gw: Served, workflow_id: str
) -> None:
    run = await start_run(http, workflow_id)
    readers = [read_stream(http, run["links"]["events"]) for _ in range(8)]
    results = await asyncio.wait_for(asyncio.gather(*readers), 60)
    expected = stored_ids(gw, run["id"])
    assert expected and all(ids(events) == expected for events in results)


async def test_stream_of_a_finished_run_replays_and_ends(
    http: httpx.AsyncClient, gw: Served, workflow_id: str
) -> None:
    run = await start_run(http, workflow_id)
    live = await read_stream(http, run["links"]["events"])
    again = await read_stream(http, run["links"]["events"])
    assert ids(again) == ids(live)
    after_last = await read_stream(
        http, run["links"]["events"], headers={"Last-Event-ID": live[-1].id}
    )
    assert after_last == []


async def test_all_events_stream_of_one_workflow(
    http: httpx.AsyncClient, gw: Served, workflow_id: str
) -> None:
    box: dict[str, str] = {}

    def our_terminal(sse: ServerSentEvent) -> bool:
        return sse.event == "run.succeeded" and json.loads(sse.data)["run_id"] == box.get("id")

    # Resuming from the newest stored event makes the start point exact.
    url = f"/events?workflow_id={workflow_id}&last_event_id={newest_id(gw)}"
    reader = asyncio.create_task(read_stream(http, url, until=our_terminal))
    box["id"] = (await start_run(http, workflow_id))["id"]
    events = await asyncio.wait_for(reader, 60)
    ours = [e for e in events if json.loads(e.data)["run_id"] == box["id"]]
    assert ids(ours) == stored_ids(gw, box["id"])
    assert all(json.loads(e.data)["workflow_id"] == workflow_id for e in events)


async def test_unknown_run_is_404(http: httpx.AsyncClient) -> None:
    response = await http.get("/runs/no-such-run/events")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


def test_event_shape_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    for kind in (
        "run.queued",
        "run.started",
        "node.started",
        "node.progress",
        "node.completed",
        "node.failed",
        "run.succeeded",
        "run.failed",
        "run.canceled",
        "Last-Event-ID",
    ):
        assert kind in doc
