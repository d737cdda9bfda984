"""What the gateway tells strangers: no internals in errors, probes or preflights; no 500s for
bodies that are merely odd (deeply nested JSON). Each against the gateway served by uvicorn.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings
from app.main import create_app
from tests.app.conftest import TIMEOUT, load_json, make_settings, register
from tests.app.live_server import free_port, serve

KEY = "hygiene-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def keyed_settings(tmp_path: Path) -> Settings:
    """Keys set; InvokeAI down (its URL is what /readyz must not show to strangers)."""
    return make_settings(tmp_path, f"http://127.0.0.1:{free_port()}", api_keys=KEY)


@pytest.fixture
async def keyed(keyed_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve(create_app(keyed_settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
    ):
        yield http


async def test_an_unexpected_error_gives_an_id_found_in_the_log(
    keyed: httpx.AsyncClient, keyed_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="app")
    database = keyed_settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(database) as connection:  # the operator broke the database
        connection.execute("ALTER TABLE workflow RENAME TO workflow_gone")
    response = await keyed.get("/workflows", headers=AUTH)
    assert response.status_code == 500
    body = response.json()
    error_id = response.headers["x-error-id"]
    assert error_id in body["detail"]
    for internal in ("no such table", "workflow_gone", "OperationalError", "SELECT", database):
        assert internal not in response.text, internal
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the operator finds the traceback by id
    assert "no such table" in str(logged[0].exc_info[1])


async def test_readyz_details_only_for_a_caller_with_a_key(
    keyed: httpx.AsyncClient, keyed_settings: Settings
) -> None:
    stranger = await keyed.get("/readyz")
    assert stranger.status_code == 503
    assert stranger.json()["down"] and stranger.json()["details"] == {}
    assert keyed_settings.invokeai_url.removeprefix("http://") not in stranger.text
    operator = await keyed.get("/readyz", headers=AUTH)
    assert operator.status_code == 503
    assert keyed_settings.invokeai_url in operator.json()["details"]["invokeai"]
    wrong = await keyed.get("/readyz", headers={"Authorization": "Bearer nope"})
    assert wrong.json()["details"] == {}


async def test_preflights_without_cors_do_not_map_the_paths(keyed: httpx.AsyncClient) -> None:
    preflight = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    known = await keyed.options("/workflows", headers=preflight)
    unknown = await keyed.options("/no/such/path", headers=preflight)
    assert known.status_code == unknown.status_code == 401  # was 405 against 404
    assert known.json()["detail"] == unknown.json()["detail"]


@pytest.mark.parametrize("path", ["/workflows", "/boards", "/webhooks"])
async def test_deeply_nested_json_is_a_client_error(keyed: httpx.AsyncClient, path: str) -> None:
    depth = 30_000  # 60 KB: within every route's body limit
    for body in (b"[" * depth + b"]" * depth, b'{"name": ' + b"[" * depth + b"]" * depth + b"}"):
        response = await keyed.post(
            path, content=body, headers={**AUTH, "Content-Type": "application/json"}
        )
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text)


@pytest.mark.invokeai
async def test_deeply_nested_run_inputs_are_a_client_error(
    http: httpx.AsyncClient, workflows_dir: Path
) -> None:
    join = await register(http, load_json(workflows_dir / "join_three_strings_exposed_fields.json"))
    depth = 100_000
    body = b'{"inputs": {"0": ' + b"[" * depth + b"]" * depth + b"}}"
    response = await http.post(
        f"/workflows/{join['id']}/runs", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text[:300]
    assert (await http.get("/runs")).json()["count"] == 0


async def test_a_time_before_year_one_in_utc_is_a_client_error(keyed: httpx.AsyncClient) -> None:
    """Found by the fuzzer: the offset moves this instant before 0001-01-01 UTC."""
    for name in ("created_after", "created_before"):
        params = {name: "0001-01-01T06:19:10.1+18:58"}
        response = await keyed.get("/runs", params=params, headers=AUTH)
        assert response.status_code == 422, response.text
        assert name in response.text
