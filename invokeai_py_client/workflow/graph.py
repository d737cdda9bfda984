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
from .batch import batch_data, is_batch_special
from .definition import WorkflowDefinition, describe_node, is_invocation_node, is_mapping
from .inputs import edge_fed_fields
from .values import FieldValues, editor_value_to_api

__all__ = ["SERVER_FILE_NODE_TYPES", "build_batch", "build_graph", "workflow_payload"]

# Node type -> the input naming a path on the server's disk. Running such a node would let a
# caller read server files, and the shipped "Prompt from File" workflow cannot work remotely.
SERVER_FILE_NODE_TYPES: Mapping[str, str] = {"prompt_from_file": "file_path"}

# A call_saved_workflow node shows the called workflow's inputs as fields with this prefix;
# the web UI sends them folded into ``workflow_inputs`` (invocations/call_saved_workflow.py).
_SAVED_WORKFLOW_INPUT = "saved_workflow_input::"


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
    fed_by_node: dict[str, set[str]] = {}
    for node_id, field_name in fed:
        fed_by_node.setdefault(node_id, set()).add(field_name)
    by_node: dict[str, dict[str, Any]] = {}
    for (node_id, field_name), value in values.items():
        if (node_id, field_name) not in fed:  # the edge wins, as in the editor
            by_node.setdefault(node_id, {})[field_name] = value
    nodes = {
        node["id"]: _graph_node(
            node["data"], node["id"], by_node.get(node["id"], {}), fed_by_node.get(node["id"], ())
        )
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
    if known_node_types is not None and node_type not in known_node_types:
        return [
            f"{describe_node(node_id, data)}: the server has no node type {node_type!r} "
            "(an outdated node, or one from a node pack the server lacks)"
        ]
    if node_type in SERVER_FILE_NODE_TYPES:
        field = SERVER_FILE_NODE_TYPES[node_type]
        return [
            f"{describe_node(node_id, data)}: reads a file on the server's disk "
            f"(input {field!r}); this client does not send server-side file paths"
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
    return not is_batch_special(node)


def _runnable_nodes(nodes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for node in nodes:
        if is_invocation_node(node) and _is_runnable(node):
            yield node


def _graph_node(
    data: Mapping[str, Any],
    node_id: str,
    overrides: Mapping[str, Any],
    fed: Collection[str],
) -> dict[str, Any]:
    """The node as the graph sends it; ``fed`` names its inputs that an edge feeds."""
    graph_node: dict[str, Any] = {"id": node_id, "type": data["type"]}
    for flag, key in (("useCache", "use_cache"), ("isIntermediate", "is_intermediate")):
        if isinstance(data.get(flag), bool):
            graph_node[key] = data[flag]
    inputs = data.get("inputs")
    for field_name, field in (inputs if is_mapping(inputs) else {}).items():
        if field_name in fed or not is_mapping(field):
            continue
        send, value = editor_value_to_api(field_name, field.get("value"))
        if send:
            graph_node[field_name] = value
    for field_name, value in overrides.items():
        if value is None:
            graph_node.pop(field_name, None)
        else:
            graph_node[field_name] = value
    if data["type"] == "call_saved_workflow":
        _fold_saved_workflow_inputs(graph_node)
    return graph_node


def _fold_saved_workflow_inputs(graph_node: dict[str, Any]) -> None:
    dynamic = [name for name in graph_node if name.startswith(_SAVED_WORKFLOW_INPUT)]
    graph_node["workflow_inputs"] = {name: graph_node.pop(name) for name in dynamic}


# --- edges ------------------------------------------------------------------------------


def _graph_edges(edges: list[dict[str, Any]], index: Mapping[str, Any]) -> list[dict[str, Any]]:
    result, seen = [], set()
    runnable = {
        node_id
        for node_id, node in index.items()
        if is_invocation_node(node) and _is_runnable(node)
    }
    for edge in edges:
        if edge.get("type", "default") != "default" or edge["target"] not in runnable:
            continue
        source_id, handle = edge["source"], edge["sourceHandle"]
        source = (
            (source_id, handle)
            if source_id in runnable
            else _resolve_source(source_id, handle, edges, index)
        )
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
