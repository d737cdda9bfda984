"""Boards and their images."""

from .handle import BoardHandle
from .models import (
    UNCATEGORIZED_BOARD_ID,
    Board,
    BoardDeletion,
    BoardVisibility,
    ImageCategory,
    ImageOrigin,
    IvkImage,
)
from .repo import BoardRepository, ImageStream

__all__ = [
    "UNCATEGORIZED_BOARD_ID",
    "Board",
    "BoardDeletion",
    "BoardHandle",
    "BoardRepository",
    "BoardVisibility",
    "ImageCategory",
    "ImageOrigin",
    "ImageStream",
    "IvkImage",
]
