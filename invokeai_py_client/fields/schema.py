"""The server's own description of every invocation's inputs and outputs, parsed once.

``parse_openapi`` is pure: it reads the ``/openapi.json`` document (1.7 MB, 309 invocations in
InvokeAI 6.14.2) and keeps only what typing needs, as ``FieldSpec`` records.
``load_invocation_schemas`` is the I/O shell: it asks the server for its version and reuses a
parsed copy from memory or from ``~/.cache/invokeai-py-client/schemas/`` before downloading the
document again.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ._classify import classify_property

if TYPE_CHECKING:
    from pathlib import Path

    from .._http import HttpCore
    from .base import IvkField

__all__ = [
    "SLIM_FORMAT",
    "FieldSpec",
    "InvocationSchemas",
    "load_invocation_schemas",
    "parse_openapi",
]

SLIM_FORMAT = 1
"""Version of the slim on-disk form; bump it when ``FieldSpec`` changes shape."""

# Inputs with these ``field_kind`` values are real inputs; "node_attribute" (id, type,
# is_intermediate, use_cache) belongs to the node, not to a form.
_INPUT_FIELD_KINDS = frozenset({"input", "internal"})


@dataclass(frozen=True)
class FieldSpec:
    """One input of one invocation type, as the server's schema describes it.

    ``kind`` names the value's type: ``string``, ``integer``, ``float``, ``boolean``, ``enum``,
    ``scheduler``, ``image``, ``board``, ``latents``, ``tensor``, ``model``, ``unet``, ``clip``,
    ``transformer``, ``lora``, ``color``, ``bounding_box``, ``collection`` (see ``item_kind``),
    ``conditioning``, ``vae``, ``metadata``, ``dict``, ``any``, or the snake-case name of any other
    struct the server defines (``flux_conditioning``, ...). ``accepts_list`` marks inputs that
    take one value or a list of them (``LoRAField | list[LoRAField]``). ``required`` is the
    node's own requirement (InvokeAI's ``orig_required``), not the schema's, which makes every
    input optional so that edges can feed it.
    """

    node_type: str
    name: str
    kind: str
    title: str = ""
    description: str = ""
    default: Any = None
    required: bool = False
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    item_kind: str | None = None
    input: str = "any"
    ui_type: str | None = None
    nullable: bool = False
    multiple_of: float | None = None
    accepts_list: bool = False
    model_base: tuple[str, ...] | None = None
    model_type: tuple[str, ...] | None = None

    @functools.cached_property
    def field_templates(self) -> dict[type[IvkField[Any]], IvkField[Any]]:
        """One field per field class made from this spec, which ``IvkField.from_spec`` copies.

        Kept outside the dataclass fields: it takes no part in equality, hashing or
        ``to_dict``.
        """
        return {}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, without members that hold their default (keeps the cache small)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default or f.name in ("node_type", "name", "kind"):
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldSpec:
        """Inverse of ``to_dict``."""
        tuples = ("choices", "model_base", "model_type")
        fixed: dict[str, Any] = {
            k: (tuple(v) if k in tuples and v is not None else v) for k, v in data.items()
        }
        return cls(**fixed)


@dataclass(frozen=True)
class _NodeSchema:
    fields: Mapping[str, FieldSpec]
    outputs: Mapping[str, FieldSpec]


@dataclass(frozen=True)
class InvocationSchemas:
    """Inputs and outputs of every invocation type one server knows, by node type."""

    nodes: Mapping[str, _NodeSchema] = field(default_factory=dict)
    version: str | None = None

    @functools.cached_property
    def node_types(self) -> frozenset[str]:
        """Every invocation type (``"img_blur"``, ``"integer"``, ...)."""
        return frozenset(self.nodes)

    def field(self, node_type: str, name: str) -> FieldSpec | None:
        """The spec of one input, or None for an unknown node type or input."""
        node = self.nodes.get(node_type)
        return node.fields.get(name) if node else None

    def fields(self, node_type: str) -> Mapping[str, FieldSpec]:
        """Every input of a node type, in schema order (empty for an unknown type)."""
        node = self.nodes.get(node_type)
        return node.fields if node else MappingProxyType({})

    def output_specs(self, node_type: str) -> Mapping[str, FieldSpec]:
        """Every output of a node type, as specs (``kind``, ``item_kind``)."""
        node = self.nodes.get(node_type)
        return node.outputs if node else MappingProxyType({})

    def output_fields(self, node_type: str) -> Mapping[str, str]:
        """Output field name -> kind (``{"image": "image", "width": "integer", ...}``)."""
        return {name: spec.kind for name, spec in self.output_specs(node_type).items()}

    def image_output_fields(self, node_type: str) -> frozenset[str]:
        """Outputs that carry images: a single image or a collection of them."""
        return frozenset(
            name
            for name, spec in self.output_specs(node_type).items()
            if spec.kind == "image" or spec.item_kind == "image"
        )

    def to_slim(self) -> dict[str, Any]:
        """The parsed form as plain JSON data (what the disk cache stores)."""
        return {
            "format": SLIM_FORMAT,
            "version": self.version,
            "nodes": {
                node_type: {
                    "fields": [s.to_dict() for s in node.fields.values()],
                    "outputs": [s.to_dict() for s in node.outputs.values()],
                }
                for node_type, node in self.nodes.items()
            },
        }

    @classmethod
    def from_slim(cls, data: Mapping[str, Any]) -> InvocationSchemas:
        """Inverse of ``to_slim``; raises ``ValueError`` for another format."""
        if data.get("format") != SLIM_FORMAT:
            raise ValueError(f"unsupported schema cache format {data.get('format')!r}")
        nodes = {
            node_type: _NodeSchema(
                fields=_by_name(FieldSpec.from_dict(d) for d in node["fields"]),
                outputs=_by_name(FieldSpec.from_dict(d) for d in node["outputs"]),
            )
            for node_type, node in data["nodes"].items()
        }
        return cls(nodes=MappingProxyType(nodes), version=data.get("version"))


def _by_name(specs: Iterable[FieldSpec]) -> Mapping[str, FieldSpec]:
    return MappingProxyType({s.name: s for s in specs})


def _tuple_or_none(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(value) if isinstance(value, list) else (str(value),)


def spec_from_property(node_type: str, name: str, prop: Mapping[str, Any]) -> FieldSpec:
    """Build the ``FieldSpec`` of one property (pure; exposed for tests and custom nodes)."""
    shape = classify_property(dict(prop))
    ui_type = prop.get("ui_type")
    return FieldSpec(
        node_type=node_type,
        name=name,
        kind=shape.kind,
        title=str(prop.get("title") or name),
        description=str(prop.get("description") or ""),
        default=prop.get("default"),
        required=bool(prop.get("orig_required", False)),
        choices=shape.choices,
        minimum=shape.minimum,
        maximum=shape.maximum,
        exclusive_minimum=shape.exclusive_minimum,
        exclusive_maximum=shape.exclusive_maximum,
        min_length=shape.min_length,
        max_length=shape.max_length,
        item_kind=shape.item_kind,
        input=str(prop.get("input", "any")),
        ui_type=ui_type if isinstance(ui_type, str) else None,
        nullable=shape.nullable,
        multiple_of=shape.multiple_of,
        accepts_list=shape.accepts_list,
        model_base=_tuple_or_none(prop.get("ui_model_base")),
        model_type=_tuple_or_none(prop.get("ui_model_type")),
    )


def _node_type_of(schema: Mapping[str, Any]) -> str | None:
    type_prop = schema.get("properties", {}).get("type", {})
    node_type = type_prop.get("const", type_prop.get("default"))
    return node_type if isinstance(node_type, str) else None


def _output_specs(
    node_type: str, schema: Mapping[str, Any], components: Mapping[str, Any]
) -> Mapping[str, FieldSpec]:
    ref = schema.get("output", {}).get("$ref", "")
    output = components.get(ref.rsplit("/", 1)[-1], {}) if ref else {}
    return _by_name(
        spec_from_property(node_type, name, prop)
        for name, prop in output.get("properties", {}).items()
        if prop.get("field_kind") == "output"
    )


def parse_openapi(document: Mapping[str, Any], *, version: str | None = None) -> InvocationSchemas:
    """Read every invocation's inputs and outputs from the server's OpenAPI document.

    Args:
        document: the parsed ``/openapi.json``.
        version: the server's version, recorded on the result (the document's own
            ``info.version`` is the API's, always "1.0.0").

    Returns:
        ``InvocationSchemas`` keyed by node type (the ``type`` literal of each invocation).
    """
    components: Mapping[str, Any] = document.get("components", {}).get("schemas", {})
    nodes: dict[str, _NodeSchema] = {}
    for schema in components.values():
        if not isinstance(schema, dict) or schema.get("class") != "invocation":
            continue
        node_type = _node_type_of(schema)
        if node_type is None:
            continue
        inputs = _by_name(
            spec_from_property(node_type, name, prop)
            for name, prop in schema.get("properties", {}).items()
            if prop.get("field_kind") in _INPUT_FIELD_KINDS
        )
        nodes[node_type] = _NodeSchema(inputs, _output_specs(node_type, schema, components))
    return InvocationSchemas(nodes=MappingProxyType(nodes), version=version)


async def load_invocation_schemas(
    http: HttpCore,
    *,
    cache_dir: Path | None = None,
    require: Iterable[str] = (),
) -> InvocationSchemas:
    """The server's invocation schemas, from memory, disk, or ``/openapi.json``, in that order.

    The cache key is the server's version (``GET /app/version``). A node pack can add node types
    without changing the version, so a cached copy that lacks any of ``require`` is refreshed,
    once: types still missing after a fresh download are remembered as absent for that server
    and version (until ``clear_memory_cache``), and asking for them again downloads nothing.
    So the result may lack some of ``require``; those types are not on the server.

    Args:
        http: the client's HTTP shell.
        cache_dir: where parsed schemas are kept (default ``~/.cache/invokeai-py-client/schemas``,
            or ``$INVOKEAI_PY_CLIENT_CACHE_DIR/schemas``).
        require: node types the caller needs (those of a workflow).

    Raises:
        APIConnectionError, APIStatusError: when the server cannot be asked.
    """
    from ._schema_cache import load_cached_or_fetch

    return await load_cached_or_fetch(http, cache_dir=cache_dir, require=frozenset(require))
