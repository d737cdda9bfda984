"""Every input the gateway stores or forwards is bounded: body sizes, URL lengths, counts, names.

Attacks sent to the real gateway served by uvicorn: huge bodies on the routes FastAPI parses
itself, long URLs, endless subscriptions, and names made of dot segments that URL normalization
would turn into other InvokeAI routes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from app.core.body_limit import SMALL_BODY_BYTES
from app.main import create_app
from tests.app.conftest import TIMEOUT, load_json, make_settings, register
from tests.app.live_server import free_port, serve

HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
async def offline(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway whose InvokeAI is down: every answer below is the gateway's own."""
    settings = make_settings(
        tmp_path,
        f"http://127.0.0.1:{free_port()}",
        webhook_allow_private=True,
        webhook_max_subscriptions=3,
    )
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
    ):
        yield http


def _declared_only(base_url: str, path: str, length: int) -> tuple[int, bytes]:
    """Send headers announcing ``length`` body bytes, and none of them; the status and body."""
    parts = urlsplit(base_url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        )
        sock.sendall(head.encode())
        answer = b""
        while chunk := sock.recv(65536):  # the gateway closes the connection after its answer
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


async def _chunked(prefix: bytes, filler: int, suffix: bytes) -> AsyncIterator[bytes]:
    yield prefix
    for _ in range(filler // 8192):
        yield b"a" * 8192
    yield suffix


@pytest.mark.parametrize("path", ["/webhooks", "/boards"])
async def test_routes_fastapi_parses_have_a_body_limit(
    offline: httpx.AsyncClient, path: str
) -> None:
    # A 60 MiB body announced: refused from the headers, before one byte of it is read.
    # (In a thread: the gateway is served by this test's event loop.)
    status, body = await asyncio.to_thread(
        _declared_only, str(offline.base_url), path, 60 * 1024 * 1024
    )
    assert status == 413, body
    assert b"limit" in body
    # The same without a length (chunked): refused once the limit is passed.
    field = b'{"url": "http://127.0.0.1:9/' if path == "/webhooks" else b'{"name": "'
    response = await offline.post(
        path,
        content=_chunked(field, 4 * SMALL_BODY_BYTES, b'"}'),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 413, response.text[:300]
    assert response.headers["content-type"] == "application/problem+json"
    assert (await offline.get("/webhooks")).json()["count"] == 0


async def test_webhook_urls_are_bounded_and_subscriptions_capped(
    offline: httpx.AsyncClient,
) -> None:
    long_url = HOOK + "?" + "a" * 2100
    for body in ({"url": long_url}, {"url": HOOK, "event_types": ["queued"] * 7}):
        response = await offline.post("/webhooks", json=body)
        assert response.status_code == 422, response.text[:300]
    for number in range(3):
        created = await offline.post("/webhooks", json={"url": f"{HOOK}?n={number}"})
        assert created.status_code == 201, created.text
    refused = await offline.post("/webhooks", json={"url": HOOK})
    assert refused.status_code == 409, refused.text
    assert "delete one" in refused.json()["detail"]
    assert (await offline.get("/webhooks")).json()["count"] == 3
    # A run's own webhook URL is bounded the same way (before anything is looked up).
    run = await offline.post("/workflows/x/runs", json={"webhook_url": long_url})
    assert run.status_code in (404, 422), run.text


@pytest.mark.invokeai
async def test_dot_segment_names_never_reach_another_invokeai_route(
    http: httpx.AsyncClient,
) -> None:
    for path in ("/images/%2E%2E", "/images/%2E", "/images/%2E%2E?thumbnail=1"):
        response = await http.get(path)
        # Before: /images/.. streamed InvokeAI's web page (/api/v1/images/i/../thumbnail).
        assert response.status_code == 422, (path, response.status_code, response.text[:200])
        assert response.headers["content-type"] == "application/problem+json"
    for path in ("/boards/%2E%2E", "/boards/%2E"):
        response = await http.delete(path)
        assert response.status_code == 422, (path, response.text[:200])  # was 502 from InvokeAI
    upload = await http.post("/images?board_id=..", files={"file": ("x.png", b"x", "image/png")})
    assert upload.status_code == 422


@pytest.mark.invokeai
async def test_an_image_input_named_dot_dot_is_refused(
    http: httpx.AsyncClient, workflows_dir: Path
) -> None:
    crop = await register(http, load_json(workflows_dir / "crop_uploaded_image.json"))
    for name in ("..", "."):
        response = await http.post(f"/workflows/{crop['id']}/runs", json={"inputs": {"0": name}})
        # Before: GET /api/v1/images/i/.. is /api/v1/images/ (a list): the name "existed".
        assert response.status_code == 422, (name, response.text)
        (error,) = response.json()["errors"]
        assert error["index"] == 0 and "not an image name" in error["reason"]
    board = await http.post(f"/workflows/{crop['id']}/runs", json={"board_id": ".."})
    assert board.status_code == 422, board.text
    assert (await http.get("/runs")).json()["count"] == 0
