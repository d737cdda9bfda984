"""Videos: stream the MP4 files that video nodes (Wan 2.2's latents to video) made.

Relayed piece by piece as InvokeAI's response arrives, like images, from whichever InvokeAI
server has the video (names are fresh UUIDs). A single byte range (``Range: bytes=...``) is
passed on to InvokeAI, which answers 206 with at most 1 MB of it, as a video player seeking
expects; several ranges, or a conditional ``If-Range``, get the whole file (200), which
RFC 9110 allows.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Request
from starlette.responses import Response, StreamingResponse

from app.api.routes.images import relay_from_any_server
from app.core.names import IMAGE_NAME_MAX_CHARS, IMAGE_NAME_PATTERN
from invokeai_py_client.exceptions import APIStatusError

__all__ = ["router"]

router = APIRouter(prefix="/videos", tags=["videos"])

ONE_RANGE = re.compile(r"bytes=(\d+-\d*|-\d+)")


@router.get(
    "/{video_name}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"video/mp4": {}}, "description": "The video file."},
        206: {"content": {"video/mp4": {}}, "description": "The byte range asked for."},
        404: {"description": "No video has this name."},
        416: {"description": "The range starts past the end (`Content-Range` has the size)."},
    },
)
async def download_video(
    request: Request,
    video_name: Annotated[str, Path(pattern=IMAGE_NAME_PATTERN, max_length=IMAGE_NAME_MAX_CHARS)],
) -> Response:
    """Stream a video's MP4 file from InvokeAI, or the byte range asked for."""
    byte_range = _one_range(request)
    try:
        return await relay_from_any_server(
            request,
            # chunk_size=None: each piece as it comes off InvokeAI's socket, uncopied.
            lambda client: client.board_repo.aopen_video(
                video_name, chunk_size=None, byte_range=byte_range
            ),
            what=f"video {video_name}",
            media_type="video/mp4",
            headers={"accept-ranges": "bytes"},
        )
    except APIStatusError as exc:
        if exc.status_code != 416:
            raise
        size = exc.response.headers.get("content-range", "bytes */*")
        return Response(status_code=416, headers={"content-range": size, "accept-ranges": "bytes"})


def _one_range(request: Request) -> str | None:
    """The request's ``Range`` when it is one byte range and unconditional, else None."""
    wanted = request.headers.get("range", "").replace(" ", "")
    if not wanted or "if-range" in request.headers or not ONE_RANGE.fullmatch(wanted):
        return None
    return wanted
