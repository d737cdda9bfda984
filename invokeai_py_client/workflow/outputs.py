"""Output mapping: a finished queue item -> what each node of the workflow produced.

The queue item's ``session`` holds ``results`` keyed by *prepared* node id and
``source_prepared_mapping`` from each node id we sent to its prepared ids. A node after an
``iterate`` is prepared once per item, so one source node can yield several results; they
are ordered by ``prepared_iteration_paths`` (the iteration index), then by execution order.
The graph the server ran (``session.graph``) tells which nodes were intermediate and which
board each wrote to, so values set at submit time are honoured.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .._mapping import MappingAccess
from .definition import WorkflowDefinition, is_invocation_node

__all__ = ["OutputImages", "OutputValue", "map_output_values", "map_outputs_to_images"]


@dataclass
class OutputImages(MappingAccess):
    """The images one output node produced (read by attribute or by key: ``out["node_id"]``).

    Attributes:
        node_id: the node id in the workflow file.
        node_type: its invocation type.
        label: the node's label, or its type when it has none.
        image_names: every image it produced, in iteration order.
        board_id: the board the node wrote to, ``None`` for uncategorized.
        video_names: every video (MP4) it produced, in iteration order (Wan's latents to
            video); ``board_repo.download_video`` fetches one.
    """

    node_id: str
    node_type: str
    label: str
    image_names: list[str] = field(default_factory=list)
    board_id: str | None = None
    video_names: list[str] = field(default_factory=list)


@dataclass
class OutputValue(MappingAccess):
    """The non-image results of one node (strings, numbers, ...), one dict per execution."""

    node_id: str
    node_type: str
    label: str
    results: list[dict[str, Any]] = field(default_factory=list)


def map_outputs_to_images(
    defn: WorkflowDefinition, queue_item: Mapping[str, Any] | Any
) -> list[OutputImages]:
    """One entry per output node: every non-intermediate invocation node that made images or
    videos.

    Args:
        defn: the workflow that was submitted.
        queue_item: the queue item as JSON data (or a model with ``model_dump``).

    Returns:
        Entries in the workflow file's node order.
    """
    session = _session(queue_item)
    outputs = []
    for node_id, data, results in _node_results(defn, session):
        graph_node = _graph_node(session, node_id)
        if graph_node.get("is_intermediate", data.get("isIntermediate", False)):
            continue
        names = [name for result in results for name in _image_names(result)]
        videos = [name for result in results for name in _media_names(result, "video_name")]
        if names or videos:
            outputs.append(
                OutputImages(
                    node_id=node_id,
                    node_type=str(data.get("type", "")),
                    label=_label(data),
                    image_names=names,
                    board_id=_board_id(graph_node),
                    video_names=videos,
                )
            )
    return outputs


def map_output_values(
    defn: WorkflowDefinition, queue_item: Mapping[str, Any] | Any
) -> list[OutputValue]:
    """The results of every node that produced no image nor video (strings, integers,
    collections ...).

    Args:
        defn: the workflow that was submitted.
        queue_item: the queue item as JSON data (or a model with ``model_dump``).

    Returns:
        Entries in the workflow file's node order; each holds the node's result dicts as the
        server sent them (e.g. ``{"type": "string_output", "value": "..."}``).
    """
    values = []
    for node_id, data, results in _node_results(defn, _session(queue_item)):
        if any(_image_names(r) or _media_names(r, "video_name") for r in results):
            continue
        node_type = str(data.get("type", ""))
        values.append(OutputValue(node_id, node_type, _label(data), results))
    return values


def _session(queue_item: Mapping[str, Any] | Any) -> Mapping[str, Any]:
    if not isinstance(queue_item, Mapping) and hasattr(queue_item, "model_dump"):
        queue_item = queue_item.model_dump(mode="json")
    session = queue_item.get("session") if isinstance(queue_item, Mapping) else None
    return session if isinstance(session, Mapping) else {}


def _node_results(
    defn: WorkflowDefinition, session: Mapping[str, Any]
) -> Iterator[tuple[str, Mapping[str, Any], list[dict[str, Any]]]]:
    results = session.get("results") or {}
    mapping = session.get("source_prepared_mapping") or {}
    paths = session.get("prepared_iteration_paths") or {}
    order = {prepared_id: position for position, prepared_id in enumerate(results)}
    for node in defn.nodes:
        if not is_invocation_node(node):
            continue
        prepared = [p for p in mapping.get(node["id"], []) if p in results]
        prepared.sort(key=lambda p: (_path_key(paths.get(p)), order[p]))
        if prepared:
            yield node["id"], node["data"], [results[p] for p in prepared]


def _path_key(path: Any) -> tuple[int, ...]:
    # prepared_iteration_paths: the index of each enclosing iterate, outermost first.
    if isinstance(path, list) and all(isinstance(i, int) for i in path):
        return tuple(path)
    return ()


def _image_names(result: Mapping[str, Any]) -> list[str]:
    """Image names in a result: ``image`` fields, and lists of them (collections)."""
    return _media_names(result, "image_name")


def _media_names(result: Mapping[str, Any], key: str) -> list[str]:
    """The ``key`` names (``image_name``, ``video_name``) of a result's fields and lists."""
    names = []
    for value in result.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Mapping) and isinstance(item.get(key), str):
                names.append(item[key])
    return names


def _graph_node(session: Mapping[str, Any], node_id: str) -> Mapping[str, Any]:
    graph = session.get("graph")
    nodes = graph.get("nodes") if isinstance(graph, Mapping) else None
    node = nodes.get(node_id) if isinstance(nodes, Mapping) else None
    return node if isinstance(node, Mapping) else {}


def _board_id(graph_node: Mapping[str, Any]) -> str | None:
    board = graph_node.get("board")
    board_id = board.get("board_id") if isinstance(board, Mapping) else None
    return board_id if isinstance(board_id, str) and board_id != "none" else None


def _label(data: Mapping[str, Any]) -> str:
    label = data.get("label")
    return label if isinstance(label, str) and label else str(data.get("type", ""))
