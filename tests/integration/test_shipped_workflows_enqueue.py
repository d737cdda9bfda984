"""The workflow core against a real InvokeAI 6.14.2.

Every workflow InvokeAI ships is either accepted by the real ``enqueue_batch`` (with the
processor paused, so nothing runs) or refused by ``build_graph`` before sending, naming the
node and the reason. Then our own model-free workflows really run, and their queue items
are mapped to output images and values. Plain httpx on purpose: this checks the pure core,
not the repositories.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from invokeai_py_client.exceptions import WorkflowValidationError
from invokeai_py_client.workflow.definition import WorkflowDefinition
from invokeai_py_client.workflow.graph import build_batch, build_graph
from invokeai_py_client.workflow.inputs import discover_inputs, edge_fed_fields
from invokeai_py_client.workflow.outputs import map_output_values, map_outputs_to_images
from tests.client.workflow_files import REFUSED_SHIPPED, all_files, own

pytestmark = pytest.mark.invokeai

Values = dict[tuple[str, str], Any]


@pytest.fixture(scope="module")
def api(invokeai_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{invokeai_url}/api/v1", timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def invocation_schemas(invokeai_url: str) -> dict[str, dict[str, Any]]:
    """Invocation schemas of the server's /openapi.json, keyed by their ``type`` const."""
    schemas = httpx.get(f"{invokeai_url}/openapi.json", timeout=60).json()["components"]["schemas"]
    by_type = {}
    for schema in schemas.values():
        type_prop = schema.get("properties", {}).get("type", {})
        if schema.get("class") == "invocation" and "const" in type_prop:
            by_type[type_prop["const"]] = schema
    assert len(by_type) > 250
    return by_type


@pytest.fixture
def paused_queue(api: httpx.Client) -> Iterator[None]:
    api.put("/queue/default/processor/pause").raise_for_status()
    try:
        yield
    finally:
        api.put("/queue/default/clear").raise_for_status()
        api.put("/queue/default/processor/resume").raise_for_status()


@pytest.fixture
def running_queue(api: httpx.Client) -> None:
    api.put("/queue/default/processor/resume").raise_for_status()


@pytest.fixture(scope="module")
def uploaded_image(api: httpx.Client) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (120, 30, 200)).save(buf, format="PNG")
    response = api.post(
        "/images/upload",
        params={"image_category": "user", "is_intermediate": "false"},
        files={"file": ("probe.png", buf.getvalue(), "image/png")},
    )
    assert response.status_code == 201, response.text
    name: str = response.json()["image_name"]
    return name


def _stand_in(prop: Mapping[str, Any], image_name: str) -> Any:
    """A syntactically valid value for a required input the server checks at enqueue."""
    ref = str(prop.get("$ref", ""))
    if ref.endswith("/ModelIdentifierField"):
        base = (prop.get("ui_model_base") or ["any"])[0]
        kind = (prop.get("ui_model_type") or ["main"])[0]
        return {
            "key": f"stand-in-{base}-{kind}",
            "hash": "blake3:0",
            "name": "stand-in",
            "base": base,
            "type": kind,
        }
    if ref.endswith("/ImageField"):
        return {"image_name": image_name}
    raise AssertionError(f"no stand-in for a required input of shape {prop}")


def _required_stand_ins(
    defn: WorkflowDefinition, schemas: Mapping[str, Mapping[str, Any]], image_name: str
) -> Values:
    """Values for the required inputs the graph would leave empty (model pickers mostly)."""
    graph = build_graph(defn)
    fed = edge_fed_fields(defn.edges)
    values: Values = {}
    for node_id, node in graph["nodes"].items():
        schema = schemas[node["type"]]
        for name in schema.get("required", []):
            if name not in ("id", "type") and name not in node and (node_id, name) not in fed:
                values[node_id, name] = _stand_in(schema["properties"][name], image_name)
    return values


def _enqueue(
    api: httpx.Client, defn: WorkflowDefinition, values: Values | None = None, **kw: Any
) -> dict[str, Any]:
    graph = build_graph(defn, values, **kw)
    body = build_batch(
        defn, graph, batch_id=str(uuid.uuid4()), origin="h1-tests", destination="t", values=values
    )
    response = api.post("/queue/default/enqueue_batch", json=body)
    assert response.status_code == 200, f"{defn.name}: {response.text[:2000]}"
    result: dict[str, Any] = response.json()
    return result


def test_every_shipped_workflow_is_accepted_or_refused_by_node(
    api: httpx.Client,
    paused_queue: None,
    invocation_schemas: dict[str, dict[str, Any]],
    uploaded_image: str,
    shipped_workflows_dir: Path,
    example_workflows: list[Path],
) -> None:
    known = set(invocation_schemas)
    files = all_files(shipped_workflows_dir)
    assert len(files) == 26
    accepted, refused = [], {}
    for path in [*files, *example_workflows]:
        defn = WorkflowDefinition.from_file(path)
        assert discover_inputs(defn), path.name
        try:
            build_graph(defn, known_node_types=known)
        except WorkflowValidationError as exc:
            refused[path.name] = exc.problems
            continue
        values = _required_stand_ins(defn, invocation_schemas, uploaded_image)
        result = _enqueue(api, defn, values, known_node_types=known)
        assert result["enqueued"] == 1 and len(result["item_ids"]) == 1
        item = api.get(f"/queue/default/i/{result['item_ids'][0]}").json()
        assert item["status"] == "pending"  # the processor is paused: nothing ran
        assert set(item["session"]["graph"]["nodes"]) <= set(defn.nodes_by_id())
        accepted.append(path.name)
    assert set(refused) == set(REFUSED_SHIPPED)
    assert len(accepted) == 26 - len(REFUSED_SHIPPED) + 3
    for name, node_type in REFUSED_SHIPPED.items():
        defn = WorkflowDefinition.from_file(shipped_workflows_dir / name)
        for problem in refused[name]:
            node_id = problem.split()[1]
            node = defn.invocation_node(node_id)
            assert node is not None, problem  # each problem names a real node ...
            assert node["data"]["type"] in problem  # ... and its type
        assert any(node_type in p for p in refused[name])


def _wait(api: httpx.Client, item_id: int, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item: dict[str, Any] = api.get(f"/queue/default/i/{item_id}").json()
        if item["status"] in ("completed", "failed", "canceled"):
            assert item["status"] == "completed", item.get("error_traceback")
            return item
        time.sleep(0.05)
    raise AssertionError(f"queue item {item_id} did not finish in {timeout} s")


def _run(api: httpx.Client, defn: WorkflowDefinition, values: Values | None = None) -> list[Any]:
    result = _enqueue(api, defn, values)
    return [_wait(api, item_id) for item_id in result["item_ids"]]


def _image_dto(api: httpx.Client, name: str) -> dict[str, Any]:
    response = api.get(f"/images/i/{name}")
    response.raise_for_status()
    dto: dict[str, Any] = response.json()
    return dto


def test_iterate_fan_out_maps_to_several_images(api: httpx.Client, running_queue: None) -> None:
    defn = own("iterate_fanout.json")
    [item] = _run(api, defn, {("it-range", "stop"): 4})
    [out] = map_outputs_to_images(defn, item)
    assert (out.node_id, out.label) == ("it-blank", "Tile")
    assert len(set(out.image_names)) == 4
    # Widths 16 + item, so the order of the names is the iteration order.
    assert [_image_dto(api, n)["width"] for n in out.image_names] == [16, 17, 18, 19]
    values = {v.node_id: v.results for v in map_output_values(defn, item)}
    assert [r["value"] for r in values["it-add"]] == [16, 17, 18, 19]


def test_nested_form_outputs_with_values_and_a_board(
    api: httpx.Client, running_queue: None
) -> None:
    board = api.post("/boards/", params={"board_name": f"h1-{uuid.uuid4().hex[:8]}"})
    board.raise_for_status()
    board_id = board.json()["board_id"]
    try:
        defn = own("nested_form.json")
        values = {("nf-resize", "width"): 40, ("nf-blur", "board"): {"board_id": board_id}}
        [item] = _run(api, defn, values)
        outputs = {o.node_id: o for o in map_outputs_to_images(defn, item)}
        assert set(outputs) == {"nf-blur", "nf-resize"}  # nf-blank is intermediate
        assert outputs["nf-blur"].board_id == board_id
        assert outputs["nf-resize"].board_id is None  # "auto" in the file: no board sent
        [blur_name] = outputs["nf-blur"].image_names
        assert _image_dto(api, blur_name)["board_id"] == board_id
        [resized] = outputs["nf-resize"].image_names
        assert (_image_dto(api, resized)["width"], _image_dto(api, resized)["height"]) == (40, 24)
    finally:
        api.delete(f"/boards/{board_id}", params={"include_images": "true"})


def test_connector_and_stale_edge_fed_literal(api: httpx.Client, running_queue: None) -> None:
    defn = own("collapsed_notes_connector.json")
    # The file keeps width 0 on the resize node (fed by an edge); sending it would be refused.
    [item] = _run(api, defn, {("cn-int", "value"): 28})
    [out] = map_outputs_to_images(defn, item)
    assert out.node_id == "cn-resize"
    [name] = out.image_names
    assert _image_dto(api, name)["width"] == 28


def test_string_values_of_a_schema_3_workflow(api: httpx.Client, running_queue: None) -> None:
    defn = own("exposed_only_v3.json")
    [item] = _run(api, defn, {("ex-left", "value"): f"bye-{uuid.uuid4().hex[:6]} "})
    assert map_outputs_to_images(defn, item) == []
    values = {v.node_id: v.results for v in map_output_values(defn, item)}
    [joined] = values["ex-join"]
    assert joined["value"].startswith("bye-") and joined["value"].endswith(" world")
    assert values["ex-int"] == [{"value": 7, "type": "integer_output"}]


def test_batch_node_items_become_queue_items(api: httpx.Client, running_queue: None) -> None:
    defn = own("integer_batch.json")
    items = _run(api, defn, {("bt-widths", "integers"): [12, 20, 28]})
    widths = set()
    for item in items:
        [out] = map_outputs_to_images(defn, item)
        widths.add(_image_dto(api, out.image_names[0])["width"])
    assert widths == {12, 20, 28}
