"""The SSE wire for many readers: each event encoded once, written straight to the connections.

With 1,000 streams on one run, the gateway's cost per event is one write per stream, so
everything done per stream per event is multiplied by a thousand. What is left on that path:

- encoding: ``wire_cache(broker).get(event)`` returns one ``WireEvent`` per event id, whose
  bytes are computed once and shared by every stream that sends it;
- the write: ``Connection.write_now`` calls the stream's ASGI ``send`` and runs it eagerly, in
  the caller (the broker's ``publish``), instead of waking a task per stream. With uvicorn
  the send finishes without suspending unless the socket's buffer is full; only then is the
  rest of that send handed to the stream's own task (``Connection.finish``), which waits for
  it under the send timeout: the only timer, and only on that slow path;
- the direct write: served by uvicorn's httptools protocol (its default), a body chunk whose
  socket is writable goes straight to the connection's transport, framed as the HTTP/1.1
  chunk uvicorn would have written (the framing shared by every stream sending the same
  bytes), skipping the middleware's send wrappers, which only look at the response's start.
  The start, the end, and any write that must wait take the ASGI path. The application keeps
  the server's own ``send`` in the scope for that (``keep_server_send``);
- the syscall without the GIL: a direct write whose transport has nothing buffered is one
  ``os.write`` on the connection's socket (``write_direct``), which releases the GIL for the
  syscall; whatever the socket does not take goes to the transport, which buffers it and
  applies flow control as for any write. uvloop's ``transport.write`` (the server's default
  loop) makes the same syscall holding the GIL: at 1,000 streams the syscalls are nearly all
  of a fan-out's time (about 20 us each on the 2-core machine), and the database thread that
  stores the next events of the run could not run meanwhile, so those events reached
  ``publish`` tens of milliseconds late. Releasing it let them in during the fan-out: the
  median delay at 1,000 streams went from 43-57 ms to 27-35 ms (benchmarks/README.md).

``EventStreamResponse`` is our own response class rather than sse-starlette's
``EventSourceResponse``: that one pulls every event through an async iterator in a task per
stream, a send lock and a cancel scope per send (the 20-50 us per stream per event this
module exists to avoid), and writing to its connection from outside would mean overriding
its private methods, tied to one version. From sse-starlette we keep ``ServerSentEvent`` (the
encoding) and ``AppStatus.should_exit`` (its hook on uvicorn's exit signal).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import signal
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator
from datetime import UTC, datetime
from typing import Any, ClassVar, Final

from sse_starlette import ServerSentEvent
from sse_starlette.sse import AppStatus
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.streaming.broker import Event, EventBroker, to_wire

__all__ = [
    "Connection",
    "EventStreamResponse",
    "SendTimeout",
    "WireEvent",
    "encode_event",
    "keep_server_send",
    "run_eagerly",
    "wire_cache",
    "write_direct",
]

# Encoded events kept per application (a burst of one run's events to every stream fits).
WIRE_CACHE_SIZE = 1024
# How often the process checks whether the server was told to exit (then streams end).
EXIT_POLL_SECONDS = 0.5


class WireEvent(ServerSentEvent):
    """A ``ServerSentEvent`` encoded once: every stream that sends it sends the same bytes."""

    def __init__(self, *, data: str, id: str, event: str) -> None:
        super().__init__(data=data, id=id, event=event)
        self._wire = super().encode()

    def encode(self) -> bytes:
        """The event's bytes on the wire (computed at creation)."""
        return self._wire


def encode_event(event: Event) -> WireEvent:
    """One event on the wire: ``id:`` its id, ``event:`` its type, ``data:`` the JSON shape."""
    body = json.dumps(to_wire(event), separators=(",", ":"), default=str)
    return WireEvent(data=body, id=str(event["id"]), event=event["event"])


class WireCache:
    """The newest events' encoded form by id.

    An event id is a database id and a stored event never changes, so a cached form is never
    stale; the cache is bounded (an old event replayed is encoded again, for that stream).
    """

    def __init__(self, size: int = WIRE_CACHE_SIZE) -> None:
        self.size = size
        self._by_id: dict[int, WireEvent] = {}

    def get(self, event: Event) -> WireEvent:
        """The encoded form of ``event``, made on first use."""
        event_id = int(event["id"])
        found = self._by_id.get(event_id)
        if found is None:
            found = self._by_id[event_id] = encode_event(event)
            if len(self._by_id) > self.size:
                del self._by_id[next(iter(self._by_id))]  # the oldest (insertion order)
        return found


# One cache per broker, i.e. per application: ids are unique only within one database.
_CACHES: weakref.WeakKeyDictionary[EventBroker, WireCache] = weakref.WeakKeyDictionary()


def wire_cache(broker: EventBroker) -> WireCache:
    """The encoded-event cache shared by every stream of ``broker``'s application."""
    cache = _CACHES.get(broker)
    if cache is None:
        cache = _CACHES[broker] = WireCache()
    return cache


def ping_chunk() -> bytes:
    """A heartbeat: an SSE comment, which clients ignore (``: ping - <time>``)."""
    return ServerSentEvent(comment=f"ping - {datetime.now(UTC)}").encode()


# -- running a send in the caller --------------------------------------------------------------


class _Rest:
    """The rest of a coroutine that ``run_eagerly`` ran up to its first suspension.

    Awaiting it (in a task) hands the future the coroutine is waiting on to that task, then
    drives the coroutine to its end, as the task would have from the start; a cancellation of
    the awaiting task is thrown into the coroutine. (Python 3.12's eager tasks do the same.)
    """

    def __init__(self, coro: Generator[Any, Any, None], suspended_on: Any) -> None:
        self._coro = coro
        self._suspended_on = suspended_on

    def __await__(self) -> Generator[Any, Any, None]:
        coro, step = self._coro, self._suspended_on
        while True:
            try:
                sent = yield step
            except BaseException as exc:  # cancellation: the coroutine decides what it means
                try:
                    step = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    step = coro.send(sent)
                except StopIteration:
                    return

    def close(self) -> None:
        """Abandon the coroutine (its ``finally`` blocks run now)."""
        self._coro.close()


def run_eagerly(awaitable: Awaitable[None]) -> _Rest | None:
    """Run ``awaitable`` (a coroutine) now, in the caller, until it finishes or first waits.

    Returns:
        None when it finished without waiting; else its rest, to be awaited by a task.

    Raises:
        Whatever the coroutine raised before its first wait.
    """
    coro = awaitable.__await__()
    try:
        suspended_on = coro.send(None)
    except StopIteration:
        return None
    return _Rest(coro, suspended_on)


SERVER_SEND_KEY: Final = "gateway.server_send"


def keep_server_send(scope: Scope, send: Send) -> None:
    """Called by the application before any middleware: keeps the server's own ``send`` in
    the scope, where an event stream finds it for direct writes (see the module's doc)."""
    if scope["type"] == "http":
        scope[SERVER_SEND_KEY] = send


def _direct_cycle(server_send: Send | None) -> Any:
    """uvicorn's httptools request cycle behind ``server_send``, or None (any other server)."""
    cycle = getattr(server_send, "__self__", None)
    if cycle is None or type(cycle).__module__ != "uvicorn.protocols.http.httptools_impl":
        return None
    if not all(hasattr(cycle, a) for a in ("transport", "flow", "chunked_encoding")):
        return None
    return cycle


def write_direct(transport: asyncio.WriteTransport, fd: int, data: bytes) -> None:
    """Write ``data`` to the open transport whose socket is ``fd``, the syscall without the GIL.

    Only when nothing is buffered: bytes written to the socket then cannot overtake bytes the
    transport still holds. What the socket does not take (a full buffer, an error) goes to the
    transport, which buffers it (and pauses the protocol's writing past its high-water mark)
    or handles the error (closing the connection) as for any of its writes. Called on the
    loop's thread only, with the transport not closing, so ``fd`` is still this connection's.
    """
    if transport.get_write_buffer_size():
        transport.write(data)
        return
    try:
        written = os.write(fd, data)
    except OSError:  # full (BlockingIOError), or a reset or closed peer: the transport
        written = 0  # buffers the bytes, or meets the error too and closes
    if written < len(data):
        transport.write(data[written:] if written else data)


def _socket_fd(transport: asyncio.BaseTransport) -> int | None:
    """The socket under a plain TCP transport; None under TLS (its bytes must be encrypted)."""
    if transport.get_extra_info("ssl_object") is not None:
        return None
    sock = transport.get_extra_info("socket")
    fileno = getattr(sock, "fileno", None)
    return fileno() if callable(fileno) else None


@functools.lru_cache(maxsize=64)
def _http_chunk(body: bytes) -> bytes:
    """``body`` framed as one HTTP/1.1 chunk; streams sending the same bytes share it."""
    return b"%x\r\n%b\r\n" % (len(body), body)


class SendTimeout(TimeoutError):
    """A reader did not take a chunk within the send timeout: its connection is dropped."""


class Connection:
    """One stream's ASGI ``send``: whole chunks, written at once whenever the send allows.

    At most one send is in flight: after ``write_now`` returned False, ``finish`` must be
    awaited (by the stream's task) before the next write.

    ``write_now`` runs from the broker's callback, outside the stream's task, so the send
    chain must be plain coroutines, as uvicorn's send and pure ASGI middleware are (ours and
    Starlette's CORS). A wrapper that needs its own task (``BaseHTTPMiddleware``'s memory
    streams, anyio cancel scopes) would fail there: the broker logs it and ends that stream.
    """

    def __init__(self, send: Send, *, send_timeout: float, server_send: Send | None = None) -> None:
        self._send = send
        self.send_timeout = send_timeout
        self._blocked: _Rest | None = None
        self._cycle = _direct_cycle(server_send)
        self._fd = None if self._cycle is None else _socket_fd(self._cycle.transport)

    @property
    def blocked(self) -> bool:
        """True while a send started by ``write_now`` is waiting for the reader."""
        return self._blocked is not None

    def write_now(self, chunk: bytes) -> bool:
        """Send ``chunk`` from the caller; True when done, False when it waits (``finish``)."""
        assert self._blocked is None, "a send is still in flight"
        cycle, fd = self._cycle, self._fd
        if (
            cycle is not None
            and fd is not None
            and not cycle.flow.write_paused
            and not cycle.disconnected
            and not cycle.response_complete
            and cycle.chunked_encoding
            and not cycle.transport.is_closing()
        ):
            write_direct(cycle.transport, fd, _http_chunk(chunk))
            return True
        message = {"type": "http.response.body", "body": chunk, "more_body": True}
        self._blocked = run_eagerly(self._send(message))
        return self._blocked is None

    async def finish(self) -> None:
        """Wait for the send in flight, if any.

        Raises:
            SendTimeout: the reader has not taken it within ``send_timeout`` seconds.
        """
        rest, self._blocked = self._blocked, None
        if rest is None:
            return
        try:
            async with asyncio.timeout(self.send_timeout):
                await rest
        except TimeoutError:
            raise SendTimeout(f"the reader took no data for {self.send_timeout} s") from None

    async def write(self, chunk: bytes) -> None:
        """Send ``chunk``, waiting for the reader if it must (under the send timeout)."""
        if not self.write_now(chunk):
            await self.finish()

    def abandon(self) -> None:
        """Drop a send still in flight (the stream is over)."""
        rest, self._blocked = self._blocked, None
        if rest is not None:
            rest.close()


# -- the response --------------------------------------------------------------------------------

Stream = Callable[[Connection], Coroutine[Any, Any, None]]


class EventStreamResponse(Response):
    """A ``text/event-stream`` response whose body is written by ``stream(connection)``.

    The stream runs in a task of its own; the response ends when it returns (after the
    terminal event of a run), when the client disconnects, or when the server is told to
    exit. Heartbeats are the stream's job (it knows when the connection is idle).
    """

    media_type = "text/event-stream"

    def __init__(self, stream: Stream, *, send_timeout: float, status_code: int = 200) -> None:
        # ``status_code`` with its default is also what FastAPI reads to document the route.
        self.stream = stream
        self.send_timeout = send_timeout
        self.status_code = status_code
        self.background = None
        # Proxies must neither cache nor buffer an event stream.
        self.init_headers(
            {"Cache-Control": "no-store", "Connection": "keep-alive", "X-Accel-Buffering": "no"}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        if scope.get("method") == "HEAD":  # headers only: an endless body would never end
            await send(_END)
            return
        server_send = scope.get(SERVER_SEND_KEY)
        connection = Connection(send, send_timeout=self.send_timeout, server_send=server_send)
        streaming = asyncio.create_task(self.stream(connection))
        watching = asyncio.create_task(_until_disconnect(receive))
        with _ExitWatch.streaming() as exiting:
            try:
                await asyncio.wait((streaming, watching, exiting), return_when="FIRST_COMPLETED")
            finally:
                streaming.cancel()
                watching.cancel()
                await asyncio.wait((streaming, watching))
        connection.abandon()
        if watching.done() and not watching.cancelled():
            return  # the client is gone: nothing more can be sent
        if not streaming.cancelled() and (error := streaming.exception()) is not None:
            raise error  # e.g. SendTimeout: uvicorn closes the connection
        async with asyncio.timeout(self.send_timeout):
            await send(_END)  # the run is over, or the server is exiting


_END: Final = {"type": "http.response.body", "body": b"", "more_body": False}


async def _until_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class _ExitWatch:
    """One per event loop: resolves a future when the server is told to exit.

    uvicorn lets open responses run until its graceful-shutdown timeout and tells the app
    nothing; sse-starlette patches uvicorn's exit handler to set ``AppStatus.should_exit``, and
    for servers started before that patch (sse-starlette issue #132) the server is found
    through its SIGTERM handler. One poller per loop checks both while streams are open.
    """

    _by_loop: ClassVar[weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _ExitWatch]] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.exiting: asyncio.Future[None] = loop.create_future()
        self.open_streams = 0
        self._poller: asyncio.Task[None] | None = None

    @classmethod
    def streaming(cls) -> _Registration:
        loop = asyncio.get_running_loop()
        watch = cls._by_loop.get(loop)
        # A server that exited and a new one on the same loop (tests): watch afresh.
        if watch is None or (watch.exiting.done() and not server_exiting()):
            watch = cls._by_loop[loop] = cls(loop)
        return _Registration(watch)

    def enter(self) -> None:
        self.open_streams += 1
        if self._poller is None and not self.exiting.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        try:
            while self.open_streams and not self.exiting.done():
                if server_exiting():
                    self.exiting.set_result(None)
                    return
                await asyncio.sleep(EXIT_POLL_SECONDS)
        finally:
            self._poller = None


class _Registration:
    def __init__(self, watch: _ExitWatch) -> None:
        self.watch = watch

    def __enter__(self) -> asyncio.Future[None]:
        self.watch.enter()
        return self.watch.exiting

    def __exit__(self, *exc: object) -> None:
        self.watch.open_streams -= 1


def server_exiting() -> bool:
    """True once uvicorn was told to exit (SIGINT or SIGTERM)."""
    if AppStatus.should_exit:
        return True
    server = getattr(signal.getsignal(signal.SIGTERM), "__self__", None)
    return bool(getattr(server, "should_exit", False))
