"""``BoardHandle``: the images of one board (or of the uncategorized pseudo-board).

Routes (InvokeAI 6.14): ``GET /images/?board_id=`` pages image records (at most 1000 a
request), ``POST /images/upload`` takes the board as a query parameter, ``/board_images/``
adds an image to a board or takes it off its board, ``PATCH /images/i/{name}`` stars.
"""

from __future__ import annotations

import asyncio
import mimetypes
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._paths import segment
from .._portal import sync_twin
from ..exceptions import InvokeAIError
from .models import UNCATEGORIZED_BOARD_ID, Board, ImageCategory, IvkImage, parse_images

if TYPE_CHECKING:
    from .repo import BoardRepository

__all__ = ["MAX_PAGE_SIZE", "BoardHandle", "page_requests"]

MAX_PAGE_SIZE = 1000
"""The largest ``limit`` the image list route accepts (shared/pagination.py)."""

DEFAULT_UPLOAD_CATEGORY = ImageCategory.USER


def page_requests(offset: int, limit: int, page_size: int = MAX_PAGE_SIZE) -> list[tuple[int, int]]:
    """Split one ``(offset, limit)`` window into requests the server accepts.

    Example:
        >>> page_requests(10, 2500)
        [(10, 1000), (1010, 1000), (2010, 500)]
    """
    if offset < 0 or limit < 0:
        raise ValueError("offset and limit must not be negative")
    end = offset + limit
    return [(start, min(page_size, end - start)) for start in range(offset, end, page_size)]


def upload_content_type(filename: str) -> str:
    """The multipart content type for an upload.

    The server refuses any part whose type does not start with ``image`` (415) and then
    reads the bytes with Pillow, so an unknown extension is sent as PNG rather than refused.
    """
    guessed, _ = mimetypes.guess_type(filename)
    return guessed if guessed and guessed.startswith("image/") else "image/png"


class BoardHandle:
    """The images of one board; from ``board_repo.get_board_handle(board_id)`` or
    ``board_repo.create_board(name)``.

    ``board`` is the board's record as it was when the handle was made; ``get_board()`` reads
    it anew. Synchronous methods have async twins with an ``a`` prefix (``await h.alist_images()``).
    """

    def __init__(self, repo: BoardRepository, board_id: str, board: Board | None = None) -> None:
        self._repo = repo
        self._http = repo._http
        self._portal = repo._portal
        self.board_id = board_id
        self._board = board

    @property
    def board(self) -> Board:
        """The board's record from when the handle was made.

        Raises:
            InvokeAIError: the uncategorized handle, made without a request, holds no record;
                ``get_board()`` reads one.
        """
        if self._board is None:
            raise InvokeAIError(
                "the uncategorized handle holds no board record; call get_board() for one"
            )
        return self._board

    def __repr__(self) -> str:
        return f"BoardHandle(board_id={self.board_id!r})"

    @property
    def is_uncategorized(self) -> bool:
        """True for the handle on images without a board."""
        return self.board_id == UNCATEGORIZED_BOARD_ID

    async def aget_board(self) -> Board:
        """The board's current record (name, counts)."""
        return await self._repo.aget_board(self.board_id)

    get_board = sync_twin(aget_board)

    # -- listing --------------------------------------------------------------------------

    async def alist_images(
        self,
        offset: int = 0,
        limit: int = 100,
        *,
        categories: Iterable[str] | None = None,
        is_intermediate: bool | None = None,
        starred_first: bool = True,
        order_dir: str = "DESC",
        search_term: str | None = None,
    ) -> list[IvkImage]:
        """One page of the board's images, newest first (starred first by default).

        Args:
            offset: how many images to skip.
            limit: how many to return at most (any size; fetched 1000 at a time).
            categories: only these image categories (default: all).
            is_intermediate: only intermediate (True) or final (False) images (default: both).
            starred_first: put starred images first, as the server does by default.
            order_dir: ``"DESC"`` (newest first) or ``"ASC"``.
            search_term: only images whose metadata contains this text.
        """
        params: dict[str, Any] = {
            "board_id": self.board_id,
            "starred_first": str(starred_first).lower(),
            "order_dir": order_dir,
        }
        if categories is not None:
            params["categories"] = [str(c) for c in categories]
        if is_intermediate is not None:
            params["is_intermediate"] = str(is_intermediate).lower()
        if search_term:
            params["search_term"] = search_term
        images: list[IvkImage] = []
        for page_offset, page_limit in page_requests(offset, limit):
            body = await self._http.get_json(
                "/images/", params={**params, "offset": page_offset, "limit": page_limit}
            )
            images.extend(parse_images(body["items"]))
            if len(body["items"]) < page_limit:
                break
        return images

    list_images = sync_twin(alist_images)

    async def alist_image_names(self) -> list[str]:
        """The names of every image on the board, in one request."""
        body = await self._http.get_json(f"/boards/{segment(self.board_id)}/image_names")
        return [str(name) for name in body]

    list_image_names = sync_twin(alist_image_names)

    # -- upload and download ---------------------------------------------------------------

    async def aupload_image_data(
        self,
        data: bytes,
        filename: str = "image.png",
        *,
        image_category: str = DEFAULT_UPLOAD_CATEGORY,
        is_intermediate: bool = False,
    ) -> IvkImage:
        """Upload image bytes into this board (uncategorized: into no board).

        Args:
            data: the encoded image (PNG, JPEG, WEBP, ...; the server re-encodes to PNG).
            filename: the name sent with the upload; its extension picks the content type.
            image_category: the category to file it under (``user`` like the editor's uploads).
            is_intermediate: mark it intermediate (hidden from the gallery).

        Returns:
            The new image record; the server names it, not ``filename``.

        Raises:
            APIStatusError: status 415 when the server cannot read the bytes as an image.
        """
        params: dict[str, Any] = {
            "image_category": str(image_category),
            "is_intermediate": str(is_intermediate).lower(),
        }
        if not self.is_uncategorized:
            params["board_id"] = self.board_id
        files = {"file": (filename, data, upload_content_type(filename))}
        body = await self._http.post_json("/images/upload", params=params, files=files)
        return IvkImage.model_validate(body)

    upload_image_data = sync_twin(aupload_image_data)

    async def aupload_image(
        self,
        path: str | Path,
        *,
        image_category: str = DEFAULT_UPLOAD_CATEGORY,
        is_intermediate: bool = False,
    ) -> IvkImage:
        """Upload an image file into this board; see ``upload_image_data``."""
        path = Path(path)
        data = await asyncio.to_thread(path.read_bytes)
        return await self.aupload_image_data(
            data, path.name, image_category=image_category, is_intermediate=is_intermediate
        )

    upload_image = sync_twin(aupload_image)

    async def adownload_image(self, image_name: str, full_resolution: bool = True) -> bytes:
        """The image file: full-size PNG, or the WEBP thumbnail when ``full_resolution=False``.

        Raises:
            NotFoundError: no image has this name.
        """
        return await self._repo.adownload_image(image_name, full_resolution)

    download_image = sync_twin(adownload_image)

    # -- moving, deleting, starring -------------------------------------------------------

    async def amove_image_to(self, image_name: str, board_id: str) -> bool:
        """Put an image on another board (``"none"``: take it off every board).

        The server moves the image from whatever board it is on; returns True when it did.
        """
        if board_id == UNCATEGORIZED_BOARD_ID:
            return await self.aremove_image(image_name)
        body = await self._http.post_json(
            "/board_images/", json_body={"board_id": board_id, "image_name": image_name}
        )
        return image_name in body.get("added_images", [])

    move_image_to = sync_twin(amove_image_to)

    async def aremove_image(self, image_name: str) -> bool:
        """Take an image off its board, making it uncategorized (the image is kept).

        Returns True when the image is uncategorized afterwards.
        """
        body = await self._http.delete_json("/board_images/", json_body={"image_name": image_name})
        return image_name in body.get("removed_images", [])

    remove_image = sync_twin(aremove_image)

    async def adelete_image(self, image_name: str) -> bool:
        """Delete an image and its file for good. Returns True when it was deleted.

        Raises:
            NotFoundError: no image has this name.
        """
        body = await self._http.delete_json(f"/images/i/{segment(image_name)}")
        return image_name in body.get("deleted_images", [])

    delete_image = sync_twin(adelete_image)

    async def _set_starred(self, image_name: str, starred: bool) -> IvkImage:
        body = await self._http.patch_json(
            f"/images/i/{segment(image_name)}", json_body={"starred": starred}
        )
        return IvkImage.model_validate(body)

    async def astar_image(self, image_name: str) -> IvkImage:
        """Star an image; returns the updated record."""
        return await self._set_starred(image_name, True)

    star_image = sync_twin(astar_image)

    async def aunstar_image(self, image_name: str) -> IvkImage:
        """Unstar an image; returns the updated record."""
        return await self._set_starred(image_name, False)

    unstar_image = sync_twin(aunstar_image)
