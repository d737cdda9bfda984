"""SD3.5, CogView4 and Wan 2.2 (text to video) through the gateway, with real (tiny) models.

Each shipped file is registered as users register it (a copy at 64x64 and a few steps: the
files render 1024x1024 pictures and 480p videos), run with its model given by key, followed
over SSE step by step, and its output fetched through the gateway: a 64x64 PNG from
``/images/{name}``, and for Wan an MP4 of 5 frames from ``/videos/{name}``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from invokeai_py_client import IvkDnnModel
from tests.app.conftest import load_json, register, run_by_labels
from tests.support.editor_files import with_node_value, without_edges_from
from tests.support.mp4 import video_track

pytestmark = pytest.mark.invokeai

SIZE = 64
FRAMES = 5


@pytest.fixture
def database_url() -> None:
    """SQLite only: the run path is tested on PostgreSQL elsewhere, real denoising is slow."""
    return None


def _small(path: Path, node_type: str, **values: Any) -> dict[str, Any]:
    data = load_json(path)
    for field, value in values.items():
        with_node_value(data, node_type, field, value)
    return data


def _counted_steps(progress: list[dict[str, Any]], steps: int) -> list[int]:
    denoising = [p for p in progress if p["total_steps"] is not None and p["step"] is not None]
    assert {p["total_steps"] for p in denoising} == {steps}, progress
    return [p["step"] for p in denoising]


async def _one_image(http: httpx.AsyncClient, finished: dict[str, Any]) -> None:
    (image,) = [image for out in finished["outputs"] for image in out["images"]]
    response = await http.get(image["url"])
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (SIZE, SIZE)


@pytest.mark.parametrize(
    ("file", "denoise", "prompts"),
    [
        ("SD3.5 Text to Image.json", "sd3_denoise", {"Prompt": "a tiny sd3 test"}),
        ("CogView4_TextToImage.json", "cogview4_denoise", {"Positive Prompt": "a tiny cogview"}),
    ],
)
async def test_sd35_and_cogview4_text_to_image_through_the_gateway(
    http: httpx.AsyncClient,
    tiny_sd3: IvkDnnModel,
    tiny_cogview4: IvkDnnModel,
    shipped_workflows_dir: Path,
    file: str,
    denoise: str,
    prompts: dict[str, str],
) -> None:
    model = tiny_sd3 if denoise == "sd3_denoise" else tiny_cogview4
    data = _small(shipped_workflows_dir / file, denoise, width=SIZE, height=SIZE, steps=3)
    workflow = await register(http, data)

    finished, progress = await run_by_labels(http, workflow, {"model": model.key, **prompts})

    assert _counted_steps(progress, 3) == [0, 1, 2, 3]
    await _one_image(http, finished)


async def test_wan_text_to_video_through_the_gateway_serves_its_mp4(
    http: httpx.AsyncClient, tiny_wan_ti2v: IvkDnnModel, shipped_workflows_dir: Path
) -> None:
    path = shipped_workflows_dir / "Text to Video - Wan 2.2 TI2V-5B (Low Quality).json"
    data = load_json(path)
    without_edges_from(data, "wan_ti2v_ideal_dimensions")  # it scales to 480p at least
    with_node_value(data, "wan_video_denoise", "width", SIZE)
    with_node_value(data, "wan_video_denoise", "height", SIZE)
    workflow = await register(http, data)
    values = {"Transformer": tiny_wan_ti2v.key, "Frames": FRAMES, "Steps": 2}

    finished, progress = await run_by_labels(
        http, workflow, values | {"Positive Prompt": "a tiny wan"}
    )

    assert _counted_steps(progress, 2) == [1, 2]  # Wan's steps count from 1
    (output,) = [out for out in finished["outputs"] if out["videos"]]
    assert output["node_type"] == "wan_l2v" and output["images"] == []
    (video,) = output["videos"]
    assert video["url"] == f"/videos/{video['video_name']}" == f"/videos/{output['video_names'][0]}"
    response = await http.get(video["url"])
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    track = video_track(response.content)
    assert (track.width, track.height, track.frames) == (SIZE, SIZE, FRAMES)
    await _seeks_by_byte_range(http, video["url"], response)
    # An unknown name is a clean 404.
    missing = await http.get("/videos/no-such-video.mp4")
    assert missing.status_code == 404 and "no-such-video.mp4" in missing.text


async def _seeks_by_byte_range(http: httpx.AsyncClient, url: str, whole: httpx.Response) -> None:
    """A player's seek: one byte range is relayed as InvokeAI's 206; one past the end is a
    416 with the size; several ranges get the whole file."""
    body, size = whole.content, len(whole.content)
    assert whole.headers["accept-ranges"] == "bytes"
    head = await http.get(url, headers={"Range": "bytes=0-99"})
    assert (head.status_code, head.content) == (206, body[:100])
    assert head.headers["content-range"] == f"bytes 0-99/{size}"
    assert head.headers["content-length"] == "100"
    tail = await http.get(url, headers={"Range": "bytes=-10"})
    assert (tail.status_code, tail.content) == (206, body[-10:])
    past = await http.get(url, headers={"Range": f"bytes={size + 5}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    several = await http.get(url, headers={"Range": "bytes=0-1,5-6"})
    assert (several.status_code, several.content) == (200, body)
