"""Boards and images against the real server: every public method of the repo and handle."""

from __future__ import annotations

import contextlib
import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from invokeai_py_client import InvokeAIClient, NotFoundError
from invokeai_py_client.board import Board, BoardHandle, ImageCategory, IvkImage

pytestmark = pytest.mark.invokeai


def png_bytes(width: int = 32, height: int = 24, color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return buf.getvalue()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def board(client: InvokeAIClient) -> Iterator[Board]:
    """A fresh board, deleted with its images afterwards."""
    created = client.board_repo.create_board(unique("test-board")).board
    yield created
    with contextlib.suppress(NotFoundError):
        client.board_repo.delete_board(created.board_id, delete_images=True)


@pytest.fixture
def handle(client: InvokeAIClient, board: Board) -> BoardHandle:
    return client.board_repo.get_board_handle(board.board_id)


def test_create_rename_get_delete_empty_board(client: InvokeAIClient) -> None:
    repo = client.board_repo
    name = unique("created")
    created = repo.create_board(name)
    assert isinstance(created, BoardHandle) and created.board_id == created.board.board_id
    board = created.board
    assert board.board_name == name and board.image_count == 0 and not board.is_uncategorized

    renamed = repo.rename_board(board.board_id, name + "-renamed")
    assert renamed.board_name == name + "-renamed"
    assert repo.get_board(board.board_id).board_name == name + "-renamed"

    archived = repo.update_board(board.board_id, archived=True)
    assert archived.archived is True and archived.board_name == name + "-renamed"

    result = repo.delete_board(board.board_id)
    assert result.board_id == board.board_id and result.deleted_images == []
    with pytest.raises(NotFoundError):
        repo.get_board(board.board_id)


def test_list_boards_with_and_without_uncategorized(client: InvokeAIClient, board: Board) -> None:
    with_none = client.board_repo.list_boards()
    ids = [b.board_id for b in with_none]
    assert board.board_id in ids
    assert ids[-1] == "none" and with_none[-1].board_name == "Uncategorized"
    without = client.board_repo.list_boards(include_uncategorized=False)
    assert "none" not in [b.board_id for b in without]
    assert board.board_id in [b.board_id for b in without]


def test_archived_boards_are_listed_only_on_request(client: InvokeAIClient, board: Board) -> None:
    client.board_repo.update_board(board.board_id, archived=True)
    assert board.board_id not in [b.board_id for b in client.board_repo.list_boards()]
    listed = client.board_repo.list_boards(include_archived=True)
    assert board.board_id in [b.board_id for b in listed]


def test_uncategorized_counts_follow_uploads(client: InvokeAIClient) -> None:
    repo = client.board_repo
    before = repo.get_board("none")
    image = repo.get_uncategorized_handle().upload_image_data(png_bytes())
    try:
        after = repo.list_boards()[-1]
        # Uploads are "user" images, which InvokeAI counts as assets.
        assert after.asset_count == before.asset_count + 1
        assert after.image_count == before.image_count
        assert after.total_count == before.total_count + 1
    finally:
        repo.get_uncategorized_handle().delete_image(image.image_name)


def test_get_board_by_name(client: InvokeAIClient, board: Board) -> None:
    found = client.board_repo.get_board_by_name(board.board_name)
    assert found is not None and found.board_id == board.board_id
    assert client.board_repo.get_board_by_name(unique("no-such-board")) is None


def test_unknown_board_ids_raise_not_found(client: InvokeAIClient) -> None:
    repo = client.board_repo
    with pytest.raises(NotFoundError):
        repo.get_board_handle("no-such-board")
    with pytest.raises(NotFoundError):
        repo.rename_board("no-such-board", "x")
    with pytest.raises(NotFoundError):
        repo.delete_board("no-such-board")


def test_upload_from_path_and_bytes_into_board(
    handle: BoardHandle, board: Board, tmp_path: Path
) -> None:
    path = tmp_path / "picture.png"
    path.write_bytes(png_bytes(40, 30, "blue"))
    from_path = handle.upload_image(path)
    from_bytes = handle.upload_image_data(png_bytes(20, 10), filename="data.png")

    for image, size in ((from_path, (40, 30)), (from_bytes, (20, 10))):
        assert isinstance(image, IvkImage)
        assert image.board_id == board.board_id
        assert (image.width, image.height) == size
        assert image.image_category == ImageCategory.USER
        assert image.is_intermediate is False
    assert set(handle.list_image_names()) == {from_path.image_name, from_bytes.image_name}
    assert handle.get_board().asset_count == 2


def test_upload_with_category_and_unknown_extension(handle: BoardHandle) -> None:
    image = handle.upload_image_data(png_bytes(), filename="blob.bin", image_category="control")
    assert image.image_category == ImageCategory.CONTROL


def test_upload_to_uncategorized_has_no_board(client: InvokeAIClient) -> None:
    uncategorized = client.board_repo.get_uncategorized_handle()
    image = uncategorized.upload_image_data(png_bytes())
    try:
        assert image.board_id is None and image.board_or_none == "none"
        assert image.image_name in uncategorized.list_image_names()
        names = [i.image_name for i in uncategorized.list_images(limit=1000)]
        assert image.image_name in names
    finally:
        uncategorized.delete_image(image.image_name)


def test_list_images_pages(handle: BoardHandle) -> None:
    uploaded = [handle.upload_image_data(png_bytes(8 + i, 8)).image_name for i in range(5)]
    pages = [handle.list_images(offset=o, limit=2) for o in (0, 2, 4)]
    assert [len(p) for p in pages] == [2, 2, 1]
    names = [i.image_name for page in pages for i in page]
    assert len(set(names)) == 5
    assert names == list(reversed(uploaded))  # newest first
    assert handle.list_images(offset=5, limit=2) == []
    oldest_first = handle.list_images(order_dir="ASC")
    assert [i.image_name for i in oldest_first] == uploaded
    assert handle.list_images(categories=["general"]) == []


def test_download_full_and_thumbnail(handle: BoardHandle) -> None:
    image = handle.upload_image_data(png_bytes(600, 400, "green"))
    full = handle.download_image(image.image_name)
    assert full.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(full)) as opened:
        assert opened.size == (600, 400)
        assert opened.convert("RGB").getpixel((10, 10)) == (0, 128, 0)

    thumb = handle.download_image(image.image_name, full_resolution=False)
    assert thumb[:4] == b"RIFF" and thumb[8:12] == b"WEBP"
    with Image.open(io.BytesIO(thumb)) as opened:
        assert max(opened.size) < 600
        assert opened.size[0] > opened.size[1]  # aspect kept


def test_download_unknown_image_raises_not_found(handle: BoardHandle) -> None:
    with pytest.raises(NotFoundError):
        handle.download_image("no-such-image.png")


def test_move_and_remove(client: InvokeAIClient, handle: BoardHandle, board: Board) -> None:
    other = client.board_repo.create_board(unique("other"))
    try:
        image = handle.upload_image_data(png_bytes())
        assert handle.move_image_to(image.image_name, other.board_id) is True
        assert client.board_repo.get_image(image.image_name).board_id == other.board_id
        assert image.image_name not in handle.list_image_names()

        assert handle.move_image_to(image.image_name, board.board_id) is True
        assert client.board_repo.get_image(image.image_name).board_id == board.board_id

        assert handle.remove_image(image.image_name) is True
        assert client.board_repo.get_image(image.image_name).board_id is None
        assert image.image_name in client.board_repo.get_uncategorized_handle().list_image_names()

        handle.move_image_to(image.image_name, board.board_id)
        assert handle.move_image_to(image.image_name, "none") is True
        assert client.board_repo.get_image(image.image_name).board_id is None
        client.board_repo.get_uncategorized_handle().delete_image(image.image_name)
    finally:
        client.board_repo.delete_board(other.board_id, delete_images=True)


def test_delete_image(client: InvokeAIClient, handle: BoardHandle) -> None:
    image = handle.upload_image_data(png_bytes())
    assert handle.delete_image(image.image_name) is True
    with pytest.raises(NotFoundError):
        client.board_repo.get_image(image.image_name)
    assert handle.list_images() == []
    with pytest.raises(NotFoundError):
        handle.delete_image(image.image_name)


def test_star_and_unstar(client: InvokeAIClient, handle: BoardHandle) -> None:
    first = handle.upload_image_data(png_bytes(10, 10))
    second = handle.upload_image_data(png_bytes(12, 12))
    starred = handle.star_image(first.image_name)
    assert starred.starred is True
    assert client.board_repo.get_image(first.image_name).starred is True
    # Starred images come first unless asked otherwise.
    assert handle.list_images()[0].image_name == first.image_name
    assert handle.list_images(starred_first=False)[0].image_name == second.image_name
    assert handle.unstar_image(first.image_name).starred is False
    assert client.board_repo.get_image(first.image_name).starred is False


def test_delete_board_keeps_its_images(client: InvokeAIClient) -> None:
    repo = client.board_repo
    board = repo.create_board(unique("keep"))
    image = repo.get_board_handle(board.board_id).upload_image_data(png_bytes())
    result = repo.delete_board(board.board_id, delete_images=False)
    assert result.deleted_board_images == [image.image_name] and result.deleted_images == []
    kept = repo.get_image(image.image_name)
    assert kept.board_id is None
    repo.get_uncategorized_handle().delete_image(image.image_name)


def test_delete_board_with_its_images(client: InvokeAIClient) -> None:
    repo = client.board_repo
    board = repo.create_board(unique("purge"))
    image = repo.get_board_handle(board.board_id).upload_image_data(png_bytes())
    result = repo.delete_board(board.board_id, delete_images=True)
    assert result.deleted_images == [image.image_name]
    with pytest.raises(NotFoundError):
        repo.get_image(image.image_name)
    with pytest.raises(NotFoundError):
        repo.get_board(board.board_id)


async def test_async_twins_and_streaming(aclient: InvokeAIClient) -> None:
    repo = aclient.board_repo
    board = (await repo.acreate_board(unique("async"))).board
    try:
        handle = await repo.aget_board_handle(board.board_id)
        image = await handle.aupload_image_data(png_bytes(300, 200))
        listed = await handle.alist_images()
        assert [i.image_name for i in listed] == [image.image_name]
        full = await handle.adownload_image(image.image_name)
        chunks = [c async for c in repo.astream_image(image.image_name)]
        assert b"".join(chunks) == full
        thumb = b"".join([c async for c in repo.astream_image(image.image_name, thumbnail=True)])
        assert thumb == await handle.adownload_image(image.image_name, full_resolution=False)
        assert (await handle.astar_image(image.image_name)).starred is True
        assert (await repo.aget_board_by_name(board.board_name)) is not None
    finally:
        await repo.adelete_board(board.board_id, delete_images=True)


async def test_astream_unknown_image_raises_before_any_chunk(aclient: InvokeAIClient) -> None:
    received: list[bytes] = []
    with pytest.raises(NotFoundError):
        async for chunk in aclient.board_repo.astream_image("no-such-image.png"):
            received.append(chunk)
    assert received == []


async def test_open_image_gives_headers_then_chunks_and_exists_asks_by_head(
    aclient: InvokeAIClient,
) -> None:
    repo = aclient.board_repo
    uncategorized = repo.get_uncategorized_handle()
    image = await uncategorized.aupload_image_data(png_bytes(64, 48))
    try:
        full = await repo.adownload_image(image.image_name)
        async with repo.aopen_image(image.image_name, chunk_size=None) as opened:
            assert opened.headers["content-type"] == "image/png"
            assert int(opened.headers["content-length"]) == len(full)
            assert b"".join([c async for c in opened.chunks]) == full
        head = await repo.aimage_headers(image.image_name, thumbnail=True)
        assert head["content-type"] == "image/webp"
        assert await repo.aimage_exists(image.image_name) is True
        assert await repo.aimage_exists("no-such-image.png") is False
        with pytest.raises(NotFoundError):
            async with repo.aopen_image("no-such-image.png"):
                pass
    finally:
        await uncategorized.adelete_image(image.image_name)
