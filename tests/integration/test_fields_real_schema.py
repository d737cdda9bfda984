"""Fields typed from a real InvokeAI 6.14.2 schema, and their API shapes accepted by its queue."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from invokeai_py_client._http import HttpCore
from invokeai_py_client.exceptions import InputValidationError
from invokeai_py_client.fields import (
    FieldSpec,
    InvocationSchemas,
    IvkField,
    SchedulerName,
    field_class_for,
    load_invocation_schemas,
    make_field,
    parse_openapi,
)
from invokeai_py_client.fields._schema_cache import clear_memory_cache, schema_cache_path

pytestmark = pytest.mark.invokeai

TYPED_KINDS = {
    "string",
    "integer",
    "float",
    "boolean",
    "enum",
    "scheduler",
    "image",
    "board",
    "latents",
    "tensor",
    "model",
    "unet",
    "clip",
    "transformer",
    "lora",
    "color",
    "bounding_box",
    "collection",
}


@pytest.fixture(scope="module")
def openapi_document(invokeai_url: str) -> dict[str, Any]:
    response = httpx.get(f"{invokeai_url}/openapi.json", timeout=60)
    response.raise_for_status()
    document: dict[str, Any] = response.json()
    return document


@pytest.fixture(scope="module")
def schemas(openapi_document: dict[str, Any]) -> InvocationSchemas:
    started = time.perf_counter()
    parsed = parse_openapi(openapi_document, version="6.14.2")
    # Reported, not asserted: tests do not judge speed.
    print(f"\nparse_openapi: {(time.perf_counter() - started) * 1000:.1f} ms")
    return parsed


def spec(schemas: InvocationSchemas, node_type: str, name: str) -> FieldSpec:
    found = schemas.field(node_type, name)
    assert found is not None, f"{node_type}.{name} missing from the server's schema"
    return found


def test_every_invocation_is_read(
    schemas: InvocationSchemas, openapi_document: dict[str, Any]
) -> None:
    components = openapi_document["components"]["schemas"]
    invocations = [s for s in components.values() if s.get("class") == "invocation"]
    assert len(schemas.node_types) == len(invocations) > 250
    assert {"img_blur", "blank_image", "integer", "iterate", "collect"} <= schemas.node_types


def test_spot_checks(schemas: InvocationSchemas) -> None:
    radius = spec(schemas, "img_blur", "radius")
    assert (radius.kind, radius.minimum, radius.default) == ("float", 0.0, 8.0)
    mode = spec(schemas, "blank_image", "mode")
    assert (mode.kind, mode.choices, mode.default) == ("enum", ("RGB", "RGBA"), "RGB")
    value = spec(schemas, "integer", "value")
    assert (value.kind, value.default) == ("integer", 0)
    scheduler = spec(schemas, "denoise_latents", "scheduler")
    assert scheduler.kind == "scheduler" and scheduler.ui_type == "SchedulerField"
    assert scheduler.choices == tuple(s.value for s in SchedulerName)
    model = spec(schemas, "main_model_loader", "model")
    assert (model.kind, model.required, model.model_type) == ("model", True, ("main",))
    ints = spec(schemas, "integer_collection", "collection")
    assert (ints.kind, ints.item_kind) == ("collection", "integer")
    images = spec(schemas, "image_collection", "images")
    assert (images.kind, images.item_kind, images.input) == ("collection", "image", "direct")
    image = spec(schemas, "img_blur", "image")
    assert (image.kind, image.required, image.nullable) == ("image", True, True)
    board = spec(schemas, "img_blur", "board")
    assert (board.kind, board.input) == ("board", "direct")
    assert spec(schemas, "blank_image", "color").kind == "color"
    assert spec(schemas, "lora_selector", "lora").kind == "model"
    loras = spec(schemas, "lora_collection_loader", "loras")
    assert (loras.kind, loras.accepts_list) == ("lora", True)
    assert spec(schemas, "flux_denoise", "transformer").kind == "transformer"
    assert spec(schemas, "denoise_latents", "unet").kind == "unet"
    assert spec(schemas, "compel", "clip").kind == "clip"
    assert spec(schemas, "crop_image_to_bounding_box", "bounding_box").kind == "bounding_box"
    assert spec(schemas, "collect", "item").kind == "any"
    assert schemas.image_output_fields("img_blur") == frozenset({"image"})
    assert schemas.output_fields("add") == {"value": "integer"}


def test_every_field_of_every_invocation_becomes_a_typed_field(schemas: InvocationSchemas) -> None:
    total = 0
    for node_type in sorted(schemas.node_types):
        for name, field_spec in schemas.fields(node_type).items():
            total += 1
            assert field_spec.kind, f"{node_type}.{name} has no kind"
            field = make_field(field_spec, field_spec.default)
            assert field.kind == field_spec.kind
            if field_spec.kind in TYPED_KINDS:
                assert type(field) is field_class_for(field_spec.kind)
            if field_spec.default is not None:
                assert field.is_set(), f"{node_type}.{name}: server default does not fit"
    assert total > 1000


async def test_load_from_the_server_then_from_disk(
    invokeai_url: str, schemas: InvocationSchemas, tmp_path: Path
) -> None:
    downloads: list[str] = []

    class Counting(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == "/openapi.json":
                downloads.append(str(request.url))
            return await super().handle_async_request(request)

    def http() -> HttpCore:
        return HttpCore(
            base_url=invokeai_url,
            api_prefix="/api/v1",
            timeout=60,
            verify=True,
            max_retries=0,
            transport=Counting(),
        )

    clear_memory_cache()
    try:
        started = time.perf_counter()
        first = await load_invocation_schemas(http(), cache_dir=tmp_path)
        fetched = time.perf_counter() - started
        assert downloads == [f"{invokeai_url}/openapi.json"]
        assert first.version == "6.14.2" and first.node_types == schemas.node_types
        assert schema_cache_path(tmp_path, "6.14.2").is_file()

        clear_memory_cache()
        started = time.perf_counter()
        second = await load_invocation_schemas(http(), cache_dir=tmp_path)
        from_disk = time.perf_counter() - started
        assert len(downloads) == 1, "a second process must reuse the disk copy"
        for node_type in ("img_blur", "denoise_latents", "image_collection"):
            assert dict(second.fields(node_type)) == dict(schemas.fields(node_type))
        print(f"\nload: from server {fetched * 1000:.0f} ms, from disk {from_disk * 1000:.0f} ms")
    finally:
        clear_memory_cache()


# --- the server accepts what to_api() produces -------------------------------------------------


def _png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def paused_queue(invokeai_url: str) -> Iterator[httpx.Client]:
    """An HTTP client on the real server with the processor paused; cleared and resumed after."""
    with httpx.Client(base_url=f"{invokeai_url}/api/v1", timeout=60) as http:
        http.put("/queue/default/processor/pause").raise_for_status()
        try:
            yield http
        finally:
            http.put("/queue/default/clear").raise_for_status()
            http.put("/queue/default/processor/resume").raise_for_status()


@pytest.fixture
def uploaded_image(paused_queue: httpx.Client) -> str:
    response = paused_queue.post(
        "/images/upload",
        params={"image_category": "user", "is_intermediate": "false"},
        files={"file": ("fields-test.png", _png(), "image/png")},
    )
    assert response.status_code == 201, response.text
    name: str = response.json()["image_name"]
    return name


@pytest.fixture
def board_id(paused_queue: httpx.Client) -> Iterator[str]:
    response = paused_queue.post(
        "/boards/", params={"board_name": f"fields-{uuid.uuid4().hex[:8]}"}
    )
    response.raise_for_status()
    board: str = response.json()["board_id"]
    yield board
    paused_queue.delete(f"/boards/{board}")


def _typed(
    schemas: InvocationSchemas, node_type: str, name: str, value: Any, index: int
) -> IvkField[Any]:
    field = make_field(spec(schemas, node_type, name), None)
    field.bind(index=index, label=name, node_id=f"{node_type}-node", field_name=name)
    field.value = value
    return field


def _graph(schemas: InvocationSchemas, literals: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One node per entry, ``{node_type: {field: user value}}``, literals via our fields."""
    nodes: dict[str, Any] = {}
    for i, (node_type, values) in enumerate(literals.items()):
        node: dict[str, Any] = {"id": f"{node_type}-node", "type": node_type, "use_cache": False}
        for name, value in values.items():
            api = _typed(schemas, node_type, name, value, i).to_api()
            if api is not None:  # None means "send nothing" (board "auto"/"none")
                node[name] = api
        nodes[node["id"]] = node
    return {"id": f"fields-{uuid.uuid4().hex[:8]}", "nodes": nodes, "edges": []}


def _enqueue(http: httpx.Client, graph: dict[str, Any]) -> httpx.Response:
    body = {"batch": {"graph": graph, "runs": 1, "origin": "tests"}, "prepend": False}
    return http.post("/queue/default/enqueue_batch", json=body)


def test_server_accepts_the_api_shapes(
    schemas: InvocationSchemas, paused_queue: httpx.Client, uploaded_image: str, board_id: str
) -> None:
    lora_model = {"key": "k", "hash": "blake3:0", "name": "a-lora", "base": "sd-1", "type": "lora"}
    graph = _graph(
        schemas,
        {
            "image": {"image": uploaded_image},
            "img_blur": {
                "image": {"image_name": uploaded_image},
                "radius": 2,
                "blur_type": "box",
                "board": board_id,
            },
            "blank_image": {
                "width": 64.0,
                "height": 64,
                "mode": "RGBA",
                "color": "#336699cc",
                "board": "auto",
            },
            "string": {"value": "hello"},
            "boolean": {"value": True},
            "float": {"value": 3},
            "integer_collection": {"collection": [1, 2, 3]},
            "image_collection": {"images": [uploaded_image]},
            "scheduler": {"scheduler": SchedulerName.DPMPP_2M},
            "crop_image_to_bounding_box": {
                "image": uploaded_image,
                "bounding_box": {"x_min": 0, "x_max": 4, "y_min": 0, "y_max": 4},
            },
            "lora_selector": {"lora": lora_model, "weight": 0.75},
            "lora_collection_loader": {"loras": [{"lora": lora_model, "weight": 1}]},
        },
    )
    node = graph["nodes"]
    assert node["img_blur-node"]["board"] == {"board_id": board_id}
    assert "board" not in node["blank_image-node"]
    assert node["blank_image-node"]["color"] == {"r": 51, "g": 102, "b": 153, "a": 204}
    assert node["float-node"]["value"] == 3.0
    assert node["image_collection-node"]["images"] == [{"image_name": uploaded_image}]
    response = _enqueue(paused_queue, graph)
    assert response.status_code == 200, response.text
    assert response.json()["enqueued"] == 1


@pytest.mark.parametrize(
    ("node_type", "name", "bad"),
    [
        ("blank_image", "mode", "CMYK"),
        ("img_blur", "radius", -1),
        ("integer", "value", 7.5),
        ("scheduler", "scheduler", "warp_drive"),
        ("blank_image", "color", {"r": 300, "g": 0, "b": 0, "a": 255}),
    ],
)
def test_values_we_refuse_the_server_refuses_too(
    schemas: InvocationSchemas, paused_queue: httpx.Client, node_type: str, name: str, bad: Any
) -> None:
    with pytest.raises(InputValidationError) as info:
        _typed(schemas, node_type, name, bad, 7)
    assert f"input 7 '{name}' (node {node_type}-node, field {name})" in str(info.value)
    node = {"id": "n", "type": node_type, name: bad}
    if node_type == "img_blur":
        node["image"] = {"image_name": "whatever.png"}
    response = _enqueue(paused_queue, {"id": "g", "nodes": {"n": node}, "edges": []})
    assert response.status_code == 422, response.text
    assert name in json.dumps(response.json()["detail"])
