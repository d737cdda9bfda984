"""Images, boards and models through the gateway, against the real InvokeAI."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.app.live_server import Served, serve_gateway

pytestmark = pytest.mark.invokeai

UPLOAD_LIMIT = 300_000


def png_bytes(size: int = 64) -> bytes:
    # Random pixels: every upload is a new image, and the PNG barely compresses.
    image = Image.frombytes("RGB", (size, size), os.urandom(size * size * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def pixels(data: bytes) -> bytes:
    return Image.open(io.BytesIO(data)).convert("RGB").tobytes()


@pytest.fixture(scope="module")
async def gw(invokeai_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Served]:
    data_dir = tmp_path_factory.mktemp("gateway")
    async with serve_gateway(data_dir, invokeai_url, max_upload_bytes=UPLOAD_LIMIT) as served:
        yield served


@pytest.fixture
async def http(gw: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gw.url, timeout=30) as client:
        yield client


async def upload(http: httpx.AsyncClient, data: bytes, **params: str) -> httpx.Response:
    files = {"file": ("pic.png", data, "image/png")}
    return await http.post("/images", files=files, params=params)


async def test_upload_then_download_round_trip(http: httpx.AsyncClient, invokeai_url: str) -> None:
    data = png_bytes()
    created = await upload(http, data)
    assert created.status_code == 201, created.text
    body = created.json()
    name = body["image_name"]
    assert body["url"] == f"/images/{name}"
    assert (body["width"], body["height"]) == (64, 64)

    through_gateway = await http.get(body["url"])
    assert through_gateway.status_code == 200
    assert through_gateway.headers["content-type"] == "image/png"
    async with httpx.AsyncClient(timeout=30) as direct_http:
        direct = await direct_http.get(f"{invokeai_url}/api/v1/images/i/{name}/full")
    # InvokeAI re-encodes uploads: the file equals InvokeAI's, the pixels equal ours.
    assert through_gateway.content == direct.content
    assert int(through_gateway.headers["content-length"]) == len(direct.content)
    assert pixels(through_gateway.content) == pixels(data)


@pytest.fixture(scope="module")
async def large_image(invokeai_url: str) -> str:
    """A 3 MB image, put on InvokeAI directly (it is above this gateway's upload limit)."""
    async with httpx.AsyncClient(timeout=60) as direct_http:
        uploaded = await direct_http.post(
            f"{invokeai_url}/api/v1/images/upload",
            params={"image_category": "user", "is_intermediate": "false"},
            files={"file": ("large.png", png_bytes(1000), "image/png")},
        )
    assert uploaded.status_code == 201, uploaded.text
    name: str = uploaded.json()["image_name"]
    return name


async def test_a_large_image_is_relayed_with_its_length(
    http: httpx.AsyncClient, invokeai_url: str, large_image: str
) -> None:
    async with httpx.AsyncClient(timeout=30) as direct_http:
        direct = await direct_http.get(f"{invokeai_url}/api/v1/images/i/{large_image}/full")
    async with http.stream("GET", f"/images/{large_image}") as relayed:
        assert relayed.status_code == 200
        assert relayed.headers["content-length"] == str(len(direct.content))
        assert "transfer-encoding" not in relayed.headers  # a plain body, not a chunked one
        pieces = [piece async for piece in relayed.aiter_raw()]
    assert len(direct.content) > 2_000_000
    assert b"".join(pieces) == direct.content


async def test_a_caller_leaving_mid_download_leaves_the_gateway_serving(
    gw: Served, http: httpx.AsyncClient, large_image: str
) -> None:
    host, port = gw.url.removeprefix("http://").split(":")
    for _ in range(3):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(f"GET /images/{large_image} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        await reader.readexactly(100_000)
        writer.close()  # gone, 3 MB short of the end
        await writer.wait_closed()
    whole = await http.get(f"/images/{large_image}")
    assert whole.status_code == 200
    assert len(whole.content) == int(whole.headers["content-length"]) > 2_000_000


async def test_a_revalidated_image_is_not_sent_again(http: httpx.AsyncClient) -> None:
    name = (await upload(http, png_bytes())).json()["image_name"]
    full = await http.get(f"/images/{name}")
    thumb = await http.get(f"/images/{name}", params={"thumbnail": "1"})
    etag, thumb_etag = full.headers["etag"], thumb.headers["etag"]
    assert etag.startswith('W/"') and etag != thumb_etag
    assert full.headers["cache-control"]  # InvokeAI's, passed on

    again = await http.get(f"/images/{name}", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"] == full.headers["cache-control"]
    listed = await http.get(
        f"/images/{name}",
        params={"thumbnail": "1"},
        headers={"if-none-match": f'"other", {thumb_etag.removeprefix("W/")}'},
    )
    assert listed.status_code == 304
    # Another tag, or the thumbnail's tag for the full image: the image itself.
    for other in ('W/"other"', thumb_etag):
        changed = await http.get(f"/images/{name}", headers={"if-none-match": other})
        assert changed.status_code == 200 and changed.content == full.content


@pytest.mark.parametrize("thumbnail", [False, True])
async def test_revalidating_an_unknown_image_is_404(
    http: httpx.AsyncClient, thumbnail: bool
) -> None:
    # InvokeAI answers a HEAD of a thumbnail with its web UI's page (200): not a proof.
    params = {"thumbnail": "1"} if thumbnail else {}
    response = await http.get(
        "/images/no-such-image.png", params=params, headers={"if-none-match": "*"}
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_thumbnail(http: httpx.AsyncClient) -> None:
    name = (await upload(http, png_bytes(300))).json()["image_name"]
    thumb = await http.get(f"/images/{name}", params={"thumbnail": "1"})
    assert thumb.status_code == 200
    assert thumb.headers["content-type"] == "image/webp"
    assert max(Image.open(io.BytesIO(thumb.content)).size) < 300


async def test_unknown_image_is_404(http: httpx.AsyncClient) -> None:
    for params in ({}, {"thumbnail": "1"}):
        response = await http.get("/images/no-such-image.png", params=params)
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert "no-such-image.png" in response.json()["detail"]


async def test_upload_above_the_limit_is_413(http: httpx.AsyncClient) -> None:
    big = png_bytes(400)  # about 480 KB of incompressible pixels
    assert len(big) > UPLOAD_LIMIT
    response = await upload(http, big)
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert str(UPLOAD_LIMIT) in response.json()["detail"]


async def test_upload_above_the_limit_without_content_length_is_413(
    http: httpx.AsyncClient,
) -> None:
    boundary = "gatewayboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    async def chunks() -> AsyncIterator[bytes]:  # a generator body is sent chunked
        yield head
        for _ in range(20):
            yield b"\0" * 50_000
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await http.post(
        "/images",
        content=chunks(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 413


async def test_upload_of_something_else_is_rejected(http: httpx.AsyncClient) -> None:
    not_image = await upload(http, b"this is not an image")
    assert not_image.status_code == 415, not_image.text
    no_file = await http.post("/images", files={"other": ("a.png", png_bytes(), "image/png")})
    assert no_file.status_code == 422


async def test_boards_create_list_upload_delete(http: httpx.AsyncClient) -> None:
    created = await http.post("/boards", json={"name": "gateway test board"})
    assert created.status_code == 201, created.text
    board = created.json()
    board_id = board["board_id"]
    assert board["board_name"] == "gateway test board"

    uploaded = await upload(http, png_bytes(), board_id=board_id)
    assert uploaded.status_code == 201
    assert uploaded.json()["board_id"] == board_id

    listed = (await http.get("/boards")).json()
    assert listed["count"] == len(listed["data"])
    mine = next(b for b in listed["data"] if b["board_id"] == board_id)
    assert mine["asset_count"] + mine["image_count"] == 1
    assert listed["data"][-1]["board_id"] == "none"

    deleted = await http.delete(f"/boards/{board_id}", params={"delete_images": "true"})
    assert deleted.status_code == 204
    assert (await http.delete(f"/boards/{board_id}")).status_code == 404
    gone = (await http.get("/boards")).json()["data"]
    assert board_id not in {b["board_id"] for b in gone}
    missing_image = await http.get(f"/images/{uploaded.json()['image_name']}")
    assert missing_image.status_code == 404


async def test_board_errors(http: httpx.AsyncClient) -> None:
    assert (await http.delete("/boards/no-such-board")).status_code == 404
    assert (await http.delete("/boards/none")).status_code == 404
    assert (await upload(http, png_bytes(), board_id="no-such-board")).status_code == 404
    assert (await http.post("/boards", json={"name": ""})).status_code == 422


async def test_models_list(http: httpx.AsyncClient, aclient) -> None:
    response = await http.get("/models")
    assert response.status_code == 200
    body = response.json()
    expected = await aclient.dnn_model_repo.alist_models()
    assert body["count"] == len(body["data"]) == len(expected)
    assert [m["key"] for m in body["data"]] == [m.key for m in expected]
    filtered = await http.get("/models", params={"base": "sdxl", "type": "main"})
    assert filtered.status_code == 200


def test_data_dir_is_used(gw: Served) -> None:
    assert Path(gw.app.state.settings.database_url.removeprefix("sqlite:///")).exists()
