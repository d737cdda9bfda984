"""One webhook POST with a bounded cost: one deadline for the whole attempt, a few KiB read.

A receiver is anyone's server. httpx's timeouts apply to each network operation, so a reply
dripped a byte at a time resets them for ever; and ``client.post`` reads the whole reply body
into memory, whatever its size. Here the attempt (connect, send, the reply's status and
headers) runs under a single ``asyncio.timeout``, and at most ``MAX_REPLY_BYTES`` of the
reply body are read (only its status and ``Retry-After`` matter to the outbox) before the
connection is let go. The body is read only while the deadline allows: once the status is
in, a reply body still dripping at the deadline is cut off, not waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx

__all__ = ["MAX_REPLY_BYTES", "AttemptTimeout", "post_bounded"]

# Enough for an error message a receiver may send; the rest is never read.
MAX_REPLY_BYTES = 4096


class AttemptTimeout(httpx.TimeoutException):
    """The attempt as a whole took longer than its deadline."""


async def post_bounded(
    http: httpx.AsyncClient,
    url: str,
    *,
    content: bytes,
    headers: Mapping[str, str],
    extensions: dict[str, Any] | None,
    deadline: float,
) -> httpx.Response:
    """POST ``content`` to ``url``; the reply, closed, with at most ``MAX_REPLY_BYTES`` read.

    A reply body that fits is read to its end, so the connection goes back to the pool.

    Raises:
        AttemptTimeout: no status and headers within ``deadline`` seconds of the start.
        httpx.HTTPError: the connection failed.
    """
    end = asyncio.get_running_loop().time() + deadline
    request = http.build_request(
        "POST", url, content=content, headers=dict(headers), extensions=extensions
    )
    try:
        async with asyncio.timeout_at(end):
            response = await http.send(request, stream=True)
    except TimeoutError:
        raise AttemptTimeout(f"no answer within {deadline:g} s") from None
    try:
        async with asyncio.timeout_at(end):
            await _read_head(response)
    except TimeoutError:
        pass  # the status is known; a body still dripping at the deadline is not waited for
    finally:
        await response.aclose()  # an unread rest closes the connection rather than reuse it
    return response


async def _read_head(response: httpx.Response) -> None:
    read = 0
    async for chunk in response.aiter_raw():
        read += len(chunk)
        if read >= MAX_REPLY_BYTES:
            return
