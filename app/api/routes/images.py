"""Images: upload into InvokeAI, and stream full images or thumbnails back out.

Downloads are relayed piece by piece as InvokeAI's response arrives (never held whole in
memory), with its content type and length, so the server sends a plain body rather than a
chunked one. Uploads are counted while they arrive and refused with 413 as soon as they pass
``GATEWAY_MAX_UPLOAD_BYTES``, before the body is read to the end.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, status
from pydantic import BaseModel
from starlette.datastructures import UploadFile
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from app.api.deps import client_of, from_any_server, settings_of
from app.core.errors import GatewayError, NotFound, PayloadTooLarge
from app.core.names import IMAGE_NAME_MAX_CHARS, IMAGE_NAME_PATTERN
from invokeai_py_client import BoardHandle, InvokeAIClient
from invokeai_py_client.board import BoardRepository, ImageStream
from invokeai_py_client.exceptions import APIStatusError, NotFoundError

__all__ = ["ImageUploaded", "relay_from_any_server", "router"]

router = APIRouter(prefix="/images", tags=["images"])

# Headers of InvokeAI's image response worth passing on to our caller.
# content-range: only in a byte range's 206 (videos; no range is passed on for images).
RELAYED_HEADERS = (
    "content-type",
    "content-length",
    "content-range",
    "cache-control",
    "content-disposition",
)
# Multipart framing (boundaries, part headers) on top of the file itself.
MULTIPART_OVERHEAD = 64 * 1024


class UnsupportedImage(GatewayError):
    """InvokeAI could not read the uploaded bytes as an image."""

    status_code = 415
    title = "Unsupported image"


class UploadInvalid(GatewayError):
    """A multipart body without the image part."""

    status_code = 422
    title = "Invalid upload"


class ImageUploaded(BaseModel):
    """An uploaded image: its name on InvokeAI and where to fetch it through the gateway."""

    image_name: str
    url: str
    thumbnail_url: str
    board_id: str | None = None
    width: int | None = None
    height: int | None = None


class _BodyTooLarge(Exception):
    pass


def _limited(receive: Receive, limit: int) -> Receive:
    """A ``receive`` that raises once more than ``limit`` body bytes have arrived."""
    seen = 0

    async def receive_limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _BodyTooLarge
        return message

    return receive_limited


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the upload is larger than the limit of {limit} bytes")


async def _read_upload(request: Request, limit: int) -> tuple[str, bytes]:
    """The file part of a multipart body, refusing bodies above ``limit`` early."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise _too_large(limit)
    counted = Request(request.scope, _limited(request.receive, limit + MULTIPART_OVERHEAD))
    try:
        async with counted.form(max_files=1, max_fields=10) as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise UploadInvalid("send the image as the multipart field 'file'")
            if upload.size is not None and upload.size > limit:
                raise _too_large(limit)
            return upload.filename or "image.png", await upload.read()
    except _BodyTooLarge:
        raise _too_large(limit) from None


def _links(request: Request, image_name: str) -> dict[str, str]:
    url = str(request.url_for("download_image", image_name=image_name).path)
    return {"url": url, "thumbnail_url": f"{url}?thumbnail=1"}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ImageUploaded,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {"file": {"type": "string", "format": "binary"}},
                    }
                }
            },
        }
    },
    responses={413: {"description": "The upload is above GATEWAY_MAX_UPLOAD_BYTES."}},
)
async def upload_image(
    request: Request,
    board_id: Annotated[
        str | None,
        Query(
            description="Put the image on this board (a board id as listed by GET /boards).",
            min_length=1,
            max_length=200,
            pattern=r"^[A-Za-z0-9_-]+$",
        ),
    ] = None,
) -> ImageUploaded:
    """Upload an image (multipart field ``file``) into InvokeAI; returns its name."""
    limit = settings_of(request).max_upload_bytes
    filename, data = await _read_upload(request, limit)
    repo = client_of(request).board_repo
    handle = await _board_handle(repo, board_id)
    try:
        image = await handle.aupload_image_data(data, filename)
    except APIStatusError as exc:
        if exc.status_code == status.HTTP_415_UNSUPPORTED_MEDIA_TYPE:
            raise UnsupportedImage("InvokeAI cannot read the upload as an image") from exc
        raise
    return ImageUploaded(
        image_name=image.image_name,
        board_id=board_id,
        width=getattr(image, "width", None),
        height=getattr(image, "height", None),
        **_links(request, image.image_name),
    )


async def _board_handle(repo: BoardRepository, board_id: str | None) -> BoardHandle:
    if board_id is None:
        return repo.get_uncategorized_handle()
    try:
        return await repo.aget_board_handle(board_id)
    except NotFoundError as exc:
        raise NotFound(f"board {board_id} not found") from exc


@router.get(
    "/{image_name}",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"image/png": {}, "image/webp": {}}, "description": "The image file."},
        304: {"description": "The image named by If-None-Match is still there."},
        404: {"description": "No image has this name."},
    },
)
async def download_image(
    request: Request,
    image_name: Annotated[str, Path(pattern=IMAGE_NAME_PATTERN, max_length=IMAGE_NAME_MAX_CHARS)],
    thumbnail: Annotated[bool, Query(description="The WEBP thumbnail instead.")] = False,
) -> Response:
    """Stream an image from InvokeAI: the full PNG, or the thumbnail with ``?thumbnail=1``.

    Answers carry an ``ETag``; a request whose ``If-None-Match`` names it gets 304 once
    InvokeAI confirms the image still exists (a HEAD, no body sent either way).
    """
    etag = _etag(image_name, thumbnail)
    if _etag_matches(request.headers.get("if-none-match"), etag):
        return await _not_modified(request, image_name, thumbnail, etag)
    return await relay_from_any_server(
        request,
        # chunk_size=None: each piece as it comes off InvokeAI's socket, uncopied.
        lambda client: client.board_repo.aopen_image(
            image_name, thumbnail=thumbnail, chunk_size=None
        ),
        what=f"image {image_name}",
        media_type="application/octet-stream",
        headers={"etag": etag},
    )


async def relay_from_any_server(
    request: Request,
    open_on: Callable[[InvokeAIClient], AbstractAsyncContextManager[ImageStream]],
    *,
    what: str,
    media_type: str,
    headers: Mapping[str, str] | None = None,
) -> RelayResponse:
    """Relay the file ``open_on`` opens on whichever InvokeAI server has it, with its
    content type (``media_type`` when it gives none), length and caching headers, and
    ``headers``; a byte range's 206 with its ``Content-Range``.

    Raises:
        NotFound: no server has ``what``.
    """
    stack = contextlib.AsyncExitStack()

    async def opened(client: InvokeAIClient) -> ImageStream:
        return await stack.enter_async_context(open_on(client))

    try:
        upstream = await from_any_server(request, opened, what=what)
    except BaseException:
        await stack.aclose()
        raise
    found = upstream.headers
    relayed = {k: found[k] for k in RELAYED_HEADERS if k in found} | dict(headers or {})
    content_type = relayed.pop("content-type", media_type)
    return RelayResponse(
        upstream.chunks,
        stack,
        status_code=upstream.status,
        media_type=content_type,
        headers=relayed,
    )


def _etag(image_name: str, thumbnail: bool) -> str:
    # InvokeAI names every image with a fresh UUID and never rewrites the file, so the name
    # identifies the bytes; a thumbnail may be made again, hence weak tags.
    return f'W/"{image_name}{"-thumbnail" if thumbnail else ""}"'


def _etag_matches(if_none_match: str | None, etag: str) -> bool:
    """RFC 9110 weak comparison of ``If-None-Match`` with our tag."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == wanted for tag in if_none_match.split(","))


async def _not_modified(request: Request, image_name: str, thumbnail: bool, etag: str) -> Response:
    upstream = await from_any_server(
        request,
        lambda client: client.board_repo.aimage_headers(image_name, thumbnail=thumbnail),
        what=f"image {image_name}",
    )
    headers = {"etag": etag}
    if "cache-control" in upstream:
        headers["cache-control"] = upstream["cache-control"]
    return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)


class RelayResponse(StreamingResponse):
    """Passes each chunk to the server the moment it arrives; stops when the caller leaves.

    Leaner than ``StreamingResponse``, which runs in an anyio task group: one task sends, one
    waits for the caller's disconnect (uvicorn answers ASGI 2.3, whose ``send`` keeps quiet
    about a closed connection), and whichever ends first stops the other. Leaving always
    closes ``stack``, which releases InvokeAI's connection (closed if not read to its end).
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        stack: contextlib.AsyncExitStack,
        *,
        status_code: int = 200,
        media_type: str,
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(chunks, status_code=status_code, media_type=media_type, headers=headers)
        self._stack = stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        relay = asyncio.ensure_future(self.stream_response(send))
        caller_gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((relay, caller_gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            caller_gone.cancel()
            relay.cancel()  # a no-op when it is done
            try:
                await asyncio.wait((relay,))
            finally:
                await self._stack.aclose()
        if not relay.cancelled():
            relay.result()  # InvokeAI failing mid-body is an error; the caller leaving is not


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
