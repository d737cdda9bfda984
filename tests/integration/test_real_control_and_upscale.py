"""ControlNet and upscaling workflows with real (tiny) models, end to end, on the CPU.

The ControlNets, the 2x ESRGAN, the IP-Adapter and its image encoder are random-weight models
made for the tests (``tests/support/tiny_models``) that InvokeAI's probe accepts as what they
stand for. Pictures of 32 or 64 pixels upscaled 2x keep each run to a few seconds.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from invokeai_py_client import InvokeAIClient, IvkDnnModel, WorkflowDefinition, WorkflowHandle
from invokeai_py_client.queue.models import IvkJob
from tests.support.editor_files import with_node_value
from tests.support.generation import assert_one_image, feeding_types, handle_with, results_of_type

pytestmark = pytest.mark.invokeai

TILE_CONTROLNET = "ControlNet Model - Choose a Tile ControlNet"
# The project's own editor file: InvokeAI 6.14.2 ships no ControlNet text-to-image workflow.
CONTROL_FILE = "text_to_image_sd15_control.json"


def upload_picture(client: InvokeAIClient, size: int = 32, *, flipped: bool = False) -> str:
    """A small picture with edges (a square on a gradient), uploaded; its image name."""
    picture = Image.linear_gradient("L").resize((size, size)).convert("RGB")
    picture.paste((200, 30, 30), (size // 4, size // 4, size // 2, size // 2))
    if flipped:
        picture = picture.transpose(Image.Transpose.ROTATE_180)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    handle = client.board_repo.get_uncategorized_handle()
    return handle.upload_image_data(buffer.getvalue()).image_name


def image_pixels(client: InvokeAIClient, wf: WorkflowHandle, job: IvkJob) -> bytes:
    """The pixels of the run's one output image (not its file: that carries metadata too)."""
    (output,) = [out for out in wf.map_outputs_to_images(job) if out.image_names]
    png = client.board_repo.download_image(output.image_names[0], full_resolution=True)
    return Image.open(io.BytesIO(png)).tobytes()


def control_model_keys(job: IvkJob) -> list[str]:
    """The model key in each ControlNet node's output, as the server ran it."""
    return [
        result["control"]["control_model"]["key"] for result in results_of_type(job, "controlnet")
    ]


def test_multidiffusion_sd15_upscales_with_the_tile_controlnet(
    client: InvokeAIClient,
    tiny_sd1: IvkDnnModel,
    tiny_sd1_controlnet: IvkDnnModel,
    tiny_upscaler: IvkDnnModel,
    shipped_workflows_dir: Path,
) -> None:
    wf = handle_with(
        client,
        WorkflowDefinition.from_file(shipped_workflows_dir / "MultiDiffusion SD1.5.json"),
        {
            "Image to Upscale": upload_picture(client),
            "Scale (2x, 4x, 8x, 16x)": 2,
            "Positive Prompt (Optional)": "a tiny upscale",
            "model": tiny_sd1,
            "Image-to-Image Model": tiny_upscaler,
            TILE_CONTROLNET: tiny_sd1_controlnet,
        },
    )
    progress: list[dict[str, Any]] = []
    wf.submit_sync(on_invocation_progress=progress.append)
    job = wf.wait_for_completion_sync(timeout=240)

    assert_one_image(client, wf, job, 64)
    # The initial and the second-phase tile control, both with the tiny ControlNet.
    assert control_model_keys(job) == [tiny_sd1_controlnet.key] * 2
    (upscaled,) = results_of_type(job, "spandrel_image_to_image_autoscale")
    assert (upscaled["width"], upscaled["height"]) == (64, 64)
    steps = [event["step"] for event in progress if event.get("step") is not None]
    assert len(steps) >= 2 and steps == sorted(steps), progress


def test_multidiffusion_sdxl_upscales_with_the_tile_controlnet(
    client: InvokeAIClient,
    tiny_sdxl: tuple[IvkDnnModel, IvkDnnModel],
    tiny_sdxl_controlnet: IvkDnnModel,
    tiny_upscaler: IvkDnnModel,
    shipped_workflows_dir: Path,
) -> None:
    main, vae = tiny_sdxl
    wf = handle_with(
        client,
        WorkflowDefinition.from_file(shipped_workflows_dir / "MultiDiffusion SDXL.json"),
        {
            "Image to Upscale": upload_picture(client),
            "Scale (2x, 4x, 8x, 16x)": 2,
            "Positive Prompt (Optional)": "a tiny sdxl upscale",
            "SDXL Model": main,
            "VAE": vae,
            "Image-to-Image Model": tiny_upscaler,
            TILE_CONTROLNET: tiny_sdxl_controlnet,
        },
    )
    progress: list[dict[str, Any]] = []
    wf.submit_sync(on_invocation_progress=progress.append)
    job = wf.wait_for_completion_sync(timeout=240)

    assert_one_image(client, wf, job, 64)
    assert control_model_keys(job) == [tiny_sdxl_controlnet.key] * 2
    steps = [event["step"] for event in progress if event.get("step") is not None]
    assert len(steps) >= 2 and steps == sorted(steps), progress


def test_text_to_image_sd15_with_a_controlnet(
    client: InvokeAIClient,
    tiny_sd1: IvkDnnModel,
    tiny_sd1_controlnet: IvkDnnModel,
    workflows_dir: Path,
) -> None:
    wf = handle_with(
        client,
        WorkflowDefinition.from_file(workflows_dir / CONTROL_FILE),
        {
            "Model": tiny_sd1,
            "Positive Prompt": "a red square",
            "Control Image": upload_picture(client, 64),
            "ControlNet Model": tiny_sd1_controlnet,
            "Control Weight": 0.9,
            "Width": 64,
            "Height": 64,
            "Steps": 4,
        },
    )
    (sent,) = [
        node
        for node in wf.preview()["batch"]["graph"]["nodes"].values()
        if node["type"] == "controlnet"
    ]
    assert sent["control_model"]["key"] == tiny_sd1_controlnet.key
    progress: list[dict[str, Any]] = []
    wf.submit_sync(on_invocation_progress=progress.append)
    job = wf.wait_for_completion_sync(timeout=240)

    assert_one_image(client, wf, job, 64)
    assert control_model_keys(job) == [tiny_sd1_controlnet.key]
    (control,) = [result["control"] for result in results_of_type(job, "controlnet")]
    assert control["control_weight"] == 0.9
    assert feeding_types(job, "denoise_latents", "control") == ["controlnet"]
    steps = [event["step"] for event in progress if event.get("step") is not None]
    assert steps == sorted(steps) and steps[-1] == 4, progress

    # The same run with another control image makes another picture: the control steers it.
    control_input = next(i for i in wf.list_inputs() if i.label == "Control Image")
    wf.set_input_value(control_input.input_index, upload_picture(client, 64, flipped=True))
    wf.submit_sync()
    other = wf.wait_for_completion_sync(timeout=240)
    unchanged = image_pixels(client, wf, other) == image_pixels(client, wf, job)
    assert not unchanged, "another control image made the same picture"


def test_tiled_upscaling_with_the_tile_controlnet_and_an_ip_adapter(
    client: InvokeAIClient,
    tiny_sd1: IvkDnnModel,
    tiny_sd1_controlnet: IvkDnnModel,
    tiny_sd1_ip_adapter: IvkDnnModel,
    shipped_workflows_dir: Path,
) -> None:
    # The seams between tiles are blended over 32 pixels (not an input), which needs more than
    # 33 pixels of overlap: the file computes 40 only from a 248-pixel input on (a 496-pixel
    # output; 432 took 32 s on a CPU). The test's copy blends over 4, which the 8-pixel overlap
    # of a 64-pixel input allows.
    shipped = WorkflowDefinition.from_file(shipped_workflows_dir / "Tiled Upscaling (Beta).json")
    edited = with_node_value(shipped.to_dict(), "merge_tiles_to_image", "blend_amount", 4)
    wf = handle_with(
        client,
        WorkflowDefinition.from_dict(edited),
        {
            "model": tiny_sd1,
            "Image to Upscale": upload_picture(client, 64),
            "Scale Factor": 2,
            "IP-Adapter Model (select ip_adapter_sd15)": tiny_sd1_ip_adapter,
            "Control Model (select control_v11f1e_sd15_tile)": tiny_sd1_controlnet,
        },
    )
    progress: list[dict[str, Any]] = []
    wf.submit_sync(on_invocation_progress=progress.append)
    job = wf.wait_for_completion_sync(timeout=240)

    assert_one_image(client, wf, job, 128)
    assert control_model_keys(job) == [tiny_sd1_controlnet.key] * 4  # one per tile
    adapters = [result["ip_adapter"] for result in results_of_type(job, "ip_adapter")]
    assert [adapter["ip_adapter_model"]["key"] for adapter in adapters] == [
        tiny_sd1_ip_adapter.key
    ] * 4
    # Each tile's denoise counts its steps up to its last one.
    last_steps = [e for e in progress if e.get("step") and e["step"] == e["total_steps"]]
    tiles = {event["invocation"]["id"] for event in last_steps}
    assert len(tiles) == 4, progress
