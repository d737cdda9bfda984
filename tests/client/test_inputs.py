"""Input discovery: form order (depth-first, pre-order), the exposedFields fallback, edge feeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from invokeai_py_client.workflow.definition import WorkflowDefinition
from invokeai_py_client.workflow.inputs import InputSlot, discover_inputs
from tests.client.workflow_files import OWN_WORKFLOWS, all_files, own, own_dict


def _fields(slots: list[InputSlot]) -> list[tuple[str, str]]:
    return [(s.node_id, s.field_name) for s in slots]


def test_nested_form_is_walked_depth_first_in_order() -> None:
    # form-top: heading, text, row(width, height), divider, column(row(radius, blur_type), color),
    # resize width. The root id is not "root"; exposedFields (stale) are ignored.
    slots = discover_inputs(own("nested_form.json"))
    assert _fields(slots) == [
        ("nf-blank", "width"),
        ("nf-blank", "height"),
        ("nf-blur", "radius"),
        ("nf-blur", "blur_type"),
        ("nf-blank", "color"),
        ("nf-resize", "width"),
    ]
    assert [s.index for s in slots] == list(range(6))
    first = slots[0]
    assert (first.label, first.node_label, first.node_type, first.value) == (
        "Canvas width",
        "Canvas",
        "blank_image",
        64,
    )
    assert slots[1].label == "" and slots[1].value == 48
    assert slots[4].value == {"r": 200, "g": 40, "b": 40, "a": 255}
    assert not any(s.fed_by_edge for s in slots)


def test_schema_3_without_form_uses_exposed_fields_in_their_order() -> None:
    slots = discover_inputs(own("exposed_only_v3.json"))
    assert _fields(slots) == [("ex-right", "value"), ("ex-left", "value"), ("ex-int", "value")]
    assert [s.label for s in slots] == ["Right word", "Left word", "A number"]
    assert [s.value for s in slots] == ["world", "hello ", 7]


def test_a_form_without_fields_falls_back_to_exposed_fields() -> None:
    data = own_dict("exposed_only_v3.json")
    data["form"] = {
        "elements": {"c": {"id": "c", "type": "container", "data": {"children": []}}},
        "rootElementId": "c",
    }
    slots = discover_inputs(WorkflowDefinition.from_dict(data))
    assert _fields(slots)[0] == ("ex-right", "value")
    data["form"] = {}
    assert len(discover_inputs(WorkflowDefinition.from_dict(data))) == 3


def test_broken_references_are_skipped_and_indices_stay_contiguous() -> None:
    data = own_dict("nested_form.json")
    elements = data["form"]["elements"]
    elements["f-width"]["data"]["fieldIdentifier"]["nodeId"] = "ghost"
    elements["f-radius"]["data"]["fieldIdentifier"]["fieldName"] = "nope"
    elements["row-size"]["data"]["children"].insert(0, "missing-element")
    slots = discover_inputs(WorkflowDefinition.from_dict(data))
    assert _fields(slots) == [
        ("nf-blank", "height"),
        ("nf-blur", "blur_type"),
        ("nf-blank", "color"),
        ("nf-resize", "width"),
    ]
    assert [s.index for s in slots] == [0, 1, 2, 3]


def test_a_field_named_twice_keeps_its_first_position_and_cycles_end() -> None:
    data = own_dict("nested_form.json")
    elements = data["form"]["elements"]
    elements["f-again"] = {**elements["f-resize-width"], "id": "f-again"}
    elements["row-size"]["data"]["children"].insert(0, "f-again")
    elements["row-inner"]["data"]["children"].append("form-top")  # a cycle back to the root
    slots = discover_inputs(WorkflowDefinition.from_dict(data))
    assert _fields(slots)[0] == ("nf-resize", "width")
    assert len(slots) == 6


def test_fed_by_edge_counts_default_edges_only() -> None:
    slots = {
        (s.node_id, s.field_name): s for s in discover_inputs(own("collapsed_notes_connector.json"))
    }
    assert slots["cn-resize", "width"].fed_by_edge  # the integer node feeds it
    assert slots["cn-resize", "width"].value == 0  # the stale literal stays visible
    assert not slots["cn-int", "value"].fed_by_edge
    assert not slots["cn-blank", "width"].fed_by_edge  # only a collapsed edge leaves it


def test_example_workflows_by_hand(workflows_dir: Path) -> None:
    crop = discover_inputs(WorkflowDefinition.from_file(workflows_dir / "crop_uploaded_image.json"))
    assert [(s.field_name, s.label) for s in crop] == [
        ("image", "Picture"),
        ("x", "Left"),
        ("y", "Top"),
        ("width", "Width"),
        ("height", "Height"),
    ]
    noise = discover_inputs(
        WorkflowDefinition.from_file(workflows_dir / "noise_on_blank_canvas.json")
    )
    assert [s.field_name for s in noise] == [
        "width",
        "height",
        "color",
        "seed",
        "noise_type",
        "amount",
        "noise_color",
        "board",
    ]
    assert [s.node_type for s in noise[:3]] == ["blank_image"] * 3
    join = discover_inputs(
        WorkflowDefinition.from_file(workflows_dir / "join_three_strings_exposed_fields.json")
    )
    assert [s.label for s in join] == ["First", "Second", "Third"]


def test_shipped_workflows_by_hand(shipped_workflows_dir: Path) -> None:
    wan = discover_inputs(
        WorkflowDefinition.from_file(
            shipped_workflows_dir / "Text to Video - Wan 2.2 TI2V-5B (Low Quality).json"
        )
    )
    # root: heading, prompt, prompt, target_resolution, container(container(width, height)),
    # container(frames, fps), container(steps, cfg), divider, heading,
    # container(container(model, t5)), container(vae, component_source)
    assert [s.field_name for s in wan] == [
        "prompt",
        "prompt",
        "target_resolution",
        "value",
        "value",
        "num_frames",
        "fps",
        "steps",
        "guidance_scale",
        "model",
        "wan_t5_encoder_model",
        "vae_model",
        "component_source",
    ]
    assert [s.label for s in wan[:5]] == [
        "Positive Prompt",
        "Negative Prompt",
        "",
        "Width",
        "Height",
    ]
    sd15 = discover_inputs(
        WorkflowDefinition.from_file(shipped_workflows_dir / "Text to Image - SD1.5.json")
    )
    assert [(s.node_type, s.field_name) for s in sd15] == [
        ("main_model_loader", "model"),
        ("compel", "prompt"),
        ("compel", "prompt"),
        ("noise", "width"),
        ("noise", "height"),
        ("l2i", "board"),
    ]
    assert sd15[1].value.startswith("Super cute tiger cub")


# Input counts per file, cross-checked against a flat count of the distinct node-field
# elements of each form (or the exposedFields entries when a file has no form fields).
EXPECTED_COUNTS = {
    "CogView4_TextToImage.json": 3,
    "ESRGAN Upscaling with Canny ControlNet.json": 6,
    "Extend Video - Wan 2.2 Lightning w_ Concept LoRAs.json": 19,
    "Extend Video - Wan 2.2 Lightning.json": 18,
    "Extend Video to Image - Wan 2.2 Lightning.json": 19,
    "FLUX Image to Image.json": 6,
    "Face Detailer with IP-Adapter & Canny (See Note in Details).json": 7,
    "Flux Text to Image.json": 5,
    "Image to Video - Wan 2.2 Lightning w_ Concept LoRAs.json": 16,
    "Image to Video - Wan 2.2 Lightning.json": 17,
    "Image to Video - Wan 2.2 TI2V-5B (Low Quality).json": 10,
    "Interpolate 2 Images to Video - Wan 2.2 Lightning.json": 18,
    "Multi ControlNet (Canny & Depth).json": 7,
    "MultiDiffusion SD1.5.json": 10,
    "MultiDiffusion SDXL.json": 11,
    "Prompt from File.json": 7,
    "SD3.5 Text to Image.json": 2,
    "Text to Image - SD1.5.json": 6,
    "Text to Image - SDXL.json": 5,
    "Text to Image with LoRA.json": 7,
    "Text to Video - Wan 2.2 Lightning w_ Concept LoRAs.json": 16,
    "Text to Video - Wan 2.2 Lightning.json": 17,
    "Text to Video - Wan 2.2 TI2V-5B (Low Quality).json": 13,
    "Tiled Upscaling (Beta).json": 8,
    "Wan 2.2 Image to Image.json": 13,
    "Wan 2.2 Text to Image.json": 12,
    "crop_uploaded_image.json": 5,
    "join_three_strings_exposed_fields.json": 3,
    "noise_on_blank_canvas.json": 8,
    "collapsed_notes_connector.json": 3,
    "exposed_only_v3.json": 3,
    "integer_batch.json": 1,
    "iterate_fanout.json": 2,
    "nested_form.json": 6,
}


def test_every_file_gives_its_inputs(shipped_workflows_dir: Path) -> None:
    files = all_files(shipped_workflows_dir, OWN_WORKFLOWS)
    counts = {p.name: len(discover_inputs(WorkflowDefinition.from_file(p))) for p in files}
    assert {name: counts.get(name) for name in EXPECTED_COUNTS} == EXPECTED_COUNTS
    for path in files:  # files other helpers add: against the flat count
        assert counts[path.name] == _flat_count(json.loads(path.read_text("utf-8"))), path.name


def _flat_count(data: dict[str, Any]) -> int:
    elements = (data.get("form") or {}).get("elements") or {}
    fields = {
        (e["data"]["fieldIdentifier"]["nodeId"], e["data"]["fieldIdentifier"]["fieldName"])
        for e in elements.values()
        if e.get("type") == "node-field"
    }
    return len(fields) or len(data.get("exposedFields", []))
