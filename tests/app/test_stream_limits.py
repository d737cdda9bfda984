"""Event streams are capped in all and per API key, and a resume point must be an event id.

Real streams on the gateway served by uvicorn (InvokeAI down: streams need only the database).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from app.main import create_app
from tests.app.conftest import TIMEOUT, make_settings
from tests.app.live_server import free_port, serve

KEYS = ("stream-key-one", "stream-key-two")


@pytest.fixture
async def capped(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        tmp_path,
        f"http://127.0.0.1:{free_port()}",
        api_keys=",".join(KEYS),
        max_streams=3,
        max_streams_per_key=2,
    )
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
    ):
        yield http


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def _open(
    stack: contextlib.AsyncExitStack, http: httpx.AsyncClient, key: str, path: str = "/events"
) -> httpx.Response:
    return await stack.enter_async_context(http.stream("GET", path, headers=_auth(key)))


async def test_streams_are_capped_per_key_then_in_all(capped: httpx.AsyncClient) -> None:
    one, two = KEYS
    async with contextlib.AsyncExitStack() as first:
        for _ in range(2):
            assert (await _open(first, capped, one)).status_code == 200
        async with contextlib.AsyncExitStack() as more:
            refused = await _open(more, capped, one, "/runs/x/events")
            assert refused.status_code == 429
            assert refused.headers["retry-after"]
            await refused.aread()
            assert "2 event streams" in refused.json()["detail"]
            assert (await _open(more, capped, two)).status_code == 200  # 3 open in all
            full = await _open(more, capped, two)
            assert full.status_code == 503 and full.headers["retry-after"]
            # An unauthenticated caller takes no slot and learns nothing of the caps.
            stranger = await more.enter_async_context(capped.stream("GET", "/events"))
            assert stranger.status_code == 401
    # Closed streams give their slots back.
    async with contextlib.AsyncExitStack() as again:
        for key in (one, one, two):
            assert (await _open(again, capped, key)).status_code == 200


@pytest.mark.parametrize("resume", [str(2**63), str(2**64), "-1"])
async def test_last_event_id_must_be_an_event_id(capped: httpx.AsyncClient, resume: str) -> None:
    auth = _auth(KEYS[0])
    response = await capped.get("/events", headers={**auth, "Last-Event-ID": resume})
    assert response.status_code == 422, response.text[:300]
    response = await capped.get(f"/events?last_event_id={resume}", headers=auth)
    assert response.status_code == 422, response.text[:300]
