"""The preview hub: offered to the readers of the run now, skipped (never queued) when busy."""

from __future__ import annotations

import json
from collections.abc import Callable

from app.streaming.previews import PreviewHub, preview_chunk

DATA = {"node_id": "d", "node_type": "denoise_latents", "step": 3, "width": 64, "height": 64}


def _step(chunk: bytes) -> int:
    data_line = next(line for line in chunk.decode().splitlines() if line.startswith("data:"))
    return int(json.loads(data_line.removeprefix("data:").strip())["data"]["step"])


def test_a_busy_reader_skips_previews_and_gets_the_next_one_not_a_backlog() -> None:
    hub = PreviewHub()
    got: list[bytes] = []
    busy = True

    def deliver(chunk: bytes) -> bool:
        if busy:
            return False
        got.append(chunk)
        return True

    with hub.subscribe(deliver, run_id="r1"):
        for step in range(5):  # the reader is busy for all of these
            hub.publish("r1", "w", {**DATA, "step": step, "url": "data:,"})
        busy = False
        hub.publish("r1", "w", {**DATA, "step": 5, "url": "data:,"})
    assert [_step(chunk) for chunk in got] == [5]  # the latest only
    assert hub.reader_count == 0  # leaving the block unsubscribes


def test_previews_reach_only_readers_of_that_run_or_workflow() -> None:
    hub = PreviewHub()
    seen: dict[str, int] = {"run": 0, "other-run": 0, "workflow": 0, "all": 0}

    def counter(name: str) -> Callable[[bytes], bool]:
        def deliver(_chunk: bytes) -> bool:
            seen[name] += 1
            return True

        return deliver

    with (
        hub.subscribe(counter("run"), run_id="r1"),
        hub.subscribe(counter("other-run"), run_id="r2"),
        hub.subscribe(counter("workflow"), workflow_id="w"),
        hub.subscribe(counter("all")),
    ):
        assert hub.publish("r1", "w", {**DATA, "url": "data:,"}) == 3
    assert seen == {"run": 1, "other-run": 0, "workflow": 1, "all": 1}


def test_a_preview_on_the_wire_has_no_id_line() -> None:
    chunk = preview_chunk("r1", "w", {**DATA, "url": "data:,"}).decode()
    assert "event: node.preview" in chunk
    assert not any(line.startswith("id:") for line in chunk.splitlines())
