"""WorkflowRepository and WorkflowHandle on a real server: inputs, preview, index maps, models."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from invokeai_py_client import (
    InputValidationError,
    InvokeAIClient,
    IvkDnnModel,
    WorkflowValidationError,
)
from invokeai_py_client.fields.base import IvkField
from invokeai_py_client.workflow.definition import WorkflowDefinition
from invokeai_py_client.workflow.handle import IvkWorkflowInput, WorkflowHandle

pytestmark = pytest.mark.invokeai

WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"


def load(name: str) -> WorkflowDefinition:
    return WorkflowDefinition.from_file(WORKFLOWS / f"{name}.json")


@pytest.fixture
def blur(client: InvokeAIClient) -> WorkflowHandle:
    return client.workflow_repo.create_workflow(load("blur_blank_canvas"))


def test_list_inputs_in_form_order_typed_from_the_server(blur: WorkflowHandle) -> None:
    inputs = blur.list_inputs()
    assert [(i.input_index, i.node_id, i.field_name) for i in inputs] == [
        (0, "blur-canvas", "width"),
        (1, "blur-canvas", "height"),
        (2, "blur-image", "radius"),
        (3, "blur-image", "blur_type"),
    ]
    width, height, radius, blur_type = inputs
    assert isinstance(width, IvkWorkflowInput) and isinstance(width.field, IvkField)
    # The file's own label first, else the server schema's title.
    assert (width.label, height.label) == ("Width", "Height")
    assert width.node_name == "Canvas" and width.node_type == "blank_image"
    assert width.field.value == 64 and width.required is False
    assert type(width.field).__name__ == "IvkIntegerField"
    assert type(radius.field).__name__ == "IvkFloatField" and radius.field.value == 2.0
    assert set(blur_type.field.choices or ()) == {"gaussian", "box"}
    assert blur.get_input(2) is radius


def test_get_input_out_of_range_says_how_many(blur: WorkflowHandle) -> None:
    with pytest.raises(IndexError, match="4 inputs"):
        blur.get_input(4)


def test_live_field_and_set_input_value_reach_the_preview(blur: WorkflowHandle) -> None:
    blur.get_input_value(0).value = 96
    blur.set_input_value(3, "box")
    body = blur.preview()
    nodes = body["batch"]["graph"]["nodes"]
    assert nodes["blur-canvas"]["width"] == 96 and nodes["blur-image"]["blur_type"] == "box"
    # The edge-fed image is never sent as a literal.
    assert "image" not in nodes["blur-image"]
    assert body["batch"]["origin"] == "invokeai_py_client"
    assert body["batch"]["batch_id"] != blur.preview()["batch"]["batch_id"]


def test_bad_values_raise_naming_index_and_label(blur: WorkflowHandle) -> None:
    with pytest.raises(InputValidationError) as info:
        blur.set_input_value(0, 7.5)
    assert info.value.index == 0 and info.value.label == "Width"
    with pytest.raises(InputValidationError) as info:
        blur.get_input_value(3).value = "zigzag"
    assert info.value.index == 3 and "Blur Type" in str(info.value)
    assert blur.get_input_value(0).value == 64  # the old value stays


def test_preview_sends_nothing(client: InvokeAIClient, blur: WorkflowHandle) -> None:
    before = client.queue_repo.get_queue_status().queue.total
    blur.preview()
    assert client.queue_repo.get_queue_status().queue.total == before
    assert blur.runs == [] and blur.latest_run is None


def test_validate_inputs_reports_required_inputs_without_value(client: InvokeAIClient) -> None:
    wf = client.workflow_repo.create_workflow(load("blur_missing_image"))
    image = wf.get_input(0)
    assert image.required and image.field_name == "image"
    assert wf.validate_inputs() == []
    image.field.value = None
    problems = wf.validate_inputs()
    assert len(problems) == 1 and problems[0].startswith("input 0")
    with pytest.raises(InputValidationError) as info:
        wf.submit_sync()
    assert info.value.index == 0 and info.value.field_name == "image"
    with pytest.raises(InputValidationError):
        wf.preview()


async def test_acreate_workflow_from_dict_and_path(aclient: InvokeAIClient) -> None:
    from_dict = await aclient.workflow_repo.acreate_workflow(load("add_two_integers").to_dict())
    from_path = await aclient.workflow_repo.acreate_workflow(WORKFLOWS / "add_two_integers.json")
    assert [i.label for i in from_dict.list_inputs()] == ["A", "Value"]
    assert [i.node_name for i in from_path.list_inputs()] == ["First", "Second"]


def test_broken_workflow_is_refused(client: InvokeAIClient) -> None:
    data = load("add_two_integers").to_dict()
    data["edges"][0]["source"] = "no-such-node"
    with pytest.raises(WorkflowValidationError) as info:
        client.workflow_repo.create_workflow(WorkflowDefinition.from_dict(data))
    assert any("no-such-node" in p for p in info.value.problems)


def test_unknown_node_type_is_refused_before_sending(client: InvokeAIClient) -> None:
    data = load("add_two_integers").to_dict()
    data["nodes"][2]["data"]["type"] = "canny_image_processor"
    wf = client.workflow_repo.create_workflow(WorkflowDefinition.from_dict(data))
    with pytest.raises(WorkflowValidationError, match="canny_image_processor"):
        wf.submit_sync()
    assert wf.runs == []


def test_without_a_server_inputs_fall_back_to_file_values() -> None:
    with InvokeAIClient("127.0.0.1", 9, max_retries=0, timeout=2) as offline:
        wf = offline.workflow_repo.create_workflow(load("blur_blank_canvas"))
        inputs = wf.list_inputs()
        assert [i.field.value for i in inputs] == [64, 48, 2.0, "gaussian"]
        assert inputs[1].label == "height"  # no schema title without a server
        assert wf.preview()["batch"]["graph"]["nodes"]["blur-canvas"]["height"] == 48


def reordered(data: dict[str, Any]) -> dict[str, Any]:
    """Swap the first two form fields, drop the third, expose a new one."""
    data = copy.deepcopy(data)
    root = data["form"]["elements"][data["form"]["rootElementId"]]
    children = root["data"]["children"]
    children[0], children[1] = children[1], children[0]
    removed = children.pop(2)
    del data["form"]["elements"][removed]
    data["form"]["elements"]["new-field"] = {
        "id": "new-field",
        "type": "node-field",
        "parentId": root["id"],
        "data": {"fieldIdentifier": {"nodeId": "blur-canvas", "fieldName": "mode"}},
    }
    data["nodes"][0]["data"]["inputs"]["mode"] = {"name": "mode", "label": "", "value": "RGB"}
    children.append("new-field")
    return data


def test_index_map_reports_moved_vanished_and_appeared(
    client: InvokeAIClient, blur: WorkflowHandle, tmp_path: Path
) -> None:
    path = blur.export_input_index_map(tmp_path / "map.json")
    saved = json.loads(path.read_text())
    assert [e["field_name"] for e in saved["inputs"]] == ["width", "height", "radius", "blur_type"]
    assert blur.verify_input_index_map(path).ok

    changed = reordered(blur.definition.to_dict())
    report = client.workflow_repo.create_workflow(changed).verify_input_index_map(path)
    assert not report.ok
    assert {(m.field_name, m.old_index, m.new_index) for m in report.moved} == {
        ("width", 0, 1),
        ("height", 1, 0),
        ("blur_type", 3, 2),  # radius before it is gone
    }
    assert [(e.node_id, e.field_name) for e in report.vanished] == [("blur-image", "radius")]
    assert [(e.field_name, e.index) for e in report.appeared] == [("mode", 3)]
    assert len(report.describe()) == 5


def model_workflow(base: str = "sd-1") -> dict[str, Any]:
    data = load("add_two_integers").to_dict()
    node = copy.deepcopy(data["nodes"][0])
    node["id"] = node["data"]["id"] = "add-loader"
    node["data"]["type"] = "main_model_loader"
    reference = {
        "key": "gone",
        "hash": "blake3:00",
        "name": "Some SD1",
        "base": base,
        "type": "main",
    }
    node["data"]["inputs"] = {"model": {"name": "model", "label": "", "value": reference}}
    data["nodes"].append(node)
    return data


def test_sync_dnn_model_reports_and_leaves_the_loaded_definition_alone(
    client: InvokeAIClient,
) -> None:
    defn = WorkflowDefinition.from_dict(model_workflow(base="flux"))
    before = defn.to_dict()
    wf = client.workflow_repo.create_workflow(defn)
    report = wf.sync_dnn_model()
    # The tests install no FLUX model: the reference cannot be matched.
    assert not report.ok and report.unresolved[0].node_id == "add-loader"
    assert defn.to_dict() == before
    assert wf.definition is not defn


def test_sync_dnn_model_points_a_stale_reference_at_the_installed_model(
    client: InvokeAIClient, tiny_sd1: IvkDnnModel
) -> None:
    # The file's key ("gone") is another server's; the only SD1.5 main model here is the tests'.
    wf = client.workflow_repo.create_workflow(WorkflowDefinition.from_dict(model_workflow()))
    report = wf.sync_dnn_model()
    assert report.ok
    (resolved,) = report.resolved
    assert resolved.node_id == "add-loader" and resolved.resolved["key"] == tiny_sd1.key
