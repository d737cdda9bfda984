"""The enqueue body the queue repository sends: a batch id always, the caller's body untouched."""

from __future__ import annotations

import uuid
from typing import Any

from invokeai_py_client.queue.repo import ensure_batch_id, requested_count


def _body(**batch: Any) -> dict[str, Any]:
    graph = {"id": "g", "nodes": {"a": {"id": "a", "type": "integer", "value": 1}}, "edges": []}
    return {"batch": {"graph": graph, "runs": 2, **batch}, "prepend": False}


def test_a_batch_without_an_id_gets_a_fresh_uuid_and_the_caller_keeps_its_body() -> None:
    body = _body()
    sent, batch_id = ensure_batch_id(body)
    assert uuid.UUID(batch_id).version == 4
    assert sent["batch"]["batch_id"] == batch_id
    assert "batch_id" not in body["batch"]  # the caller's body is not changed
    assert sent["batch"]["graph"] == body["batch"]["graph"]
    assert sent["prepend"] is False


def test_a_batch_id_given_by_the_caller_is_kept() -> None:
    sent, batch_id = ensure_batch_id(_body(batch_id="mine"))
    assert (batch_id, sent["batch"]["batch_id"]) == ("mine", "mine")


def test_two_bodies_from_one_get_two_ids() -> None:
    body = _body()
    assert ensure_batch_id(body)[1] != ensure_batch_id(body)[1]


def test_a_body_without_a_batch_gets_one() -> None:
    sent, batch_id = ensure_batch_id({"prepend": True})
    assert sent == {"prepend": True, "batch": {"batch_id": batch_id}}


def test_requested_count_is_the_runs_unless_batch_data_multiplies_them() -> None:
    assert requested_count(_body()) == 2
    assert requested_count(_body(data=[[{"node_path": "a", "field_name": "value"}]])) is None
