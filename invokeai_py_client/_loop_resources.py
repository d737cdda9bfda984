"""What a client opens on each event loop, and closing it before that loop goes away.

A client opens an HTTP pool (and, once events are followed, a Socket.IO connection) on every
event loop it is used from. Scripts rarely close a client: the API reference's own examples
never do. Left open, aiohttp reports "Unclosed client session" / "Unclosed connector" when the
loop is gone, so two paths close them on their own:

- A caller's loop (``asyncio.run(...)``): the first use on a loop starts one idle task per
  client, the *closer*. ``asyncio.run`` cancels every task before closing its loop and waits
  for them; the closer, cancelled, closes what the client opened on that loop, on that loop.
  ``aclose()`` stops the closer first, so nothing is closed twice.
- The sync facade's portal loop (a daemon thread): ``close_portal`` runs from a
  ``weakref.finalize`` of the client, at interpreter exit or when the client is collected,
  and closes the portal loop's connections before stopping its thread.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._http import HttpCore
    from ._portal import Portal
    from .events.session import EventHub

__all__ = ["LoopResources", "close_portal"]


class LoopResources:
    """The per-loop connections of one client: its HTTP pools and its event hubs."""

    def __init__(self, http: HttpCore) -> None:
        self.http = http
        self.hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, EventHub] = (
            weakref.WeakKeyDictionary()
        )
        self._closers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task[None]] = (
            weakref.WeakKeyDictionary()
        )

    def watch_running_loop(self) -> None:
        """Start this loop's closer unless it runs already (cheap: one dict lookup)."""
        loop = asyncio.get_running_loop()
        if loop not in self._closers:
            self._closers[loop] = loop.create_task(
                _close_when_cancelled(weakref.ref(self)), name="invokeai-client-closer"
            )

    async def aclose_running_loop(self) -> None:
        """Close this loop's hub and HTTP pool, and stop its closer."""
        loop = asyncio.get_running_loop()
        closer = self._closers.pop(loop, None)
        if closer is not None and closer is not asyncio.current_task():
            closer.cancel()
            await asyncio.wait({closer})
        await self._close_here(loop)

    async def _close_here(
        self, loop: asyncio.AbstractEventLoop, *, loop_ending: bool = False
    ) -> None:
        hub = self.hubs.pop(loop, None)
        try:
            if hub is not None:
                await hub.close(loop_ending=loop_ending)
        finally:
            await self.http.aclose_current()

    async def _closed_by_its_closer(self) -> None:
        loop = asyncio.get_running_loop()
        if self._closers.get(loop) is asyncio.current_task():
            del self._closers[loop]
            await self._close_here(loop, loop_ending=True)


async def _close_when_cancelled(resources: weakref.ref[LoopResources]) -> None:
    """Idle until cancelled (the loop is shutting down), then close what is still open."""
    try:
        await asyncio.get_running_loop().create_future()
    except asyncio.CancelledError:
        alive = resources()
        if alive is not None:
            await alive._closed_by_its_closer()
        raise


def close_portal(portal: Portal, resources: LoopResources) -> None:
    """Close the portal loop's connections, then stop its thread (a no-op when not running)."""
    if not portal.running or portal.in_portal_thread():
        return
    try:
        portal.call(resources.aclose_running_loop())
    finally:
        portal.stop()
