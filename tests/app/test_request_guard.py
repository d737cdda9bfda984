"""A gateway without API keys answers only local programs, never a web page the user has open.

Each test sends the attack a browser page (or another machine) could make to the real gateway
served by uvicorn, and expects the refusal; then the same request from a local program passes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from app.core.body_limit import accepts_multipart
from app.main import create_app
from tests.app.conftest import TIMEOUT, load_json, make_settings
from tests.app.live_server import free_port, serve
from tests.app.test_images_boards_models import png_bytes

ROOT = Path(__file__).resolve().parents[2]
EVIL = "https://evil.example"


@pytest.fixture
async def local(tmp_path: Path, invokeai_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway without keys (CORS allows https://app.example), against the real InvokeAI."""
    settings = make_settings(tmp_path, invokeai_url, cors_origins="https://app.example")
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
    ):
        yield http


def _workflow(workflows_dir: Path) -> bytes:
    return json.dumps(load_json(workflows_dir / "join_three_strings_exposed_fields.json")).encode()


async def _workflow_count(http: httpx.AsyncClient) -> int:
    count: int = (await http.get("/workflows")).json()["count"]
    return count


@pytest.mark.invokeai
async def test_dns_rebinding_host_is_refused(local: httpx.AsyncClient) -> None:
    for host in ("attacker.example", "attacker.example:8080", "127.0.0.1.nip.io", ""):
        response = await local.get("/workflows", headers={"Host": host})
        assert response.status_code == 403, (host, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert "Host" in response.json()["detail"]
    port = local.base_url.port
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost", "127.5.5.5"):
        assert (await local.get("/workflows", headers={"Host": host})).status_code == 200, host


@pytest.mark.invokeai
async def test_cross_site_simple_post_registers_nothing(
    local: httpx.AsyncClient, workflows_dir: Path
) -> None:
    body = _workflow(workflows_dir)
    # What <form enctype="text/plain"> or fetch(..., {mode: "no-cors"}) sends: no preflight.
    attack = {"Origin": EVIL, "Content-Type": "text/plain", "Sec-Fetch-Site": "cross-site"}
    response = await local.post("/workflows", content=body, headers=attack)
    assert response.status_code == 403, response.text
    null_origin = {"Origin": "null", "Content-Type": "text/plain"}
    assert (await local.post("/workflows", content=body, headers=null_origin)).status_code == 403
    # Sec-Fetch-Site alone (a cross-site navigation or <img> sends no Origin) is refused too.
    cross_site = {"Sec-Fetch-Site": "cross-site"}
    assert (await local.get("/workflows", headers=cross_site)).status_code == 403
    # A JSON body from another origin is refused as well (preflighted, still not ours).
    json_attack = {"Origin": EVIL, "Content-Type": "application/json"}
    assert (await local.post("/workflows", content=body, headers=json_attack)).status_code == 403
    assert await _workflow_count(local) == 0
    # The gateway's own pages (same origin) and an allowlisted origin may call it.
    own = f"http://127.0.0.1:{local.base_url.port}"
    for origin in (own, "https://app.example"):
        headers = {"Origin": origin, "Content-Type": "application/json"}
        response = await local.post("/workflows", content=body, headers=headers)
        assert response.status_code == 201, (origin, response.text)
    assert await _workflow_count(local) == 2


@pytest.mark.invokeai
async def test_cross_origin_multipart_upload_never_reaches_invokeai(
    local: httpx.AsyncClient,
) -> None:
    files = {"file": ("x.png", png_bytes(8), "image/png")}
    response = await local.post("/images", files=files, headers={"Origin": EVIL})
    assert response.status_code == 403, response.text
    response = await local.post("/images", files=files)  # a local program
    assert response.status_code == 201, response.text


@pytest.mark.invokeai
async def test_json_routes_want_a_json_content_type(
    local: httpx.AsyncClient, workflows_dir: Path
) -> None:
    body = _workflow(workflows_dir)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"Content-Type": content_type} if content_type else {}
        response = await local.post("/workflows", content=body, headers=headers)
        assert response.status_code == 415, (content_type, response.text)
        board = await local.post("/boards", content=b'{"name": "x"}', headers=headers)
        assert board.status_code == 415, (content_type, board.text)
    files = {"file": ("x.json", b"{}", "application/json")}
    assert (await local.post("/boards", files=files)).status_code == 415  # no files there
    assert await _workflow_count(local) == 0
    ok = await local.post("/workflows", content=body, headers={"Content-Type": "application/json"})
    assert ok.status_code == 201, ok.text
    # Bodyless POSTs need no content type.
    assert (await local.post("/runs/nope/cancel")).status_code == 404


def test_multipart_routes_match_the_openapi_document(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, "http://127.0.0.1:9"))
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            concrete = path.replace("{workflow_id}", "w1")
            wanted = "multipart/form-data" in content
            assert accepts_multipart(method.upper(), concrete) == wanted, (method, path)


# -- a gateway started by hand on every interface --------------------------------------------


def _outside_address() -> str | None:
    """A non-loopback address of this machine (None when it has none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 9))  # picks the outgoing interface; sends nothing
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


@contextmanager
def _uvicorn_on_all_interfaces(tmp_path: Path, port: int) -> Iterator[Path]:
    log = tmp_path / "uvicorn.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {"GATEWAY_DATA_DIR": str(tmp_path), "INVOKEAI_URL": f"http://127.0.0.1:{free_port()}"}
    command = [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory"]
    command += ["--host", "0.0.0.0", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/livez", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield log
    finally:
        process.terminate()
        process.wait(20)


def test_uvicorn_on_0_0_0_0_without_keys_answers_no_other_machine(tmp_path: Path) -> None:
    outside = _outside_address()
    if outside is None:
        pytest.skip("this machine has no non-loopback address to call from")
    port = free_port()
    with _uvicorn_on_all_interfaces(tmp_path, port) as log:
        local_host = {"Host": f"127.0.0.1:{port}"}  # the Host check passes: only the peer differs
        from_outside = httpx.get(f"http://{outside}:{port}/workflows", headers=local_host)
        assert from_outside.status_code == 403, from_outside.text
        assert "loopback" in from_outside.json()["detail"]
        assert httpx.get(f"http://127.0.0.1:{port}/workflows").status_code == 200
    logged = log.read_text()
    assert "answering loopback clients only" in logged
    assert "serving on loopback" not in logged  # no claim about where it is bound
