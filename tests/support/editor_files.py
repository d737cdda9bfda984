"""Reading and editing the denoising settings of editor workflow files (plain JSON dicts).

Shipped text-to-image files do not expose their steps (nor, for SDXL, their size) as form
inputs, so tests that need a short or a long run edit a copy.
"""

from __future__ import annotations

from typing import Any

__all__ = ["denoise_steps", "with_denoise", "with_node_value", "without_edges_from"]


def _invocations(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [node["data"] for node in workflow["nodes"] if node.get("type") == "invocation"]


def denoise_steps(workflow: dict[str, Any]) -> int:
    """The ``steps`` of the file's one denoising node."""
    (steps,) = [
        data["inputs"]["steps"]["value"]
        for data in _invocations(workflow)
        if "steps" in data["inputs"]
    ]
    return int(steps)


def with_denoise(
    workflow: dict[str, Any], *, steps: int, size: int | None = None
) -> dict[str, Any]:
    """The file with its denoising node's ``steps`` (and its noise node's size) set, in place."""
    for data in _invocations(workflow):
        inputs = data["inputs"]
        if "steps" in inputs:
            inputs["steps"]["value"] = steps
        if data["type"] == "noise" and size is not None:
            inputs["width"]["value"] = inputs["height"]["value"] = size
    return workflow


def with_node_value(
    workflow: dict[str, Any], node_type: str, field: str, value: Any
) -> dict[str, Any]:
    """The file with ``field`` of its one ``node_type`` node set to ``value``, in place."""
    (data,) = [data for data in _invocations(workflow) if data["type"] == node_type]
    data["inputs"][field]["value"] = value
    return workflow


def without_edges_from(workflow: dict[str, Any], node_type: str) -> dict[str, Any]:
    """The file with the edges out of its ``node_type`` nodes removed, in place: the fields
    they fed then take the values the file holds for them (which a test may set)."""
    sources = {
        node["id"] for node in workflow["nodes"] if node.get("data", {}).get("type") == node_type
    }
    assert sources, f"no {node_type} node"
    workflow["edges"] = [edge for edge in workflow["edges"] if edge["source"] not in sources]
    return workflow
