"""Caller values in InvokeAI URLs stay one path segment: dot segments never leave the client."""

from __future__ import annotations

import pytest

from invokeai_py_client import InvokeAIClient
from invokeai_py_client._paths import segment
from invokeai_py_client.board.repo import image_path


def test_segment_quotes_and_refuses_dot_segments() -> None:
    assert segment("a/b c.png") == "a%2Fb%20c.png"
    assert segment("..png") == "..png"  # dots inside a name are fine
    for value in ("", ".", ".."):
        with pytest.raises(ValueError, match="cannot be used"):
            segment(value)
    with pytest.raises(ValueError):
        image_path("..", "/full")


async def test_repositories_refuse_before_sending_anything() -> None:
    # Port 9 (discard) on loopback: nothing listens, so any request sent would fail otherwise.
    client = InvokeAIClient.from_url("http://127.0.0.1:9")
    try:
        with pytest.raises(ValueError):
            await client.board_repo.aget_image("..")
        with pytest.raises(ValueError):
            await client.board_repo.adelete_board(".")
        with pytest.raises(ValueError):
            await client.dnn_model_repo.aget_model_by_key("..")
    finally:
        await client.aclose()
