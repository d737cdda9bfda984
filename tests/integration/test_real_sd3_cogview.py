"""The shipped SD3.5 and CogView4 text-to-image workflows with real (tiny) models, on the CPU.

Both models are random-weight diffusers pipelines made for the tests
(``tests/support/tiny_models``): InvokeAI probes them by their pipeline class and loads every
submodel (text encoders, transformer, VAE) from its folder's config, so they denoise like the
real ones at a few milliseconds per step. Neither file exposes its size or steps (1024x1024,
30 steps as shipped): the tests run a copy at 64x64 in 3 steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from invokeai_py_client import InvokeAIClient, IvkDnnModel, WorkflowHandle
from tests.support.generation import (
    assert_one_image,
    handle_with,
    results_of_type,
    with_node_values,
)

pytestmark = pytest.mark.invokeai

SIZE = 64
STEPS = 3
SMALL = {"width": SIZE, "height": SIZE, "steps": STEPS}


def run_with_progress(wf: WorkflowHandle) -> tuple[Any, list[dict[str, Any]]]:
    """Submit, wait, and return the finished job with the progress events it sent."""
    progress: list[dict[str, Any]] = []
    wf.submit_sync(on_invocation_progress=progress.append)
    return wf.wait_for_completion_sync(timeout=240), progress


def assert_denoised_in_steps(progress: list[dict[str, Any]], steps: int, first: int = 0) -> None:
    """Each denoising step came with a preview, in order, from ``first`` to the last step."""
    denoising = [event for event in progress if event.get("step") is not None]
    assert [event["step"] for event in denoising] == list(range(first, steps + 1)), progress
    assert {event["total_steps"] for event in denoising} == {steps}
    assert all(event["image"]["dataURL"].startswith("data:image/") for event in denoising)


def test_sd35_text_to_image_runs_with_step_progress(
    client: InvokeAIClient, tiny_sd3: IvkDnnModel, shipped_workflows_dir: Path
) -> None:
    assert (str(tiny_sd3.base), str(tiny_sd3.type), str(tiny_sd3.format)) == (
        "sd-3",
        "main",
        "diffusers",
    )
    definition = with_node_values(
        shipped_workflows_dir / "SD3.5 Text to Image.json", "sd3_denoise", SMALL
    )
    wf = handle_with(client, definition, {"model": tiny_sd3, "Prompt": "a tiny sd3 test"})

    job, progress = run_with_progress(wf)

    assert_one_image(client, wf, job, SIZE)
    assert_denoised_in_steps(progress, STEPS)
    (loaded,) = results_of_type(job, "sd3_model_loader")
    # CLIP-L, CLIP-G and T5 all come from the one installed pipeline.
    encoders = (loaded["clip_l"]["text_encoder"], loaded["clip_g"]["text_encoder"])
    assert {encoder["key"] for encoder in encoders} == {tiny_sd3.key}
    assert loaded["t5_encoder"]["text_encoder"]["submodel_type"] == "text_encoder_3"


def test_cogview4_text_to_image_runs_with_step_progress(
    client: InvokeAIClient, tiny_cogview4: IvkDnnModel, shipped_workflows_dir: Path
) -> None:
    assert (str(tiny_cogview4.base), str(tiny_cogview4.type)) == ("cogview4", "main")
    definition = with_node_values(
        shipped_workflows_dir / "CogView4_TextToImage.json", "cogview4_denoise", SMALL
    )
    wf = handle_with(
        client,
        definition,
        {"model": tiny_cogview4, "Positive Prompt": "a tiny cogview test", "Negative Prompt": ""},
    )

    job, progress = run_with_progress(wf)

    assert_one_image(client, wf, job, SIZE)
    assert_denoised_in_steps(progress, STEPS)
    (loaded,) = results_of_type(job, "cogview4_model_loader")
    assert loaded["glm_encoder"]["text_encoder"]["key"] == tiny_cogview4.key
