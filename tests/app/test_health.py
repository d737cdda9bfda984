"""Liveness and readiness of the gateway: real InvokeAI up, InvokeAI down, database locked."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from app.api.routes.health import readiness
from tests.app.live_server import free_port, serve_gateway

pytestmark = pytest.mark.invokeai


async def get(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.get(url)


async def test_live_and_ready_with_invokeai_up(tmp_path: Path, invokeai_url: str) -> None:
    async with serve_gateway(tmp_path, invokeai_url) as gw:
        live = await get(f"{gw.url}/livez")
        ready = await get(f"{gw.url}/readyz")
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    assert ready.json() == {
        "status": "ok",
        "checks": {"invokeai": "ok", "events": "ok", "database": "ok"},
        "down": [],
        "details": {},
    }


async def test_not_ready_while_invokeai_is_down(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    async with serve_gateway(tmp_path, closed) as gw:
        live = await get(f"{gw.url}/livez")
        ready = await get(f"{gw.url}/readyz")
    assert live.status_code == 200
    assert ready.status_code == 503
    body = ready.json()
    assert body["status"] == "unavailable"
    assert body["down"] == ["invokeai", "events"]
    assert body["checks"]["database"] == "ok"
    assert closed in body["details"]["invokeai"]


async def test_not_ready_while_the_database_is_locked(tmp_path: Path, invokeai_url: str) -> None:
    async with serve_gateway(tmp_path, invokeai_url) as gw:
        path = gw.app.state.settings.database_url.removeprefix("sqlite:///")
        # Another process holding the write lock: our probe waits out the busy timeout, fails.
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN EXCLUSIVE")
            locked = await get(f"{gw.url}/readyz")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        unlocked = await get(f"{gw.url}/readyz")
    assert locked.status_code == 503
    assert locked.json()["down"] == ["database"]
    assert "locked" in locked.json()["details"]["database"]
    assert unlocked.status_code == 200


def test_readiness_body() -> None:
    body = readiness({"invokeai": None, "events": "gone", "database": None})
    assert body.status == "unavailable"
    assert body.checks == {"invokeai": "ok", "events": "down", "database": "ok"}
    assert body.down == ["events"]
    assert body.details == {"events": "gone"}
