"""A workflow's inputs, typed: each discovered slot bound to a live ``IvkField``.

The field comes from the server's schema for the node type and field (``fields.factory``),
holding the file's value; without a schema it is guessed from that value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._mapping import MappingAccess
from ..exceptions import InputValidationError
from ..fields.base import IvkField
from ..fields.factory import make_field
from .index_map import IndexMapEntry
from .inputs import InputSlot

if TYPE_CHECKING:
    from ..fields.schema import InvocationSchemas

__all__ = ["IvkWorkflowInput", "build_inputs", "input_problem"]


@dataclass(frozen=True)
class IvkWorkflowInput(MappingAccess):
    """One input of a workflow: where it goes, what it is called, and its live typed field.

    Attributes:
        input_index: position in the form (see ``inputs.discover_inputs``).
        label: the field's label in the file, else the schema's title, else its name.
        field_name: the node's input field.
        node_id: the node the value goes to.
        node_name: the node's label, else its invocation type.
        node_type: the invocation type.
        field: the typed field; assign ``field.value`` to set the input.
        required: the node needs a value here (and no edge feeds it).
        fed_by_edge: an edge feeds this field; its value is never sent.
    """

    input_index: int
    label: str
    field_name: str
    node_id: str
    node_name: str
    node_type: str
    field: IvkField[Any]
    required: bool
    fed_by_edge: bool = False

    @property
    def value(self) -> Any:
        return self.field.value

    def index_entry(self) -> IndexMapEntry:
        return IndexMapEntry(
            self.input_index, self.node_id, self.field_name, self.label, self.node_type
        )


def build_inputs(
    slots: list[InputSlot], schemas: InvocationSchemas | None
) -> list[IvkWorkflowInput]:
    """Typed inputs for the slots of a workflow (file values when there are no schemas)."""
    inputs = []
    for slot in slots:
        spec = schemas.field(slot.node_type, slot.field_name) if schemas else None
        field = make_field(spec, slot.value, field_name=slot.field_name)
        label = slot.label or (spec.title if spec else "") or slot.field_name
        field.bind(index=slot.index, label=label, node_id=slot.node_id, field_name=slot.field_name)
        inputs.append(
            IvkWorkflowInput(
                input_index=slot.index,
                label=label,
                field_name=slot.field_name,
                node_id=slot.node_id,
                node_name=slot.node_label or slot.node_type,
                node_type=slot.node_type,
                field=field,
                required=bool(spec and spec.required) and not slot.fed_by_edge,
                fed_by_edge=slot.fed_by_edge,
            )
        )
    return inputs


def input_problem(inp: IvkWorkflowInput) -> str | None:
    """Why the input's current value cannot be sent, or None when it can."""
    if inp.fed_by_edge:
        return None
    if not inp.field.is_set():
        return "a value is required" if inp.required else None
    try:
        inp.field.validate_value(inp.field.value)
    except InputValidationError as exc:
        return exc.reason
    return None
