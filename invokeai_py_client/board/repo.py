"""``BoardRepository``: boards, and the image operations that need no board.

Routes (InvokeAI 6.14, ``app/api/routers/boards.py`` and ``images.py``): boards under
``/boards/``, images under ``/images/``. The server does not list the uncategorized board;
it is the ``board_id="none"`` filter of the image routes, so we build it here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from .._paths import segment
from .._portal import sync_twin
from ..exceptions import NotFoundError
from .handle import BoardHandle
from .models import (
    ASSET_CATEGORIES,
    IMAGE_CATEGORIES,
    UNCATEGORIZED_BOARD_ID,
    Board,
    BoardDeletion,
    IvkImage,
    uncategorized_board,
)

if TYPE_CHECKING:
    from ..client import InvokeAIClient

__all__ = ["BoardRepository", "ImageStream"]


class ImageStream(NamedTuple):
    """An image file being read: InvokeAI's response headers, and the body as it arrives."""

    headers: Mapping[str, str]  # case-insensitive (content-type, content-length, ...)
    chunks: AsyncIterator[bytes]
    status: int = 200  # 206 for a byte range


def image_path(image_name: str, suffix: str = "") -> str:
    """The API path of one image (names are UUID file names; ValueError for a dot segment)."""
    return f"/images/i/{segment(image_name)}{suffix}"


def video_path(video_name: str, suffix: str = "") -> str:
    """The API path of one video (an MP4 a video node such as Wan's latents-to-video made)."""
    return f"/videos/i/{segment(video_name)}{suffix}"


class BoardRepository:
    """Boards and their images on one server (``client.board_repo``).

    Example:
        >>> renders = client.board_repo.create_board("renders")  # a BoardHandle
        >>> image = renders.upload_image("cat.png")
        >>> same = client.board_repo.get_board_handle(renders.board_id)
    """

    def __init__(self, client: InvokeAIClient) -> None:
        self._client = client
        self._http = client._http
        self._portal = client._portal

    # -- boards ---------------------------------------------------------------------------

    async def alist_boards(
        self, include_uncategorized: bool = True, *, include_archived: bool = False
    ) -> list[Board]:
        """All boards the caller can see, newest first.

        Args:
            include_uncategorized: append the uncategorized pseudo-board (id ``"none"``).
            include_archived: include archived boards.

        Returns:
            The boards, with image and asset counts.
        """
        params = {"all": "true", "include_archived": str(include_archived).lower()}
        body = await self._http.get_json("/boards/", params=params)
        boards = [Board.model_validate(item) for item in body]
        if include_uncategorized:
            boards.append(await self._uncategorized_board())
        return boards

    list_boards = sync_twin(alist_boards)

    async def _count_images(self, board_id: str, categories: tuple[str, ...]) -> int:
        # limit=0 is the server's own count-only query (images.py, list_image_dtos).
        params: dict[str, Any] = {
            "board_id": board_id,
            "categories": list(categories),
            "is_intermediate": "false",
            "limit": 0,
        }
        body = await self._http.get_json("/images/", params=params)
        return int(body["total"])

    async def _uncategorized_board(self) -> Board:
        images, assets = await asyncio.gather(
            self._count_images(UNCATEGORIZED_BOARD_ID, IMAGE_CATEGORIES),
            self._count_images(UNCATEGORIZED_BOARD_ID, ASSET_CATEGORIES),
        )
        return uncategorized_board(images, assets)

    async def aget_board(self, board_id: str) -> Board:
        """One board by id (``"none"`` gives the uncategorized pseudo-board).

        Raises:
            NotFoundError: no board has this id.
        """
        if board_id == UNCATEGORIZED_BOARD_ID:
            return await self._uncategorized_board()
        body = await self._http.get_json(f"/boards/{segment(board_id)}")
        return Board.model_validate(body)

    get_board = sync_twin(aget_board)

    async def aget_board_by_name(self, name: str) -> Board | None:
        """The newest board with exactly this name, or None.

        Board names are not unique on the server; when several match, the most recently
        created one wins (the server lists newest first).
        """
        for board in await self.alist_boards(include_uncategorized=False, include_archived=True):
            if board.board_name == name:
                return board
        return None

    get_board_by_name = sync_twin(aget_board_by_name)

    async def acreate_board(self, name: str) -> BoardHandle:
        """Create a board and return a handle on it (its record is ``handle.board``).

        The server allows duplicate names; each call makes a board with a new id.
        """
        body = await self._http.post_json("/boards/", params={"board_name": name})
        board = Board.model_validate(body)
        return BoardHandle(self, board.board_id, board)

    create_board = sync_twin(acreate_board)

    async def aupdate_board(
        self,
        board_id: str,
        *,
        board_name: str | None = None,
        archived: bool | None = None,
        cover_image_name: str | None = None,
        board_visibility: str | None = None,
    ) -> Board:
        """Change a board's name, archived flag, cover image or visibility.

        Only the arguments given are sent. Raises ``NotFoundError`` for an unknown id.
        """
        changes = {
            "board_name": board_name,
            "archived": archived,
            "cover_image_name": cover_image_name,
            "board_visibility": board_visibility,
        }
        body = await self._http.patch_json(
            f"/boards/{segment(board_id)}",
            json_body={k: v for k, v in changes.items() if v is not None},
        )
        return Board.model_validate(body)

    update_board = sync_twin(aupdate_board)

    async def arename_board(self, board_id: str, new_name: str) -> Board:
        """Rename a board; returns the updated board."""
        return await self.aupdate_board(board_id, board_name=new_name)

    rename_board = sync_twin(arename_board)

    async def adelete_board(self, board_id: str, delete_images: bool = False) -> BoardDeletion:
        """Delete a board.

        Args:
            board_id: the board to delete.
            delete_images: also delete its images; otherwise they become uncategorized.

        Returns:
            The names of the images that were deleted or moved off the board.

        Raises:
            NotFoundError: no board has this id (also for ``"none"``, which is not a board).
        """
        body = await self._http.delete_json(
            f"/boards/{segment(board_id)}",
            params={"include_images": str(delete_images).lower()},
        )
        return BoardDeletion.model_validate(body)

    delete_board = sync_twin(adelete_board)

    # -- handles --------------------------------------------------------------------------

    async def aget_board_handle(self, board_id: str) -> BoardHandle:
        """A handle on one board's images; checks that the board exists.

        ``"none"`` gives the uncategorized handle at once, without a request.

        Raises:
            NotFoundError: no board has this id.
        """
        if board_id == UNCATEGORIZED_BOARD_ID:
            return BoardHandle(self, board_id)
        return BoardHandle(self, board_id, await self.aget_board(board_id))

    get_board_handle = sync_twin(aget_board_handle)

    def get_uncategorized_handle(self) -> BoardHandle:
        """A handle on the images that belong to no board (no request is made)."""
        return BoardHandle(self, UNCATEGORIZED_BOARD_ID)

    # -- images, by name ------------------------------------------------------------------

    async def aget_image(self, image_name: str) -> IvkImage:
        """One image record by name. Raises ``NotFoundError`` if there is none."""
        return IvkImage.model_validate(await self._http.get_json(image_path(image_name)))

    get_image = sync_twin(aget_image)

    async def adownload_image(self, image_name: str, full_resolution: bool = True) -> bytes:
        """The image file: the full PNG, or the server's WEBP thumbnail when not full."""
        suffix = "/full" if full_resolution else "/thumbnail"
        response = await self._http.request("GET", image_path(image_name, suffix))
        return response.content

    download_image = sync_twin(adownload_image)

    async def astream_image(
        self, image_name: str, *, thumbnail: bool = False
    ) -> AsyncIterator[bytes]:
        """Yield an image file in chunks, without holding it all in memory.

        Raises:
            NotFoundError: no image has this name (raised before the first chunk).
        """
        suffix = "/thumbnail" if thumbnail else "/full"
        async with self._http.stream_bytes(image_path(image_name, suffix)) as (_, _, chunks):
            async for chunk in chunks:
                yield chunk

    @contextlib.asynccontextmanager
    async def aopen_image(
        self, image_name: str, *, thumbnail: bool = False, chunk_size: int | None = 1 << 20
    ) -> AsyncIterator[ImageStream]:
        """Open an image file for relaying: headers at once, the body chunk by chunk.

        ``chunk_size=None`` hands on each piece as the socket delivered it (nothing copied or
        held back). The connection is released when the block is left (closed if the body was
        not read to its end).

        Raises:
            NotFoundError: no image has this name (raised on entering, before any body).
        """
        path = image_path(image_name, "/thumbnail" if thumbnail else "/full")
        async with self._http.stream_bytes(path, chunk_size=chunk_size) as (_, headers, chunks):
            yield ImageStream(headers, chunks)

    async def aimage_headers(
        self, image_name: str, *, thumbnail: bool = False
    ) -> Mapping[str, str]:
        """The response headers of an image file, without its body.

        InvokeAI answers HEAD on the full file only (on the thumbnail route a HEAD falls
        through to its web UI's page), so a thumbnail's headers come from a GET whose body is
        not read (its connection is closed, not reused).

        Raises:
            NotFoundError: no image has this name.
        """
        if thumbnail:
            async with self.aopen_image(image_name, thumbnail=True) as opened:
                return opened.headers
        return (await self._http.request("HEAD", image_path(image_name, "/full"))).headers

    image_headers = sync_twin(aimage_headers)

    async def aimage_exists(self, image_name: str) -> bool:
        """Whether an image of this name exists on the server."""
        try:
            await self.aimage_headers(image_name)
        except NotFoundError:
            return False
        return True

    image_exists = sync_twin(aimage_exists)

    # -- videos, by name ------------------------------------------------------------------

    async def adownload_video(self, video_name: str) -> bytes:
        """The whole MP4 file of a video.

        Raises:
            NotFoundError: no video has this name.
        """
        return (await self._http.request("GET", video_path(video_name, "/full"))).content

    download_video = sync_twin(adownload_video)

    @contextlib.asynccontextmanager
    async def aopen_video(
        self,
        video_name: str,
        *,
        chunk_size: int | None = 1 << 20,
        byte_range: str | None = None,
    ) -> AsyncIterator[ImageStream]:
        """Open a video file for relaying, as ``aopen_image`` opens an image.

        ``byte_range`` is an HTTP ``Range`` value (``"bytes=0-1023"``, ``"bytes=-500"``):
        InvokeAI then answers 206 with those bytes (at most 1 MB of them; ask again for the
        rest) and a ``Content-Range``, which is how a video player seeks.

        Raises:
            NotFoundError: no video has this name (raised on entering, before any body).
            APIStatusError: 416 when the range lies past the end (its ``response`` has the
                ``Content-Range`` with the size).
        """
        path = video_path(video_name, "/full")
        extra = {"Range": byte_range} if byte_range else None
        async with self._http.stream_bytes(path, chunk_size=chunk_size, headers=extra) as (
            status,
            headers,
            chunks,
        ):
            yield ImageStream(headers, chunks, status)
