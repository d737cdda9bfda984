"""``InvokeAIClient``: the entry point that owns connections and hands out repositories."""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import cached_property
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from ._constants import (
    DEFAULT_BASE_PATH,
    DEFAULT_MAX_RETRIES,
    DEFAULT_PORT,
    DEFAULT_QUEUE_ID,
    DEFAULT_TIMEOUT,
)
from ._http import HttpCore
from ._loop_resources import LoopResources, close_portal
from ._portal import Portal, sync_twin
from .exceptions import InvokeAIError

if TYPE_CHECKING:
    import socketio

    from .board.repo import BoardRepository
    from .dnn_model.repo import DnnModelRepository
    from .events.session import EventHub
    from .queue.repo import QueueRepository
    from .workflow.repo import WorkflowRepository

__all__ = ["InvokeAIClient"]


class InvokeAIClient:
    """A client for one InvokeAI server, usable from sync and async code alike.

    Synchronous methods (``health_check()``, ``board_repo.list_boards()``, ...) run the same
    async code on a private background loop; their async twins carry an ``a`` prefix
    (``await client.ahealth_check()``), except where the public API fixes other names
    (``submit_sync`` / ``submit``).

    Example:
        >>> client = InvokeAIClient.from_url("http://127.0.0.1:9090")
        >>> client.health_check()
        True
    """

    def __init__(
        self,
        host: str = "localhost",
        port: int = DEFAULT_PORT,
        use_https: bool = False,
        timeout: float | None = DEFAULT_TIMEOUT,
        base_path: str = DEFAULT_BASE_PATH,
        api_key: str | None = None,
        verify_ssl: bool = True,
        max_retries: int = DEFAULT_MAX_RETRIES,
        *,
        username: str | None = None,
        password: str | None = None,
        queue_id: str = DEFAULT_QUEUE_ID,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Create a client; no connection is made until the first call.

        Args:
            host: server host name or address.
            port: server port.
            use_https: talk TLS.
            timeout: default per-request timeout in seconds (None: no limit).
            base_path: API prefix of the server.
            api_key: a bearer token sent with every request (and the Socket.IO handshake).
            verify_ssl: check the server's certificate.
            max_retries: retries for requests that are safe to repeat.
            username: for InvokeAI's multi-user mode: log in as this user (with ``password``).
            password: the password for ``username``.
            queue_id: the session queue to use.
            transport: an httpx transport to use instead of the network (tests).
        """
        self.host = host
        self.port = port
        self.use_https = use_https
        self.timeout = timeout
        self.base_path = base_path
        self.verify_ssl = verify_ssl
        self.max_retries = max_retries
        self.queue_id = queue_id
        self.username = username
        self._password = password
        scheme = "https" if use_https else "http"
        self.base_url = f"{scheme}://{host}:{port}"
        self._http = HttpCore(
            base_url=self.base_url,
            api_prefix=base_path,
            timeout=timeout,
            verify=verify_ssl,
            max_retries=max_retries,
            token=api_key,
            transport=transport,
            authenticate=_weakly(self._fetch_token) if username is not None else None,
        )
        self._portal = Portal()
        self._loop_resources = LoopResources(self._http)
        self._http.on_new_pool = self._loop_resources.watch_running_loop
        self._hubs = self._loop_resources.hubs
        # Never closed (as in most scripts): the portal's connections close at exit.
        weakref.finalize(self, close_portal, self._portal, self._loop_resources)
        self._login_lock: asyncio.Lock | None = None

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> InvokeAIClient:
        """Build a client from a URL such as ``http://127.0.0.1:9090`` (a path becomes base_path).

        Example:
            >>> InvokeAIClient.from_url("https://invoke.example.com:9443/api/v1").port
            9443
        """
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        use_https = parts.scheme == "https"
        port = parts.port or (443 if use_https else 80)
        path = parts.path.rstrip("/")
        if path and "base_path" not in kwargs:
            kwargs["base_path"] = path
        return cls(host=parts.hostname, port=port, use_https=use_https, **kwargs)

    def __repr__(self) -> str:
        return f"InvokeAIClient({self.base_url!r})"

    # -- health and auth -------------------------------------------------------------------

    async def ahealth_check(self) -> bool:
        """True when the server answers its version route; never raises."""
        try:
            await self._http.request("GET", "/app/version", timeout=5.0, retry=False)
        except InvokeAIError:
            return False
        return True

    health_check = sync_twin(ahealth_check)

    async def aversion(self) -> str:
        """The server's version string, e.g. ``"6.14.2"``."""
        body = await self._http.get_json("/app/version")
        return str(body["version"])

    version = sync_twin(aversion)

    async def _fetch_token(self) -> str:
        from .auth import login

        if self.username is None or self._password is None:
            raise ValueError("username and password are needed to log in")
        return await login(self._http, self.username, self._password)

    async def alogin(self) -> None:
        """Log in to a multi-user server now (otherwise it happens before the first request)."""
        self._http.token = await self._fetch_token()

    login = sync_twin(alogin)

    # -- repositories ---------------------------------------------------------------------

    @cached_property
    def board_repo(self) -> BoardRepository:
        """Boards and their images."""
        from .board.repo import BoardRepository

        return BoardRepository(self)

    @cached_property
    def workflow_repo(self) -> WorkflowRepository:
        """Workflows: turn a definition into a runnable handle."""
        from .workflow.repo import WorkflowRepository

        return WorkflowRepository(self)

    @cached_property
    def dnn_model_repo(self) -> DnnModelRepository:
        """Installed models."""
        from .dnn_model.repo import DnnModelRepository

        return DnnModelRepository(self)

    @cached_property
    def queue_repo(self) -> QueueRepository:
        """The session queue."""
        from .queue.repo import QueueRepository

        return QueueRepository(self)

    # -- events ---------------------------------------------------------------------------

    async def event_hub(self) -> EventHub:
        """The connected event dispatcher of the running loop (one Socket.IO connection)."""
        from .events.session import EventHub

        loop = asyncio.get_running_loop()
        hub = self._hubs.get(loop)
        if hub is None:
            self._loop_resources.watch_running_loop()
            hub = EventHub(self)
            self._hubs[loop] = hub
        await hub.ensure_connected()
        return hub

    @contextlib.asynccontextmanager
    async def socketio_session(self) -> AsyncIterator[socketio.AsyncClient]:
        """A fresh Socket.IO connection, subscribed to this client's queue, closed on exit."""
        from .events.session import connect_socketio

        sio = await connect_socketio(self)
        try:
            yield sio
        finally:
            await sio.disconnect()

    # -- lifecycle ------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the connections this loop opened (HTTP pool, Socket.IO).

        Optional at the end of ``asyncio.run``: the loop's shutdown closes them too.
        """
        await self._loop_resources.aclose_running_loop()

    def close(self) -> None:
        """Close the sync facade's connections and stop its background loop."""
        if self._portal.running:
            self._portal.call(self.aclose())
            self._portal.stop()

    def __enter__(self) -> InvokeAIClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> InvokeAIClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
        self.close()


def _weakly(method: Callable[[], Awaitable[str]]) -> Callable[[], Awaitable[str]]:
    """``method`` without a strong reference to its object.

    The HTTP core outlives nothing it should not: the client's exit-time finalizer holds it,
    and a strong reference back would keep every client alive until the interpreter exits.
    """
    ref = weakref.WeakMethod(method)

    async def call() -> str:
        bound = ref()
        if bound is None:
            raise InvokeAIError("the client that owned this connection is gone")
        return await bound()

    return call
