"""Typed results also answer by key, as the JSON they mirror (one mixin: ``MappingAccess``)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from invokeai_py_client import IvkJob, JobStatus, OutputImages
from invokeai_py_client.board import Board
from invokeai_py_client.events import QueueItemStatusChangedEvent


def test_a_dataclass_result_by_key() -> None:
    out = OutputImages(node_id="n1", node_type="img_blur", label="Blur", image_names=["a.png"])
    assert out["node_id"] == out.node_id == "n1"
    assert out.get("image_names", []) == ["a.png"] and out.get("missing", 7) == 7
    assert "board_id" in out and "missing" not in out and 3 not in out
    assert list(out.keys()) == [
        "node_id",
        "node_type",
        "label",
        "image_names",
        "board_id",
        "video_names",
    ]
    assert dict(out)["label"] == "Blur"  # dict() reads keys() and [key]
    with pytest.raises(KeyError):
        out["missing"]


def test_a_model_by_key_including_members_a_newer_server_adds() -> None:
    job = IvkJob.model_validate(
        {"item_id": 4, "status": "completed", "batch_id": "b", "queue_id": "default", "new": 1}
    )
    assert job["status"] is job.status is JobStatus.COMPLETED
    assert job.get("status") == "completed" and job.get("nothing") is None
    assert job["new"] == 1 and "new" in job and "new" in list(job.keys())
    assert "is_terminal" not in job  # methods and properties are not keys
    with pytest.raises(KeyError):
        job["is_terminal"]


def test_results_stay_typed_not_mappings() -> None:
    board = Board.model_validate({"board_id": "b1", "board_name": "x", "image_count": 0})
    event = QueueItemStatusChangedEvent.model_validate(
        {"queue_id": "default", "item_id": 1, "batch_id": "b", "status": "failed"}
    )
    assert board["board_name"] == "x" and event.get("status") == "failed"
    assert not isinstance(board, Mapping) and not isinstance(event, Mapping)
    assert dict(board)["board_id"] == "b1"
    assert ("board_id", "b1") in list(board)  # pydantic's own iteration is unchanged
