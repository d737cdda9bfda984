"""Records of boards and images, as the server sends them.

Enums read from the server are open: a value a newer InvokeAI adds stays a plain string
instead of failing validation (``union_mode="left_to_right"`` tries the enum first, then
``str``; pydantic's default "smart" mode would pick ``str`` for every value).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field

from .._models import APIModel

__all__ = [
    "UNCATEGORIZED_BOARD_ID",
    "Board",
    "BoardDeletion",
    "BoardVisibility",
    "ImageCategory",
    "ImageOrigin",
    "IvkImage",
]

UNCATEGORIZED_BOARD_ID = "none"
"""The id InvokeAI uses for "no board" in board routes and image filters."""

UNCATEGORIZED_BOARD_NAME = "Uncategorized"

# InvokeAI counts "images" and "assets" separately (boards_default.py, _get_counts):
# images are the ``general`` category, assets everything else.
IMAGE_CATEGORIES = ("general",)
ASSET_CATEGORIES = ("control", "mask", "user", "other")


class ImageCategory(StrEnum):
    """What an image is for (InvokeAI's ``ImageCategory``)."""

    GENERAL = "general"
    MASK = "mask"
    CONTROL = "control"
    USER = "user"
    OTHER = "other"


class ImageOrigin(StrEnum):
    """Where an image came from: made by a node (internal) or uploaded (external)."""

    INTERNAL = "internal"
    EXTERNAL = "external"


class BoardVisibility(StrEnum):
    """Who can see a board in multi-user mode."""

    PRIVATE = "private"
    SHARED = "shared"
    PUBLIC = "public"


OpenImageCategory = Annotated[ImageCategory | str, Field(union_mode="left_to_right")]
OpenImageOrigin = Annotated[ImageOrigin | str, Field(union_mode="left_to_right")]
OpenBoardVisibility = Annotated[BoardVisibility | str, Field(union_mode="left_to_right")]


class Board(APIModel):
    """A board (InvokeAI's ``BoardDTO``); the uncategorized pseudo-board has id ``"none"``."""

    board_id: str
    board_name: str
    user_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    archived: bool = False
    board_visibility: OpenBoardVisibility = BoardVisibility.PRIVATE
    cover_image_name: str | None = None
    image_count: int = 0
    asset_count: int = 0
    owner_username: str | None = None

    @property
    def is_uncategorized(self) -> bool:
        """True for the pseudo-board that holds images without a board."""
        return self.board_id == UNCATEGORIZED_BOARD_ID

    @property
    def total_count(self) -> int:
        """Images plus assets: everything ``list_images`` returns by default."""
        return self.image_count + self.asset_count


def uncategorized_board(image_count: int, asset_count: int) -> Board:
    """The uncategorized pseudo-board, which the server does not list itself."""
    return Board(
        board_id=UNCATEGORIZED_BOARD_ID,
        board_name=UNCATEGORIZED_BOARD_NAME,
        image_count=image_count,
        asset_count=asset_count,
    )


class IvkImage(APIModel):
    """An image record (InvokeAI's ``ImageDTO``); ``board_id`` is None when uncategorized."""

    image_name: str
    board_id: str | None = None
    image_category: OpenImageCategory = ImageCategory.GENERAL
    image_origin: OpenImageOrigin | None = None
    width: int = 0
    height: int = 0
    starred: bool = False
    is_intermediate: bool = False
    has_workflow: bool = False
    session_id: str | None = None
    node_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    image_url: str | None = None
    thumbnail_url: str | None = None

    @property
    def board_or_none(self) -> str:
        """The board id, with ``"none"`` for uncategorized (as board routes spell it)."""
        return self.board_id or UNCATEGORIZED_BOARD_ID


class BoardDeletion(APIModel):
    """What deleting a board did (InvokeAI's ``DeleteBoardResult``)."""

    board_id: str
    deleted_board_images: list[str] = Field(default_factory=list)
    deleted_images: list[str] = Field(default_factory=list)
    failed_images: list[str] = Field(default_factory=list)


def parse_images(items: list[dict[str, Any]]) -> list[IvkImage]:
    """Parse the ``items`` of an image page."""
    return [IvkImage.model_validate(item) for item in items]
