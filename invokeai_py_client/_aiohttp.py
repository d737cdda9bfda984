"""The wire under ``HttpCore``: an httpx transport that sends through aiohttp, and raw bodies.

Why aiohttp and not httpx's own transport is told in ``_http``. aiohttp's exceptions are
turned into httpx's here, so ``_http.map_transport_errors`` sees one family.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import aiohttp
import httpx

__all__ = [
    "KEEPALIVE_SECONDS",
    "AiohttpTransport",
    "aiohttp_errors_as_httpx",
    "arrived_chunks",
    "client_timeout",
    "exact_chunks",
]


class _AiohttpBody(httpx.AsyncByteStream):
    """A response body read from aiohttp as it arrives (streamed downloads stay streamed)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with aiohttp_errors_as_httpx():
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # A body read to its end returns the connection to the pool; a partly read one
        # closes it.
        self._response.release()


@contextlib.contextmanager
def aiohttp_errors_as_httpx() -> Iterator[None]:
    """aiohttp's exceptions as httpx's, so ``map_transport_errors`` sees one family."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or repr(exc)) from exc
    except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or repr(exc)) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc) or repr(exc)) from exc
    except aiohttp.ClientError as exc:
        raise httpx.ReadError(str(exc) or repr(exc)) from exc


def client_timeout(seconds: float | None) -> aiohttp.ClientTimeout:
    """``HttpCore``'s timeout for a request sent by aiohttp directly (connect: 5 s at most)."""
    return aiohttp.ClientTimeout(
        total=None, connect=seconds, sock_connect=min(seconds or 5.0, 5.0), sock_read=seconds
    )


def _client_timeout(request: httpx.Request) -> aiohttp.ClientTimeout:
    timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
    return aiohttp.ClientTimeout(
        total=None,
        connect=timeouts.get("pool"),
        sock_connect=timeouts.get("connect"),
        sock_read=timeouts.get("read"),
    )


# An idle pooled connection is not reused after this long. InvokeAI's server (uvicorn) closes
# a connection idle for 5 s; reusing one just as it does resets the request, and an enqueue
# that fails that way cannot be told from one whose answer was lost (aiohttp keeps 15 s).
KEEPALIVE_SECONDS = 3.0


class AiohttpTransport(httpx.AsyncBaseTransport):
    """An httpx transport that sends through one ``aiohttp.ClientSession`` (per event loop).

    httpx still builds requests (headers, cookies, multipart) and decodes responses
    (``Content-Encoding``); aiohttp only moves bytes, so it neither decompresses nor keeps
    cookies of its own. Proxies from the environment keep going through httpx's own proxy
    transports, which httpx mounts ahead of this one.
    """

    def __init__(
        self,
        *,
        verify: bool = True,
        max_connections: int = 100,
        keepalive_seconds: float = KEEPALIVE_SECONDS,
    ) -> None:
        self._verify = verify
        self._max_connections = max_connections
        self._keepalive = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None

    def open_session(self) -> aiohttp.ClientSession:
        """The session of this transport (its loop's), opened on first use."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections, ssl=self._verify, keepalive_timeout=self._keepalive
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        headers = [
            (name, value)
            for name, value in request.headers.multi_items()
            # The body is sent whole, with its length (aiohttp adds Content-Length).
            if name.lower() != "transfer-encoding"
        ]
        with aiohttp_errors_as_httpx():
            response = await self.open_session().request(
                request.method,
                str(request.url),
                headers=headers,
                data=body or None,
                allow_redirects=False,
                timeout=_client_timeout(request),
            )
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_AiohttpBody(response),
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (response.reason or "").encode("latin-1", "replace"),
            },
        )

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


async def exact_chunks(response: aiohttp.ClientResponse, size: int) -> AsyncIterator[bytes]:
    """A body in whole chunks of ``size`` bytes (the last one shorter).

    Whole chunks rather than whatever the socket had: a relay then makes few, large writes.
    """
    with aiohttp_errors_as_httpx():
        while True:
            try:
                yield await response.content.readexactly(size)
            except asyncio.IncompleteReadError as end:
                if end.partial:
                    yield end.partial
                return


async def arrived_chunks(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """A body in the pieces the socket delivered (at most one socket read each), never joined.

    What a relay wants: each piece can be passed on the moment it arrives, and no byte is
    copied on the way (``readexactly`` joins its blocks, ``readany`` joins what is buffered).
    """
    content = response.content
    with aiohttp_errors_as_httpx():
        while True:
            chunk, end_of_http_chunk = await content.readchunk()
            if chunk:
                yield chunk
            elif not end_of_http_chunk:  # (b"", True) only marks a chunked-encoding boundary
                return
