"""Build editor-format workflow files (schema 4.0.0 with a form) in code."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class WorkflowBuilder:
    """Accumulates invocation nodes, edges and form fields, then renders the editor JSON."""

    name: str = "built workflow"
    nodes: list[dict[str, Any]] = field(default_factory=list)
    edges: list[dict[str, Any]] = field(default_factory=list)
    form_fields: list[tuple[str, str]] = field(default_factory=list)

    def node(
        self,
        node_type: str,
        inputs: dict[str, Any] | None = None,
        *,
        node_id: str | None = None,
        label: str = "",
        is_intermediate: bool = True,
        use_cache: bool = True,
        field_labels: dict[str, str] | None = None,
    ) -> str:
        node_id = node_id or str(uuid.uuid4())
        labels = field_labels or {}
        self.nodes.append(
            {
                "id": node_id,
                "type": "invocation",
                "data": {
                    "id": node_id,
                    "type": node_type,
                    "version": "1.0.0",
                    "label": label,
                    "notes": "",
                    "nodePack": "invokeai",
                    "isOpen": True,
                    "isIntermediate": is_intermediate,
                    "useCache": use_cache,
                    "inputs": {
                        name: {"name": name, "label": labels.get(name, ""), "value": value}
                        for name, value in (inputs or {}).items()
                    },
                },
                "position": {"x": 0, "y": 0},
            }
        )
        return node_id

    def edge(self, source: str, source_handle: str, target: str, target_handle: str) -> None:
        self.edges.append(
            {
                "id": f"reactflow__edge-{source}{source_handle}-{target}{target_handle}",
                "type": "default",
                "source": source,
                "sourceHandle": source_handle,
                "target": target,
                "targetHandle": target_handle,
            }
        )
        for node in self.nodes:
            if node["id"] == target:
                node["data"]["inputs"].setdefault(
                    target_handle, {"name": target_handle, "label": ""}
                )

    def expose(self, node_id: str, field_name: str) -> None:
        self.form_fields.append((node_id, field_name))

    def build(self) -> dict[str, Any]:
        elements: dict[str, Any] = {}
        children = []
        for i, (node_id, field_name) in enumerate(self.form_fields):
            element_id = f"node-field-{i}"
            children.append(element_id)
            elements[element_id] = {
                "id": element_id,
                "type": "node-field",
                "parentId": "root-container",
                "data": {"fieldIdentifier": {"nodeId": node_id, "fieldName": field_name}},
            }
        elements["root-container"] = {
            "id": "root-container",
            "type": "container",
            "data": {"layout": "column", "children": children},
        }
        return {
            "name": self.name,
            "author": "tests",
            "description": "",
            "version": "1.0.0",
            "contact": "",
            "tags": "test",
            "notes": "",
            "exposedFields": [],
            "meta": {"version": "4.0.0", "category": "user"},
            "id": str(uuid.uuid4()),
            "nodes": self.nodes,
            "edges": self.edges,
            "form": {"elements": elements, "rootElementId": "root-container"},
        }


def tiny_blur_workflow(*, use_cache: bool = False) -> dict[str, Any]:
    """blank_image -> img_blur (saved): the smallest image run. Inputs: 0 width, 1 radius."""
    b = WorkflowBuilder(name="tiny blur")
    blank = b.node(
        "blank_image",
        {"width": 64, "height": 64, "mode": "RGB", "color": {"r": 10, "g": 20, "b": 30, "a": 255}},
        use_cache=use_cache,
        field_labels={"width": "Width"},
    )
    blur = b.node(
        "img_blur",
        {"radius": 2.0, "blur_type": "gaussian"},
        is_intermediate=False,
        use_cache=use_cache,
        field_labels={"radius": "Radius"},
    )
    b.edge(blank, "image", blur, "image")
    b.expose(blank, "width")
    b.expose(blur, "radius")
    return b.build()


def chain_workflow(length: int) -> dict[str, Any]:
    """A synthetic ``length``-node chain of integer additions, a form input every 10 nodes."""
    b = WorkflowBuilder(name=f"chain of {length}")
    previous = b.node("integer", {"value": 1})
    b.expose(previous, "value")
    for i in range(length - 1):
        current = b.node("add", {"a": 0, "b": 1})
        b.edge(previous, "value", current, "a")
        if i % 10 == 0:
            b.expose(current, "b")
        previous = current
    return b.build()
