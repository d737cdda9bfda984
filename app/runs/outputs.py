"""What a finished run produced: images and videos per output node, the values of leaf nodes,
and the gateway URLs of its images and videos."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from invokeai_py_client.workflow.definition import WorkflowDefinition
from invokeai_py_client.workflow.outputs import map_output_values, map_outputs_to_images

__all__ = ["compute_outputs", "image_url", "outputs_with_urls", "plain_value", "video_url"]


def plain_value(result: dict[str, Any]) -> Any:
    """A node result without its ``type`` tag; a single member is unwrapped."""
    members = {k: v for k, v in result.items() if k != "type"}
    if len(members) == 1:
        return next(iter(members.values()))
    return members


def _leaf_node_ids(definition: dict[str, Any]) -> set[str]:
    # Nodes that feed nothing: their values are what the workflow computes.
    sources = {e.get("source") for e in definition.get("edges") or [] if isinstance(e, dict)}
    return {n["id"] for n in definition.get("nodes") or [] if n.get("id") not in sources}


def compute_outputs(definition: dict[str, Any], item: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per output node: image and video nodes (non-intermediate) and leaf value
    nodes."""
    defn = WorkflowDefinition.from_dict(definition)
    outputs: list[dict[str, Any]] = [
        {
            "node_id": images.node_id,
            "node_type": images.node_type,
            "label": images.label,
            "image_names": list(images.image_names),
            "video_names": list(images.video_names),
            "board_id": images.board_id,
            "values": [],
        }
        for images in map_outputs_to_images(defn, item)
    ]
    leaves = _leaf_node_ids(definition)
    for value in map_output_values(defn, item):
        if value.node_id in leaves and value.results:
            outputs.append(
                {
                    "node_id": value.node_id,
                    "node_type": value.node_type,
                    "label": value.label,
                    "image_names": [],
                    "video_names": [],
                    "board_id": None,
                    "values": [plain_value(r) for r in value.results],
                }
            )
    return outputs


def image_url(name: str) -> str:
    """The gateway URL of an image."""
    return f"/images/{quote(name, safe='')}"


def video_url(name: str) -> str:
    """The gateway URL of a video (its MP4 file)."""
    return f"/videos/{quote(name, safe='')}"


def outputs_with_urls(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored outputs with the gateway URLs of their images and videos added."""
    shown = []
    for out in outputs:
        names = list(out.get("image_names") or [])
        images = [
            {"image_name": n, "url": image_url(n), "thumbnail_url": f"{image_url(n)}?thumbnail=1"}
            for n in names
        ]
        video_names = list(out.get("video_names") or [])
        videos = [{"video_name": n, "url": video_url(n)} for n in video_names]
        shown.append(
            {
                **out,
                "image_names": names,
                "images": images,
                "video_names": video_names,
                "videos": videos,
            }
        )
    return shown
