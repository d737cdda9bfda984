"""The gateway starts and answers while InvokeAI is down; runs get 503 and are not recorded."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings
from app.main import create_app
from tests.app.conftest import load_json, make_settings, register
from tests.app.live_server import free_port, serve


@pytest.fixture
def down_settings(tmp_path: Path) -> Settings:
    # A port nothing listens on: every call to "InvokeAI" is refused.
    return make_settings(tmp_path, f"http://127.0.0.1:{free_port()}", retry_after_seconds=7)


@pytest.fixture
async def down_http(down_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve(create_app(down_settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        yield http


async def test_service_answers_and_refuses_runs_with_503(
    down_http: httpx.AsyncClient, workflows_dir: Path
) -> None:
    assert (await down_http.get("/workflows")).status_code == 200
    # Registration works from the file's own values when the server's schema is unreachable.
    workflow = await register(
        down_http, load_json(workflows_dir / "join_three_strings_exposed_fields.json")
    )
    assert [i["value"] for i in workflow["inputs"]] == ["red", "green", "blue"]
    response = await down_http.post(
        f"/workflows/{workflow['id']}/runs", json={"inputs": {"0": "x"}}
    )
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "7"
    assert response.headers["content-type"] == "application/problem+json"
    assert "unreachable" in response.json()["detail"]
    runs = (await down_http.get("/runs")).json()
    assert runs["count"] == 0


async def test_openapi_documents_every_route(down_http: httpx.AsyncClient) -> None:
    spec = (await down_http.get("/openapi.json")).json()
    paths = spec["paths"]
    for path, method in (
        ("/workflows", "post"),
        ("/workflows", "get"),
        ("/workflows/{workflow_id}", "put"),
        ("/workflows/{workflow_id}", "delete"),
        ("/workflows/{workflow_id}/runs", "post"),
        ("/runs", "get"),
        ("/runs/{run_id}", "get"),
        ("/runs/{run_id}/cancel", "post"),
    ):
        assert method in paths[path], (path, method)
    run_body = paths["/workflows/{workflow_id}/runs"]["post"]["requestBody"]["content"]
    assert run_body["application/json"]["example"]["inputs"] == {"0": "a prompt", "3": 30}
    assert "multipart/form-data" in paths["/workflows"]["post"]["requestBody"]["content"]
