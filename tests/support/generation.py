"""Client-side helpers of the real-generation tests: a handle with inputs set by label, a
shipped file with its denoising edited, and the check that a run made one image of a size."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from invokeai_py_client import InvokeAIClient, WorkflowDefinition, WorkflowHandle
from invokeai_py_client.queue.models import IvkJob
from tests.support.editor_files import with_denoise, with_node_value

__all__ = [
    "assert_one_image",
    "feeding_types",
    "handle_with",
    "results_of_type",
    "with_denoise_steps",
    "with_node_values",
]


def with_denoise_steps(path: Path, steps: int, size: int | None = None) -> WorkflowDefinition:
    """The file with its steps (and noise size) edited (see tests/support/editor_files)."""
    data = with_denoise(WorkflowDefinition.from_file(path).to_dict(), steps=steps, size=size)
    return WorkflowDefinition.from_dict(data)


def with_node_values(path: Path, node_type: str, values: dict[str, Any]) -> WorkflowDefinition:
    """The file with fields of its one ``node_type`` node set (those the file does not expose)."""
    data = WorkflowDefinition.from_file(path).to_dict()
    for field, value in values.items():
        with_node_value(data, node_type, field, value)
    return WorkflowDefinition.from_dict(data)


def handle_with(
    client: InvokeAIClient, definition: WorkflowDefinition, values: dict[str, Any]
) -> WorkflowHandle:
    """A handle on ``definition`` with its inputs set by their form labels, or by
    ``"node name / label"`` where two nodes have inputs of one label (two prompts)."""
    wf = client.workflow_repo.create_workflow(definition)
    inputs = wf.list_inputs()
    index = {f"{inp.node_name} / {inp.label}": inp.input_index for inp in inputs}
    index.update({inp.label: inp.input_index for inp in inputs})
    unknown = set(values) - set(index)
    assert not unknown, f"no input labelled {sorted(unknown)}; the labels are {list(index)}"
    for label, value in values.items():
        wf.set_input_value(index[label], value)
    return wf


def assert_one_image(client: InvokeAIClient, wf: WorkflowHandle, job: Any, size: int) -> None:
    """The finished run made one image, of ``size`` x ``size``."""
    assert job.status == "completed"
    (output,) = [out for out in wf.map_outputs_to_images(job) if out.image_names]
    png = client.board_repo.download_image(output.image_names[0], full_resolution=True)
    assert Image.open(io.BytesIO(png)).size == (size, size)


def results_of_type(job: IvkJob, node_type: str) -> list[dict[str, Any]]:
    """The outputs of every node of ``node_type`` in the graph the server ran.

    Read from the queue item's session: the graph as sent, its ``source_prepared_mapping`` from
    the sent node ids to the executed ones, and the ``results`` of those.
    """
    session = job.session or {}
    nodes = (session.get("graph") or {}).get("nodes") or {}
    mapping = session.get("source_prepared_mapping") or {}
    results = session.get("results") or {}
    return [
        results[prepared]
        for node_id, node in nodes.items()
        if node.get("type") == node_type
        for prepared in mapping.get(node_id, [])
        if prepared in results
    ]


def feeding_types(job: IvkJob, node_type: str, field: str) -> list[str]:
    """The types of the nodes whose outputs feed ``field`` of a ``node_type`` node, in the
    graph the server ran."""
    graph = (job.session or {}).get("graph") or {}
    nodes = graph.get("nodes") or {}
    return [
        nodes[edge["source"]["node_id"]]["type"]
        for edge in graph.get("edges") or []
        if edge["destination"]["field"] == field
        and nodes[edge["destination"]["node_id"]]["type"] == node_type
    ]
