"""Text to image with a real (tiny) diffusion model through the gateway.

The shipped "Text to Image - SD1.5" workflow is registered as users register it, run with the
model given by key, followed over SSE step by step, and its 64x64 image fetched.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import itertools
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse
from PIL import Image

from invokeai_py_client import InvokeAIClient, IvkDnnModel
from tests.app.conftest import load_json, register, run_by_labels, wait_until
from tests.support.editor_files import denoise_steps, with_denoise

pytestmark = pytest.mark.invokeai


@pytest.fixture
def database_url() -> None:
    """SQLite only: the run path is tested on PostgreSQL elsewhere, real denoising is slow."""
    return None


async def test_text_to_image_sd15_through_the_gateway(
    http: httpx.AsyncClient, tiny_sd1: IvkDnnModel, shipped_workflows_dir: Path
) -> None:
    workflow = await register(http, load_json(shipped_workflows_dir / "Text to Image - SD1.5.json"))
    assert next(i for i in workflow["inputs"] if i["label"] == "model")["type"] == "model"
    values = {"model": tiny_sd1.key, "Positive Prompt": "a tiny test", "Width": 64, "Height": 64}
    finished, progress = await run_by_labels(http, workflow, values)

    assert len(progress) >= 2  # denoising steps, each relayed
    # InvokeAI sends each denoising step's progress twice; the stream carries it once.
    assert all(a != b for a, b in itertools.pairwise(progress)), progress
    percentages = [p["percentage"] for p in progress if p.get("percentage") is not None]
    assert percentages == sorted(percentages) and percentages
    denoising = [p for p in progress if p["total_steps"] is not None]
    steps = denoise_steps(load_json(shipped_workflows_dir / "Text to Image - SD1.5.json"))
    assert {p["total_steps"] for p in denoising} == {steps}
    counted = [p["step"] for p in denoising if p["step"] is not None]  # not "Loading model"
    assert counted == sorted(counted) and counted[-1] == steps  # counts up to the last step
    (image_name,) = [name for out in finished["outputs"] for name in out["image_names"]]
    png = (await http.get(f"/images/{image_name}")).content
    assert Image.open(io.BytesIO(png)).size == (64, 64)


async def test_an_unknown_model_key_is_refused_naming_the_input(
    http: httpx.AsyncClient, tiny_sd1: IvkDnnModel, shipped_workflows_dir: Path
) -> None:
    workflow = await register(http, load_json(shipped_workflows_dir / "Text to Image - SD1.5.json"))
    model = next(i for i in workflow["inputs"] if i["label"] == "model")
    response = await http.post(
        f"/workflows/{workflow['id']}/runs",
        json={"inputs": {str(model["index"]): "no-such-model-key"}},
    )
    assert response.status_code == 422, response.text
    assert "model" in response.text and str(model["index"]) in response.text


async def test_cancel_in_the_middle_of_denoising_through_the_gateway(
    http: httpx.AsyncClient, tiny_sd1: IvkDnnModel, shipped_workflows_dir: Path
) -> None:
    total = 400
    data = with_denoise(
        load_json(shipped_workflows_dir / "Text to Image - SD1.5.json"), steps=total
    )
    workflow = await register(http, data)
    index = {inp["label"]: str(inp["index"]) for inp in workflow["inputs"]}
    body = {"inputs": {index["model"]: tiny_sd1.key, index["Width"]: 64, index["Height"]: 64}}
    run = (await http.post(f"/workflows/{workflow['id']}/runs", json=body)).json()

    steps: list[int] = []
    kinds: list[str] = []
    canceled_at: int | None = None
    async with aconnect_sse(http, "GET", run["links"]["events"]) as source:
        async for sse in source.aiter_sse():
            kinds.append(sse.event)
            step = (
                json.loads(sse.data)["data"].get("step") if sse.event == "node.progress" else None
            )
            if step is None:
                continue
            steps.append(step)
            if canceled_at is None:
                canceled_at = step
                assert (await http.post(f"/runs/{run['id']}/cancel")).status_code in (200, 202)
    assert kinds[-1] == "run.canceled", kinds[-5:]
    assert canceled_at is not None and steps[-1] < total
    assert steps[-1] - canceled_at < 20, (canceled_at, steps[-1])
    assert (await http.get(f"/runs/{run['id']}")).json()["status"] == "canceled"

    small = await register(http, load_json(shipped_workflows_dir / "Text to Image - SD1.5.json"))
    small_index = {inp["label"]: str(inp["index"]) for inp in small["inputs"]}
    again = {
        "inputs": {
            small_index["model"]: tiny_sd1.key,
            small_index["Width"]: 64,
            small_index["Height"]: 64,
        }
    }
    response = await http.post(
        f"/workflows/{small['id']}/runs", json=again, headers={"Prefer": "wait=120"}
    )
    assert response.json()["status"] == "succeeded", response.text  # the queue goes on


async def test_models_are_listed_by_base_and_type(
    http: httpx.AsyncClient, tiny_sd1: IvkDnnModel
) -> None:
    sd1 = (await http.get("/models", params={"base": "sd-1", "type": "main"})).json()
    assert tiny_sd1.key in [model["key"] for model in sd1["data"]]
    assert all((m["base"], m["type"]) == ("sd-1", "main") for m in sd1["data"])
    sdxl = (await http.get("/models", params={"base": "sdxl"})).json()
    assert tiny_sd1.key not in [model["key"] for model in sdxl["data"]]


@pytest.mark.parametrize("by", ["key", "name"])
async def test_a_model_of_another_base_is_refused_with_a_422_naming_the_input(
    http: httpx.AsyncClient, tiny_sd1: IvkDnnModel, shipped_workflows_dir: Path, by: str
) -> None:
    workflow = await register(http, load_json(shipped_workflows_dir / "Text to Image - SDXL.json"))
    model = next(i for i in workflow["inputs"] if i["label"] == "model")
    response = await http.post(
        f"/workflows/{workflow['id']}/runs",
        json={"inputs": {str(model["index"]): getattr(tiny_sd1, by)}},
    )
    assert response.status_code == 422, response.text
    text = response.text
    assert "sd-1" in text and "sdxl" in text and tiny_sd1.name in text
    assert str(model["index"]) in text and "model" in text


async def _read(http: httpx.AsyncClient, url: str, **params: object) -> list[ServerSentEvent]:
    async with aconnect_sse(http, "GET", url, params=params) as source:
        return [sse async for sse in source.aiter_sse()]


async def test_previews_are_streamed_live_only_to_readers_that_ask(
    http: httpx.AsyncClient, tiny_sd1: IvkDnnModel, shipped_workflows_dir: Path
) -> None:
    workflow = await register(http, load_json(shipped_workflows_dir / "Text to Image - SD1.5.json"))
    index = {inp["label"]: str(inp["index"]) for inp in workflow["inputs"]}
    body = {"inputs": {index["model"]: tiny_sd1.key, index["Width"]: 64, index["Height"]: 64}}
    run = (await http.post(f"/workflows/{workflow['id']}/runs", json=body)).json()
    events_url = run["links"]["events"]
    with_previews, plain = await asyncio.gather(
        _read(http, events_url, previews="true"), _read(http, events_url)
    )

    previews = [sse for sse in with_previews if sse.event == "node.preview"]
    assert len(previews) >= 2, [sse.event for sse in with_previews]
    # No id line: a client's last event id (which SSE carries over) stays the stored event's.
    last_stored = ""
    for sse in with_previews:
        if sse.event == "node.preview":
            assert sse.id == last_stored
        else:
            last_stored = sse.id
    first = json.loads(previews[0].data)
    assert (first["run_id"], first["workflow_id"], first["id"]) == (
        run["id"],
        workflow["id"],
        None,
    )
    data = first["data"]
    assert data["url"].startswith("data:image/jpeg;base64,")
    jpeg = Image.open(io.BytesIO(base64.b64decode(data["url"].split(",", 1)[1])))
    assert jpeg.format == "JPEG" and jpeg.size[0] > 0  # a small preview, often latent-sized
    assert (data["width"], data["height"]) == (64, 64)  # the size of the image it stands for
    steps = [json.loads(sse.data)["data"]["step"] for sse in previews]
    assert steps == sorted(steps)
    assert with_previews[-1].event == "run.succeeded"

    stored = [sse for sse in with_previews if sse.event != "node.preview"]
    assert [(s.id, s.event, s.data) for s in stored] == [(s.id, s.event, s.data) for s in plain]
    assert all(sse.event != "node.preview" for sse in plain)
    replayed = await _read(http, events_url, previews="true", last_event_id=0)
    assert replayed and all(sse.event != "node.preview" for sse in replayed)  # never replayed


async def test_a_prompt_sweep_with_a_model_is_one_batch_and_a_model_sweep_one_per_run(
    http: httpx.AsyncClient,
    tiny_sd1: IvkDnnModel,
    shipped_workflows_dir: Path,
    aclient: InvokeAIClient,
) -> None:
    workflow = await register(http, load_json(shipped_workflows_dir / "Text to Image - SD1.5.json"))
    index = {inp["label"]: str(inp["index"]) for inp in workflow["inputs"]}
    small = {index["Width"]: 64, index["Height"]: 64}
    prompts = ["a red fox", "a blue whale", "a green frog"]
    by_prompt = {
        "inputs": {**small, index["model"]: tiny_sd1.key},
        "vary": {index["Positive Prompt"]: prompts},
    }
    by_model = {
        "inputs": {**small, index["Positive Prompt"]: "one prompt"},
        "vary": {index["model"]: [tiny_sd1.key, tiny_sd1.name]},  # by key, then by name
    }
    url = f"/workflows/{workflow['id']}/batches"
    prompt_sweep = (await http.post(url, json=by_prompt)).json()
    model_sweep = (await http.post(url, json=by_model)).json()
    assert prompt_sweep["one_batch"] is True and model_sweep["one_batch"] is False

    async def finished(batch_id: str) -> dict[str, Any] | None:
        batch: dict[str, Any] = (await http.get(f"/batches/{batch_id}")).json()
        return batch if batch["finished"] else None

    for sweep in (prompt_sweep, model_sweep):
        done = await wait_until(functools.partial(finished, sweep["id"]), timeout=180)
        assert done["status"] == "succeeded", done
        for run in done["runs"]:
            (name,) = [n for out in run["outputs"] for n in out["image_names"]]
            png = (await http.get(f"/images/{name}")).content
            assert Image.open(io.BytesIO(png)).size == (64, 64)
    done = await finished(prompt_sweep["id"])
    assert done is not None
    sent = []
    for run in done["runs"]:  # each queue item denoised with its own prompt
        item = await aclient.queue_repo.aget_item(run["item_id"])
        assert item.session is not None
        node = item.session["graph"]["nodes"][
            workflow["inputs"][int(index["Positive Prompt"])]["node_id"]
        ]
        sent.append(node["prompt"])
    assert sent == prompts


async def test_sdxl_with_its_vae_and_sd15_with_a_lora_through_the_gateway(
    http: httpx.AsyncClient,
    tiny_sdxl: tuple[IvkDnnModel, IvkDnnModel],
    tiny_sd1: IvkDnnModel,
    tiny_sd1_lora: IvkDnnModel,
    shipped_workflows_dir: Path,
) -> None:
    main, vae = tiny_sdxl
    # As shipped, SDXL renders 1024x1024 in 32 steps (minutes on a CPU): a small copy.
    sdxl = with_denoise(
        load_json(shipped_workflows_dir / "Text to Image - SDXL.json"), steps=4, size=64
    )
    lora = load_json(shipped_workflows_dir / "Text to Image with LoRA.json")
    cases = [
        (sdxl, {"model": main.key, "VAE (use the FP16 model)": vae.name, "Positive Prompt": "xl"}),
        (
            lora,
            {
                "model": tiny_sd1.key,
                "LoRA": tiny_sd1_lora.name,
                "LoRA Weight": 0.8,
                "Width": 64,
                "Height": 64,
            },
        ),
    ]
    for definition, by_label in cases:
        workflow = await register(http, definition)
        index = {inp["label"]: str(inp["index"]) for inp in workflow["inputs"]}
        inputs = {index[label]: value for label, value in by_label.items()}
        response = await http.post(
            f"/workflows/{workflow['id']}/runs",
            json={"inputs": inputs},
            headers={"Prefer": "wait=240"},
        )
        assert response.status_code == 200, response.text
        run = response.json()
        assert run["status"] == "succeeded", run
        (name,) = [n for out in run["outputs"] for n in out["image_names"]]
        png = (await http.get(f"/images/{name}")).content
        assert Image.open(io.BytesIO(png)).size == (64, 64)
