"""Writing one SSE stream: the events of one run, or of all runs, resumable by event id.

Ordering that makes resuming lossless and free of repeats (each event is stored before it is
published):

1. subscribe to the broker (from now on every new event is queued for this stream);
2. replay the stored events with an id above ``Last-Event-ID`` from the database;
3. relay live events, skipping ids already sent.

An event stored before step 1 is found in step 2; one stored after it is queued. A reader that
falls behind is told so by the broker and goes back to step 2 from its last sent id.

Step 3 has two gears. Caught up, a stream is *pushed to*: the broker's ``publish`` calls the
stream's sink, which writes the event to the connection there and then (``_Sink``), so a
thousand streams cost a thousand writes and no task wake-ups. When a write cannot finish at
once (a slow reader, flow control) the sink detaches; the stream's task finishes that write,
sends what queued meanwhile (or re-reads from the database if the queue overflowed), and
attaches again once caught up::

    replay (pull) ──> caught up? ── attach ──> publish ─> sink ─> write_now ─┐
        ^                 ^                                                   │ blocked,
        │ lagging         └── finish the write, take the queued events <──────┘ or terminal
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncIterator, Iterator

import anyio.to_thread
from sqlalchemy import Table, func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app.db.outbox import StoredEvent
from app.db.tables import Run, RunEvent, RunStatus
from app.streaming.broker import (
    Event,
    EventBroker,
    LiveFeed,
    is_terminal_event,
)
from app.streaming.previews import PreviewHub
from app.streaming.wire import (
    Connection,
    WireCache,
    WireEvent,
    ping_chunk,
    wire_cache,
)

__all__ = ["load_events_after", "newest_event_id", "relay", "run_status"]

REPLAY_PAGE = 500


# -- history (sync, run in a worker thread) ----------------------------------------------------

_EVENTS: Table = RunEvent.__table__  # type: ignore[attr-defined]
# In the order of ``StoredEvent``'s fields.
_EVENT_COLUMNS = [
    _EVENTS.c[name] for name in ("id", "run_id", "workflow_id", "event_type", "data", "created_at")
]


def load_events_after(
    engine: Engine,
    *,
    after_id: int,
    run_id: str | None,
    workflow_id: str | None,
    limit: int,
    run_ids: frozenset[str] | None = None,
) -> list[Event]:
    """Up to ``limit`` stored events with an id above ``after_id``, oldest first."""
    query = select(*_EVENT_COLUMNS).where(_EVENTS.c.id > after_id)
    if run_id is not None:
        query = query.where(_EVENTS.c.run_id == run_id)
    if run_ids is not None:
        query = query.where(_EVENTS.c.run_id.in_(sorted(run_ids)))
    if workflow_id is not None:
        query = query.where(_EVENTS.c.workflow_id == workflow_id)
    with engine.connect() as connection:
        rows = connection.execute(query.order_by(_EVENTS.c.id).limit(limit)).all()
    return [StoredEvent(*row).as_event() for row in rows]


def load_run_status(engine: Engine, run_id: str) -> str | None:
    """The stored status of a run, or None when there is no such run."""
    with Session(engine) as session:
        run = session.get(Run, run_id)
        return None if run is None else run.status


TERMINAL_STATUSES = frozenset(s.value for s in RunStatus if s.terminal)


def _all_over(engine: Engine, run_ids: frozenset[str]) -> bool:
    with Session(engine) as session:
        return all(
            (run := session.get(Run, run_id)) is not None and run.status in TERMINAL_STATUSES
            for run_id in run_ids
        )


async def _runs_are_over(engine: Engine, run_ids: frozenset[str]) -> bool:
    return await anyio.to_thread.run_sync(_all_over, engine, run_ids)


# -- the stream --------------------------------------------------------------------------------


Batch = list[WireEvent]


def _chunk(batch: Batch) -> bytes:
    """A batch of events in one chunk: one write, however many events waited."""
    return batch[0].encode() if len(batch) == 1 else b"".join(e.encode() for e in batch)


class _Cursor:
    """The last id sent, whether the stream is over, and where encoded events are shared.

    A stream of given runs (``until``) is over once each of them sent its terminal event.
    """

    def __init__(self, last_id: int, wire: WireCache, *, until: frozenset[str] | None) -> None:
        self.last_id = last_id
        self.done = False
        self.wire = wire
        self.until = until
        self._running = set(until or ())

    def advance(self, event: Event) -> WireEvent:
        """Mark ``event`` sent (the caller sends it); the encoded form to send."""
        self.last_id = int(event["id"])
        if self.until is not None and is_terminal_event(event):
            self._running.discard(str(event.get("run_id")))
            self.done = not self._running
        return self.wire.get(event)

    def advance_all(self, events: list[Event]) -> Batch:
        """The events not sent yet, in order, up to the terminal one if the stream stops there."""
        batch = []
        for event in events:
            if int(event["id"]) <= self.last_id:
                continue  # already sent (by the replay)
            batch.append(self.advance(event))
            if self.done:
                break
        return batch


async def _replay(
    engine: Engine, cursor: _Cursor, run_id: str | None, workflow_id: str | None
) -> AsyncIterator[Batch]:
    many = cursor.until if cursor.until is not None and run_id is None else None
    while not cursor.done:
        page = await anyio.to_thread.run_sync(
            lambda: load_events_after(
                engine,
                after_id=cursor.last_id,
                run_id=run_id,
                workflow_id=workflow_id,
                limit=REPLAY_PAGE,
                run_ids=many,
            )
        )
        batch = cursor.advance_all(page)
        if batch:
            yield batch
        if cursor.done or len(page) < REPLAY_PAGE:
            return


async def relay(
    connection: Connection,
    *,
    engine: Engine,
    broker: EventBroker,
    last_id: int,
    ping: float,
    run_id: str | None = None,
    workflow_id: str | None = None,
    previews: PreviewHub | None = None,
    run_ids: frozenset[str] | None = None,
) -> None:
    """Write one stream: one run's events (until its terminal event), those of a set of runs
    of one workflow (until each one's terminal event), or many (never ends).

    Args:
        connection: where the events go.
        engine: the database holding the events (the history).
        broker: the live events.
        last_id: send only events with a larger id (the resume point).
        ping: seconds between heartbeats while the stream waits for events.
        run_id: only this run's events; the stream ends after its terminal event.
        workflow_id: only the events of this workflow's runs.
        previews: also write the live-only previews of those runs (``?previews=true``).
        run_ids: only these runs (of ``workflow_id``); the stream ends after the last one's
            terminal event.
    """
    until = frozenset([run_id]) if run_id is not None else run_ids
    cursor = _Cursor(last_id, wire_cache(broker), until=until)
    async with broker.subscribe(run_id=run_id, workflow_id=workflow_id, run_ids=run_ids) as sub:
        with _previews_to(connection, sub, previews, run_id=run_id, workflow_id=workflow_id):
            await _stream(connection, engine, sub, cursor, ping, run_id, workflow_id)
    if cursor.done:
        # Over: this reader has its last event. The response ends once that event has
        # reached the others (a thousand streams ending between the writer's slices would
        # hold the last readers back; see the broker's doc).
        await broker.settled()


async def _stream(
    connection: Connection,
    engine: Engine,
    sub: LiveFeed,
    cursor: _Cursor,
    ping: float,
    run_id: str | None,
    workflow_id: str | None,
) -> None:
    """Replay, then relay live events, until the stream is over (see the module's doc)."""
    while not cursor.done:
        # Read the status before the replay: a run already over has stored its terminal
        # event (in the transaction that ended it), so the replay finds it.
        over = cursor.until is not None and await _runs_are_over(engine, cursor.until)
        async for batch in _replay(engine, cursor, run_id, workflow_id):
            await connection.write(_chunk(batch))
        if over:
            return
        if cursor.done or not await _live(connection, sub, cursor, ping):
            return
        # Events were dropped for us (the queue overflowed): re-read them from the database.


@contextlib.contextmanager
def _previews_to(
    connection: Connection,
    sub: LiveFeed,
    hub: PreviewHub | None,
    *,
    run_id: str | None,
    workflow_id: str | None,
) -> Iterator[None]:
    """While the block runs, write the hub's previews to this stream when it can take one.

    A preview goes out only while the stream is pushed to and no send is in flight (the one
    send this connection allows is shared with the broker's sink); otherwise it is skipped and
    the next one is offered: a reader never gets a backlog of previews. A preview whose write
    blocks detaches the stream, whose task then finishes that write, as for a stored event.
    """
    if hub is None:
        yield
        return

    def deliver(chunk: bytes) -> bool:
        if not sub.attached or connection.blocked:
            return False
        if not connection.write_now(chunk):
            sub.detach()
        return True

    with hub.subscribe(deliver, run_id=run_id, workflow_id=workflow_id):
        yield


async def _live(connection: Connection, sub: LiveFeed, cursor: _Cursor, ping: float) -> bool:
    """Relay live events until the stream is over (False) or has fallen behind (True)."""
    sink = functools.partial(_push, connection, sub, cursor)
    while not (cursor.done or sub.closed):
        if sub.take_lag():
            return True
        batch = cursor.advance_all(sub.take_ready())
        if batch:
            await connection.write(_chunk(batch))  # what queued while we were not attached
        elif sub.attach(sink):
            await _while_pushed(connection, sub, ping)
    return False


def _push(connection: Connection, sub: LiveFeed, cursor: _Cursor, events: list[Event]) -> None:
    """The sink: called by the broker's delivery; writes the events to the connection now."""
    batch = cursor.advance_all(events)  # skips what the replay sent already
    if batch and (not connection.write_now(_chunk(batch)) or cursor.done):
        # Blocked: later events queue until the stream's task has finished this write.
        # Done: the stream's task ends the response.
        sub.detach()


async def _while_pushed(connection: Connection, sub: LiveFeed, ping: float) -> None:
    """Sleep while the broker pushes; a heartbeat when a ping interval passes; when detached,
    finish the write the sink could not finish at once."""
    while not await sub.wait_detached(ping):
        # Attached means no write is in flight: the heartbeat can go out the same way.
        if not connection.write_now(ping_chunk()):
            sub.detach()
            break
    await connection.finish()


async def newest_event_id(engine: Engine) -> int:
    """The id of the newest stored event (0: none), read in a worker thread."""

    def newest() -> int:
        with engine.connect() as connection:
            return int(connection.execute(select(func.max(_EVENTS.c.id))).scalar() or 0)

    return await anyio.to_thread.run_sync(newest)


async def run_status(engine: Engine, run_id: str) -> str | None:
    """The stored status of a run (None: no such run), read in a worker thread."""
    return await anyio.to_thread.run_sync(load_run_status, engine, run_id)
