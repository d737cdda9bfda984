"""Model-free workflows shaped like text-to-image and image-to-image ones, for the /v1 API.

The prompt, negative prompt and seed go into a ``core_metadata`` node that feeds the image
node's metadata, so the prompt a run was given can be read back from the PNG it made.
"""

from __future__ import annotations

from typing import Any

from tests.support.workflow_factory import WorkflowBuilder


def _metadata_node(b: WorkflowBuilder) -> str:
    meta = b.node(
        "core_metadata",
        {"positive_prompt": "a file prompt", "negative_prompt": "", "seed": 7},
        field_labels={
            "positive_prompt": "Positive Prompt",
            "negative_prompt": "Negative Prompt",
            "seed": "Seed",
        },
        use_cache=False,
    )
    b.expose(meta, "positive_prompt")
    b.expose(meta, "negative_prompt")
    b.expose(meta, "seed")
    return meta


def text_to_image_workflow(name: str = "blank canvas") -> dict[str, Any]:
    """Inputs: 0 prompt, 1 negative prompt, 2 seed, 3 width, 4 height, 5 mode (not mapped)."""
    b = WorkflowBuilder(name=name)
    meta = _metadata_node(b)
    blank = b.node(
        "blank_image",
        {"width": 64, "height": 48, "mode": "RGB", "color": {"r": 200, "g": 20, "b": 30, "a": 255}},
        is_intermediate=False,
        use_cache=False,
        field_labels={"width": "Width", "height": "Height", "mode": "Mode"},
    )
    b.edge(meta, "metadata", blank, "metadata")
    b.expose(blank, "width")
    b.expose(blank, "height")
    b.expose(blank, "mode")
    return b.build()


def image_to_image_workflow(name: str = "resizer") -> dict[str, Any]:
    """Inputs: 0 prompt, 1 negative, 2 seed, 3 image, 4 width, 5 height."""
    b = WorkflowBuilder(name=name)
    meta = _metadata_node(b)
    resize = b.node(
        "img_resize",
        {"image": None, "width": 32, "height": 32, "resample_mode": "nearest"},
        is_intermediate=False,
        use_cache=False,
        field_labels={"image": "Image", "width": "Width", "height": "Height"},
    )
    b.edge(meta, "metadata", resize, "metadata")
    b.expose(resize, "image")
    b.expose(resize, "width")
    b.expose(resize, "height")
    return b.build()


def failing_text_to_image_workflow(name: str = "always fails") -> dict[str, Any]:
    """A prompt input and an image node whose width comes from a random integer with its low
    bound above its high one: InvokeAI fails the run at that node."""
    b = WorkflowBuilder(name=name)
    meta = _metadata_node(b)
    width = b.node("rand_int", {"low": 10, "high": 5}, use_cache=False)
    blank = b.node("blank_image", {"height": 8, "mode": "RGB"}, is_intermediate=False)
    b.edge(meta, "metadata", blank, "metadata")
    b.edge(width, "value", blank, "width")
    return b.build()
