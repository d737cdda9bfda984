"""Batch nodes: the editor's way to run a workflow once per item (pure).

``image_batch``, ``string_batch``, ``integer_batch`` and ``float_batch`` nodes do not run;
the web UI removes them from the graph and turns their items into ``batch.data``: one
``BatchDatum`` per field they feed. Batch nodes in group "None" each vary on their own (the
server multiplies the lists); nodes sharing a ``batch_group_id`` are zipped together.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ..exceptions import WorkflowValidationError
from .definition import WorkflowDefinition, describe_node, is_invocation_node
from .inputs import edge_fed_fields
from .values import FieldValues, editor_value_to_api

__all__ = ["BATCH_NODE_TYPES", "GENERATOR_NODE_TYPES", "batch_data", "is_batch_special"]

# Batch node type -> (field holding its items, output handle that feeds other nodes).
BATCH_NODE_TYPES: Mapping[str, tuple[str, str]] = {
    "image_batch": ("images", "image"),
    "string_batch": ("strings", "value"),
    "integer_batch": ("integers", "value"),
    "float_batch": ("floats", "value"),
}
# Generators feed batch nodes; only the web UI evaluates them (random numbers, board lookups).
GENERATOR_NODE_TYPES = frozenset(
    {"image_generator", "string_generator", "integer_generator", "float_generator"}
)


def batch_data(defn: WorkflowDefinition, values: FieldValues | None = None) -> list[list[Any]]:
    """``batch.data`` for the workflow's batch nodes, grouped the way the web UI groups them.

    A node in group "None" varies on its own (its datums form one zipped list, multiplied with
    the others); nodes sharing a group ("Group 1" ...) are zipped together.
    """
    values = values or {}
    groups: dict[str, list[dict[str, Any]]] = {}
    data: list[list[Any]] = []
    problems: list[str] = []
    for node in _batch_nodes(defn.nodes):
        datums, problem = _batch_datums(defn, node, values)
        if problem:
            problems.append(problem)
        group = node["data"].get("inputs", {}).get("batch_group_id", {}).get("value", "None")
        if group in (None, "None"):
            data.extend([datums] if datums else [])
        else:
            groups.setdefault(str(group), []).extend(datums)
    for group, datums in groups.items():
        if len({len(d["items"]) for d in datums}) > 1:
            problems.append(f"batch group {group!r}: its batch nodes have different item counts")
        data.append(datums)
    if problems:
        raise WorkflowValidationError(problems)
    return data


def _batch_nodes(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for node in nodes:
        if is_invocation_node(node) and node["data"].get("type") in BATCH_NODE_TYPES:
            yield node


def _batch_datums(
    defn: WorkflowDefinition, node: Mapping[str, Any], values: FieldValues
) -> tuple[list[dict[str, Any]], str | None]:
    data = node["data"]
    items_field, handle = BATCH_NODE_TYPES[data["type"]]
    name = describe_node(node["id"], data)
    index = defn.nodes_by_id()
    if (node["id"], items_field) in edge_fed_fields(defn.edges):
        return [], (
            f"{name}: its items come from a generator node, which only the InvokeAI "
            "editor evaluates; put the items in the batch node itself"
        )
    file_items = data.get("inputs", {}).get(items_field, {}).get("value")
    items = values.get((node["id"], items_field), file_items)
    if not isinstance(items, list) or not items:
        return [], f"{name}: a batch node needs a non-empty list of {items_field}"
    if data["type"] == "image_batch":
        items = [editor_value_to_api("image", item)[1] for item in items]
    datums = [
        {"node_path": target, "field_name": field, "items": items}
        for target, field in _downstream_fields(node["id"], handle, defn.edges, index)
    ]
    return datums, None


def _downstream_fields(
    node_id: str,
    handle: str,
    edges: list[dict[str, Any]],
    index: Mapping[str, Any],
    seen: frozenset[str] = frozenset(),
) -> Iterator[tuple[str, str]]:
    """Invocation inputs fed by ``node_id.handle``, following connectors downstream."""
    if node_id in seen:
        return  # a loop of connectors feeds nothing
    for edge in edges:
        if edge.get("source") != node_id or edge.get("sourceHandle") != handle:
            continue
        if edge.get("type", "default") != "default":
            continue
        target = index.get(edge["target"], {})
        if target.get("type") == "connector":
            yield from _downstream_fields(edge["target"], "out", edges, index, seen | {node_id})
        elif is_invocation_node(target):
            yield edge["target"], edge["targetHandle"]


def is_batch_special(node: Mapping[str, Any]) -> bool:
    """True for batch and generator nodes: they shape the batch and never run themselves."""
    node_type = node["data"].get("type")
    return node_type in BATCH_NODE_TYPES or node_type in GENERATOR_NODE_TYPES
