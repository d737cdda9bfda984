"""The HTTP shell: one place that sends requests, retries safely and translates errors.

Every resource reaches the server through ``HttpCore.request`` (or the ``get``/``post``/...
helpers), never through an httpx client of its own. One ``httpx.AsyncClient`` is kept per
event loop: the sync facade's portal loop has its own pool, and so does each loop an async
caller uses, because an httpx async pool must not be shared across loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

import httpx

from ._retry import backoff, is_idempotent, parse_retry_after, should_retry_status
from ._types import NOT_GIVEN, NotGiven
from .exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    status_error_class,
)

__all__ = ["HttpCore", "map_transport_errors"]

REFRESHED_TOKEN_HEADER = "x-refreshed-token"


@contextlib.contextmanager
def map_transport_errors(url: str) -> Iterator[None]:
    """Turn httpx's transport exceptions into ours, keeping the original as ``__cause__``."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise APITimeoutError(f"request to {url} timed out: {exc!r}", url=url) from exc
    except httpx.TransportError as exc:
        raise APIConnectionError(f"cannot connect to {url}: {exc!r}", url=url) from exc


def _decode_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text


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
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    def api_url(self, path: str) -> str:
        """Absolute URL of an API path such as ``/queue/default/status``."""
        return f"{self.base_url}{self.api_prefix}{path}"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None or client.is_closed:
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout, connect=min(self.timeout or 5.0, 5.0)),
                verify=self.verify,
                transport=self._transport,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            )
            self._clients[loop] = client
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
        needs_login = self._authenticate is not None and not path.startswith("/auth/")
        if needs_login and self.token is None:
            await self.login()
        may_retry = is_idempotent(method) if retry is None else retry
        attempts = self.max_retries + 1 if may_retry else 1
        relogged = False
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = await self._send_once(method, url, params, json_body, files, timeout)
            except APIConnectionError:
                if last:
                    raise
                await asyncio.sleep(backoff(attempt))
                continue
            if response.is_success:
                return response
            if response.status_code == 401 and needs_login and not relogged:
                relogged = True
                await self.login()
                response = await self._send_once(method, url, params, json_body, files, timeout)
                if response.is_success:
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

    @contextlib.asynccontextmanager
    async def stream(self, method: str, path: str, **kwargs: Any) -> Any:
        """Stream a response body (large image downloads) without buffering it."""
        url = self.api_url(path)
        client = self._client()
        with map_transport_errors(url):
            async with client.stream(method, url, headers=self.auth_headers(), **kwargs) as resp:
                if not resp.is_success:
                    await resp.aread()
                    raise make_status_error(method, resp)
                yield resp

    async def get_json(self, path: str, **kwargs: Any) -> Any:
        return (await self.request("GET", path, **kwargs)).json()

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
