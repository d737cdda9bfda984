"""Input discovery: which fields of a workflow a caller may set, and in which order.

The order is the editor's form order: a depth-first, pre-order walk of the form tree from
``form["rootElementId"]`` (whatever its id), container children in order, headings, text and
dividers skipped. A file with no form, or a form holding no fields, falls back to
``exposedFields`` in order (schema 3.0.0 files). InvokeAI's own
``workflow_graph_builder.get_exposed_workflow_input_names`` falls back the same way.
Broken references are skipped here; ``WorkflowDefinition.validate_workflow`` reports them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .definition import WorkflowDefinition, field_identifier, form_field_elements, is_mapping

__all__ = ["InputSlot", "discover_inputs", "edge_fed_fields"]


@dataclass(frozen=True)
class InputSlot:
    """One settable input of a workflow, as the file describes it.

    Attributes:
        index: position in form order (or ``exposedFields`` order), from 0.
        node_id: the invocation node the value goes to.
        field_name: the node's input field.
        label: the field's own label in the file, "" if it has none.
        node_label: the node's label, "" if it has none.
        node_type: the invocation type, e.g. ``"img_blur"``.
        value: the raw value in the file (``None`` when the file has none).
        fed_by_edge: an edge feeds this field, so its file value is never sent.
    """

    index: int
    node_id: str
    field_name: str
    label: str
    node_label: str
    node_type: str
    value: Any
    fed_by_edge: bool


def discover_inputs(defn: WorkflowDefinition) -> list[InputSlot]:
    """List the workflow's inputs in the editor's order.

    Args:
        defn: the workflow.

    Returns:
        One slot per distinct (node, field) the form (or ``exposedFields``) names and the
        file defines; a field named twice keeps its first position.
    """
    nodes = defn.nodes_by_id()
    fed = edge_fed_fields(defn.edges)
    slots: list[InputSlot] = []
    seen: set[tuple[str, str]] = set()
    for ident in _ordered_field_refs(defn):
        if ident in seen:
            continue
        slot = _make_slot(len(slots), ident, nodes, fed)
        if slot is not None:
            seen.add(ident)
            slots.append(slot)
    return slots


def edge_fed_fields(edges: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """``(node_id, field_name)`` of every input that a ``default`` edge feeds."""
    fed = set()
    for edge in edges:
        target, handle = edge.get("target"), edge.get("targetHandle")
        is_default = edge.get("type", "default") == "default"
        if is_default and isinstance(target, str) and isinstance(handle, str):
            fed.add((target, handle))
    return fed


def _ordered_field_refs(defn: WorkflowDefinition) -> list[tuple[str, str]]:
    from_form = [
        ident
        for _, element in form_field_elements(defn.form)
        if (ident := field_identifier(element)) is not None
    ]
    return from_form or list(_exposed_field_refs(defn.exposedFields))


def _exposed_field_refs(exposed: Iterable[Mapping[str, Any]]) -> Iterator[tuple[str, str]]:
    for item in exposed:
        node_id, field_name = item.get("nodeId"), item.get("fieldName")
        if isinstance(node_id, str) and isinstance(field_name, str):
            yield node_id, field_name


def _make_slot(
    index: int,
    ident: tuple[str, str],
    nodes: Mapping[str, Mapping[str, Any]],
    fed: set[tuple[str, str]],
) -> InputSlot | None:
    node_id, field_name = ident
    node = nodes.get(node_id)
    data = node.get("data") if node is not None and node.get("type") == "invocation" else None
    if not is_mapping(data):
        return None
    inputs = data.get("inputs")
    field = inputs.get(field_name) if is_mapping(inputs) else None
    if not is_mapping(field):
        return None
    return InputSlot(
        index=index,
        node_id=node_id,
        field_name=field_name,
        label=_text(field.get("label")),
        node_label=_text(data.get("label")),
        node_type=_text(data.get("type")),
        value=field.get("value"),
        fed_by_edge=ident in fed,
    )


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
