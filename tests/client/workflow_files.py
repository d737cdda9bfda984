"""Where the workflow files used by the workflow-core tests live, and small loaders."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from invokeai_py_client.workflow.definition import WorkflowDefinition

OWN_WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"

# The shipped files that must be refused before sending, and the node type that causes it.
REFUSED_SHIPPED = {
    "ESRGAN Upscaling with Canny ControlNet.json": "canny_image_processor",
    "Face Detailer with IP-Adapter & Canny (See Note in Details).json": "canny_image_processor",
    "Multi ControlNet (Canny & Depth).json": "canny_image_processor",
    "Prompt from File.json": "prompt_from_file",
}
# Node types the shipped files use that InvokeAI 6.14.2 no longer has.
OUTDATED_TYPES = frozenset({"canny_image_processor", "midas_depth_image_processor"})


def own(name: str) -> WorkflowDefinition:
    """One of this project's test workflows, by file name."""
    return WorkflowDefinition.from_file(OWN_WORKFLOWS / name)


def own_dict(name: str) -> dict[str, Any]:
    """A fresh, mutable copy of one of this project's test workflows."""
    data: dict[str, Any] = json.loads((OWN_WORKFLOWS / name).read_text(encoding="utf-8"))
    return copy.deepcopy(data)


def all_files(*dirs: Path) -> list[Path]:
    """Every ``*.json`` in the given folders, sorted by name."""
    return sorted(p for d in dirs for p in d.glob("*.json"))


def invocation_types(paths: list[Path]) -> set[str]:
    """Every invocation type used in these files."""
    types = set()
    for path in paths:
        for node in json.loads(path.read_text(encoding="utf-8"))["nodes"]:
            if node.get("type") == "invocation":
                types.add(node["data"]["type"])
    return types
