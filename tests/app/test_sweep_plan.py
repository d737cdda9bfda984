"""The pure part of batches: combinations in run order, and when one InvokeAI batch can carry
them (fast; the real server's side is in test_batches.py)."""

from __future__ import annotations

import copy
from typing import Any

from app.runs.sweep_plan import expand, one_batch_body, size_of


def body(seed: Any, prompt: Any = "a cat", **extra: Any) -> dict[str, Any]:
    nodes = {
        "noise": {"id": "noise", "type": "noise", "seed": seed, "width": 64},
        "prompt": {"id": "prompt", "type": "string", "value": prompt, **extra},
    }
    graph = {"id": f"graph-{seed}", "nodes": nodes, "edges": []}
    return {"batch": {"batch_id": "b", "graph": graph, "workflow": {"seed": seed}}}


def test_product_varies_the_first_index_slowest_and_zip_pairs() -> None:
    vary: dict[str, list[Any]] = {"3": [1, 2], "5": ["x", "y", "z"]}
    assert size_of(vary, "product") == 6
    assert [tuple(e.values()) for e in expand(vary, "product")] == [
        (1, "x"), (1, "y"), (1, "z"), (2, "x"), (2, "y"), (2, "z"),
    ]  # fmt: skip
    zipped: dict[str, list[Any]] = {"3": [1, 2], "5": ["x", "y"]}
    assert size_of(zipped, "zip") == 2
    assert expand(zipped, "zip") == [{"3": 1, "5": "x"}, {"3": 2, "5": "y"}]


def test_one_batch_carries_the_varied_fields_in_run_order() -> None:
    bodies = [body(1, "a"), body(2, "b"), body(3, "c")]
    combined = one_batch_body(bodies, [("noise", "seed"), ("prompt", "value")])
    assert combined is not None
    assert combined["batch"]["data"] == [
        [
            {"node_path": "noise", "field_name": "seed", "items": [1, 2, 3]},
            {"node_path": "prompt", "field_name": "value", "items": ["a", "b", "c"]},
        ]
    ]
    assert bodies[0]["batch"].get("data") is None  # the runs' own bodies are left alone


def test_ints_among_floats_become_floats_and_images_are_carried() -> None:
    floats = one_batch_body([body(1), body(2.5)], [("noise", "seed")])
    assert floats is not None and floats["batch"]["data"][0][0]["items"] == [1.0, 2.5]
    images = [body({"image_name": "a.png"}), body({"image_name": "b.png"})]
    carried = one_batch_body(images, [("noise", "seed")])
    assert carried is not None
    assert carried["batch"]["data"][0][0]["items"] == [
        {"image_name": "a.png"},
        {"image_name": "b.png"},
    ]


def test_values_a_batch_cannot_carry_mean_one_batch_per_run() -> None:
    target = [("noise", "seed")]
    assert one_batch_body([body(True), body(False)], target) is None  # booleans
    model = {"key": "k", "hash": "h", "name": "m", "base": "sd-1", "type": "main"}
    assert one_batch_body([body(model), body({**model, "key": "j"})], target) is None
    assert one_batch_body([body(1), body("2")], target) is None  # mixed kinds
    # a change outside the varied field (one input feeding more than that field)
    assert one_batch_body([body(1, "a"), body(2, "b")], target) is None
    with_data = copy.deepcopy(body(1))
    with_data["batch"]["data"] = [[{"node_path": "noise", "field_name": "seed", "items": [1]}]]
    assert one_batch_body([with_data, body(2)], target) is None  # the workflow's own batch
