"""Boards on InvokeAI: list, create, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from app.api.deps import client_of
from app.core.errors import NotFound
from app.core.names import BOARD_ID_PATTERN, ID_MAX_CHARS
from invokeai_py_client.board.models import UNCATEGORIZED_BOARD_ID, Board
from invokeai_py_client.exceptions import NotFoundError

__all__ = ["BoardCreate", "BoardPublic", "BoardsPublic", "router"]

router = APIRouter(prefix="/boards", tags=["boards"])


class BoardPublic(BaseModel):
    """A board; the uncategorized pseudo-board has the id ``none``."""

    board_id: str
    board_name: str
    image_count: int = 0
    asset_count: int = 0
    archived: bool = False
    cover_image_name: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class BoardsPublic(BaseModel):
    """Every board."""

    data: list[BoardPublic]
    count: int


class BoardCreate(BaseModel):
    """The body of ``POST /boards``."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "renders"}]})

    name: str = Field(min_length=1, max_length=300)


def _public(board: Board) -> BoardPublic:
    return BoardPublic.model_validate(board.model_dump(include=set(BoardPublic.model_fields)))


@router.get("", response_model=BoardsPublic)
async def list_boards(request: Request) -> BoardsPublic:
    """Every board on InvokeAI, newest first, then the uncategorized pseudo-board."""
    boards = await client_of(request).board_repo.alist_boards()
    return BoardsPublic(data=[_public(b) for b in boards], count=len(boards))


@router.post("", status_code=status.HTTP_201_CREATED, response_model=BoardPublic)
async def create_board(request: Request, body: BoardCreate) -> BoardPublic:
    """Create a board (names need not be unique; each board gets a new id)."""
    return _public((await client_of(request).board_repo.acreate_board(body.name)).board)


@router.delete(
    "/{board_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={404: {"description": "No board has this id."}},
)
async def delete_board(
    request: Request,
    board_id: Annotated[str, Path(pattern=BOARD_ID_PATTERN, max_length=ID_MAX_CHARS)],
    delete_images: Annotated[
        bool, Query(description="Also delete its images (otherwise they become uncategorized).")
    ] = False,
) -> Response:
    """Delete a board."""
    missing = NotFound(f"board {board_id} not found")
    if board_id == UNCATEGORIZED_BOARD_ID:
        raise missing  # the uncategorized pseudo-board is not a board InvokeAI can delete
    try:
        await client_of(request).board_repo.adelete_board(board_id, delete_images=delete_images)
    except NotFoundError as exc:
        raise missing from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)
