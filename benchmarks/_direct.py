"""The direct path: what a caller writes by hand with httpx and python-socketio, no library.

One Socket.IO connection subscribed to the queue; each run is one ``enqueue_batch`` POST of a
hand-written graph, and its end is the ``queue_item_status_changed`` event for its item id.
An end event may arrive before the POST answers, so ends are kept by item id, not awaited
with a callback registered after the fact.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import socketio

TERMINAL = {"completed", "failed", "canceled"}


def tiny_graph(radius: float) -> dict[str, Any]:
    """blank_image -> img_blur, written by hand as the server's graph (no cache)."""
    return {
        "id": str(uuid.uuid4()),
        "nodes": {
            "blank": {
                "id": "blank",
                "type": "blank_image",
                "width": 64,
                "height": 64,
                "mode": "RGB",
                "color": {"r": 10, "g": 20, "b": 30, "a": 255},
                "use_cache": False,
            },
            "blur": {
                "id": "blur",
                "type": "img_blur",
                "radius": radius,
                "blur_type": "gaussian",
                "is_intermediate": False,
                "use_cache": False,
            },
        },
        "edges": [
            {
                "source": {"node_id": "blank", "field": "image"},
                "destination": {"node_id": "blur", "field": "image"},
            }
        ],
    }


def enqueue_body(radius: float) -> dict[str, Any]:
    return {"batch": {"graph": tiny_graph(radius), "runs": 1}, "prepend": False}


class DirectCaller:
    """httpx.AsyncClient + socketio.AsyncClient, used inside one event loop."""

    def __init__(self, url: str, max_connections: int = 100) -> None:
        self.url = url
        limits = httpx.Limits(max_connections=max_connections)
        self.http = httpx.AsyncClient(base_url=f"{url}/api/v1", timeout=120, limits=limits)
        self.sio = socketio.AsyncClient()
        self.sio.on("queue_item_status_changed", self._on_status)
        self.ended: dict[int, tuple[float, str]] = {}
        self._waiters: dict[int, asyncio.Future[tuple[float, str]]] = {}

    async def _on_status(self, data: dict[str, Any]) -> None:
        if data.get("status") not in TERMINAL:
            return
        item_id = int(data["item_id"])
        seen = (time.perf_counter(), str(data["status"]))
        self.ended.setdefault(item_id, seen)
        waiter = self._waiters.pop(item_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(seen)

    async def __aenter__(self) -> DirectCaller:
        await self.sio.connect(self.url, socketio_path="/ws/socket.io", transports=["websocket"])
        await self.sio.call("subscribe_queue", {"queue_id": "default"})
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.sio.disconnect()
        await self.http.aclose()

    async def enqueue(self, radius: float) -> int:
        response = await self.http.post("/queue/default/enqueue_batch", json=enqueue_body(radius))
        response.raise_for_status()
        return int(response.json()["item_ids"][0])

    async def wait(self, item_id: int, timeout: float = 120) -> tuple[float, str]:
        """(perf_counter when the end event was read, final status)."""
        if item_id in self.ended:
            return self.ended[item_id]
        waiter = self._waiters.setdefault(item_id, asyncio.get_running_loop().create_future())
        return await asyncio.wait_for(waiter, timeout)

    async def run(self, radius: float) -> tuple[int, float]:
        """One run end to end: (item id, perf_counter when its end was known)."""
        item_id = await self.enqueue(radius)
        known, status = await self.wait(item_id)
        if status != "completed":
            raise RuntimeError(f"direct run {item_id} ended {status}")
        return item_id, known
