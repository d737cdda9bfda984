"""API keys on every route, loopback only without keys, CORS, no secrets logged, multi-user.

The route walk takes every route the app has (``app.routes``: the API, the SSE streams, and
what FastAPI adds: ``/docs``, ``/redoc``, ``/openapi.json``) and asks each without a key, with
a wrong key and with a right one, over real HTTP.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel import Session, col, select
from starlette.routing import BaseRoute, Route

from app.core.config import Settings
from app.core.security import PUBLIC_PATHS, InsecureBind, is_loopback, key_matches
from app.db.engine import make_engine
from app.db.tables import RunEvent
from app.main import create_app
from invokeai_py_client import InvokeAIClient
from invokeai_py_client.auth import setup_admin
from tests.app.conftest import TIMEOUT, load_json, make_settings
from tests.app.live_server import free_port, serve
from tests.support import invokeai_server

KEYS = "first-key-0123456789,second-key-abcdef"
ROOT = Path(__file__).resolve().parents[2]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def _flatten(routes: Sequence[BaseRoute]) -> Iterator[Route]:
    for route in routes:
        if isinstance(route, Route):
            yield route
        inner = getattr(route, "original_router", None)  # an included router (FastAPI >= 0.13x)
        if inner is not None:
            yield from _flatten(inner.routes)


def every_route(app: FastAPI) -> list[tuple[str, str]]:
    """(method, concrete path) of every route of the app, HEAD and OPTIONS left out."""
    found = []
    for route in _flatten(app.routes):
        for method in sorted((route.methods or {"GET"}) - {"HEAD", "OPTIONS"}):
            found.append((method, _concrete(route.path)))
    return found


@pytest.fixture
async def keyed(tmp_path: Path) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    # InvokeAI down: authentication must not depend on it.
    settings = make_settings(tmp_path, f"http://127.0.0.1:{free_port()}", api_keys=KEYS)
    app = create_app(settings)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http:
        yield app, http


async def test_no_route_but_health_answers_without_a_key(
    keyed: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, http = keyed
    routes = every_route(app)
    paths = {path for _, path in routes}
    # The walk covers the docs, the spec and the SSE routes too.
    assert {"/docs", "/openapi.json", "/events", "/runs/x/events", "/livez"} <= paths
    spec = app.openapi()
    assert {_concrete(p) for p in spec["paths"]} <= paths  # nothing documented is skipped
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eA=="}):
            response = await http.request(method, path, headers=headers)
            if path in PUBLIC_PATHS:
                assert response.status_code != 401, (method, path)
                continue
            assert response.status_code == 401, (method, path, headers, response.text[:200])
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"].startswith("Bearer")
    assert (await http.get("/no/such/path")).status_code == 401  # no probing of paths


async def test_a_right_key_opens_every_route(keyed: tuple[FastAPI, httpx.AsyncClient]) -> None:
    _app, http = keyed
    for key in KEYS.split(","):
        auth = {"Authorization": f"Bearer {key}"}
        assert (await http.get("/openapi.json", headers=auth)).status_code == 200
        assert (await http.get("/docs", headers=auth)).status_code == 200
        assert (await http.get("/workflows", headers=auth)).status_code == 200
        assert (await http.get("/runs/x", headers=auth)).status_code == 404
    spec = (await http.get("/openapi.json", headers=auth)).json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["paths"]["/runs"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in spec["paths"]["/livez"]["get"]


def test_key_matching() -> None:
    keys = ["alpha", "beta"]
    assert key_matches("alpha", keys) and key_matches("beta", keys)
    assert not key_matches("alph", keys)
    assert not key_matches("alphaa", keys)
    assert not key_matches("", keys)
    assert not key_matches("alpha", [])
    assert Settings(api_keys=" a , ,b,").api_key_list == ["a", "b"]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)
    create_app(Settings(host=host))  # no keys needed there


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.com"])
def test_no_keys_refuses_a_network_host(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(InsecureBind, match="GATEWAY_API_KEYS"):
        create_app(Settings(host=host))
    create_app(Settings(host=host, api_keys="k"))  # with a key it is allowed


def test_serve_command_refuses_and_says_why(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "app", "serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert b"without API keys" in result.stderr
    assert not (tmp_path / "gateway.db").exists()  # refused before doing anything


async def test_loopback_only_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="app")
    settings = make_settings(tmp_path, f"http://127.0.0.1:{free_port()}")
    create_app(settings)
    assert any("loopback" in r.getMessage() for r in caplog.records)


async def test_cors_allowlist(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        f"http://127.0.0.1:{free_port()}",
        cors_origins="https://app.example",
        api_keys="cors-key",
    )
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
    ):
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,idempotency-key,content-type",
        }
        allowed = await http.options(
            "/workflows/x/runs", headers={"Origin": "https://app.example", **preflight}
        )
        assert allowed.status_code == 200  # preflights carry no key
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        refused = await http.options(
            "/workflows/x/runs", headers={"Origin": "https://evil.example", **preflight}
        )
        assert "access-control-allow-origin" not in refused.headers
        simple = await http.get(
            "/workflows",
            headers={"Origin": "https://app.example", "Authorization": "Bearer cors-key"},
        )
        assert simple.status_code == 200
        assert simple.headers["access-control-allow-origin"] == "https://app.example"


# -- multi-user InvokeAI ----------------------------------------------------------------------

ADMIN = "gateway-admin@example.com"
PASSWORD = "Gateway-Secret-Pass-77"


@pytest.fixture(scope="module")
def multiuser_url() -> Iterator[str]:
    server = invokeai_server.start(extra_config="multiuser: true\n")
    try:
        with InvokeAIClient.from_url(server.url) as anonymous:
            anonymous._portal.call(setup_admin(anonymous._http, ADMIN, PASSWORD))
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text}")


@pytest.fixture
def all_logs() -> Iterator[_Collect]:
    handler = _Collect()
    loggers = [logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.error", "uvicorn.access")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


@pytest.mark.invokeai
async def test_multiuser_invokeai_runs_with_events_and_no_secret_logged(
    tmp_path: Path, multiuser_url: str, workflows_dir: Path, all_logs: _Collect
) -> None:
    api_key = "gateway-api-key-SECRET-4242"
    settings = make_settings(
        tmp_path,
        multiuser_url,
        api_keys=api_key,
        invokeai_username=ADMIN,
        invokeai_password=PASSWORD,
    )
    auth = {"Authorization": f"Bearer {api_key}"}
    app = create_app(settings)
    async with (
        serve(app) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT, headers=auth) as http,
    ):
        workflow = load_json(workflows_dir / "join_three_strings_exposed_fields.json")
        registered = (await http.post("/workflows", json=workflow)).json()
        response = await http.post(
            f"/workflows/{registered['id']}/runs",
            json={"inputs": {"0": "multi", "2": "user"}},
            headers={"Prefer": "wait=60"},
        )
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        assert run["status"] == "succeeded"
        assert run["outputs"][0]["values"] == ["multigreenuser"]
        token = app.state.client._http.token
    assert token  # the gateway did log in
    with Session(make_engine(settings.database_url)) as session:
        query = select(RunEvent).where(RunEvent.run_id == run["id"]).order_by(col(RunEvent.id))
        events = list(session.exec(query))
    types = [e.event_type for e in events]
    # Node events only come over Socket.IO: the authenticated event stream delivered them.
    assert "node.completed" in types and "run.started" in types
    assert not events[-1].data.get("synthetic")
    logged = "\n".join(all_logs.lines)
    assert logged  # something was logged, so the check below can fail
    for secret in (api_key, PASSWORD, token):
        assert secret not in logged
