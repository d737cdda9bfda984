"""Parsing invocation schemas (pure) and caching them in memory and on disk (fake server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from invokeai_py_client._http import HttpCore
from invokeai_py_client.fields import FieldSpec, InvocationSchemas, parse_openapi
from invokeai_py_client.fields._classify import classify_property, ref_kind
from invokeai_py_client.fields._schema_cache import (
    clear_memory_cache,
    schema_cache_path,
)
from invokeai_py_client.fields.schema import load_invocation_schemas

REF = "#/components/schemas/"


def _node(node_type: str, output: str, **props: dict[str, Any]) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "id": {"type": "string", "field_kind": "node_attribute"},
        "use_cache": {"type": "boolean", "default": True, "field_kind": "node_attribute"},
        **{name: {"field_kind": "input", "input": "any", **p} for name, p in props.items()},
        "type": {"const": node_type, "default": node_type, "field_kind": "node_attribute"},
    }
    return {"class": "invocation", "properties": properties, "output": {"$ref": REF + output}}


def make_document() -> dict[str, Any]:
    """A small OpenAPI document with the property shapes InvokeAI 6.14 uses."""
    nullable_image = {"anyOf": [{"$ref": REF + "ImageField"}, {"type": "null"}], "default": None}
    schemas = {
        "BlurInvocation": _node(
            "img_blur",
            "ImageOutput",
            board={
                "anyOf": [{"$ref": REF + "BoardField"}, {"type": "null"}],
                "field_kind": "internal",
                "input": "direct",
            },
            image={**nullable_image, "orig_required": True, "title": "Image"},
            radius={"type": "number", "minimum": 0, "default": 8.0, "title": "Radius"},
            blur_type={"type": "string", "enum": ["gaussian", "box"], "default": "gaussian"},
        ),
        "DenoiseInvocation": _node(
            "denoise",
            "IntegerOutput",
            scheduler={"type": "string", "enum": ["euler", "ddim"], "ui_type": "SchedulerField"},
            cfg={"type": "number", "minimum": 0, "exclusiveMaximum": 1, "default": 0},
            width={"type": "integer", "multipleOf": 8, "exclusiveMinimum": 0, "default": 512},
            weight={
                "anyOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}}],
                "ge": -1,
                "le": 2,
            },
            loras={
                "anyOf": [
                    {"$ref": REF + "LoRAField"},
                    {"type": "array", "items": {"$ref": REF + "LoRAField"}},
                    {"type": "null"},
                ]
            },
            model={
                "anyOf": [{"$ref": REF + "ModelIdentifierField"}, {"type": "null"}],
                "ui_model_base": ["sd-1", "sdxl"],
                "ui_model_type": ["main"],
                "orig_required": True,
            },
            floats={
                "anyOf": [
                    {"type": "array", "items": {"type": "number"}, "minItems": 1},
                    {"type": "null"},
                ]
            },
            anything={"anyOf": [{}, {"type": "null"}], "ui_type": "AnyField"},
            items={"type": "array", "items": {}, "ui_type": "CollectionField", "default": []},
            vit={"const": "ViT-L", "type": "string"},
            cond={"anyOf": [{"$ref": REF + "FluxConditioningField"}, {"type": "null"}]},
            images={
                "anyOf": [
                    {
                        "anyOf": [
                            {"type": "array", "items": {"$ref": REF + "ImageField"}},
                            {"$ref": REF + "ImageField"},
                        ],
                        "maxLength": 3,
                    },
                    {"type": "null"},
                ]
            },
            mixed={"anyOf": [{"type": "string"}, {"type": "integer"}]},
        ),
        "ImageOutput": {
            "class": "output",
            "properties": {
                "image": {"$ref": REF + "ImageField", "field_kind": "output"},
                "width": {"type": "integer", "field_kind": "output"},
                "type": {"const": "image_output", "field_kind": "node_attribute"},
            },
        },
        "IntegerOutput": {
            "class": "output",
            "properties": {"value": {"type": "integer", "field_kind": "output"}},
        },
        "ImageField": {"type": "object", "properties": {"image_name": {"type": "string"}}},
    }
    return {"openapi": "3.1.0", "info": {"version": "1.0.0"}, "components": {"schemas": schemas}}


@pytest.fixture(scope="module")
def schemas() -> InvocationSchemas:
    return parse_openapi(make_document(), version="9.9.9")


def test_node_types_and_attributes_excluded(schemas: InvocationSchemas) -> None:
    assert schemas.node_types == frozenset({"img_blur", "denoise"})
    assert list(schemas.fields("img_blur")) == ["board", "image", "radius", "blur_type"]
    assert schemas.field("img_blur", "use_cache") is None
    assert schemas.field("nope", "x") is None and dict(schemas.fields("nope")) == {}
    assert schemas.version == "9.9.9"


def test_simple_kinds_and_bounds(schemas: InvocationSchemas) -> None:
    radius = schemas.field("img_blur", "radius")
    assert radius == FieldSpec(
        "img_blur", "radius", "float", title="Radius", default=8.0, minimum=0.0
    )
    blur_type = schemas.field("img_blur", "blur_type")
    assert blur_type is not None and blur_type.kind == "enum"
    assert blur_type.choices == ("gaussian", "box")
    cfg = schemas.field("denoise", "cfg")
    assert cfg is not None and (cfg.minimum, cfg.exclusive_maximum) == (0.0, 1.0)
    width = schemas.field("denoise", "width")
    assert width is not None and (width.multiple_of, width.exclusive_minimum) == (8.0, 0.0)


def test_image_is_nullable_but_required(schemas: InvocationSchemas) -> None:
    image = schemas.field("img_blur", "image")
    assert image is not None
    assert (image.kind, image.nullable, image.required, image.title) == (
        "image",
        True,
        True,
        "Image",
    )
    board = schemas.field("img_blur", "board")
    assert board is not None and (board.kind, board.input) == ("board", "direct")


def test_scheduler_model_and_single_or_list(schemas: InvocationSchemas) -> None:
    def spec(name: str) -> FieldSpec:
        found = schemas.field("denoise", name)
        assert found is not None
        return found

    assert spec("scheduler").kind == "scheduler" and spec("scheduler").choices == ("euler", "ddim")
    model = spec("model")
    assert (model.kind, model.model_base, model.model_type) == (
        "model",
        ("sd-1", "sdxl"),
        ("main",),
    )
    weight = spec("weight")
    assert (weight.kind, weight.accepts_list, weight.minimum, weight.maximum) == (
        "float",
        True,
        -1.0,
        2.0,
    )
    assert (spec("loras").kind, spec("loras").accepts_list) == ("lora", True)
    images = spec("images")
    assert (images.kind, images.accepts_list, images.max_length) == ("image", True, 3)


def test_collections_any_const_and_other_structs(schemas: InvocationSchemas) -> None:
    floats = schemas.field("denoise", "floats")
    assert floats is not None
    assert (floats.kind, floats.item_kind, floats.min_length) == ("collection", "float", 1)
    items = schemas.field("denoise", "items")
    assert items is not None and (items.kind, items.item_kind) == ("collection", "any")
    anything = schemas.field("denoise", "anything")
    assert anything is not None and anything.kind == "any"
    vit = schemas.field("denoise", "vit")
    assert vit is not None and (vit.kind, vit.choices) == ("enum", ("ViT-L",))
    cond = schemas.field("denoise", "cond")
    assert cond is not None and cond.kind == "flux_conditioning"
    mixed = schemas.field("denoise", "mixed")
    assert mixed is not None and mixed.kind == "any"


def test_outputs(schemas: InvocationSchemas) -> None:
    assert dict(schemas.output_fields("img_blur")) == {"image": "image", "width": "integer"}
    assert schemas.image_output_fields("img_blur") == frozenset({"image"})
    assert schemas.image_output_fields("denoise") == frozenset()


@pytest.mark.parametrize(
    ("ref", "kind"),
    [
        ("ImageField", "image"),
        ("ModelIdentifierField", "model"),
        ("BoundingBoxField", "bounding_box"),
        ("T2IAdapterField", "t2i_adapter"),
        ("ControlLoRAField", "control_lora"),
        ("SD3ConditioningField", "sd3_conditioning"),
        ("Tile", "tile"),
    ],
)
def test_ref_kinds(ref: str, kind: str) -> None:
    assert ref_kind(REF + ref) == kind


def test_unknown_shapes_become_any() -> None:
    assert classify_property({}).kind == "any"
    assert classify_property({"type": "object", "additionalProperties": True}).kind == "dict"
    assert classify_property({"anyOf": [{"type": "null"}]}).nullable


def test_slim_round_trip(schemas: InvocationSchemas) -> None:
    slim = json.loads(json.dumps(schemas.to_slim()))
    again = InvocationSchemas.from_slim(slim)
    assert again.node_types == schemas.node_types and again.version == "9.9.9"
    for node_type in schemas.node_types:
        assert dict(again.fields(node_type)) == dict(schemas.fields(node_type))
        assert dict(again.output_specs(node_type)) == dict(schemas.output_specs(node_type))
    with pytest.raises(ValueError, match="format"):
        InvocationSchemas.from_slim({**slim, "format": 999})


# --- loading and caching against a fake server ---------------------------------------------------


class FakeServer:
    """Answers /api/v1/app/version and /openapi.json, counting the schema downloads."""

    def __init__(self, version: str = "9.9.9") -> None:
        self.version = version
        self.document = make_document()
        self.downloads = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/app/version":
            return httpx.Response(200, json={"version": self.version})
        if request.url.path == "/openapi.json":
            self.downloads += 1
            return httpx.Response(200, json=self.document)
        return httpx.Response(404, json={"detail": "Not Found"})

    def http(self) -> HttpCore:
        return HttpCore(
            base_url="http://fake-invokeai",
            api_prefix="/api/v1",
            timeout=5.0,
            verify=True,
            max_retries=0,
            transport=httpx.MockTransport(self.handler),
        )


@pytest.fixture(autouse=True)
def _fresh_memory_cache() -> None:
    clear_memory_cache()


async def test_load_caches_in_memory_and_on_disk(tmp_path: Path) -> None:
    server = FakeServer()
    http = server.http()
    first = await load_invocation_schemas(http, cache_dir=tmp_path)
    assert server.downloads == 1 and first.version == "9.9.9"
    path = schema_cache_path(tmp_path, "9.9.9")
    assert path.is_file() and path.stat().st_size < len(json.dumps(server.document))
    assert await load_invocation_schemas(http, cache_dir=tmp_path) is first
    assert server.downloads == 1

    clear_memory_cache()  # as a second client process would start
    second = await load_invocation_schemas(server.http(), cache_dir=tmp_path)
    assert server.downloads == 1, "the disk copy must be reused"
    assert second.node_types == first.node_types
    assert dict(second.fields("denoise")) == dict(first.fields("denoise"))


async def test_cache_is_per_version_and_refreshed_for_missing_node_types(tmp_path: Path) -> None:
    server = FakeServer()
    await load_invocation_schemas(server.http(), cache_dir=tmp_path)
    server.version = "10.0.0"
    await load_invocation_schemas(server.http(), cache_dir=tmp_path)
    assert server.downloads == 2
    assert schema_cache_path(tmp_path, "10.0.0").is_file()

    # A node pack added a node type without changing the version.
    server.document["components"]["schemas"]["NewInvocation"] = _node(
        "new_node", "IntegerOutput", value={"type": "integer"}
    )
    clear_memory_cache()
    loaded = await load_invocation_schemas(server.http(), cache_dir=tmp_path, require=["new_node"])
    assert server.downloads == 3 and "new_node" in loaded.node_types
    clear_memory_cache()
    again = await load_invocation_schemas(server.http(), cache_dir=tmp_path, require=["new_node"])
    assert server.downloads == 3 and "new_node" in again.node_types


async def test_a_broken_cache_file_is_replaced(tmp_path: Path) -> None:
    server = FakeServer()
    path = schema_cache_path(tmp_path, "9.9.9")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{not json", encoding="utf-8")
    loaded = await load_invocation_schemas(server.http(), cache_dir=tmp_path)
    assert server.downloads == 1 and "img_blur" in loaded.node_types
    assert InvocationSchemas.from_slim(json.loads(path.read_text())).node_types == loaded.node_types


def test_cache_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from invokeai_py_client.fields._schema_cache import default_cache_dir

    monkeypatch.setenv("INVOKEAI_PY_CLIENT_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "schemas"
    assert schema_cache_path(tmp_path, "6.14.2/x").name == "invokeai-6.14.2_x.v1.json"
