"""Reading request bodies with a size limit (413 before the whole body is held in memory)."""

from __future__ import annotations

from fastapi import Request

from app.core.errors import PayloadTooLarge

__all__ = ["read_body_limited"]


async def read_body_limited(request: Request, limit: int) -> bytes:
    """The request body, or ``PayloadTooLarge`` as soon as it passes ``limit`` bytes.

    The body is cached on the request afterwards, so ``request.form()`` can parse it.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is larger than the limit of {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body is larger than the limit of {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette reuses a read body for form() and json()
    return body
