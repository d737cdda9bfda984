"""The editor's workflow file as a model that keeps every key, plus its structural checks.

A workflow file is what InvokeAI's node editor exports (schema 3.0.0 or 4.0.0): top-level
metadata, ``exposedFields``, ``meta``, ``nodes`` (``invocation``, ``notes``, ``connector``,
``current_image``), ``edges`` (``default`` and ``collapsed``) and, in newer files, a ``form``.
Nothing here talks to a server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeGuard

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..exceptions import WorkflowValidationError

__all__ = [
    "SUPPORTED_SCHEMA_VERSIONS",
    "WorkflowDefinition",
    "describe_node",
    "field_identifier",
    "form_field_elements",
    "is_invocation_node",
    "is_mapping",
]

SUPPORTED_SCHEMA_VERSIONS = ("3.0.0", "4.0.0")

# Form elements that only decorate the form; they never hold an input.
_DECORATION_ELEMENTS = frozenset({"heading", "text", "divider"})
# Handles of the editor's connector (reroute) node, as in InvokeAI's workflow_graph_builder.py.
_CONNECTOR_HANDLES = frozenset({"in", "out"})


class WorkflowDefinition(BaseModel):
    """One editor workflow file; unknown top-level keys are kept so the file round-trips.

    Example:
        >>> defn = WorkflowDefinition.from_file("my workflow.json")
        >>> defn.validate_workflow()
        []
    """

    model_config = ConfigDict(extra="allow")

    name: str = ""
    author: str = ""
    description: str = ""
    version: str = ""
    contact: str = ""
    tags: str = ""
    notes: str = ""
    exposedFields: list[dict[str, Any]] = Field(default_factory=list)
    meta: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None
    nodes: list[dict[str, Any]] = Field(default_factory=list)
    edges: list[dict[str, Any]] = Field(default_factory=list)
    form: dict[str, Any] | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowDefinition:
        """Read a workflow from its parsed JSON.

        Raises:
            WorkflowValidationError: the data is not a workflow object (wrong top-level shape).
        """
        if not isinstance(data, Mapping):
            raise WorkflowValidationError(
                [f"a workflow must be a JSON object, not {type(data).__name__}"]
            )
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise WorkflowValidationError(_describe_shape_errors(exc)) from exc

    @classmethod
    def from_file(cls, path: str | Path) -> WorkflowDefinition:
        """Read a workflow file exported by the editor.

        Raises:
            WorkflowValidationError: the file is not JSON or not a workflow object.
            OSError: the file cannot be opened.
        """
        text = Path(path).read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise WorkflowValidationError([f"{path}: not valid JSON: {exc}"]) from exc
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """The workflow as JSON data, with the keys the file had (and any set since)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def save(self, path: str | Path) -> None:
        """Write the workflow as an editor-readable JSON file."""
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False)
        Path(path).write_text(text + "\n", encoding="utf-8")

    @property
    def schema_version(self) -> str | None:
        """``meta.version``: the editor file schema ("3.0.0", "4.0.0"), if present."""
        version = self.meta.get("version")
        return version if isinstance(version, str) else None

    def nodes_by_id(self) -> dict[str, dict[str, Any]]:
        """Every node (invocation or editor-only) keyed by its id; later duplicates lose."""
        index: dict[str, dict[str, Any]] = {}
        for node in self.nodes:
            node_id = node.get("id")
            if isinstance(node_id, str):
                index.setdefault(node_id, node)
        return index

    def invocation_node(self, node_id: str) -> dict[str, Any] | None:
        """The invocation node with this id, or ``None`` (also for notes/connector nodes)."""
        node = self.nodes_by_id().get(node_id)
        return node if node is not None and is_invocation_node(node) else None

    def node_inputs(self, node_id: str) -> dict[str, Any]:
        """``data.inputs`` of an invocation node (empty if unknown)."""
        node = self.invocation_node(node_id)
        inputs = node["data"].get("inputs") if node else None
        return inputs if isinstance(inputs, dict) else {}

    def validate_workflow(self) -> list[str]:
        """Check the file's structure; one readable line per problem, empty when sound.

        Checks the schema version, node ids, edges (missing nodes or handles) and that the
        form and ``exposedFields`` name existing nodes and fields. It does not check node
        types against a server; graph building does that.
        """
        index = self.nodes_by_id()
        return [
            *_check_meta(self),
            *_check_nodes(self.nodes),
            *_check_edges(self.edges, index),
            *_check_form(self.form, index),
            *self._check_exposed_fields(index),
        ]

    def _check_exposed_fields(self, index: Mapping[str, Any]) -> list[str]:
        # A form with fields supersedes exposedFields (schema 4.0.0); the editor leaves stale
        # entries there (several shipped workflows have them), so only check them when used.
        if any(True for _ in form_field_elements(self.form)):
            return []
        return _check_exposed_fields(self.exposedFields, index)


def is_invocation_node(node: Mapping[str, Any]) -> bool:
    """True for a node that runs on the server (``type == "invocation"`` with ``data``)."""
    return node.get("type") == "invocation" and isinstance(node.get("data"), dict)


def describe_node(node_id: str, data: Mapping[str, Any]) -> str:
    """``node <id> (<type>, '<label>')``: how errors name a node."""
    label = data.get("label")
    named = f", {label!r}" if isinstance(label, str) and label else ""
    return f"node {node_id} ({data.get('type')}{named})"


def form_field_elements(
    form: Mapping[str, Any] | None,
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Walk the form tree depth-first, pre-order; yield ``(element_id, element)`` per node-field.

    Starts at ``form["rootElementId"]`` (any id), visits container children in order, skips
    decorations, elements that do not exist and any element seen before (a cycle).
    """
    if not is_mapping(form):
        return
    elements = form.get("elements")
    root = form.get("rootElementId")
    if not is_mapping(elements) or not isinstance(root, str):
        return
    stack, seen = [root], set()
    while stack:
        element_id = stack.pop()
        if element_id in seen:
            continue
        element = elements.get(element_id)
        if not is_mapping(element):
            continue
        seen.add(element_id)
        kind = element.get("type")
        if kind == "node-field":
            yield element_id, element
        elif kind not in _DECORATION_ELEMENTS:
            children = _element_data(element).get("children")
            if isinstance(children, list):
                stack.extend([c for c in reversed(children) if isinstance(c, str)])


def field_identifier(element: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(node_id, field_name)`` of a node-field form element, or ``None`` if malformed."""
    ident = _element_data(element).get("fieldIdentifier")
    if not is_mapping(ident):
        return None
    node_id, field_name = ident.get("nodeId"), ident.get("fieldName")
    if isinstance(node_id, str) and isinstance(field_name, str):
        return node_id, field_name
    return None


def is_mapping(value: Any) -> TypeGuard[Mapping[str, Any]]:
    """``isinstance(value, Mapping)``, quick for the dicts JSON gives.

    The ABC check alone is most of a form walk's time; workflow data is nearly all dicts.
    """
    return type(value) is dict or isinstance(value, Mapping)


def _element_data(element: Mapping[str, Any]) -> Mapping[str, Any]:
    data = element.get("data")
    return data if is_mapping(data) else {}


def _describe_shape_errors(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        where = ".".join(str(part) for part in err["loc"]) or "workflow"
        problems.append(f"'{where}': {err['msg']}")
    return problems


def _check_meta(defn: WorkflowDefinition) -> list[str]:
    version = defn.schema_version
    if version is None:
        return ["meta.version is missing: cannot tell the workflow schema version"]
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(SUPPORTED_SCHEMA_VERSIONS)
        return [f"unsupported workflow schema version {version!r} (supported: {supported})"]
    return []


def _check_nodes(nodes: list[dict[str, Any]]) -> list[str]:
    problems, seen = [], set()
    for position, node in enumerate(nodes):
        node_id = node.get("id")
        if not isinstance(node_id, str) or not node_id:
            problems.append(f"node #{position} has no id")
            continue
        if node_id in seen:
            problems.append(f"duplicate node id {node_id}")
        seen.add(node_id)
        if node.get("type") != "invocation":
            continue
        data = node.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            problems.append(f"invocation node {node_id} has no data.type")
        elif data.get("id") != node_id:
            problems.append(f"node {node_id}: data.id {data.get('id')!r} differs from its id")
    return problems


def _check_edges(edges: list[dict[str, Any]], index: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    for edge in edges:
        edge_name = edge.get("id") or f"{edge.get('source')} -> {edge.get('target')}"
        for end in ("source", "target"):
            node_id = edge.get(end)
            if node_id not in index:
                problems.append(f"edge {edge_name}: {end} node {node_id} does not exist")
        if edge.get("type", "default") == "default":
            problems.extend(_check_edge_handles(edge, edge_name, index))
    return problems


def _check_edge_handles(
    edge: Mapping[str, Any], edge_name: str, index: Mapping[str, Any]
) -> list[str]:
    source_handle, target_handle = edge.get("sourceHandle"), edge.get("targetHandle")
    if not isinstance(source_handle, str) or not isinstance(target_handle, str):
        return [f"edge {edge_name}: a default edge needs sourceHandle and targetHandle"]
    target = index.get(edge.get("target", ""))
    if target is None:
        return []
    if is_invocation_node(target):
        inputs = target["data"].get("inputs") or {}
        if target_handle not in inputs:
            node_type = target["data"].get("type")
            return [
                f"edge {edge_name}: target node {target['id']} ({node_type}) "
                f"has no input {target_handle!r}"
            ]
    elif target.get("type") == "connector" and target_handle not in _CONNECTOR_HANDLES:
        return [f"edge {edge_name}: connector {target['id']} has no handle {target_handle!r}"]
    return []


def _check_field_ref(
    where: str, node_id: str, field_name: str, index: Mapping[str, Any]
) -> list[str]:
    node = index.get(node_id)
    if node is None:
        return [f"{where} names node {node_id}, which does not exist"]
    if not is_invocation_node(node):
        return [f"{where} names node {node_id}, which is not an invocation node"]
    if field_name not in (node["data"].get("inputs") or {}):
        node_type = node["data"].get("type")
        return [f"{where} names field {field_name!r}, which node {node_id} ({node_type}) lacks"]
    return []


def _check_form(form: dict[str, Any] | None, index: Mapping[str, Any]) -> list[str]:
    if form is None or not form:
        return []
    elements = form.get("elements")
    root = form.get("rootElementId")
    if not isinstance(elements, dict) or not isinstance(root, str):
        return ["form needs an 'elements' object and a 'rootElementId' string"]
    if not elements and not root:
        return []  # the editor's "no form yet"
    problems = [] if root in elements else [f"form root element {root!r} does not exist"]
    problems.extend(_check_form_children(elements))
    seen: set[tuple[str, str]] = set()
    for element_id, element in form_field_elements(form):
        ident = field_identifier(element)
        if ident is None:
            problems.append(f"form element {element_id} has no valid fieldIdentifier")
            continue
        if ident in seen:
            problems.append(f"form element {element_id} repeats field {ident[1]!r} of {ident[0]}")
        seen.add(ident)
        problems.extend(_check_field_ref(f"form element {element_id}", *ident, index))
    return problems


def _check_form_children(elements: Mapping[str, Any]) -> list[str]:
    problems = []
    for element_id, element in elements.items():
        children = _element_data(element).get("children") if isinstance(element, dict) else None
        for child in children if isinstance(children, list) else []:
            if child not in elements:
                problems.append(f"form container {element_id} lists missing element {child!r}")
    return problems


def _check_exposed_fields(exposed: list[dict[str, Any]], index: Mapping[str, Any]) -> list[str]:
    problems = []
    for position, item in enumerate(exposed):
        node_id, field_name = item.get("nodeId"), item.get("fieldName")
        where = f"exposedFields[{position}]"
        if not isinstance(node_id, str) or not isinstance(field_name, str):
            problems.append(f"{where} needs string nodeId and fieldName")
            continue
        problems.extend(_check_field_ref(where, node_id, field_name, index))
    return problems
