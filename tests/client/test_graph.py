"""Graph building: editor workflow + values -> the API graph and the enqueue_batch body."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from invokeai_py_client.exceptions import WorkflowValidationError
from invokeai_py_client.workflow.batch import batch_data
from invokeai_py_client.workflow.definition import WorkflowDefinition
from invokeai_py_client.workflow.graph import build_batch, build_graph
from invokeai_py_client.workflow.inputs import edge_fed_fields
from invokeai_py_client.workflow.values import editor_value_to_api
from tests.client.workflow_files import (
    OUTDATED_TYPES,
    OWN_WORKFLOWS,
    REFUSED_SHIPPED,
    all_files,
    invocation_types,
    own,
    own_dict,
)

MODEL = {"key": "k1", "hash": "blake3:x", "name": "m", "base": "sdxl", "type": "main"}


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("board", "auto", (False, None)),
        ("board", "none", (False, None)),
        ("board", "", (False, None)),
        ("board", {"board_id": "none"}, (False, None)),
        ("board", "b-123", (True, {"board_id": "b-123"})),
        ("board", {"board_id": "b-1", "x": 1}, (True, {"board_id": "b-1"})),
        ("image", {"image_name": ""}, (False, None)),
        ("image", {"image_name": "a.png", "width": 4}, (True, {"image_name": "a.png"})),
        ("model", {**MODEL, "key": ""}, (False, None)),
        ("model", MODEL, (True, MODEL)),
        ("value", None, (False, None)),
        ("value", 0, (True, 0)),
        ("value", "", (True, "")),
        ("color", {"r": 1, "g": 2, "b": 3, "a": 4}, (True, {"r": 1, "g": 2, "b": 3, "a": 4})),
        ("images", [{"image_name": "a"}, {"image_name": ""}], (True, [{"image_name": "a"}])),
        ("loras", [], (True, [])),
    ],
)
def test_editor_values_become_api_values(field: str, value: Any, expected: Any) -> None:
    assert editor_value_to_api(field, value) == expected


def test_editor_only_nodes_connectors_and_collapsed_edges() -> None:
    graph = build_graph(own("collapsed_notes_connector.json"), graph_id="g1")
    assert graph["id"] == "g1"
    assert set(graph["nodes"]) == {"cn-blank", "cn-int", "cn-resize"}
    edges = {
        (
            e["source"]["node_id"],
            e["source"]["field"],
            e["destination"]["node_id"],
            e["destination"]["field"],
        )
        for e in graph["edges"]
    }
    # The connector is bridged; the two collapsed edges are gone.
    assert edges == {
        ("cn-blank", "image", "cn-resize", "image"),
        ("cn-int", "value", "cn-resize", "width"),
    }
    resize = graph["nodes"]["cn-resize"]
    # The stale width 0 (which breaks the server's bound) is not sent; board "none" is dropped.
    assert resize == {
        "id": "cn-resize",
        "type": "img_resize",
        "use_cache": False,
        "is_intermediate": False,
        "height": 20,
        "resample_mode": "nearest",
    }


def test_use_cache_and_is_intermediate_come_from_the_node() -> None:
    data = own_dict("exposed_only_v3.json")
    data["nodes"][0]["data"]["useCache"] = True
    del data["nodes"][1]["data"]["useCache"]
    del data["nodes"][1]["data"]["isIntermediate"]
    nodes = build_graph(WorkflowDefinition.from_dict(data))["nodes"]
    assert (nodes["ex-left"]["use_cache"], nodes["ex-left"]["is_intermediate"]) == (True, True)
    assert "use_cache" not in nodes["ex-right"] and "is_intermediate" not in nodes["ex-right"]
    assert nodes["ex-join"]["is_intermediate"] is False


def test_values_override_literals() -> None:
    defn = own("nested_form.json")
    values = {
        ("nf-blank", "width"): 100,
        ("nf-blur", "board"): {"board_id": "b-9"},
        ("nf-blank", "height"): None,  # back to the server default
        ("nf-blur", "image"): {"image_name": "ignored.png"},  # edge-fed: the edge wins
    }
    nodes = build_graph(defn, values)["nodes"]
    assert nodes["nf-blank"]["width"] == 100
    assert "height" not in nodes["nf-blank"]
    assert nodes["nf-blur"]["board"] == {"board_id": "b-9"}
    assert "image" not in nodes["nf-blur"]
    assert "board" not in nodes["nf-resize"]  # "auto" in the file
    # The definition itself is not changed.
    assert defn.node_inputs("nf-blank")["width"]["value"] == 64


def test_call_saved_workflow_inputs_are_folded_like_the_web_ui() -> None:
    data = own_dict("exposed_only_v3.json")
    prefix = "saved_workflow_input::"
    data["nodes"].append(
        {
            "id": "call",
            "type": "invocation",
            "data": {
                "id": "call",
                "type": "call_saved_workflow",
                "inputs": {
                    "workflow_id": {"value": "wf-1"},
                    "workflow_inputs": {"value": {"old": 1}},
                    f"{prefix}n1::width": {"value": 64},
                    f"{prefix}n1::prompt": {"value": "x"},
                },
            },
        }
    )
    data["edges"].append(
        {
            "id": "e-c",
            "type": "default",
            "source": "ex-left",
            "sourceHandle": "value",
            "target": "call",
            "targetHandle": f"{prefix}n1::prompt",
        }
    )
    defn = WorkflowDefinition.from_dict(data)
    graph = build_graph(defn, {("call", f"{prefix}n1::width"): 32})
    assert graph["nodes"]["call"] == {
        "id": "call",
        "type": "call_saved_workflow",
        "workflow_id": "wf-1",
        "workflow_inputs": {f"{prefix}n1::width": 32},
    }
    assert {"node_id": "call", "field": f"{prefix}n1::prompt"} in [
        e["destination"] for e in graph["edges"]
    ]


def test_a_value_for_a_missing_node_is_refused() -> None:
    with pytest.raises(WorkflowValidationError) as info:
        build_graph(own("nested_form.json"), {("ghost", "width"): 1})
    assert "ghost.width" in info.value.problems[0]


def test_unknown_node_types_are_refused_naming_node_and_type() -> None:
    defn = own("nested_form.json")
    with pytest.raises(WorkflowValidationError) as info:
        build_graph(defn, known_node_types={"blank_image", "img_resize"})
    [problem] = info.value.problems
    assert "nf-blur" in problem and "img_blur" in problem and "'Blurred'" in problem
    assert build_graph(defn, known_node_types={"blank_image", "img_resize", "img_blur"})


def test_server_file_path_nodes_are_refused(shipped_workflows_dir: Path) -> None:
    defn = WorkflowDefinition.from_file(shipped_workflows_dir / "Prompt from File.json")
    with pytest.raises(WorkflowValidationError) as info:
        build_graph(defn)
    [problem] = info.value.problems
    assert "1b7e0df8-8589-4915-a4ea-c0088f15d642" in problem
    assert "prompt_from_file" in problem and "file_path" in problem


def test_edges_to_missing_nodes_are_refused() -> None:
    data = own_dict("exposed_only_v3.json")
    data["edges"].append(
        {
            "id": "e1",
            "type": "default",
            "source": "ex-left",
            "sourceHandle": "value",
            "target": "gone-node",
            "targetHandle": "a",
        }
    )
    data["edges"].append({"id": "e2", "type": "collapsed", "source": "ex-left", "target": "gone"})
    with pytest.raises(WorkflowValidationError) as info:
        build_graph(WorkflowDefinition.from_dict(data))
    assert info.value.problems == ["edge e1: its target node gone-node does not exist"]


def test_duplicate_edges_are_sent_once() -> None:
    data = own_dict("exposed_only_v3.json")
    data["edges"].append({**data["edges"][0], "id": "copy"})
    graph = build_graph(WorkflowDefinition.from_dict(data))
    assert len(graph["edges"]) == 2


def test_batch_nodes_become_batch_data() -> None:
    defn = own("integer_batch.json")
    graph = build_graph(defn)
    assert set(graph["nodes"]) == {"bt-blank"}
    assert "width" not in graph["nodes"]["bt-blank"]  # fed by the batch node
    assert graph["edges"] == []
    assert batch_data(defn) == [
        [{"node_path": "bt-blank", "field_name": "width", "items": [24, 32]}]
    ]
    assert batch_data(defn, {("bt-widths", "integers"): [8]})[0][0]["items"] == [8]


def _two_batches(group_a: str, group_b: str, items_b: list[int]) -> WorkflowDefinition:
    data = own_dict("integer_batch.json")
    second = json.loads(json.dumps(data["nodes"][0]).replace("bt-widths", "bt-heights"))
    second["data"]["inputs"]["integers"]["value"] = items_b
    data["nodes"].append(second)
    data["nodes"][0]["data"]["inputs"]["batch_group_id"]["value"] = group_a
    second["data"]["inputs"]["batch_group_id"]["value"] = group_b
    data["edges"].append(
        {
            "id": "e-h",
            "type": "default",
            "source": "bt-heights",
            "sourceHandle": "value",
            "target": "bt-blank",
            "targetHandle": "height",
        }
    )
    return WorkflowDefinition.from_dict(data)


def test_batch_groups_zip_and_ungrouped_nodes_multiply() -> None:
    apart = batch_data(_two_batches("None", "None", [1, 2, 3]))
    assert [[d["field_name"] for d in group] for group in apart] == [["width"], ["height"]]
    zipped = batch_data(_two_batches("Group 1", "Group 1", [1, 2]))
    assert [[d["field_name"] for d in group] for group in zipped] == [["width", "height"]]
    with pytest.raises(WorkflowValidationError) as info:
        batch_data(_two_batches("Group 2", "Group 2", [1, 2, 3]))
    assert "Group 2" in info.value.problems[0]


def test_bad_batch_nodes_are_refused() -> None:
    data = own_dict("integer_batch.json")
    data["nodes"][0]["data"]["inputs"]["integers"]["value"] = []
    with pytest.raises(WorkflowValidationError) as info:
        batch_data(WorkflowDefinition.from_dict(data))
    assert "bt-widths (integer_batch, 'Widths')" in info.value.problems[0]
    data = own_dict("integer_batch.json")
    data["nodes"].append(
        {
            "id": "gen",
            "type": "invocation",
            "data": {"id": "gen", "type": "integer_generator", "inputs": {}},
        }
    )
    data["edges"].append(
        {
            "id": "e-g",
            "type": "default",
            "source": "gen",
            "sourceHandle": "integers",
            "target": "bt-widths",
            "targetHandle": "integers",
        }
    )
    defn = WorkflowDefinition.from_dict(data)
    assert "gen" not in build_graph(defn)["nodes"]
    with pytest.raises(WorkflowValidationError) as info:
        batch_data(defn)
    assert "bt-widths" in info.value.problems[0] and "generator" in info.value.problems[0]


def test_enqueue_body() -> None:
    defn = own("nested_form.json")
    values = {("nf-blank", "width"): 100}
    graph = build_graph(defn, values)
    body = build_batch(
        defn, graph, batch_id="b1", origin="me", destination="there", runs=2, values=values
    )
    assert body["prepend"] is False
    batch = body["batch"]
    assert (batch["batch_id"], batch["origin"], batch["destination"], batch["runs"]) == (
        "b1",
        "me",
        "there",
        2,
    )
    assert batch["graph"] == graph and "data" not in batch
    workflow = batch["workflow"]
    required = {
        "name",
        "author",
        "description",
        "version",
        "contact",
        "tags",
        "notes",
        "exposedFields",
        "meta",
        "nodes",
        "edges",
    }
    assert required <= set(workflow) and "id" not in workflow
    blank = next(n for n in workflow["nodes"] if n["id"] == "nf-blank")
    assert blank["data"]["inputs"]["width"]["value"] == 100  # the value that ran
    assert defn.node_inputs("nf-blank")["width"]["value"] == 64
    batched = build_batch(own("integer_batch.json"), graph, batch_id="b2")
    assert batched["batch"]["data"][0][0]["items"] == [24, 32]


def test_every_known_file_is_built_or_refused_by_node(shipped_workflows_dir: Path) -> None:
    files = all_files(shipped_workflows_dir, OWN_WORKFLOWS)
    known = invocation_types(files) - OUTDATED_TYPES
    refused: dict[str, list[str]] = {}
    for path in files:
        defn = WorkflowDefinition.from_file(path)
        try:
            graph = build_graph(defn, known_node_types=known)
        except WorkflowValidationError as exc:
            refused[path.name] = exc.problems
            continue
        _check_graph(defn, graph)
        build_batch(defn, graph, batch_id="b")
    assert set(refused) == set(REFUSED_SHIPPED)
    for name, node_type in REFUSED_SHIPPED.items():
        assert any(node_type in p and p.startswith("node ") for p in refused[name]), refused[name]


def _check_graph(defn: WorkflowDefinition, graph: dict[str, Any]) -> None:
    index = defn.nodes_by_id()
    fed = edge_fed_fields(defn.edges)
    for node_id, node in graph["nodes"].items():
        assert index[node_id]["type"] == "invocation"
        assert node["type"] == index[node_id]["data"]["type"]
        assert not any((node_id, name) in fed for name in node), node_id
        assert node.get("board") in (None,) or isinstance(node["board"], dict)
    for edge in graph["edges"]:
        assert edge["source"]["node_id"] in graph["nodes"]
        assert edge["destination"]["node_id"] in graph["nodes"]
