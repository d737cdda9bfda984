"""Live previews: the image InvokeAI sends with each denoising step, to the streams that asked.

Previews are not events of a run's history: they are never stored, replayed or delivered by
webhook, carry no SSE id, and a reader only ever wants the newest one. So they bypass the
broker's log (whose every event has a database id and must reach every reader in order) and
go through this hub, which hands each preview to every reader that asked for previews of its
run (``?previews=true``) at the moment it is published:

- the preview is encoded once and the same bytes are offered to every reader;
- a reader writes it only when its connection is idle and pushed to by the broker (no send in
  flight); otherwise it is skipped, and the reader gets the next one. A reader that falls
  behind therefore never builds a backlog: it sees the latest preview when it can take one.
"""

from __future__ import annotations

import contextlib
import json
import weakref
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from sse_starlette import ServerSentEvent

from app.schemas.events import RunEventType
from app.streaming.broker import EventBroker

__all__ = ["PreviewHub", "preview_chunk", "previews_of"]

# A reader's writer: True when it took the chunk, False when it skipped it (busy).
Deliver = Callable[[bytes], bool]


def preview_chunk(run_id: str, workflow_id: str, data: dict[str, Any]) -> bytes:
    """One ``node.preview`` event on the wire: the usual envelope, no ``id:`` line."""
    body = {
        "id": None,
        "run_id": run_id,
        "workflow_id": workflow_id,
        "event": RunEventType.node_preview.value,
        "data": data,
        "created_at": datetime.now(UTC).isoformat(),
    }
    encoded = json.dumps(body, separators=(",", ":"))
    return ServerSentEvent(data=encoded, event=RunEventType.node_preview.value).encode()


class _Reader:
    def __init__(self, run_id: str | None, workflow_id: str | None, deliver: Deliver) -> None:
        self.run_id = run_id
        self.workflow_id = workflow_id
        self.deliver = deliver

    def wants(self, run_id: str, workflow_id: str) -> bool:
        if self.run_id is not None:
            return self.run_id == run_id
        return self.workflow_id is None or self.workflow_id == workflow_id


class PreviewHub:
    """The readers that asked for previews, and the one call that offers a preview to them."""

    def __init__(self) -> None:
        self._readers: set[_Reader] = set()

    def publish(self, run_id: str, workflow_id: str, data: dict[str, Any]) -> int:
        """Offer one preview to every interested reader now; how many took it."""
        readers = [r for r in self._readers if r.wants(run_id, workflow_id)]
        if not readers:
            return 0
        chunk = preview_chunk(run_id, workflow_id, data)
        return sum(1 for reader in readers if reader.deliver(chunk))

    @contextlib.contextmanager
    def subscribe(
        self, deliver: Deliver, *, run_id: str | None = None, workflow_id: str | None = None
    ) -> Iterator[None]:
        """Receive the previews of one run, one workflow, or all, while the block runs."""
        reader = _Reader(run_id, workflow_id, deliver)
        self._readers.add(reader)
        try:
            yield
        finally:
            self._readers.discard(reader)

    @property
    def reader_count(self) -> int:
        """How many streams receive previews now."""
        return len(self._readers)


# One hub per broker, i.e. per application, found the same way by the follower and the routes.
_HUBS: weakref.WeakKeyDictionary[EventBroker, PreviewHub] = weakref.WeakKeyDictionary()


def previews_of(broker: EventBroker) -> PreviewHub:
    """The preview hub of ``broker``'s application."""
    hub = _HUBS.get(broker)
    if hub is None:
        hub = _HUBS[broker] = PreviewHub()
    return hub
