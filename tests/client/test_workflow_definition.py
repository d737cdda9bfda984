"""WorkflowDefinition: reading, round-tripping and structural checks of editor workflow files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from invokeai_py_client.exceptions import WorkflowValidationError
from invokeai_py_client.workflow.definition import WorkflowDefinition
from tests.client.workflow_files import OWN_WORKFLOWS, all_files, own, own_dict


def test_every_known_file_round_trips_and_is_sound(
    shipped_workflows_dir: Path, tmp_path: Path
) -> None:
    files = all_files(shipped_workflows_dir, OWN_WORKFLOWS)
    assert len(files) >= 26 + 3 + 5
    for path in files:
        original = json.loads(path.read_text(encoding="utf-8"))
        defn = WorkflowDefinition.from_file(path)
        assert defn.to_dict() == original, path.name
        assert defn.validate_workflow() == [], path.name
        defn.save(tmp_path / "copy.json")
        assert json.loads((tmp_path / "copy.json").read_text(encoding="utf-8")) == original


def test_unknown_top_level_keys_are_kept() -> None:
    data = own_dict("nested_form.json")
    data["x_custom"] = {"kept": [1, 2]}
    defn = WorkflowDefinition.from_dict(data)
    assert defn.to_dict()["x_custom"] == {"kept": [1, 2]}
    assert defn.name == "nested form"
    assert defn.schema_version == "4.0.0"


def test_keys_absent_from_the_file_stay_absent_until_set() -> None:
    data = own_dict("exposed_only_v3.json")
    assert "form" not in data
    defn = WorkflowDefinition.from_dict(data)
    assert "form" not in defn.to_dict()
    defn.name = "renamed"
    assert defn.to_dict()["name"] == "renamed"


@pytest.mark.parametrize(
    "data, fragment",
    [
        ([1, 2], "JSON object"),
        ({"nodes": "not a list"}, "nodes"),
        ({"nodes": [1]}, "nodes.0"),
        ({"name": 3}, "name"),
        ({"form": []}, "form"),
    ],
)
def test_wrong_top_level_shape_is_refused(data: Any, fragment: str) -> None:
    with pytest.raises(WorkflowValidationError) as info:
        WorkflowDefinition.from_dict(data)
    assert any(fragment in p for p in info.value.problems), info.value.problems


def test_unreadable_json_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"name": "cut off', encoding="utf-8")
    with pytest.raises(WorkflowValidationError) as info:
        WorkflowDefinition.from_file(path)
    assert "not valid JSON" in info.value.problems[0]


def test_invocation_node_lookup() -> None:
    defn = own("collapsed_notes_connector.json")
    node = defn.invocation_node("cn-resize")
    assert node is not None and node["data"]["type"] == "img_resize"
    assert defn.invocation_node("cn-notes") is None  # editor-only
    assert defn.invocation_node("cn-connector") is None
    assert defn.invocation_node("nope") is None
    assert set(defn.node_inputs("cn-int")) == {"value"}
    assert defn.node_inputs("nope") == {}


def _problems(data: dict[str, Any]) -> list[str]:
    return WorkflowDefinition.from_dict(data).validate_workflow()


@pytest.mark.parametrize("version", ["5.0.0", "2.0.0", None])
def test_unsupported_or_missing_schema_version(version: str | None) -> None:
    data = own_dict("nested_form.json")
    data["meta"]["version"] = version
    [problem] = _problems(data)
    assert "version" in problem
    if version:
        assert version in problem and "3.0.0" in problem


def test_duplicate_node_ids_and_mismatched_data_id() -> None:
    data = own_dict("nested_form.json")
    data["nodes"].append(json.loads(json.dumps(data["nodes"][0])))
    data["nodes"][1]["data"]["id"] = "something-else"
    problems = _problems(data)
    assert "duplicate node id nf-blank" in problems
    assert any("nf-blur" in p and "something-else" in p for p in problems)


def test_edge_to_a_missing_node_or_handle() -> None:
    data = own_dict("exposed_only_v3.json")
    data["edges"].append(
        {
            "type": "default",
            "source": "ex-left",
            "sourceHandle": "value",
            "target": "ghost",
            "targetHandle": "x",
            "id": "e-ghost",
        }
    )
    data["edges"].append(
        {
            "type": "default",
            "source": "ex-left",
            "sourceHandle": "value",
            "target": "ex-join",
            "targetHandle": "string_middle",
            "id": "e-handle",
        }
    )
    problems = _problems(data)
    assert any("e-ghost" in p and "ghost does not exist" in p for p in problems)
    assert any(
        "e-handle" in p and "ex-join (string_join)" in p and "string_middle" in p for p in problems
    )
    assert len(problems) == 2


def test_form_naming_unknown_node_or_field() -> None:
    data = own_dict("nested_form.json")
    elements = data["form"]["elements"]
    elements["f-width"]["data"]["fieldIdentifier"]["nodeId"] = "ghost-node"
    elements["f-radius"]["data"]["fieldIdentifier"]["fieldName"] = "no_such_field"
    problems = _problems(data)
    assert any("f-width" in p and "ghost-node" in p for p in problems)
    assert any("no_such_field" in p and "nf-blur (img_blur)" in p for p in problems)
    assert len(problems) == 2


def test_form_structure_problems() -> None:
    data = own_dict("nested_form.json")
    elements = data["form"]["elements"]
    elements["row-size"]["data"]["children"].append("missing-child")
    elements["f-width-again"] = {**elements["f-width"], "id": "f-width-again"}
    elements["col-blur"]["data"]["children"].append("f-width-again")  # the same field twice
    problems = _problems(data)
    assert any("row-size" in p and "missing-child" in p for p in problems)
    assert any("repeats field 'width'" in p for p in problems)
    data["form"]["rootElementId"] = "gone"
    assert any("root element 'gone'" in p for p in _problems(data))


def test_exposed_fields_checked_only_when_they_are_the_inputs() -> None:
    data = own_dict("nested_form.json")
    data["exposedFields"].append({"nodeId": "stale-node", "fieldName": "x"})
    assert _problems(data) == []  # the form supersedes exposedFields
    data = own_dict("exposed_only_v3.json")
    data["exposedFields"].append({"nodeId": "stale-node", "fieldName": "x"})
    data["exposedFields"].append({"nodeId": 5})
    problems = _problems(data)
    assert any("exposedFields[3]" in p and "stale-node" in p for p in problems)
    assert any("exposedFields[4]" in p for p in problems)
