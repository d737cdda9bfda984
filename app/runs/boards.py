"""A run's board on the InvokeAI server that runs it.

Board ids are each server's own. With several servers, a ``board_id`` from ``GET /boards``
(the first server's) names a board *by its name* on the others: a run placed elsewhere puts
its images on that server's board of the same name, made there the first time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from weakref import WeakKeyDictionary

from app.runs.inputs import Unplaceable
from invokeai_py_client import InvokeAIClient
from invokeai_py_client.exceptions import InvokeAIError

__all__ = ["board_on"]

UNCATEGORIZED = "none"

# One board made at a time per server: runs placed together must not make two of a name.
_making: WeakKeyDictionary[InvokeAIClient, asyncio.Lock] = WeakKeyDictionary()


async def board_on(client: InvokeAIClient, others: Sequence[InvokeAIClient], board_id: str) -> str:
    """The id on ``client``'s server of the board ``board_id`` names on any server: the same
    id when it has it, else its board of the same name (made when missing).

    Raises:
        Unplaceable: neither this server nor any other that answers has the board.
    """
    if not others or board_id == UNCATEGORIZED:
        return board_id
    lock = _making.setdefault(client, asyncio.Lock())
    async with lock:
        mine = await client.board_repo.alist_boards(include_uncategorized=False)
        if any(board.board_id == board_id for board in mine):
            return board_id
        name = await _name_elsewhere(others, board_id)
        if name is None:
            reason = f"board {board_id!r} does not exist on the server"
            problem = {"index": None, "label": None, "field_name": "board_id", "node_id": None}
            raise Unplaceable(reason, errors=[problem | {"reason": reason}])
        same = next((board for board in mine if board.board_name == name), None)
        if same is not None:
            return same.board_id
        return (await client.board_repo.acreate_board(name)).board.board_id


async def _name_elsewhere(others: Sequence[InvokeAIClient], board_id: str) -> str | None:
    for other in others:
        with contextlib.suppress(InvokeAIError):
            for board in await other.board_repo.alist_boards(include_uncategorized=False):
                if board.board_id == board_id:
                    return board.board_name
    return None
