"""Independent Socket.IO listeners: when did the server announce an item's end, a node's end?

Each runs on its own thread and loop, so it observes the server's events without sharing
anything with the contender under test; both read the same broadcast on loopback.
``NodeCompleteListenerProcess`` runs in a process of its own: a thread still shares the GIL
with the process's other threads, and beside 1,000 readers busy with an event the listener's
stamp came late (a reader's delay came out negative).

    python -m benchmarks._listener URL    # the child: one line per node completed
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Self

import socketio

TERMINAL = {"completed", "failed", "canceled"}


class ThreadedListener:
    """A Socket.IO connection, subscribed to one queue, on a thread and loop of its own.

    Subclasses register their handlers on ``self._sio`` in ``__init__``.
    """

    def __init__(self, url: str, queue_id: str = "default") -> None:
        self.url = url
        self.queue_id = queue_id
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._sio = socketio.AsyncClient(reconnection=True)

    async def _connect(self) -> None:
        await self._sio.connect(self.url, socketio_path="/ws/socket.io", transports=["websocket"])
        # call() waits for the server's ack: the room is joined before the benchmark starts.
        await self._sio.call("subscribe_queue", {"queue_id": self.queue_id})

    def __enter__(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._connect(), self._loop).result(timeout=15)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._sio.disconnect(), self._loop).result(timeout=15)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


class _ArrivalListener(ThreadedListener):
    """Records when an event first arrived for each key; ``wait_for`` blocks until it has."""

    what = "event"

    def __init__(self, url: str, queue_id: str = "default") -> None:
        super().__init__(url, queue_id)
        self.arrived_at: dict[Any, float] = {}
        self._cond = threading.Condition()

    def _record(self, key: Any) -> None:
        now = time.perf_counter()
        with self._cond:
            self.arrived_at.setdefault(key, now)
            self._cond.notify_all()

    def wait_for(self, key: Any, timeout: float = 30.0) -> float:
        """The moment the listener saw ``key``'s event (waits for it if needed)."""
        with self._cond:
            if not self._cond.wait_for(lambda: key in self.arrived_at, timeout=timeout):
                raise TimeoutError(f"no {self.what} event for {key}")
            return self.arrived_at[key]


class CompletionListener(_ArrivalListener):
    """Records when each queue item's terminal status event arrived, by item id."""

    what = "end"

    def __init__(self, url: str, queue_id: str = "default") -> None:
        super().__init__(url, queue_id)
        self._sio.on("queue_item_status_changed", self._on_status)

    async def _on_status(self, data: dict[str, Any]) -> None:
        if data.get("status") in TERMINAL:
            self._record(int(data["item_id"]))


class NodeCompleteListener(ThreadedListener):
    """Records when InvokeAI announced each node's completion, by (item id, node id)."""

    def __init__(self, url: str, queue_id: str = "default") -> None:
        super().__init__(url, queue_id)
        self.seen: dict[tuple[int, str], float] = {}
        self._sio.on("invocation_complete", self._on_complete)

    async def _on_complete(self, data: dict[str, Any]) -> None:
        key = (int(data["item_id"]), str(data["invocation_source_id"]))
        self.seen.setdefault(key, time.perf_counter())


class BatchEnqueuedListener(_ArrivalListener):
    """Records when InvokeAI announced each batch enqueued (it took the items), by batch id."""

    what = "batch_enqueued"

    def __init__(self, url: str, queue_id: str = "default") -> None:
        super().__init__(url, queue_id)
        self._sio.on("batch_enqueued", self._on_enqueued)

    async def _on_enqueued(self, data: dict[str, Any]) -> None:
        self._record(str(data["batch_id"]))


class NodeCompleteListenerProcess:
    """``NodeCompleteListener`` in a child process; ``seen`` fills as the child reports.

    The child prints ``item_id node_id stamp`` per node completed (``time.perf_counter``:
    CLOCK_MONOTONIC on Linux, shared by every process, so the stamps compare with this
    process's and the readers' processes').
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: dict[tuple[int, str], float] = {}
        self._child: subprocess.Popen[str] | None = None
        self._thread = threading.Thread(target=self._collect, daemon=True)

    def __enter__(self) -> Self:
        root = Path(__file__).resolve().parents[1]
        command = [sys.executable, "-m", "benchmarks._listener", self.url]
        self._child = subprocess.Popen(
            command, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self._child.stdout is not None
        if self._child.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the listener process ended early (exit {self._child.wait()})")
        self._thread.start()
        return self

    def _collect(self) -> None:
        assert self._child is not None and self._child.stdout is not None
        for line in self._child.stdout:
            item, node, stamp = line.split()
            self.seen.setdefault((int(item), node), float(stamp))

    def __exit__(self, *exc: object) -> None:
        assert self._child is not None and self._child.stdin is not None
        self._child.stdin.close()  # the child's signal to disconnect and end
        self._child.wait(timeout=30)
        self._thread.join(timeout=5)


class _PrintingListener(NodeCompleteListener):
    async def _on_complete(self, data: dict[str, Any]) -> None:
        stamp = time.perf_counter()
        print(f"{int(data['item_id'])} {data['invocation_source_id']} {stamp!r}", flush=True)


def _child(url: str) -> None:
    with _PrintingListener(url):
        print("ready", flush=True)
        sys.stdin.read()  # until the parent closes it


if __name__ == "__main__":
    _child(sys.argv[1])
