"""The HTTP shell: one place that sends requests, retries safely and translates errors.

Every resource reaches the server through ``HttpCore.request`` (or the ``get``/``post``/...
helpers), never through an httpx client of its own. One ``httpx.AsyncClient`` is kept per
event loop: the sync facade's portal loop has its own pool, and so does each loop an async
caller uses, because an httpx async pool must not be shared across loops.

httpx is the interface; the wire is aiohttp's (``AiohttpTransport``), already a dependency for
Socket.IO. Measured on loopback against InvokeAI 6.14.2, a queue item read took 3.6 ms through
httpx's own transport and 2.9 ms through aiohttp (the bare socket: 2.3 ms); httpcore's
per-request cost (anyio cancel scopes, a failed ``import sniffio`` on every pooled request)
was most of the difference, and it sits right on the path from a run's end to its waiter.
The ``httpx-aiohttp`` package offers such a transport too, but maps a refused connection to a
connect *timeout*; the enqueue logic must tell "never sent" from "answer lost", so the small
transport here keeps aiohttp's errors apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeGuard, TypeVar
from urllib.parse import urlsplit

import aiohttp
import httpx

from ._aiohttp import (
    AiohttpTransport,
    aiohttp_errors_as_httpx,
    arrived_chunks,
    client_timeout,
    exact_chunks,
)
from ._constants import DEFAULT_CONNECT_TIMEOUT
from ._retry import backoff, is_idempotent, parse_retry_after, should_retry_status
from ._types import NOT_GIVEN, NotGiven
from .exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    status_error_class,
)

__all__ = ["AiohttpTransport", "HttpCore", "is_loopback_url", "map_transport_errors"]

REFRESHED_TOKEN_HEADER = "x-refreshed-token"
# A streamed body's read buffer: aiohttp stops reading the socket above twice this and resumes
# below it, so it bounds a download's memory when the reader is slower than InvokeAI. Small
# is faster too: relaying 20 MB took 24 ms of gateway CPU with 256 KiB, 27 ms with 1 MiB, as
# the bytes stay in the CPU's caches (alternating A/B, 20 downloads each; 128 KiB no better).
STREAM_BUFFER_BYTES = 256 * 1024
_R = TypeVar("_R")


@contextlib.contextmanager
def map_transport_errors(url: str) -> Iterator[None]:
    """Turn httpx's transport exceptions into ours, keeping the original as ``__cause__``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise APITimeoutError(f"request to {url} timed out: {exc!r}", url=url) from exc
    except httpx.TransportError as exc:
        raise APIConnectionError(f"cannot connect to {url}: {exc!r}", url=url) from exc


def is_loopback_url(url: str) -> bool:
    """Whether ``url`` names this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _decode_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text


def _failed(response: object) -> TypeGuard[httpx.Response]:
    return isinstance(response, httpx.Response) and not response.is_success


async def _chunks(
    response: aiohttp.ClientResponse, url: str, size: int | None
) -> AsyncIterator[bytes]:
    chunks = arrived_chunks(response) if size is None else exact_chunks(response, size)
    with map_transport_errors(url):
        async for chunk in chunks:
            yield chunk


def make_status_error(method: str, response: httpx.Response) -> APIStatusError:
    """Build the status error for a response, with the server's detail in the message."""
    body = _decode_body(response)
    detail = body.get("detail", body) if isinstance(body, dict) else body
    text = json.dumps(detail)[:2000] if not isinstance(detail, str) else detail[:2000]
    try:
        url = str(response.request.url)
    except RuntimeError:  # a response built by hand has no request
        url = ""
    message = f"{method} {url} -> {response.status_code}: {text or response.reason_phrase}"
    return status_error_class(response.status_code)(message, response=response, body=body)


class HttpCore:
    """Sends requests to one InvokeAI server, from whatever event loop the caller is on."""

    def __init__(
        self,
        *,
        base_url: str,
        api_prefix: str,
        timeout: float | None,
        verify: bool,
        max_retries: int,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        authenticate: Callable[[], Awaitable[str]] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_prefix = "/" + api_prefix.strip("/") if api_prefix.strip("/") else ""
        self.timeout = timeout
        self.verify = verify
        self.max_retries = max_retries
        self.token = token
        self._transport = transport
        # Multi-user servers: log in lazily before the first request, and again once on a 401
        # (tokens expire after a day).
        self._authenticate = authenticate
        # Called on the loop that gets a new pool (the client closes it when that loop ends).
        self.on_new_pool: Callable[[], None] | None = None
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._raw_transports: weakref.WeakKeyDictionary[
            httpx.AsyncClient, AiohttpTransport | None
        ] = weakref.WeakKeyDictionary()

    def api_url(self, path: str) -> str:
        """Absolute URL of an API path such as ``/queue/default/status``."""
        return f"{self.base_url}{self.api_prefix}{path}"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            # Compression pays across a network, not on this machine: InvokeAI gzips every
            # answer over 1 kB and sends the gzip trailer as a separate chunk, which the
            # reader then waits for (0.3-0.6 ms on a 5 kB queue item).
            headers = {"Accept-Encoding": "identity"} if is_loopback_url(self.base_url) else {}
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(
                    self.timeout,
                    connect=min(self.timeout or DEFAULT_CONNECT_TIMEOUT, DEFAULT_CONNECT_TIMEOUT),
                ),
                verify=self.verify,
                transport=self._transport or AiohttpTransport(verify=self.verify),
                headers=headers,
            )
            self._clients[loop] = client
            if self.on_new_pool is not None:
                self.on_new_pool()
        return client

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        files: Any = None,
        timeout: float | NotGiven | None = NOT_GIVEN,
        retry: bool | None = None,
        absolute: bool = False,
    ) -> httpx.Response:
        """Send one request, retrying only when it is safe, and raise our error on 4xx/5xx.

        Args:
            method: HTTP method.
            path: path under the API prefix (or a full path when ``absolute``).
            retry: force retrying on or off; by default only idempotent methods retry.
        """
        url = path if absolute else self.api_url(path)
        return await self._attempts(
            method,
            path,
            retry,
            lambda: self._send_once(method, url, params, json_body, files, timeout),
        )

    async def _attempts(
        self, method: str, path: str, retry: bool | None, send: Callable[[], Awaitable[_R]]
    ) -> _R:
        """Call ``send`` until it succeeds: login, one re-login on 401, safe retries.

        ``send`` answers a failed status as an ``httpx.Response`` (its body read) and
        anything else as success.
        """
        needs_login = self._authenticate is not None and not path.startswith("/auth/")
        if needs_login and self.token is None:
            await self.login()
        may_retry = is_idempotent(method) if retry is None else retry
        attempts = self.max_retries + 1 if may_retry else 1
        relogged = False
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = await send()
            except APIConnectionError:
                if last:
                    raise
                await asyncio.sleep(backoff(attempt))
                continue
            if _failed(response) and response.status_code == 401 and needs_login and not relogged:
                relogged = True
                await self.login()
                response = await send()
            if not _failed(response):
                return response
            if not last and should_retry_status(response.status_code):
                await asyncio.sleep(backoff(attempt, parse_retry_after(response)))
                continue
            raise make_status_error(method, response)
        raise AssertionError("unreachable")  # pragma: no cover

    async def login(self) -> None:
        """Get a fresh token from the configured authenticator."""
        if self._authenticate is not None:
            self.token = await self._authenticate()

    async def _send_once(
        self,
        method: str,
        url: str,
        params: Mapping[str, Any] | None,
        json_body: Any,
        files: Any,
        timeout: float | NotGiven | None,
    ) -> httpx.Response:
        if params is None and files is None:
            transport = self._raw_transport()  # every URL here is on the base URL's host
            if transport is not None:
                return await self._send_plain(transport, method, url, json_body, timeout)
        client = self._client()
        extra: dict[str, Any] = {}
        if not isinstance(timeout, NotGiven):
            extra["timeout"] = timeout
        with map_transport_errors(url):
            response = await client.request(
                method,
                url,
                params=params,
                json=json_body,
                files=files,
                headers=self.auth_headers(),
                **extra,
            )
            await response.aread()
        refreshed = response.headers.get(REFRESHED_TOKEN_HEADER)
        if refreshed:
            self.token = refreshed
        return response

    async def _send_plain(
        self,
        transport: AiohttpTransport,
        method: str,
        url: str,
        json_body: Any,
        timeout: float | NotGiven | None,
    ) -> httpx.Response:
        """A request without query or files, straight through aiohttp (no httpx client layer).

        These are the calls on the hot paths (enqueue, queue item reads): httpx's request
        building, auth and redirect layers cost more than aiohttp's send. The answer is the
        same ``httpx.Response`` (body read, decoded by httpx) that the client path gives.
        """
        seconds = self.timeout if isinstance(timeout, NotGiven) else timeout
        headers = self.auth_headers()
        headers["Accept-Encoding"] = "identity" if is_loopback_url(url) else "gzip, deflate"
        body = None
        if json_body is not None:
            headers["Content-Type"] = "application/json"
            body = json.dumps(json_body, ensure_ascii=False, separators=(",", ":")).encode()
        session = transport.open_session()
        limits = client_timeout(seconds)
        with map_transport_errors(url), aiohttp_errors_as_httpx():
            async with session.request(
                method, url, data=body, headers=headers, allow_redirects=False, timeout=limits
            ) as answer:
                content = await answer.read()
        refreshed = answer.headers.get(REFRESHED_TOKEN_HEADER)
        if refreshed:
            self.token = refreshed
        request = httpx.Request(method, url)
        return httpx.Response(
            answer.status, headers=answer.raw_headers, content=content, request=request
        )

    @contextlib.asynccontextmanager
    async def stream(self, method: str, path: str, **kwargs: Any) -> Any:
        """Stream a response body (large image downloads) without buffering it."""
        url = self.api_url(path)
        client = self._client()
        with map_transport_errors(url):
            headers = {**self.auth_headers(), **(kwargs.pop("headers", None) or {})}
            async with client.stream(method, url, headers=headers, **kwargs) as resp:
                if not resp.is_success:
                    await resp.aread()
                    raise make_status_error(method, resp)
                yield resp

    @contextlib.asynccontextmanager
    async def stream_bytes(
        self,
        path: str,
        *,
        chunk_size: int | None = 1 << 20,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[tuple[int, httpx.Headers, AsyncIterator[bytes]]]:
        """GET a large body (an image) straight from aiohttp, without httpx's stream layer.

        Yields ``(status, headers, chunks)``. The chunks are ``chunk_size`` bytes each (the
        last one shorter), or with ``chunk_size=None`` the pieces as the socket delivered them
        (no byte copied or held back: what a relay wants). Either way at most about
        ``STREAM_BUFFER_BYTES`` (or ``chunk_size``) more is buffered. Login, re-login on 401,
        retries before the first byte and errors are those of ``request``. The connection goes
        back to the pool when the body was read to its end, and is closed when the block is
        left early. Without an aiohttp transport (a proxy from the environment, a test
        transport) this falls back to ``stream``. ``headers`` go with the request (a
        ``Range``, for example: the status is then 206).
        """
        url = self.api_url(path)
        transport = self._raw_transport()
        if transport is None:
            async with self.stream("GET", path, params=params, headers=headers) as resp:
                yield resp.status_code, resp.headers, resp.aiter_bytes(chunk_size)
            return
        session = transport.open_session()
        buffer = max(chunk_size or 0, STREAM_BUFFER_BYTES)
        response = await self._attempts(
            "GET", path, None, lambda: self._send_raw(session, url, params, buffer, headers)
        )
        if not isinstance(response, aiohttp.ClientResponse):  # pragma: no cover
            raise AssertionError("a raw send succeeds only with an aiohttp response")
        try:
            headers = httpx.Headers(response.raw_headers)
            yield response.status, headers, _chunks(response, url, chunk_size)
        finally:
            response.release()

    def _raw_transport(self) -> AiohttpTransport | None:
        """The aiohttp transport that API paths go through on this loop, if they do."""
        client = self._client()
        # Every API URL shares the base URL's scheme, host and port, all that httpx's
        # transport mounts look at; parsing a URL per download cost more than the rest here.
        if client not in self._raw_transports:
            found = client._transport_for_url(httpx.URL(self.api_url("/")))
            self._raw_transports[client] = found if isinstance(found, AiohttpTransport) else None
        return self._raw_transports[client]

    async def _send_raw(
        self,
        session: aiohttp.ClientSession,
        url: str,
        params: Mapping[str, str] | None,
        buffer_size: int,
        extra_headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse | httpx.Response:
        """One GET through aiohttp: the open response on 2xx, else the failure, body read."""
        # Identity: the bytes relayed are the body itself (images are compressed already).
        headers = {**self.auth_headers(), "Accept-Encoding": "identity", **(extra_headers or {})}
        timeout = client_timeout(self.timeout)
        with map_transport_errors(url), aiohttp_errors_as_httpx():
            response = await session.get(
                url,
                params=params,
                headers=headers,
                allow_redirects=False,
                timeout=timeout,
                read_bufsize=buffer_size,
            )
            refreshed = response.headers.get(REFRESHED_TOKEN_HEADER)
            if refreshed:
                self.token = refreshed
            if 200 <= response.status < 300:
                return response
            try:
                body = await response.read()
            finally:
                response.release()
        request = httpx.Request("GET", url, params=params)
        return httpx.Response(
            response.status, headers=response.raw_headers, content=body, request=request
        )

    async def get_json(self, path: str, **kwargs: Any) -> Any:
        response = await self.request("GET", path, **kwargs)
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            kind = response.headers.get("content-type", "no content type")
            raise APIResponseValidationError(
                f"GET {response.request.url} answered {response.status_code} with {kind}, not JSON",
                response=response,
            ) from exc

    async def post_json(self, path: str, **kwargs: Any) -> Any:
        return _decode_body(await self.request("POST", path, **kwargs))

    async def put_json(self, path: str, **kwargs: Any) -> Any:
        return _decode_body(await self.request("PUT", path, **kwargs))

    async def patch_json(self, path: str, **kwargs: Any) -> Any:
        return _decode_body(await self.request("PATCH", path, **kwargs))

    async def delete_json(self, path: str, **kwargs: Any) -> Any:
        return _decode_body(await self.request("DELETE", path, **kwargs))

    async def aclose_current(self) -> None:
        """Close the pool that belongs to the running loop, if any."""
        loop = asyncio.get_running_loop()
        client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()
