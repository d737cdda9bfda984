"""Pure rules that turn one OpenAPI property of an invocation into a field kind and constraints.

InvokeAI describes every invocation input as a JSON-schema property (pydantic's output plus its
own ``field_kind``/``input``/``ui_type``/``orig_required`` extras; see
``invokeai/app/invocations/baseinvocation.py`` and ``fields.py``). The shapes met in 6.14.2:

- plain ``type`` (``integer``, ``number``, ``boolean``, ``string``, ``object``), with ``enum`` for
  literals and ``const`` for a one-value literal;
- ``$ref`` to a named struct (``ImageField``, ``ModelIdentifierField``, ``ColorField``, ...);
- ``anyOf`` of one of those and ``{"type": "null"}`` (InvokeAI makes every input optional in the
  schema and keeps the real requirement in ``orig_required``);
- ``anyOf`` of ``X`` and ``array<X>`` ("single or collection", e.g. LoRAs, control weights);
- ``array`` with ``items`` (collections), ``{}`` for "any value".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["REF_KINDS", "Shape", "classify_property", "ref_kind"]

# Struct names whose kind the client types exactly; any other struct gets a kind derived from its
# name ("FluxConditioningField" -> "flux_conditioning") and is passed through untouched.
REF_KINDS: dict[str, str] = {
    "ImageField": "image",
    "BoardField": "board",
    "LatentsField": "latents",
    "TensorField": "tensor",
    "ModelIdentifierField": "model",
    "UNetField": "unet",
    "CLIPField": "clip",
    "TransformerField": "transformer",
    "LoRAField": "lora",
    "ColorField": "color",
    "BoundingBoxField": "bounding_box",
    "ConditioningField": "conditioning",
    "VAEField": "vae",
    "MetadataField": "metadata",
}

# Word starts in CamelCase names: "FluxConditioning", "T2IAdapter", "SD3Conditioning".
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z0-9])(?=[A-Z][a-z])")

_ANY_UI_TYPES = frozenset({"AnyField", "CollectionItemField"})


@dataclass
class Shape:
    """What one property accepts, before it becomes a ``FieldSpec``."""

    kind: str = "any"
    item_kind: str | None = None
    nullable: bool = False
    accepts_list: bool = False
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    multiple_of: float | None = None
    min_length: int | None = None
    max_length: int | None = None


def ref_kind(ref: str) -> str:
    """Kind of a ``#/components/schemas/<Name>`` reference."""
    name = ref.rsplit("/", 1)[-1]
    if name in REF_KINDS:
        return REF_KINDS[name]
    stem = name[: -len("Field")] if name.endswith("Field") and name != "Field" else name
    stem = stem.replace("LoRA", "Lora")
    return _CAMEL_BOUNDARY.sub("_", stem).lower()


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def _base_kind(schema: dict[str, Any], ui_type: str | None) -> str:
    """Kind of a schema that is neither a union nor an array."""
    if "$ref" in schema:
        return ref_kind(schema["$ref"])
    if "enum" in schema or "const" in schema:
        return "scheduler" if ui_type == "SchedulerField" else "enum"
    simple = {"integer": "integer", "number": "float", "boolean": "boolean", "string": "string"}
    json_type = schema.get("type")
    if isinstance(json_type, str) and json_type in simple:
        return simple[json_type]
    if json_type == "object":
        return "dict"
    return "any"


def _take_bounds(shape: Shape, schema: dict[str, Any]) -> None:
    """Copy numeric and length bounds; pydantic leaks ``ge``/``le`` on unions, so read those too."""
    pairs = (
        ("minimum", "minimum"),
        ("ge", "minimum"),
        ("maximum", "maximum"),
        ("le", "maximum"),
        ("exclusiveMinimum", "exclusive_minimum"),
        ("gt", "exclusive_minimum"),
        ("exclusiveMaximum", "exclusive_maximum"),
        ("lt", "exclusive_maximum"),
        ("multipleOf", "multiple_of"),
    )
    for key, attr in pairs:
        if isinstance(schema.get(key), int | float) and getattr(shape, attr) is None:
            setattr(shape, attr, float(schema[key]))
    for key, attr in (
        ("minLength", "min_length"),
        ("minItems", "min_length"),
        ("maxLength", "max_length"),
        ("maxItems", "max_length"),
    ):
        if isinstance(schema.get(key), int) and getattr(shape, attr) is None:
            setattr(shape, attr, int(schema[key]))


def _take_choices(shape: Shape, schema: dict[str, Any]) -> None:
    if "enum" in schema and shape.choices is None:
        shape.choices = tuple(schema["enum"])
    elif "const" in schema and shape.choices is None:
        shape.choices = (schema["const"],)


def _fill(shape: Shape, schema: dict[str, Any], ui_type: str | None) -> None:
    """Fill ``shape`` from a non-null member (recursing through nested unions and arrays)."""
    _take_bounds(shape, schema)
    members = [m for m in schema.get("anyOf", []) if not _is_null(m)]
    if len(schema.get("anyOf", [])) != len(members):
        shape.nullable = True
    if members:
        _fill_union(shape, members, ui_type)
        return
    if schema.get("type") == "array":
        items = schema.get("items") or {}
        shape.kind = "collection"
        shape.item_kind = _base_kind(items, None) if isinstance(items, dict) else "any"
        if isinstance(items, dict):
            _take_choices(shape, items)
        return
    shape.kind = "any" if ui_type in _ANY_UI_TYPES else _base_kind(schema, ui_type)
    _take_choices(shape, schema)


def _fill_union(shape: Shape, members: list[dict[str, Any]], ui_type: str | None) -> None:
    """``X | null``, ``X | list[X]`` (single or collection), or something wider (any)."""
    if len(members) == 1:
        _fill(shape, members[0], ui_type)
        return
    singles = [m for m in members if m.get("type") != "array"]
    arrays = [m for m in members if m.get("type") == "array"]
    if len(singles) == 1 and len(arrays) == 1:
        _fill(shape, singles[0], ui_type)
        item = arrays[0].get("items") or {}
        if shape.kind == _base_kind(item, ui_type):
            shape.accepts_list = True
            return
    shape.kind = "any"


def classify_property(schema: dict[str, Any]) -> Shape:
    """Kind, item kind, nullability and constraints of one invocation property.

    Args:
        schema: the property's JSON schema, as found under the invocation's ``properties``.

    Returns:
        A ``Shape``; unknown shapes give kind ``"any"`` rather than an error.
    """
    shape = Shape()
    ui_type = schema.get("ui_type")
    _fill(shape, schema, ui_type if isinstance(ui_type, str) else None)
    if shape.kind == "collection" and ui_type == "CollectionField" and shape.item_kind is None:
        shape.item_kind = "any"
    return shape
