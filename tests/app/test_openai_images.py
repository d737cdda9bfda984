"""The OpenAI-compatible images API, driven by the official ``openai`` SDK against the real
gateway (uvicorn) and the real InvokeAI, with model-free workflows."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from app.main import create_app
from tests.app.conftest import TIMEOUT, make_settings, register
from tests.app.live_server import serve
from tests.support.openai_workflows import (
    failing_text_to_image_workflow,
    image_to_image_workflow,
    text_to_image_workflow,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
async def sdk(gateway: str) -> AsyncIterator[openai.AsyncOpenAI]:
    # max_retries=0: a test sees the first answer, never a retried request.
    async with openai.AsyncOpenAI(
        base_url=f"{gateway}/v1", api_key="no-keys-set", max_retries=0, timeout=120
    ) as client:
        yield client


def _png(b64: str | None) -> Image.Image:
    assert b64 is not None
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def _metadata(image: Image.Image) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(image.info["invokeai_metadata"])
    return data


async def test_generation_maps_prompt_size_and_seed_and_answers_b64(
    http: httpx.AsyncClient, sdk: openai.AsyncOpenAI
) -> None:
    await register(http, text_to_image_workflow("blank canvas"))
    result = await sdk.images.generate(
        model="blank canvas",
        prompt="a red square",
        size="80x40",
        response_format="b64_json",
        extra_body={"seed": 1234, "negative_prompt": "blurry"},
    )
    assert len(result.data) == 1
    image = _png(result.data[0].b64_json)
    assert image.size == (80, 40)
    metadata = _metadata(image)
    assert metadata["positive_prompt"] == "a red square"
    assert metadata["negative_prompt"] == "blurry"
    assert metadata["seed"] == 1234


async def test_url_answer_is_fetchable_and_n_runs_n_seeds(
    http: httpx.AsyncClient, sdk: openai.AsyncOpenAI
) -> None:
    await register(http, text_to_image_workflow("canvas for urls"))
    result = await sdk.images.generate(
        model="canvas for urls",
        prompt="two of them",
        n=2,
        response_format="url",
        extra_body={"seed": 10},
    )
    assert len(result.data) == 2
    seeds = []
    for item in result.data:
        assert item.url is not None and item.url.startswith(str(http.base_url))
        fetched = await http.get(item.url)
        assert fetched.status_code == 200, fetched.text
        image = Image.open(io.BytesIO(fetched.content))
        assert image.size == (64, 48)  # no size: the file's own
        seeds.append(_metadata(image)["seed"])
    assert sorted(seeds) == [10, 11]
    runs = (await http.get("/runs")).json()["data"]
    assert len(runs) == 2 and {r["status"] for r in runs} == {"succeeded"}
    # Only mapped inputs are sent: the mode input (index 5) keeps the file's value.
    assert all(set(r["inputs"]) <= {"0", "2"} for r in runs), [r["inputs"] for r in runs]


async def test_models_lists_exposed_workflows(
    http: httpx.AsyncClient, sdk: openai.AsyncOpenAI
) -> None:
    await register(http, text_to_image_workflow("listed"))
    plain = await register(http, text_to_image_workflow("hidden"))
    put = await http.put(f"/workflows/{plain['id']}/openai", json={"exposed": False})
    assert put.status_code == 200, put.text
    models = await sdk.models.list()
    names = [m.id for m in models.data]
    assert "listed" in names and "hidden" not in names
    assert (await sdk.models.retrieve("listed")).owned_by == "invokeai-gateway"


async def test_unknown_model_is_a_404_in_openai_shape(
    http: httpx.AsyncClient, sdk: openai.AsyncOpenAI
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.images.generate(model="no such workflow", prompt="x")
    body: Any = caught.value.body
    assert body["code"] == "model_not_found" and body["param"] == "model"
    assert "no such workflow" in body["message"]
    raw = await http.post("/v1/images/generations", json={"model": "nope", "prompt": "x"})
    assert raw.status_code == 404
    assert set(raw.json()["error"]) == {"message", "type", "param", "code"}


async def test_bad_size_and_bad_n_are_400s(
    http: httpx.AsyncClient, sdk: openai.AsyncOpenAI
) -> None:
    await register(http, text_to_image_workflow("sized"))
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.generate(model="sized", prompt="x", size="big")  # type: ignore[arg-type]
    assert caught.value.body["param"] == "size"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.generate(model="sized", prompt="x", n=0)
    assert caught.value.body["param"] == "n"  # type: ignore[index]
    assert (await http.get("/runs")).json()["count"] == 0  # nothing was run


async def test_a_failed_run_is_a_500_the_sdk_does_not_retry(
    http: httpx.AsyncClient, gateway: str
) -> None:
    await register(http, failing_text_to_image_workflow("fails"))
    # The SDK's default retries: the answer's x-should-retry: false must stop them.
    async with openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="k", max_retries=2) as sdk:
        with pytest.raises(openai.InternalServerError) as caught:
            await sdk.images.generate(model="fails", prompt="x")
    body: Any = caught.value.body
    assert body["code"] == "run_failed" and body["type"] == "server_error"
    runs = (await http.get("/runs")).json()["data"]
    assert [r["status"] for r in runs] == ["failed"]  # one run: no retry
    assert runs[0]["id"] in body["message"]


async def test_edit_runs_the_workflow_on_the_uploaded_image(
    http: httpx.AsyncClient, sdk: openai.AsyncOpenAI
) -> None:
    workflow = await register(http, image_to_image_workflow("resizer"))
    mapping = (await http.get(f"/workflows/{workflow['id']}/openai")).json()
    assert mapping["inputs"]["image"]["index"] == 3
    source = io.BytesIO()
    Image.new("RGB", (20, 10), (0, 128, 255)).save(source, format="PNG")
    result = await sdk.images.edit(
        model="resizer",
        image=("in.png", source.getvalue(), "image/png"),
        prompt="make it bigger",
        size="40x30",
    )
    image = _png(result.data[0].b64_json)
    assert image.size == (40, 30)
    assert image.convert("RGB").getpixel((5, 5)) == (0, 128, 255)
    assert _metadata(image)["positive_prompt"] == "make it bigger"


async def test_edit_needs_an_image_input(http: httpx.AsyncClient, sdk: openai.AsyncOpenAI) -> None:
    await register(http, text_to_image_workflow("no image input"))
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.images.edit(
            model="no image input", image=("a.png", b"not read", "image/png"), prompt="x"
        )
    assert caught.value.body["param"] == "image"  # type: ignore[index]
    no_boundary = await http.post(
        "/v1/images/edits", headers={"content-type": "multipart/form-data"}, content=b"x"
    )
    assert no_boundary.status_code == 400, no_boundary.text
    assert no_boundary.json()["error"]["type"] == "invalid_request_error"


async def test_explicit_mapping_overrides_detection(http: httpx.AsyncClient) -> None:
    workflow = await register(http, text_to_image_workflow("explicit"))
    put = await http.put(
        f"/workflows/{workflow['id']}/openai", json={"prompt": 1, "negative_prompt": None}
    )
    assert put.status_code == 200, put.text
    inputs = put.json()["inputs"]
    assert inputs["prompt"]["index"] == 1 and inputs["negative_prompt"] is None
    assert inputs["width"]["index"] == 3  # still detected
    wrong = await http.put(f"/workflows/{workflow['id']}/openai", json={"width": 0})
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["index"] == 0
    assert "integer" in wrong.json()["errors"][0]["reason"]


async def test_keys_are_required_as_bearer(tmp_path: Path, invokeai_url: str) -> None:
    settings = make_settings(tmp_path, invokeai_url, api_keys="secret-key")
    async with serve(create_app(settings)) as url:
        async with httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http:
            headers = {"authorization": "Bearer secret-key"}
            created = await http.post(
                "/workflows", json=text_to_image_workflow("keyed"), headers=headers
            )
            assert created.status_code == 201
        async with openai.AsyncOpenAI(
            base_url=f"{url}/v1", api_key="wrong", max_retries=0
        ) as wrong:
            with pytest.raises(openai.AuthenticationError):
                await wrong.models.list()
        async with openai.AsyncOpenAI(
            base_url=f"{url}/v1", api_key="secret-key", max_retries=0
        ) as right:
            result = await right.images.generate(model="keyed", prompt="with a key")
            assert _metadata(_png(result.data[0].b64_json))["positive_prompt"] == "with a key"
