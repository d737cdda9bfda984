"""Videos: stream the MP4 files that video nodes (Wan 2.2's latents to video) made.

Relayed piece by piece as InvokeAI's response arrives, like images, from whichever InvokeAI
server has the video (names are fresh UUIDs). The whole file is sent; byte ranges are not
relayed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import Response, StreamingResponse

from app.api.routes.images import relay_from_any_server
from app.core.names import IMAGE_NAME_MAX_CHARS, IMAGE_NAME_PATTERN

__all__ = ["router"]

router = APIRouter(prefix="/videos", tags=["videos"])


@router.get(
    "/{video_name}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"video/mp4": {}}, "description": "The video file."},
        404: {"description": "No video has this name."},
    },
)
async def download_video(
    request: Request,
    video_name: Annotated[str, Path(pattern=IMAGE_NAME_PATTERN, max_length=IMAGE_NAME_MAX_CHARS)],
) -> Response:
    """Stream a video's MP4 file from InvokeAI."""
    return await relay_from_any_server(
        request,
        # chunk_size=None: each piece as it comes off InvokeAI's socket, uncopied.
        lambda client: client.board_repo.aopen_video(video_name, chunk_size=None),
        what=f"video {video_name}",
        media_type="video/mp4",
    )
