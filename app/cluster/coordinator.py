"""One replica's part in a cluster: its leases, its wake-ups, and the shared event stream.

Every ``lease_seconds / 3`` a replica renews the leases it holds and takes those that
expired (their holder died or stopped): one per InvokeAI server (that replica follows the
server: its Socket.IO events, dispatches, reconciler and deadlines) and ``~rescue`` (moving
runs off lost servers). Holding a lease it writes how the server is doing (``healthy``,
``unfinished``), which the others use to place runs. A replica that cannot renew for most of
a lease stops following, before anybody else may start.

A run accepted by a replica that does not follow its server is left pending in the database
and ``NOTIFY gateway_wake`` asks the follower to send it (its reconciler looks it up by
batch id first, as for any pending run, so it is sent once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from app.cluster.tail import EventTail
from app.db import leases
from app.streaming.broker import EventBroker

if TYPE_CHECKING:
    from app.runs.lanes import Lane
    from app.runs.service import RunService

__all__ = ["EVENTS_CHANNEL", "RESCUE_LEASE", "WAKE_CHANNEL", "Cluster"]

logger = logging.getLogger(__name__)

EVENTS_CHANNEL = "gateway_events"
WAKE_CHANNEL = "gateway_wake"
RESCUE_LEASE = "~rescue"
TAIL_POLL_SECONDS = 1.0
RELISTEN_SECONDS = 1.0


def _notify(engine: Engine, channel: str, payload: str) -> None:
    with engine.connect() as connection:
        connection.execute(
            text("SELECT pg_notify(:channel, :payload)"), {"channel": channel, "payload": payload}
        )
        connection.commit()


class Cluster:
    """Leases, wake-ups and the event tail of one replica."""

    def __init__(self, service: RunService, broker: EventBroker) -> None:
        self.service = service
        self.me = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.tail = EventTail(service.engine, service.db, broker)
        self.holds_rescue = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._tail_due = asyncio.Event()
        self._renewed_at = time.monotonic()

    @property
    def _seconds(self) -> float:
        return self.service.settings.lease_seconds

    async def start(self) -> None:
        """Take what leases are free, and start listening and tailing."""
        await self.tail.start()
        await self._renew()
        self._spawn(self._leases_forever())
        self._spawn(self._listen_forever())
        self._spawn(self._tail_forever())

    async def stop(self) -> None:
        """Stop following, and give the leases up at once (others need not wait)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for lane in self.service.lanes:
            if lane.active:
                await lane.stop()
        engine = self.service.engine
        with contextlib.suppress(Exception):
            for name in [lane.name for lane in self.service.lanes] + [RESCUE_LEASE]:
                await self.service.db.run(leases.release, engine, name, self.me)

    def wake(self, lane: Lane) -> None:
        """Ask whoever follows ``lane``'s server to send its pending runs now."""
        engine = self.service.engine
        self._spawn(self.service.db.run(_notify, engine, WAKE_CHANNEL, lane.name))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- leases -----------------------------------------------------------------------------

    async def _leases_forever(self) -> None:
        while True:
            await asyncio.sleep(self._seconds / 3)
            try:
                await self._renew()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("cannot renew leases", exc_info=True)
                if time.monotonic() - self._renewed_at > self._seconds * 0.6:
                    await self._let_go()  # before the leases expire and others take over

    async def _renew(self) -> None:
        db, engine, seconds = self.service.db, self.service.engine, self._seconds
        for lane in self.service.lanes:
            healthy = lane.active and lane.follower.events_connected
            unfinished = lane.ctx.registry.in_flight() if lane.active else 0
            held = await db.run(
                leases.hold,
                engine,
                lane.name,
                self.me,
                seconds,
                healthy=healthy,
                unfinished=unfinished,
            )
            if held and not lane.active:
                logger.info("following InvokeAI server %s", lane.name)
                await lane.restart()
            elif not held and lane.active:
                logger.warning(
                    "lease of InvokeAI server %s lost: no longer following it", lane.name
                )
                await lane.stop()
        self.holds_rescue = await db.run(
            leases.hold, engine, RESCUE_LEASE, self.me, seconds, healthy=True, unfinished=0
        )
        self._renewed_at = time.monotonic()
        reports = {lease.name: lease for lease in await db.run(leases.leases, engine)}
        for lane in self.service.lanes:
            lane.remote = None if lane.active else reports.get(lane.name)

    async def _let_go(self) -> None:
        self.holds_rescue = False
        for lane in self.service.lanes:
            if lane.active:
                await lane.stop()

    # -- notifications ----------------------------------------------------------------------

    async def _listen_forever(self) -> None:
        import psycopg  # a cluster's driver: a single replica on SQLite never loads it

        url = make_url(self.service.settings.database_url).set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    await conn.execute(f"LISTEN {WAKE_CHANNEL}")
                    self._tail_due.set()  # what was stored while not listening
                    async for note in conn.notifies():
                        self._on_notify(note.channel, note.payload)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("lost the database's notifications; listening again", exc_info=True)
            await asyncio.sleep(RELISTEN_SECONDS)

    def _on_notify(self, channel: str, payload: str) -> None:
        if channel == WAKE_CHANNEL:
            for lane in self.service.lanes:
                if lane.name == payload and lane.active:
                    lane.reconciler.kick()
        else:
            self._tail_due.set()

    async def _tail_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tail_due.wait(), TAIL_POLL_SECONDS)
            self._tail_due.clear()
            try:
                await self.tail.catch_up()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("cannot read new events", exc_info=True)
