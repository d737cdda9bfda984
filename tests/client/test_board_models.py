"""Board and image records, paging and upload requests, without a server."""

from __future__ import annotations

import httpx
import pytest

from invokeai_py_client import InvokeAIClient
from invokeai_py_client.board import (
    Board,
    BoardHandle,
    BoardVisibility,
    ImageCategory,
    ImageOrigin,
    IvkImage,
)
from invokeai_py_client.board.handle import page_requests, upload_content_type

IMAGE_DTO = {
    "image_name": "a.png",
    "image_origin": "external",
    "image_category": "user",
    "width": 64,
    "height": 48,
    "created_at": "2026-11-29 15:34:06.914",
    "updated_at": "2026-11-29 15:34:06.914",
    "deleted_at": None,
    "is_intermediate": False,
    "session_id": None,
    "node_id": None,
    "starred": False,
    "has_workflow": False,
    "image_subfolder": "",
    "image_url": "api/v1/images/i/a.png/full",
    "thumbnail_url": "api/v1/images/i/a.png/thumbnail",
    "board_id": None,
}


def test_image_known_values_become_enums() -> None:
    image = IvkImage.model_validate(IMAGE_DTO)
    assert image.image_category is ImageCategory.USER
    assert image.image_origin is ImageOrigin.EXTERNAL
    assert image.board_id is None and image.board_or_none == "none"
    assert image.image_subfolder == ""  # type: ignore[attr-defined]  # kept as an extra


def test_image_unknown_category_stays_a_string() -> None:
    image = IvkImage.model_validate({**IMAGE_DTO, "image_category": "video-frame"})
    assert image.image_category == "video-frame"
    assert not isinstance(image.image_category, ImageCategory)


def test_board_tolerates_new_visibility_and_members() -> None:
    board = Board.model_validate(
        {"board_id": "b", "board_name": "n", "board_visibility": "team", "video_count": 3}
    )
    assert board.board_visibility == "team"
    assert board.model_extra == {"video_count": 3}
    public = Board.model_validate(
        {"board_id": "b", "board_name": "n", "board_visibility": "public"}
    )
    assert public.board_visibility is BoardVisibility.PUBLIC


def test_board_counts() -> None:
    board = Board(board_id="none", board_name="Uncategorized", image_count=2, asset_count=3)
    assert board.is_uncategorized and board.total_count == 5


@pytest.mark.parametrize(
    ("offset", "limit", "expected"),
    [
        (0, 100, [(0, 100)]),
        (10, 2500, [(10, 1000), (1010, 1000), (2010, 500)]),
        (0, 1000, [(0, 1000)]),
        (5, 0, []),
    ],
)
def test_page_requests(offset: int, limit: int, expected: list[tuple[int, int]]) -> None:
    assert page_requests(offset, limit) == expected


def test_page_requests_refuse_negative_numbers() -> None:
    with pytest.raises(ValueError):
        page_requests(-1, 10)


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        ("a.png", "image/png"),
        ("a.JPG", "image/jpeg"),
        ("a.webp", "image/webp"),
        ("a.bin", "image/png"),
    ],
)
def test_upload_content_type(filename: str, content_type: str) -> None:
    assert upload_content_type(filename) == content_type


def _recording_client(seen: list[httpx.Request]) -> InvokeAIClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/images/"):
            return httpx.Response(200, json={"limit": 0, "offset": 0, "total": 0, "items": []})
        return httpx.Response(
            201, json={**IMAGE_DTO, "board_id": request.url.params.get("board_id")}
        )

    return InvokeAIClient("test", 9090, transport=httpx.MockTransport(handler))


async def test_upload_sends_board_only_for_real_boards() -> None:
    seen: list[httpx.Request] = []
    client = _recording_client(seen)
    uncategorized = client.board_repo.get_uncategorized_handle()
    await uncategorized.aupload_image_data(b"png", filename="x.png")
    on_board = await client.board_repo.aget_board_handle("none")
    assert on_board.is_uncategorized
    image = await BoardHandle(client.board_repo, "b1").aupload_image_data(b"png", "y.jpg")
    assert image.board_id == "b1"
    first, second = seen
    assert "board_id" not in first.url.params
    assert first.url.params["image_category"] == "user"
    assert first.url.params["is_intermediate"] == "false"
    assert second.url.params["board_id"] == "b1"
    assert b'filename="y.jpg"' in second.content and b"image/jpeg" in second.content
    await client.aclose()


async def test_list_images_splits_large_windows_and_stops_at_the_end() -> None:
    seen: list[httpx.Request] = []
    client = _recording_client(seen)
    assert await client.board_repo.get_uncategorized_handle().alist_images(0, 2500) == []
    assert len(seen) == 1  # an empty first page ends the walk
    params = seen[0].url.params
    assert params["board_id"] == "none" and params["limit"] == "1000"
    await client.aclose()
