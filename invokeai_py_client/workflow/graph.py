"""Graph building: an editor workflow (plus caller values) -> the ``enqueue_batch`` body.

The rules follow what InvokeAI itself does with an editor workflow (the web UI's
``buildNodesGraph`` and the server's ``services/shared/workflow_graph_builder.py``):

* only ``invocation`` nodes run; ``notes``, ``current_image`` and ``connector`` nodes are
  editor-only, and an edge leaving a connector is rewired to the invocation feeding it;
* only ``default`` edges are graph edges (``collapsed`` edges are drawn, never run);
* an input an edge feeds never carries its (stale) file literal;
* batch nodes (``image_batch``, ``string_batch``, ...) leave the graph: their items become
  ``batch.data`` entries aimed at the fields they feed, zipped by ``batch_group_id``;
* ``useCache`` / ``isIntermediate`` of each node become ``use_cache`` / ``is_intermediate``.

A graph the server would reject, or that must not run, is refused before anything is sent,
with a ``WorkflowValidationError`` whose problems name the node, its type and the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from ..exceptions import WorkflowValidationError
from .definition import WorkflowDefinition, is_invocation_node
from .inputs import edge_fed_fields

__all__ = [
    "BATCH_NODE_TYPES",
    "GENERATOR_NODE_TYPES",
    "SERVER_FILE_NODE_TYPES",
    "FieldValues",
    "batch_data",
    "build_batch",
    "build_graph",
    "editor_value_to_api",
]

FieldValues = Mapping[tuple[str, str], Any]

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
# Node type -> the input naming a path on the server's disk. Running such a node would let a
# caller read server files, and the shipped "Prompt from File" workflow cannot work remotely.
SERVER_FILE_NODE_TYPES: Mapping[str, str] = {"prompt_from_file": "file_path"}

_NO_BOARD = frozenset({"", "auto", "none"})


def build_graph(
    defn: WorkflowDefinition,
    values: FieldValues | None = None,
    *,
    known_node_types: Collection[str] | None = None,
    graph_id: str | None = None,
) -> dict[str, Any]:
    """Turn the workflow into the server's ``Graph`` (``{"id", "nodes", "edges"}``).

    Args:
        defn: the workflow.
        values: ``(node_id, field_name) -> value`` in the server's API shape; overrides the
            file's literal. ``None`` removes the literal (the server default applies). A value
            for an edge-fed field is ignored: the edge wins, as in the editor.
        known_node_types: invocation types the server has; other types are refused.
        graph_id: id of the graph; a fresh uuid by default.

    Returns:
        The graph as JSON data.

    Raises:
        WorkflowValidationError: a node type the server lacks, a node reading a server file
            path, an edge to a missing node, a value for a missing node, a bad batch node.
    """
    values = values or {}
    index = defn.nodes_by_id()
    problems = _graph_problems(defn, index, values, known_node_types)
    if problems:
        raise WorkflowValidationError(problems)
    fed = edge_fed_fields(defn.edges)
    by_node: dict[str, dict[str, Any]] = {}
    for (node_id, field_name), value in values.items():
        if (node_id, field_name) not in fed:  # the edge wins, as in the editor
            by_node.setdefault(node_id, {})[field_name] = value
    nodes = {
        node["id"]: _graph_node(node["data"], node["id"], by_node.get(node["id"], {}), fed)
        for node in _runnable_nodes(defn.nodes)
    }
    return {
        "id": graph_id or str(uuid.uuid4()),
        "nodes": nodes,
        "edges": _graph_edges(defn.edges, index),
    }


def build_batch(
    defn: WorkflowDefinition,
    graph: Mapping[str, Any],
    *,
    batch_id: str,
    origin: str | None = None,
    destination: str | None = None,
    runs: int = 1,
    values: FieldValues | None = None,
    prepend: bool = False,
) -> dict[str, Any]:
    """The body of ``POST /queue/{queue_id}/enqueue_batch`` for a graph built from ``defn``.

    Args:
        defn: the workflow (sent along as ``batch.workflow``, with ``values`` written in).
        graph: the result of :func:`build_graph`.
        batch_id: minted by the caller, so a lost answer can be looked up, never re-sent.
        origin: free text the server keeps on the queue item (who sent it).
        destination: free text the server keeps on the queue item (where results go).
        runs: how many times to run the whole batch.
        values: the values given to :func:`build_graph` (batch node items live here too).
        prepend: put the items at the front of the queue.

    Raises:
        WorkflowValidationError: a batch node with no items, or zipped groups of unequal size.
    """
    batch: dict[str, Any] = {
        "batch_id": batch_id,
        "graph": dict(graph),
        "workflow": workflow_payload(defn, values),
        "runs": runs,
        "origin": origin,
        "destination": destination,
    }
    data = batch_data(defn, values)
    if data:
        batch["data"] = data
    return {"batch": batch, "prepend": prepend}


def editor_value_to_api(field_name: str, value: Any) -> tuple[bool, Any]:
    """Convert a literal from an editor file to the API's shape.

    Returns:
        ``(send, converted)``; ``send`` is false when the field must be left out so the
        server's default applies (empty image or model, board "auto"/"none", ``None``).
    """
    if value is None:
        return False, None
    if field_name == "board":
        return _board_value(value)
    if isinstance(value, dict):
        return _object_value(value)
    if isinstance(value, list):
        items = [_object_value(v) if isinstance(v, dict) else (True, v) for v in value]
        return True, [item for send, item in items if send]
    return True, value


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


def workflow_payload(defn: WorkflowDefinition, values: FieldValues | None = None) -> dict[str, Any]:
    """The workflow as the server stores it with the run (``WorkflowWithoutID``).

    Every required key is present; the caller's values are written into the node inputs,
    so the workflow embedded in the output images shows what actually ran.
    """
    payload = defn.model_dump(mode="json", exclude={"id"})
    payload["exposedFields"] = [
        f
        for f in payload["exposedFields"]
        if isinstance(f.get("nodeId"), str) and isinstance(f.get("fieldName"), str)
    ]
    payload["meta"] = {"category": "user", **payload["meta"]}
    payload["meta"].setdefault("version", "3.0.0")
    nodes = {n.get("id"): n for n in payload["nodes"] if is_invocation_node(n)}
    for (node_id, field_name), value in (values or {}).items():
        node = nodes.get(node_id)
        if node is not None:
            inputs = node["data"].setdefault("inputs", {})
            field = inputs.setdefault(field_name, {"name": field_name, "label": ""})
            field["value"] = value
    return payload


# --- refusals ---------------------------------------------------------------------------


def _node_name(node_id: str, data: Mapping[str, Any]) -> str:
    label = data.get("label")
    named = f", {label!r}" if isinstance(label, str) and label else ""
    return f"node {node_id} ({data.get('type')}{named})"


def _graph_problems(
    defn: WorkflowDefinition,
    index: Mapping[str, Mapping[str, Any]],
    values: FieldValues,
    known_node_types: Collection[str] | None,
) -> list[str]:
    problems = []
    for node in defn.nodes:
        if is_invocation_node(node):
            problems.extend(_node_problems(node["id"], node["data"], known_node_types))
    problems.extend(_edge_problems(defn.edges, index))
    for node_id, field_name in values:
        target = index.get(node_id)
        if target is None or not is_invocation_node(target):
            problems.append(f"a value was given for {node_id}.{field_name}: no such node")
    return problems


def _node_problems(
    node_id: str, data: Mapping[str, Any], known_node_types: Collection[str] | None
) -> list[str]:
    node_type = data.get("type")
    if not isinstance(node_type, str):
        return [f"node {node_id} has no invocation type"]
    name = _node_name(node_id, data)
    if known_node_types is not None and node_type not in known_node_types:
        return [
            f"{name}: the server has no node type {node_type!r} "
            "(an outdated node, or one from a node pack the server lacks)"
        ]
    if node_type in SERVER_FILE_NODE_TYPES:
        field = SERVER_FILE_NODE_TYPES[node_type]
        return [
            f"{name}: reads a file on the server's disk (input {field!r}); "
            "this client does not send server-side file paths"
        ]
    return []


def _edge_problems(edges: list[dict[str, Any]], index: Mapping[str, Any]) -> list[str]:
    problems = []
    for edge in edges:
        if edge.get("type", "default") != "default":
            continue  # collapsed edges are never sent; a dangling one is harmless
        name = edge.get("id") or f"{edge.get('source')} -> {edge.get('target')}"
        for end in ("source", "target"):
            if edge.get(end) not in index:
                problems.append(f"edge {name}: its {end} node {edge.get(end)} does not exist")
        if not isinstance(edge.get("sourceHandle"), str) or not isinstance(
            edge.get("targetHandle"), str
        ):
            problems.append(f"edge {name}: a default edge needs sourceHandle and targetHandle")
    return problems


# --- nodes ------------------------------------------------------------------------------


def _is_runnable(node: Mapping[str, Any]) -> bool:
    node_type = node["data"].get("type")
    return node_type not in BATCH_NODE_TYPES and node_type not in GENERATOR_NODE_TYPES


def _runnable_nodes(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for node in nodes:
        if is_invocation_node(node) and _is_runnable(node):
            yield node


def _batch_nodes(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for node in nodes:
        if is_invocation_node(node) and node["data"].get("type") in BATCH_NODE_TYPES:
            yield node


def _graph_node(
    data: Mapping[str, Any],
    node_id: str,
    overrides: Mapping[str, Any],
    fed: set[tuple[str, str]],
) -> dict[str, Any]:
    graph_node: dict[str, Any] = {"id": node_id, "type": data["type"]}
    for flag, key in (("useCache", "use_cache"), ("isIntermediate", "is_intermediate")):
        if isinstance(data.get(flag), bool):
            graph_node[key] = data[flag]
    inputs = data.get("inputs")
    for field_name, field in (inputs if isinstance(inputs, Mapping) else {}).items():
        if (node_id, field_name) in fed or not isinstance(field, Mapping):
            continue
        send, value = editor_value_to_api(field_name, field.get("value"))
        if send:
            graph_node[field_name] = value
    for field_name, value in overrides.items():
        if value is None:
            graph_node.pop(field_name, None)
        else:
            graph_node[field_name] = value
    return graph_node


def _board_value(value: Any) -> tuple[bool, Any]:
    # The editor's board picker stores "auto" / "none" (or a bare id); the API wants a
    # BoardField object or nothing (workflow_graph_builder.py drops the sentinels too).
    if isinstance(value, str):
        return (False, None) if value in _NO_BOARD else (True, {"board_id": value})
    if isinstance(value, Mapping):
        board_id = value.get("board_id")
        if isinstance(board_id, str) and board_id not in _NO_BOARD:
            return True, {"board_id": board_id}
    return False, None


def _object_value(value: dict[str, Any]) -> tuple[bool, Any]:
    if "image_name" in value:
        name = value.get("image_name")
        return (True, {"image_name": name}) if name else (False, None)
    if "key" in value and ("base" in value or "type" in value):
        # A model picker left empty still writes an identifier with an empty key.
        return (True, dict(value)) if value.get("key") else (False, None)
    return True, value


# --- edges ------------------------------------------------------------------------------


def _graph_edges(edges: list[dict[str, Any]], index: Mapping[str, Any]) -> list[dict[str, Any]]:
    result, seen = [], set()
    for edge in edges:
        if edge.get("type", "default") != "default":
            continue
        target = index.get(edge["target"])
        if target is None or not is_invocation_node(target) or not _is_runnable(target):
            continue
        source = _resolve_source(edge["source"], edge["sourceHandle"], edges, index)
        if source is None:
            continue
        key = (*source, edge["target"], edge["targetHandle"])
        if key not in seen:
            seen.add(key)
            result.append(
                {
                    "source": {"node_id": source[0], "field": source[1]},
                    "destination": {"node_id": edge["target"], "field": edge["targetHandle"]},
                }
            )
    return result


def _resolve_source(
    node_id: str, handle: str, edges: list[dict[str, Any]], index: Mapping[str, Any]
) -> tuple[str, str] | None:
    """Follow connectors upstream to the invocation output feeding ``node_id``."""
    visited: set[str] = set()
    while node_id not in visited:
        visited.add(node_id)
        node = index.get(node_id)
        if node is None:
            return None
        if is_invocation_node(node):
            return (node_id, handle) if _is_runnable(node) else None
        if node.get("type") != "connector":
            return None
        incoming = next(
            (e for e in edges if e.get("target") == node_id and e.get("type") == "default"), None
        )
        if incoming is None:
            return None
        node_id, handle = incoming["source"], incoming["sourceHandle"]
    return None


def _downstream_fields(
    node_id: str, handle: str, edges: list[dict[str, Any]], index: Mapping[str, Any]
) -> Iterator[tuple[str, str]]:
    """Invocation inputs fed by ``node_id.handle``, following connectors downstream."""
    for edge in edges:
        if edge.get("source") != node_id or edge.get("sourceHandle") != handle:
            continue
        if edge.get("type", "default") != "default":
            continue
        target = index.get(edge["target"], {})
        if target.get("type") == "connector":
            yield from _downstream_fields(edge["target"], "out", edges, index)
        elif is_invocation_node(target):
            yield edge["target"], edge["targetHandle"]


# --- batch nodes ------------------------------------------------------------------------


def _batch_datums(
    defn: WorkflowDefinition, node: Mapping[str, Any], values: FieldValues
) -> tuple[list[dict[str, Any]], str | None]:
    data = node["data"]
    items_field, handle = BATCH_NODE_TYPES[data["type"]]
    name = _node_name(node["id"], data)
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
