"""The shipped Wan 2.2 workflows with real (tiny) Wan 2.2 models, on the CPU.

The models are random-weight diffusers pipelines made for the tests
(``tests/support/tiny_models``): InvokeAI tells a Wan 2.2 folder's variant by its pipeline
class, a ``transformer_2/`` folder, the transformer's ``in_channels`` and the VAE's ``z_dim``,
and loads each submodel from its folder's config, so one-layer experts, a one-layer UMT5 and
an 8-channel VAE run as a real T2V-A14B, I2V-A14B or TI2V-5B. The Lightning workflows take two
tiny Wan LoRAs, one per expert, and the "Concept LoRAs" ones a third, applied to both.

The files render 1024x1024 pictures and 81-frame 480p videos in 4 to 30 steps: the tests run
2 steps, 5 frames (two latent frames) and 64x64 pictures, set through the forms where the files
expose them, else on a copy. The image-to-video files size the video from the input image with
an "ideal dimensions" node, which scales the shorter side to 480 pixels at least; the Wan VAE
takes seconds on a CPU at that size (13 s for the TI2V-5B text-to-video file on a shared
2-core machine), so the copies cut that node's edges and set 64x64 on the nodes it fed.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from invokeai_py_client import InvokeAIClient, IvkDnnModel, WorkflowDefinition, WorkflowHandle
from invokeai_py_client.queue.models import IvkJob
from tests.integration.test_real_sd3_cogview import assert_denoised_in_steps, run_with_progress
from tests.support.editor_files import with_node_value, without_edges_from
from tests.support.generation import assert_one_image, handle_with, results_of_type
from tests.support.mp4 import video_track

pytestmark = pytest.mark.invokeai

SIZE = 64
STEPS = 2
FRAMES = 5
PROMPTS = {"Positive Prompt / Prompt": "a tiny wan", "Negative Prompt / Prompt": "blurry"}
# The Lightning and TI2V image files run at CFG 1 and expose only the positive prompt.
ONE_PROMPT = {"Prompt": "a tiny wan"}


def picture(client: InvokeAIClient, color: str = "teal") -> str:
    """A plain square picture, uploaded; its image name."""
    buffer = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), color).save(buffer, format="PNG")
    handle = client.board_repo.get_uncategorized_handle()
    return handle.upload_image_data(buffer.getvalue()).image_name


def small_copy(path: Path, sized_by: str | None, *node_types: str) -> WorkflowDefinition:
    """The file with the ``sized_by`` node's edges cut, 64x64 on each of ``node_types``, and
    5 frames on the Wan reference-image node (the video denoise's frames are a form input)."""
    data = WorkflowDefinition.from_file(path).to_dict()
    if sized_by is not None:
        without_edges_from(data, sized_by)
    for node_type in node_types:
        for field in ("width", "height"):
            with_node_value(data, node_type, field, SIZE)
    return WorkflowDefinition.from_dict(data)


def run(wf: Any, steps: int = STEPS) -> IvkJob:
    """Run, check each denoising step sent a preview (Wan's start at step 1), return the job."""
    job, progress = run_with_progress(wf)
    assert job.status == "completed", job.error_message
    assert_denoised_in_steps(progress, steps, first=1)
    return job


def video_of(
    client: InvokeAIClient,
    wf: WorkflowHandle,
    job: IvkJob,
    size: int,
    frames: int,
    node_type: str = "wan_l2v",
) -> str:
    """The ``node_type`` node made one MP4 of ``size`` x ``size`` and ``frames`` frames (the
    file's own video track says so, not only the node's result), which the run's outputs name
    and the client downloads; its video name."""
    (result,) = results_of_type(job, node_type)
    assert (result["width"], result["height"], result["num_frames"]) == (size, size, frames)
    name: str = result["video"]["video_name"]
    (output,) = [out for out in wf.map_outputs_to_images(job) if out.node_type == node_type]
    assert (output.video_names, output.image_names) == ([name], [])
    track = video_track(client.board_repo.download_video(name))
    assert (track.width, track.height, track.frames) == (size, size, frames)
    return name


def lora_keys(job: IvkJob, node_type: str) -> tuple[list[str], list[str]]:
    """The LoRAs on the high- and the low-noise expert after the last ``node_type`` node."""
    transformer = results_of_type(job, node_type)[-1]["transformer"]
    return (
        [lora["lora"]["key"] for lora in transformer["loras"]],
        [lora["lora"]["key"] for lora in transformer["loras_low_noise"]],
    )


def lightning(
    model: IvkDnnModel, loras: tuple[IvkDnnModel, IvkDnnModel], **more: Any
) -> dict[str, Any]:
    high, low = loras
    return {
        "Transformer (High Noise)": model,
        **ONE_PROMPT,
        "Lightning LoRA (High Noise)": high,
        "Lightning LoRA (Low Noise)": low,
        "Frames": FRAMES,
        "Steps": STEPS,
        **more,
    }


def test_the_tiny_wan_models_install_as_their_variants(
    tiny_wan_t2v: IvkDnnModel,
    tiny_wan_i2v: IvkDnnModel,
    tiny_wan_ti2v: IvkDnnModel,
    tiny_wan_loras: tuple[IvkDnnModel, IvkDnnModel],
) -> None:
    models = (tiny_wan_t2v, tiny_wan_i2v, tiny_wan_ti2v)
    assert {(str(m.base), str(m.type), str(m.format)) for m in models} == {
        ("wan", "main", "diffusers")
    }
    assert [m.variant for m in models] == ["t2v_a14b", "i2v_a14b", "ti2v_5b"]
    assert [m.model_extra["has_dual_expert"] for m in models] == [True, True, False]
    assert [lora.model_extra["expert"] for lora in tiny_wan_loras] == ["high", "low"]


def test_wan_text_to_image_runs_both_experts(
    client: InvokeAIClient, tiny_wan_t2v: IvkDnnModel, shipped_workflows_dir: Path
) -> None:
    wf = handle_with(
        client,
        WorkflowDefinition.from_file(shipped_workflows_dir / "Wan 2.2 Text to Image.json"),
        {"Transformer": tiny_wan_t2v, **PROMPTS, "Width": SIZE, "Height": SIZE, "Steps": STEPS},
    )

    job = run(wf)

    assert_one_image(client, wf, job, SIZE)
    (loaded,) = results_of_type(job, "wan_model_loader")
    experts = loaded["transformer"]
    assert experts["transformer"]["submodel_type"] == "transformer"
    assert experts["transformer_low_noise"]["submodel_type"] == "transformer_2"


def test_wan_image_to_image_conditions_on_the_picture(
    client: InvokeAIClient, tiny_wan_i2v: IvkDnnModel, shipped_workflows_dir: Path
) -> None:
    definition = small_copy(
        shipped_workflows_dir / "Wan 2.2 Image to Image.json", None, "wan_ref_image_encoder"
    )
    values = {"Transformer": tiny_wan_i2v, **PROMPTS, "Width": SIZE, "Height": SIZE}
    wf = handle_with(
        client, definition, {**values, "Steps": STEPS, "Reference Image": picture(client)}
    )

    job = run(wf)

    assert_one_image(client, wf, job, SIZE)
    (reference,) = results_of_type(job, "wan_ref_image_encoder")
    assert (reference["ref_image"]["width"], reference["ref_image"]["num_frames"]) == (SIZE, 1)


def test_wan_ti2v_text_to_video(
    client: InvokeAIClient,
    tiny_wan_ti2v: IvkDnnModel,
    shipped_workflows_dir: Path,
) -> None:
    definition = small_copy(
        shipped_workflows_dir / "Text to Video - Wan 2.2 TI2V-5B (Low Quality).json",
        "wan_ti2v_ideal_dimensions",
        "wan_video_denoise",
    )
    values = {"Transformer": tiny_wan_ti2v, "Positive Prompt": "a tiny wan", "Frames": FRAMES}
    wf = handle_with(client, definition, {**values, "Negative Prompt": "blurry", "Steps": STEPS})

    job = run(wf)

    video_of(client, wf, job, SIZE, FRAMES)
    (loaded,) = results_of_type(job, "wan_model_loader")
    assert loaded["transformer"].get("transformer_low_noise") is None  # one transformer


def test_wan_ti2v_image_to_video(
    client: InvokeAIClient,
    tiny_wan_ti2v: IvkDnnModel,
    shipped_workflows_dir: Path,
) -> None:
    definition = small_copy(
        shipped_workflows_dir / "Image to Video - Wan 2.2 TI2V-5B (Low Quality).json",
        "wan_ti2v_ideal_dimensions",
        "wan_ref_image_encoder",
        "wan_video_denoise",
    )
    values = {"Transformer (High Noise)": tiny_wan_ti2v, **ONE_PROMPT, "Frames": FRAMES}
    wf = handle_with(
        client, definition, {**values, "Steps": STEPS, "Initial Image": picture(client)}
    )

    job = run(wf)

    video_of(client, wf, job, SIZE, FRAMES)


def test_wan_lightning_text_to_video_puts_each_lora_on_its_expert(
    client: InvokeAIClient,
    tiny_wan_t2v: IvkDnnModel,
    tiny_wan_loras: tuple[IvkDnnModel, IvkDnnModel],
    shipped_workflows_dir: Path,
) -> None:
    wf = handle_with(
        client,
        WorkflowDefinition.from_file(
            shipped_workflows_dir / "Text to Video - Wan 2.2 Lightning.json"
        ),
        lightning(tiny_wan_t2v, tiny_wan_loras, Width=SIZE, Height=SIZE),
    )

    job = run(wf)

    video_of(client, wf, job, SIZE, FRAMES)
    high, low = tiny_wan_loras
    assert lora_keys(job, "wan_lora_loader") == ([high.key], [low.key])


def test_wan_lightning_text_to_video_with_a_concept_lora(
    client: InvokeAIClient,
    tiny_wan_t2v: IvkDnnModel,
    tiny_wan_loras: tuple[IvkDnnModel, IvkDnnModel],
    tiny_wan_concept_lora: IvkDnnModel,
    shipped_workflows_dir: Path,
) -> None:
    concept = {"lora": tiny_wan_concept_lora.identifier(), "weight": 0.5}
    wf = handle_with(
        client,
        WorkflowDefinition.from_file(
            shipped_workflows_dir / "Text to Video - Wan 2.2 Lightning w_ Concept LoRAs.json"
        ),
        lightning(tiny_wan_t2v, tiny_wan_loras, Width=SIZE, Height=SIZE, LoRAs=[concept]),
    )

    job = run(wf)

    video_of(client, wf, job, SIZE, FRAMES)
    high, low = tiny_wan_loras
    assert lora_keys(job, "wan_lora_collection_loader") == (
        [high.key, tiny_wan_concept_lora.key],
        [low.key, tiny_wan_concept_lora.key],
    )


I2V_SIZED = ("wan_i2v_ideal_dimensions", "wan_ref_image_encoder", "wan_video_denoise")


def test_wan_lightning_image_to_video(
    client: InvokeAIClient,
    tiny_wan_i2v: IvkDnnModel,
    tiny_wan_loras: tuple[IvkDnnModel, IvkDnnModel],
    shipped_workflows_dir: Path,
) -> None:
    definition = small_copy(
        shipped_workflows_dir / "Image to Video - Wan 2.2 Lightning.json", *I2V_SIZED
    )
    more = {"Starting Image": picture(client)}
    wf = handle_with(client, definition, lightning(tiny_wan_i2v, tiny_wan_loras, **more))

    job = run(wf)

    video_of(client, wf, job, SIZE, FRAMES)
    (reference,) = results_of_type(job, "wan_ref_image_encoder")
    assert reference["ref_image"]["num_frames"] == FRAMES


def test_wan_lightning_interpolates_two_images(
    client: InvokeAIClient,
    tiny_wan_i2v: IvkDnnModel,
    tiny_wan_loras: tuple[IvkDnnModel, IvkDnnModel],
    shipped_workflows_dir: Path,
) -> None:
    definition = small_copy(
        shipped_workflows_dir / "Interpolate 2 Images to Video - Wan 2.2 Lightning.json", *I2V_SIZED
    )
    more = {"Starting Image": picture(client), "Ending Image": picture(client, "orange")}
    wf = handle_with(client, definition, lightning(tiny_wan_i2v, tiny_wan_loras, **more))

    job = run(wf)

    video_of(client, wf, job, SIZE, FRAMES)


def test_wan_lightning_image_to_video_with_a_concept_lora(
    client: InvokeAIClient,
    tiny_wan_i2v: IvkDnnModel,
    tiny_wan_loras: tuple[IvkDnnModel, IvkDnnModel],
    tiny_wan_concept_lora: IvkDnnModel,
    shipped_workflows_dir: Path,
) -> None:
    definition = small_copy(
        shipped_workflows_dir / "Image to Video - Wan 2.2 Lightning w_ Concept LoRAs.json",
        *I2V_SIZED,
    )
    concept = {"lora": tiny_wan_concept_lora.identifier(), "weight": 0.5}
    more = {"Starting Image": picture(client), "Concept LoRAs": [concept]}
    wf = handle_with(client, definition, lightning(tiny_wan_i2v, tiny_wan_loras, **more))

    job = run(wf)

    video_of(client, wf, job, SIZE, FRAMES)
    assert tiny_wan_concept_lora.key in lora_keys(job, "wan_lora_collection_loader")[1]


# The extended video: the source's frames but its last (``end_frame`` -2), then the new clip,
# which starts from that last frame kept, crossfaded over 2 frames.
EXTENDED_FRAMES = (FRAMES - 1) + FRAMES - 2
EXTEND_SIZED = (*I2V_SIZED, "img_resize")


@pytest.fixture(scope="module")
def source_video(
    invokeai_url: str,
    tiny_wan_t2v: IvkDnnModel,
    tiny_wan_loras: tuple[IvkDnnModel, IvkDnnModel],
    shipped_workflows_dir: Path,
) -> str:
    """A 64x64 video of 5 frames, made once with the Lightning text-to-video file; its name."""
    with InvokeAIClient.from_url(invokeai_url) as client:
        wf = handle_with(
            client,
            WorkflowDefinition.from_file(
                shipped_workflows_dir / "Text to Video - Wan 2.2 Lightning.json"
            ),
            lightning(tiny_wan_t2v, tiny_wan_loras, Width=SIZE, Height=SIZE),
        )
        return video_of(client, wf, run(wf), SIZE, FRAMES)


@pytest.mark.parametrize(
    "file_name",
    [
        "Extend Video - Wan 2.2 Lightning.json",
        "Extend Video - Wan 2.2 Lightning w_ Concept LoRAs.json",
        "Extend Video to Image - Wan 2.2 Lightning.json",
    ],
)
def test_wan_lightning_extends_a_video(
    client: InvokeAIClient,
    source_video: str,
    tiny_wan_i2v: IvkDnnModel,
    tiny_wan_loras: tuple[IvkDnnModel, IvkDnnModel],
    tiny_wan_concept_lora: IvkDnnModel,
    shipped_workflows_dir: Path,
    file_name: str,
) -> None:
    sized = EXTEND_SIZED if "to Image" in file_name else I2V_SIZED
    definition = small_copy(shipped_workflows_dir / file_name, *sized)
    more: dict[str, Any] = {"Initial Video": {"video_name": source_video}}
    if "Concept" in file_name:
        more["Concept LoRAs"] = [{"lora": tiny_wan_concept_lora.identifier(), "weight": 0.5}]
    if "to Image" in file_name:
        more["Destination Image"] = picture(client, "orange")
    wf = handle_with(client, definition, lightning(tiny_wan_i2v, tiny_wan_loras, **more))

    job = run(wf)

    video_of(client, wf, job, SIZE, EXTENDED_FRAMES, node_type="video_concat")
