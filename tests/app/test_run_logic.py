"""Pure pieces of the gateway: input diffs, run schema, Prefer parsing, data URLs, event mapping."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from app.api.routes.runs import parse_prefer_wait
from app.runs.errors import from_item as error_from_item
from app.runs.inputs import decode_data_url, parse_index
from app.runs.outputs import outputs_with_urls, plain_value
from app.runs.translate import node_event, run_status_for
from app.workflows import fingerprint, input_changes, run_body_schema
from invokeai_py_client.events import denoising_step


def _input(index: int, node: str, field: str, **extra: object) -> dict[str, object]:
    return {
        "index": index,
        "label": f"{node}.{field}",
        "node_id": node,
        "field_name": field,
        "type": "integer",
        **extra,
    }


def test_input_changes_reports_moved_vanished_and_appeared() -> None:
    old = [_input(0, "a", "x"), _input(1, "b", "y"), _input(2, "c", "z")]
    new = [_input(0, "b", "y"), _input(1, "a", "x"), _input(2, "d", "w")]
    changes = input_changes(old, new)
    moved = {(m["node_id"], m["old_index"], m["new_index"]) for m in changes["moved"]}
    assert moved == {("a", 0, 1), ("b", 1, 0)}
    assert [v["node_id"] for v in changes["vanished"]] == ["c"]
    assert [a["node_id"] for a in changes["appeared"]] == ["d"]
    assert input_changes(old, old) == {"moved": [], "vanished": [], "appeared": []}


def test_fingerprint_changes_when_an_index_moves() -> None:
    a = [_input(0, "a", "x"), _input(1, "b", "y")]
    b = [_input(0, "b", "y"), _input(1, "a", "x")]
    assert fingerprint(a) != fingerprint(b)
    assert fingerprint(a) == fingerprint([dict(i) for i in a])


def test_run_body_schema_types_each_index() -> None:
    inputs = [
        _input(0, "a", "width", minimum=1, maximum=4096, value=64),
        {**_input(1, "b", "mode"), "type": "enum", "choices": ["RGB", "RGBA"]},
        {**_input(2, "c", "image"), "type": "image"},
    ]
    schema = run_body_schema(inputs)
    props = schema["properties"]["inputs"]["properties"]
    assert props["0"]["type"] == "integer" and props["0"]["maximum"] == 4096
    assert props["0"]["default"] == 64
    assert props["1"]["enum"] == ["RGB", "RGBA"]
    assert props["2"]["type"] == "string"
    assert schema["properties"]["inputs"]["additionalProperties"] is False


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("wait=5", 5.0),
        ("respond-async, wait=2.5", 2.5),
        ("wait=999", 60.0),
        ("x", None),
    ],
)
def test_prefer_wait(header: str | None, expected: float | None) -> None:
    assert parse_prefer_wait(header, cap=60.0) == expected


def test_data_urls() -> None:
    data, name = decode_data_url("data:image/jpeg;base64," + base64.b64encode(b"abc").decode())
    assert (data, name) == (b"abc", "upload.jpg")
    for bad in ("data:image/png;base64,!!!", "data:image/png,abc", "data:image/png;base64,"):
        with pytest.raises(ValueError):
            decode_data_url(bad)


def test_parse_index() -> None:
    assert [parse_index(k) for k in ("0", " 12 ", "-1", "a", "1.5")] == [0, 12, None, None, None]


def test_node_events_map_to_the_stable_types() -> None:
    base = {"invocation_source_id": "n1", "invocation": {"type": "img_blur"}, "item_id": 3}
    assert node_event("invocation_started", base) == (
        "node.started",
        {"node_id": "n1", "node_type": "img_blur"},
    )
    kind, data = node_event(
        "invocation_progress", {**base, "percentage": 0.5, "message": "step 1"}
    ) or ("", {})
    assert kind == "node.progress" and data["percentage"] == 0.5 and data["message"] == "step 1"
    kind, data = node_event(
        "invocation_complete",
        {**base, "result": {"type": "image_output", "image": {"image_name": "i.png"}}},
    ) or ("", {})
    assert kind == "node.completed" and data["image_names"] == ["i.png"]
    kind, data = node_event(
        "invocation_error", {**base, "error_type": "E", "error_message": "boom"}
    ) or ("", {})
    assert kind == "node.failed" and data["error_type"] == "E"
    assert node_event("queue_item_status_changed", base) is None


def test_run_status_mapping() -> None:
    assert [
        run_status_for(s) for s in ("pending", "in_progress", "completed", "failed", "canceled")
    ] == [
        "queued",
        "running",
        "succeeded",
        "failed",
        "canceled",
    ]
    assert run_status_for("something_new") is None


def test_error_from_item_finds_the_failing_source_node() -> None:
    item = {
        "error_type": "ImageRecordNotFoundException",
        "error_message": "Image record not found",
        "session": {
            "errors": {"prep-1": "trace"},
            "prepared_source_mapping": {"prep-1": "node-a"},
            "graph": {"nodes": {"node-a": {"type": "image"}}},
        },
    }
    assert error_from_item(item) == {
        "error_type": "ImageRecordNotFoundException",
        "error_message": "Image record not found",
        "node_id": "node-a",
        "node_type": "image",
    }


def test_outputs_get_gateway_urls_and_values_are_unwrapped() -> None:
    shown = outputs_with_urls([{"node_id": "n", "image_names": ["a b.png"]}])
    assert shown[0]["images"][0]["url"] == "/images/a%20b.png"
    assert shown[0]["images"][0]["thumbnail_url"] == "/images/a%20b.png?thumbnail=1"
    assert plain_value({"type": "string_output", "value": "hi"}) == "hi"
    assert plain_value({"type": "x", "a": 1, "b": 2}) == {"a": 1, "b": 2}


@pytest.mark.parametrize(
    ("invocation", "percentage", "expected"),
    [
        ({"type": "denoise_latents", "steps": 30}, 0.5, (15, 30)),
        ({"type": "denoise_latents", "steps": 30}, 1.0, (30, 30)),
        ({"type": "denoise_latents", "steps": 30}, None, (None, 30)),
        ({"type": "img_blur"}, 0.5, (None, None)),  # no steps input: not a denoising node
        ({"type": "x", "steps": True}, 0.5, (None, None)),
        ({"type": "x", "steps": 0}, 0.5, (None, None)),
        (None, 0.5, (None, None)),
    ],
)
def test_denoising_step_from_the_invocation_and_percentage(
    invocation: Any, percentage: float | None, expected: tuple[int | None, int | None]
) -> None:
    assert denoising_step(invocation, percentage) == expected
