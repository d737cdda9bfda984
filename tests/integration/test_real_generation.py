"""Real text-to-image with a diffusion model, end to end, on the CPU.

The model is a random-weight SD1.5 pipeline made for the tests (``tests/support/tiny_models``):
InvokeAI loads and runs it like any SD1.5 checkpoint, so the shipped "Text to Image - SD1.5"
workflow really denoises, sends per-step progress with JPEG previews, decodes and saves an
image of the size asked for.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from invokeai_py_client import InvokeAIClient, IvkDnnModel, WorkflowDefinition
from invokeai_py_client.dnn_model import ModelInstallError, ModelNotFoundError
from invokeai_py_client.exceptions import InputValidationError, RunCanceledError
from tests.support.editor_files import denoise_steps
from tests.support.generation import assert_one_image, handle_with, with_denoise_steps

pytestmark = pytest.mark.invokeai

SD15_FILE = "Text to Image - SD1.5.json"


def test_the_installed_model_is_listed_by_base_and_type(
    client: InvokeAIClient, tiny_sd1: IvkDnnModel
) -> None:
    assert (str(tiny_sd1.base), str(tiny_sd1.type), str(tiny_sd1.format)) == (
        "sd-1",
        "main",
        "diffusers",
    )
    listed = client.dnn_model_repo.list_models(base="sd-1", type="main")
    assert tiny_sd1.key in {model.key for model in listed}
    assert client.dnn_model_repo.list_models(base="sdxl", type="main") == [] or all(
        model.key != tiny_sd1.key for model in client.dnn_model_repo.list_models(base="sdxl")
    )
    assert client.dnn_model_repo.get_model_by_key(tiny_sd1.key).name == tiny_sd1.name


def test_installing_a_folder_that_is_no_model_names_the_reason(
    client: InvokeAIClient, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelInstallError) as caught:
        client.dnn_model_repo.install_model(str(tmp_path), timeout=60)
    assert str(tmp_path) in str(caught.value)
    assert caught.value.job is None or caught.value.job.status == "error"


def test_text_to_image_sd15_runs_with_progress_and_previews(
    client: InvokeAIClient, tiny_sd1: IvkDnnModel, shipped_workflows_dir: Path
) -> None:
    wf = handle_with(
        client,
        WorkflowDefinition.from_file(shipped_workflows_dir / SD15_FILE),
        {"model": tiny_sd1, "Positive Prompt": "a tiny test", "Width": 64, "Height": 64},
    )
    progress: list[dict[str, Any]] = []
    wf.submit_sync(on_invocation_progress=progress.append)
    job = wf.wait_for_completion_sync(timeout=240)

    assert_one_image(client, wf, job, 64)
    denoising = [event for event in progress if event.get("image")]
    assert len(denoising) >= 2, progress  # steps with previews, not one end-of-node notice
    preview = denoising[-1]["image"]
    assert preview["dataURL"].startswith("data:image/")
    assert preview["width"] > 0 and preview["height"] > 0
    percentages = [event["percentage"] for event in denoising]
    assert percentages == sorted(percentages)  # steps arrive in order
    steps = [event["step"] for event in denoising]
    assert steps == sorted(steps) and steps[-1] == denoising[-1]["total_steps"]
    assert {event["total_steps"] for event in denoising} == {denoise_steps(wf.definition.to_dict())}


def test_a_model_of_another_base_is_refused_naming_the_input(
    client: InvokeAIClient, tiny_sd1: IvkDnnModel, shipped_workflows_dir: Path
) -> None:
    wf = client.workflow_repo.create_workflow(
        WorkflowDefinition.from_file(shipped_workflows_dir / SD15_FILE)
    )
    model_input = next(inp for inp in wf.list_inputs() if inp.label == "model")
    sdxl = {**tiny_sd1.identifier(), "base": "sdxl", "name": "some-sdxl"}
    with pytest.raises(InputValidationError) as caught:
        wf.set_input_value(model_input.input_index, sdxl)
    message = str(caught.value)
    assert "some-sdxl" in message and "sd-1" in message and "sdxl" in message
    assert caught.value.index == model_input.input_index and caught.value.label == "model"
    vae = {**tiny_sd1.identifier(), "type": "vae"}
    with pytest.raises(InputValidationError, match="type vae"):
        wf.set_input_value(model_input.input_index, vae)
    wf.set_input_value(model_input.input_index, tiny_sd1)  # the right base and type pass


def test_cancel_in_the_middle_of_denoising_ends_within_a_few_steps(
    client: InvokeAIClient, tiny_sd1: IvkDnnModel, shipped_workflows_dir: Path
) -> None:
    total = 400
    small = {"model": tiny_sd1, "Width": 64, "Height": 64}
    wf = handle_with(
        client,
        with_denoise_steps(shipped_workflows_dir / SD15_FILE, total),
        {**small, "Positive Prompt": "a long run, canceled"},
    )
    steps: list[int] = []
    denoising = threading.Event()

    def on_progress(event: dict[str, Any]) -> None:
        if event.get("step") is not None:
            steps.append(event["step"])
            denoising.set()

    wf.submit_sync(on_invocation_progress=on_progress)
    assert denoising.wait(timeout=120), "no denoising step within 120 s"
    at_cancel = steps[-1]
    wf.cancel()
    with pytest.raises(RunCanceledError):
        wf.wait_for_completion_sync(timeout=120)
    assert steps[-1] < total  # it never finished denoising
    assert steps[-1] - at_cancel < 20, (at_cancel, steps[-1])  # stopped within a few steps

    # The queue goes on: the next run starts and finishes.
    wf2 = handle_with(
        client, WorkflowDefinition.from_file(shipped_workflows_dir / SD15_FILE), small
    )
    wf2.submit_sync()
    assert wf2.wait_for_completion_sync(timeout=240).status == "completed"


def test_text_to_image_sdxl_with_its_vae(
    client: InvokeAIClient,
    tiny_sdxl: tuple[IvkDnnModel, IvkDnnModel],
    shipped_workflows_dir: Path,
) -> None:
    main, vae = tiny_sdxl
    assert (str(main.base), str(main.type), str(vae.base), str(vae.type)) == (
        "sdxl",
        "main",
        "sdxl",
        "vae",
    )
    # As shipped it renders 1024x1024 in 32 steps (minutes on a CPU): the test's copy is small.
    wf = handle_with(
        client,
        with_denoise_steps(shipped_workflows_dir / "Text to Image - SDXL.json", 4, size=64),
        {"model": main, "VAE (use the FP16 model)": vae, "Positive Prompt": "a tiny sdxl test"},
    )
    wf.submit_sync()
    assert_one_image(client, wf, wf.wait_for_completion_sync(timeout=240), 64)


def test_text_to_image_sd15_with_a_lora(
    client: InvokeAIClient,
    tiny_sd1: IvkDnnModel,
    tiny_sd1_lora: IvkDnnModel,
    shipped_workflows_dir: Path,
) -> None:
    assert (str(tiny_sd1_lora.base), str(tiny_sd1_lora.type)) == ("sd-1", "lora")
    wf = handle_with(
        client,
        WorkflowDefinition.from_file(shipped_workflows_dir / "Text to Image with LoRA.json"),
        {"model": tiny_sd1, "LoRA": tiny_sd1_lora, "LoRA Weight": 0.8, "Width": 64, "Height": 64},
    )
    wf.submit_sync()
    assert_one_image(client, wf, wf.wait_for_completion_sync(timeout=240), 64)
    lora = next(inp.input_index for inp in wf.list_inputs() if inp.label == "LoRA")
    with pytest.raises(InputValidationError, match="type main"):
        wf.set_input_value(lora, tiny_sd1)  # a main model is no LoRA


def test_a_model_is_found_by_key_or_by_name_with_its_base(
    client: InvokeAIClient, tiny_sd1: IvkDnnModel
) -> None:
    repo = client.dnn_model_repo
    assert repo.resolve_model(tiny_sd1.key).key == tiny_sd1.key
    assert repo.resolve_model(tiny_sd1.name, base="sd-1").key == tiny_sd1.key
    with pytest.raises(ModelNotFoundError, match="sdxl"):
        repo.resolve_model(tiny_sd1.name, base="sdxl")
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        repo.resolve_model("no-such-model")
