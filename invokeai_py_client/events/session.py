"""One Socket.IO connection per event loop, and one dispatcher that routes its events.

::

    server ──Socket.IO──> catch-all handler ──> EventHub.dispatch(name, payload)
                                                  │ look up item_id / batch_id (no parsing yet)
                                                  │ nobody listening? drop it
                                                  ▼
                                  parse once ──> Subscription queues (bounded, one per reader)

Runs subscribe by their batch id, which the client mints before it enqueues, so no event of
a run can arrive before its subscription exists. After a reconnect, and when a slow reader's
queue overflows, each affected subscription receives an ``EventsResyncEvent``: its reader
then re-checks the item over HTTP instead of waiting for an event that was missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import socketio

from .._constants import DEFAULT_BASE_PATH, SOCKETIO_PATH
from ..auth import socketio_auth
from ..exceptions import APIConnectionError
from .models import EventsResyncEvent, InvokeAIEvent, parse_event

if TYPE_CHECKING:
    from ..client import InvokeAIClient

__all__ = ["EventHub", "Subscription", "connect_socketio", "socketio_path_for"]

logger = logging.getLogger(__name__)
K = TypeVar("K", int, str)

SUBSCRIBE_TIMEOUT = 10.0
RUN_QUEUE_SIZE = 1000
WATCH_ALL_QUEUE_SIZE = 10000
# Events that concern every waiting reader: their items may be gone.
_BROADCAST_EVENTS = frozenset({"queue_cleared"})
# Events naming their items in a list rather than in ``item_id``.
_ITEM_LIST_KEYS = {
    "queue_items_canceled": "canceled_item_ids",
    "queue_items_retried": "retried_item_ids",
}


def socketio_path_for(base_path: str) -> str:
    """The Socket.IO path of a server whose API lives under ``base_path``.

    InvokeAI serves ``/ws/socket.io`` next to ``/api/v1``; behind a proxy sub-path both move.
    """
    path = "/" + base_path.strip("/") if base_path.strip("/") else ""
    if path.endswith(DEFAULT_BASE_PATH):
        path = path[: -len(DEFAULT_BASE_PATH)]
    return f"{path}{SOCKETIO_PATH}"


async def connect_socketio(
    client: InvokeAIClient,
    *,
    on_event: Callable[[str, Any], None] | None = None,
    on_connect: Callable[[], Awaitable[None] | None] | None = None,
) -> socketio.AsyncClient:
    """Open a Socket.IO connection subscribed to the client's queue.

    It subscribes again after every reconnect (the server forgets rooms on disconnect), and
    sends the client's bearer token, read afresh at each attempt, as ``auth["token"]``.

    Args:
        client: the client whose server, queue and token to use.
        on_event: called with (event name, payload) for every event (a catch-all handler).
        on_connect: called after each (re)connection has subscribed.

    Raises:
        APIConnectionError: the connection could not be opened.
    """
    sio = socketio.AsyncClient(reconnection=True, reconnection_delay=0.5, reconnection_delay_max=5)

    async def subscribe() -> None:
        payload = {"queue_id": client.queue_id}
        try:
            # call() waits for the server's ack, so the room is joined before we return.
            await sio.call("subscribe_queue", payload, timeout=SUBSCRIBE_TIMEOUT)
        except socketio.exceptions.TimeoutError:
            await sio.emit("subscribe_queue", payload)
        if on_connect is not None:
            result = on_connect()
            if result is not None:
                await result

    sio.on("connect", subscribe)
    if on_event is not None:
        sio.on("*", on_event)

    def auth() -> dict[str, str] | None:
        return socketio_auth(client._http.token)

    try:
        await sio.connect(
            client.base_url,
            auth=auth,
            # InvokeAI 6.14 answers the long-polling handshake with a 500 (its middleware
            # stack breaks engine.io's polling responses); its own web UI uses websocket only.
            transports=["websocket"],
            socketio_path=socketio_path_for(client.base_path),
            wait_timeout=SUBSCRIBE_TIMEOUT + 5,
        )
    except socketio.exceptions.ConnectionError as exc:
        # A failed attempt leaves engine.io's aiohttp session open; its reset closes it.
        with contextlib.suppress(Exception):
            await sio.eio.disconnect(abort=True)
        raise APIConnectionError(
            f"cannot open Socket.IO at {client.base_url}: {exc}", url=client.base_url
        ) from exc
    return sio


def _discard_from(table: dict[K, set[Subscription]], keys: Iterable[K], sub: Subscription) -> None:
    for key in keys:
        subs = table.get(key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del table[key]


class Subscription:
    """The events of some queue items or batches (or of everything), in arrival order.

    Iterate with ``async for``; iteration ends when the subscription is closed. The queue is
    bounded: when it is full the oldest event is dropped and the reader gets an
    ``EventsResyncEvent`` first, so it knows to re-check.
    """

    def __init__(
        self,
        hub: EventHub,
        *,
        item_ids: Iterable[int] = (),
        batch_ids: Iterable[str] = (),
        everything: bool = False,
        maxsize: int = RUN_QUEUE_SIZE,
    ) -> None:
        self._hub = hub
        self.item_ids: set[int] = set(item_ids)
        self.batch_ids: set[str] = set(batch_ids)
        self.everything = everything
        self._queue: asyncio.Queue[InvokeAIEvent | None] = asyncio.Queue(maxsize)
        self._overflowed = False
        self.dropped = 0
        self.closed = False

    @property
    def loop_hub(self) -> EventHub:
        """The hub (and so the event loop) this subscription belongs to."""
        return self._hub

    def add_item_ids(self, item_ids: Iterable[int]) -> None:
        """Also receive the events of these queue items (e.g. once an enqueue answered)."""
        new = set(item_ids) - self.item_ids
        self.item_ids |= new
        self._hub._index(self, item_ids=new, batch_ids=())

    def put(self, event: InvokeAIEvent) -> None:
        """Queue an event for the reader (called by the hub)."""
        if self.closed:
            return
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
            self.dropped += 1
            self._overflowed = True
        self._queue.put_nowait(event)

    async def get(self, timeout: float | None = None) -> InvokeAIEvent | None:
        """The next event, or None when ``timeout`` passes or the subscription is closed."""
        if self._overflowed:
            self._overflowed = False
            return EventsResyncEvent(reason="overflow")
        if not self._queue.empty():
            # The common case under load; skips wait_for's task machinery.
            return self._queue.get_nowait()
        if self.closed:
            return None
        try:
            # asyncio.timeout, not wait_for: no extra task per wait (3.11's wait_for wraps
            # the get in one), so an event reaches its reader one loop turn sooner.
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            return None

    def close(self) -> None:
        """Stop receiving; a reader blocked in ``get`` or ``async for`` wakes up and ends."""
        if self.closed:
            return
        self.closed = True
        self._hub._unindex(self)
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> InvokeAIEvent:
        event = await self.get()
        if event is None:
            raise StopAsyncIteration
        return event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EventHub:
    """The Socket.IO connection of one event loop and the routing of its events.

    Get it with ``await client.event_hub()``; do not share it across loops.

    Example:
        >>> hub = await client.event_hub()                      # doctest: +SKIP
        >>> with hub.subscribe(batch_id=batch_id) as sub:       # doctest: +SKIP
        ...     async for event in sub: ...
    """

    def __init__(self, client: InvokeAIClient) -> None:
        self._client = client
        self._sio: socketio.AsyncClient | None = None
        self._connect_lock = asyncio.Lock()
        self._connections = 0
        self._by_item: dict[int, set[Subscription]] = {}
        self._by_batch: dict[str, set[Subscription]] = {}
        self._watch_all: set[Subscription] = set()
        self._all: set[Subscription] = set()

    @property
    def connected(self) -> bool:
        return self._sio is not None and bool(self._sio.connected)

    async def ensure_connected(self) -> None:
        """Open the connection unless it is open (or python-socketio is reconnecting it)."""
        if self._sio is not None:
            return
        async with self._connect_lock:
            if self._sio is None:
                self._sio = await connect_socketio(
                    self._client, on_event=self.dispatch, on_connect=self._on_connect
                )

    def _on_connect(self) -> None:
        self._connections += 1
        if self._connections > 1:
            # Events sent while we were away are lost: make every reader re-check.
            self.broadcast(EventsResyncEvent(reason="reconnected"))

    def subscribe(
        self,
        *,
        item_id: int | None = None,
        batch_id: str | None = None,
        item_ids: Iterable[int] = (),
        batch_ids: Iterable[str] = (),
        everything: bool = False,
        maxsize: int | None = None,
    ) -> Subscription:
        """Start receiving the events of some items or batches, or of everything.

        Args:
            item_id: one queue item id (or several in ``item_ids``).
            batch_id: one batch id (or several in ``batch_ids``); covers all its items.
            everything: every event this connection receives (for relays).
            maxsize: bound of the subscription's queue.
        """
        items = {*item_ids, *([item_id] if item_id is not None else [])}
        batches = {*batch_ids, *([batch_id] if batch_id else [])}
        size = maxsize or (WATCH_ALL_QUEUE_SIZE if everything else RUN_QUEUE_SIZE)
        sub = Subscription(
            self, item_ids=items, batch_ids=batches, everything=everything, maxsize=size
        )
        self._all.add(sub)
        if everything:
            self._watch_all.add(sub)
        self._index(sub, item_ids=items, batch_ids=batches)
        return sub

    def _index(
        self, sub: Subscription, *, item_ids: Iterable[int], batch_ids: Iterable[str]
    ) -> None:
        for item in item_ids:
            self._by_item.setdefault(item, set()).add(sub)
        for batch in batch_ids:
            self._by_batch.setdefault(batch, set()).add(sub)

    def _unindex(self, sub: Subscription) -> None:
        self._all.discard(sub)
        self._watch_all.discard(sub)
        _discard_from(self._by_item, sub.item_ids, sub)
        _discard_from(self._by_batch, sub.batch_ids, sub)

    @property
    def subscription_count(self) -> int:
        return len(self._all)

    def dispatch(self, event_type: str, payload: Any = None, *_: Any) -> None:
        """Route one event from the server to the subscriptions it concerns.

        Routing reads only ``item_id``, ``batch_id`` and id lists, so an event nobody waits
        for is dropped before any parsing.
        """
        targets = self._targets(event_type, payload if isinstance(payload, dict) else {})
        if not targets:
            return
        event = parse_event(event_type, payload)
        for sub in targets:
            sub.put(event)

    def _targets(self, event_type: str, payload: dict[str, Any]) -> set[Subscription]:
        if event_type in _BROADCAST_EVENTS:
            return set(self._all)
        targets = set(self._watch_all)
        item_id = payload.get("item_id")
        if isinstance(item_id, int):
            targets.update(self._by_item.get(item_id, ()))
        batch_id = payload.get("batch_id")
        if isinstance(batch_id, str):
            targets.update(self._by_batch.get(batch_id, ()))
        list_key = _ITEM_LIST_KEYS.get(event_type)
        if list_key is not None:
            for listed in payload.get(list_key) or ():
                if isinstance(listed, int):
                    targets.update(self._by_item.get(listed, ()))
        return targets

    def broadcast(self, event: InvokeAIEvent) -> None:
        """Give an event to every subscription (used for client-made resync events)."""
        for sub in list(self._all):
            sub.put(event)

    async def close(self, *, loop_ending: bool = False) -> None:
        """End every subscription and close the connection.

        ``loop_ending``: the loop is shutting down and has cancelled the connection's own tasks
        already, so waiting for its reader to end would only raise; the socket and its HTTP
        session are closed without that wait.
        """
        for sub in list(self._all):
            sub.close()
        sio, self._sio = self._sio, None
        if sio is None:
            return
        if loop_ending:
            await sio.eio.disconnect(abort=True)
        else:
            await sio.disconnect()
