"""A real browser's ``EventSource`` follows a run through the gateway (headless Chromium).

The page is served from another origin, so this also proves the CORS allowlist lets a
browser app read the stream. Chromium comes from Debian's packages (``scripts/test`` installs
it where apt is available); in CI its absence is a failure, elsewhere a skip.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session, col, select

from app.db.engine import make_engine
from app.db.tables import RunEvent
from tests.app.live_server import Served, free_port, serve, serve_gateway
from tests.support.workflow_factory import tiny_blur_workflow

pytestmark = pytest.mark.invokeai

EVENT_TYPES = [
    "run.queued",
    "run.started",
    "node.started",
    "node.progress",
    "node.completed",
    "node.failed",
    "run.succeeded",
    "run.failed",
    "run.canceled",
]

PAGE = """<!doctype html><html><body><script>
const params = new URLSearchParams(location.search);
const source = new EventSource(params.get("stream"));
const seen = [];
const report = (body) => fetch("/result", {method: "POST", body: JSON.stringify(body)});
for (const type of TYPES) {
  source.addEventListener(type, (e) => {
    seen.push({type: type, id: e.lastEventId, run: JSON.parse(e.data).run_id});
    if (["run.succeeded", "run.failed", "run.canceled"].includes(type)) {
      source.close();
      report({events: seen});
    }
  });
}
source.onerror = () => { if (source.readyState === EventSource.CLOSED) report({error: "closed"}); };
</script></body></html>"""


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (scripts/test installs it with apt-get)")
        pytest.skip("chromium is not installed")
    return found


@contextlib.asynccontextmanager
async def page_server(port: int, result: asyncio.Future[Any]) -> AsyncIterator[str]:
    page = FastAPI()

    @page.get("/", response_class=HTMLResponse)
    async def index() -> str:
        return PAGE.replace("TYPES", json.dumps(EVENT_TYPES))

    @page.post("/result")
    async def collect(request: Request) -> dict[str, bool]:
        if not result.done():
            result.set_result(json.loads(await request.body()))
        return {"ok": True}

    async with serve(page, port=port) as url:
        yield url


async def test_browser_eventsource_follows_a_run(invokeai_url: str, tmp_path: Path) -> None:
    chromium = _chromium()
    page_port = free_port()
    origin = f"http://127.0.0.1:{page_port}"
    result: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    async with (
        serve_gateway(tmp_path / "gw", invokeai_url, cors_origins=origin) as gw,
        page_server(page_port, result),
        httpx.AsyncClient(base_url=gw.url, timeout=60) as http,
    ):
        registered = await http.post("/workflows", json=tiny_blur_workflow(use_cache=False))
        assert registered.status_code == 201, registered.text
        run = await http.post(
            f"/workflows/{registered.json()['id']}/runs", json={"inputs": {"1": 2.75}}
        )
        assert run.status_code == 202, run.text
        run_id = run.json()["id"]
        stream = f"{gw.url}/runs/{run_id}/events"
        browser = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}",
                f"{origin}/?stream={stream}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            seen = await asyncio.wait_for(result, timeout=90)
        finally:
            browser.kill()
            browser.wait()
        stored = _stored(gw, run_id)

    assert "error" not in seen, seen
    events = seen["events"]
    assert [e["type"] for e in events] == [row.event_type for row in stored]
    assert [int(e["id"]) for e in events] == [row.id for row in stored]
    assert {e["run"] for e in events} == {run_id}
    assert events[0]["type"] == "run.queued" and events[-1]["type"] == "run.succeeded"


def _stored(gw: Served, run_id: str) -> list[RunEvent]:
    engine = make_engine(gw.app.state.settings.database_url)
    with Session(engine) as session:
        query = select(RunEvent).where(RunEvent.run_id == run_id).order_by(col(RunEvent.id))
        return list(session.exec(query).all())
