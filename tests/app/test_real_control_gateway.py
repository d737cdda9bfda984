"""SD1.5 text to image guided by a ControlNet, through the gateway, with tiny real models.

The project's own editor file (tests/workflows) is registered as users register one; the run
body gives the control image by name and the two models by key and by name.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from httpx_sse import aconnect_sse
from PIL import Image

from invokeai_py_client import InvokeAIClient, IvkDnnModel
from tests.app.conftest import load_json, register
from tests.support.generation import feeding_types, results_of_type

pytestmark = pytest.mark.invokeai


async def _upload_picture(aclient: InvokeAIClient, size: int) -> str:
    picture = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    handle = aclient.board_repo.get_uncategorized_handle()
    return (await handle.aupload_image_data(buffer.getvalue())).image_name


async def test_text_to_image_sd15_with_a_controlnet_through_the_gateway(
    http: httpx.AsyncClient,
    aclient: InvokeAIClient,
    tiny_sd1: IvkDnnModel,
    tiny_sd1_controlnet: IvkDnnModel,
    workflows_dir: Path,
) -> None:
    workflow = await register(http, load_json(workflows_dir / "text_to_image_sd15_control.json"))
    index = {inp["label"]: str(inp["index"]) for inp in workflow["inputs"]}
    body = {
        "inputs": {
            index["Model"]: tiny_sd1.key,
            index["ControlNet Model"]: tiny_sd1_controlnet.name,
            index["Control Image"]: await _upload_picture(aclient, 64),
            index["Width"]: 64,
            index["Height"]: 64,
            index["Steps"]: 3,
        }
    }
    response = await http.post(f"/workflows/{workflow['id']}/runs", json=body)
    assert response.status_code == 202, response.text
    run = response.json()

    kinds: list[str] = []
    steps: list[int] = []
    async with aconnect_sse(http, "GET", run["links"]["events"]) as source:
        async for sse in source.aiter_sse():
            kinds.append(sse.event)
            if sse.event == "node.progress":
                data = json.loads(sse.data)["data"]
                if data["step"] is not None:
                    steps.append(data["step"])
    assert kinds[-1] == "run.succeeded", kinds
    assert steps == sorted(steps) and steps[-1] == 3, steps

    finished = (await http.get(f"/runs/{run['id']}")).json()
    (image_name,) = [name for out in finished["outputs"] for name in out["image_names"]]
    png = (await http.get(f"/images/{image_name}")).content
    assert Image.open(io.BytesIO(png)).size == (64, 64)
    job = await aclient.queue_repo.aget_item(finished["item_id"])
    (control,) = [result["control"] for result in results_of_type(job, "controlnet")]
    assert control["control_model"]["key"] == tiny_sd1_controlnet.key  # the name was resolved
    assert feeding_types(job, "denoise_latents", "control") == ["controlnet"]
