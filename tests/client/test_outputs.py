"""Output mapping over queue items shaped as InvokeAI 6.14.2 returns them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from invokeai_py_client.workflow.outputs import map_output_values, map_outputs_to_images
from tests.client.workflow_files import own


def _image(name: str) -> dict[str, Any]:
    return {"image": {"image_name": name}, "width": 1, "height": 1, "type": "image_output"}


def _iterate_item() -> dict[str, Any]:
    # As observed: source_prepared_mapping lists prepared ids in no useful order; results are
    # in execution order; prepared_iteration_paths give the iteration index.
    return {
        "item_id": 9,
        "status": "completed",
        "session": {
            "graph": {"nodes": {"it-blank": {"id": "it-blank", "is_intermediate": False}}},
            "source_prepared_mapping": {
                "it-range": ["r"],
                "it-iterate": ["i1", "i0", "i2"],
                "it-add": ["a0", "a1", "a2"],
                "it-blank": ["b2", "b1", "b0"],
            },
            "prepared_iteration_paths": {
                "r": [],
                "i0": [0],
                "i1": [1],
                "i2": [2],
                "a0": [0],
                "a1": [1],
                "a2": [2],
                "b0": [0],
                "b1": [1],
                "b2": [2],
            },
            "results": {
                "r": {"collection": [0, 1, 2], "type": "integer_collection_output"},
                "i0": {"item": 0, "index": 0, "total": 3, "type": "iterate_output"},
                "i2": {"item": 2, "index": 2, "total": 3, "type": "iterate_output"},
                "i1": {"item": 1, "index": 1, "total": 3, "type": "iterate_output"},
                "a0": {"value": 16, "type": "integer_output"},
                "a1": {"value": 17, "type": "integer_output"},
                "a2": {"value": 18, "type": "integer_output"},
                "b1": _image("one.png"),
                "b0": _image("zero.png"),
                "b2": _image("two.png"),
            },
        },
    }


def test_iterate_fan_out_gives_every_image_in_iteration_order() -> None:
    [out] = map_outputs_to_images(own("iterate_fanout.json"), _iterate_item())
    assert (out.node_id, out.node_type, out.label) == ("it-blank", "blank_image", "Tile")
    assert out.image_names == ["zero.png", "one.png", "two.png"]
    assert out.board_id is None


def test_values_of_non_image_nodes() -> None:
    values = {v.node_id: v for v in map_output_values(own("iterate_fanout.json"), _iterate_item())}
    assert set(values) == {"it-range", "it-iterate", "it-add"}
    assert [r["item"] for r in values["it-iterate"].results] == [0, 1, 2]
    assert [r["value"] for r in values["it-add"].results] == [16, 17, 18]
    assert values["it-add"].label == "add"  # no label: the type stands in


def test_intermediate_nodes_are_not_outputs_and_boards_come_from_the_run() -> None:
    item = {
        "session": {
            "graph": {
                "nodes": {
                    "nf-blank": {"is_intermediate": True},
                    "nf-blur": {"is_intermediate": False, "board": {"board_id": "b-7"}},
                    # the file says non-intermediate; the graph that ran says otherwise
                    "nf-resize": {"is_intermediate": True},
                }
            },
            "source_prepared_mapping": {"nf-blank": ["p1"], "nf-blur": ["p2"], "nf-resize": ["p3"]},
            "results": {"p1": _image("a.png"), "p2": _image("b.png"), "p3": _image("c.png")},
        }
    }
    [out] = map_outputs_to_images(own("nested_form.json"), item)
    assert (out.node_id, out.label, out.image_names, out.board_id) == (
        "nf-blur",
        "Blurred",
        ["b.png"],
        "b-7",
    )
    assert map_output_values(own("nested_form.json"), item) == []


def test_graph_flags_missing_fall_back_to_the_file_and_collections_count() -> None:
    item = {
        "session": {
            "source_prepared_mapping": {"nf-blank": ["p1"], "nf-resize": ["p3", "gone"]},
            "results": {
                "p1": _image("a.png"),
                "p3": {"collection": [{"image_name": "c1.png"}, {"image_name": "c2.png"}]},
            },
        }
    }
    [out] = map_outputs_to_images(own("nested_form.json"), item)
    assert (out.node_id, out.image_names) == ("nf-resize", ["c1.png", "c2.png"])


class _Item(BaseModel):
    model_config = ConfigDict(extra="allow")


def test_models_and_unfinished_items_are_accepted() -> None:
    item = _Item.model_validate(_iterate_item())
    assert len(map_outputs_to_images(own("iterate_fanout.json"), item)[0].image_names) == 3
    assert map_outputs_to_images(own("iterate_fanout.json"), {"status": "pending"}) == []
    assert map_output_values(own("iterate_fanout.json"), {"session": None}) == []
