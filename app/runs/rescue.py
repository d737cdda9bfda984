"""Runs of an InvokeAI server that stopped answering go to another (several servers only).

Each round (the reconcile interval), a server whose events are not followed is *down* from
the first round that saw it so. Its runs move to a healthy server that has what they name
(their models, images and board, checked by building them there first):

* at once, the runs it never got (pending, and no enqueue of theirs whose answer was lost);
* after ``GATEWAY_BACKEND_GRACE`` seconds down, the runs on its queue. InvokeAI's queue is
  durable, so a server that comes back soon runs them itself; past the grace they are sent
  again elsewhere.

A moved run gets a new batch id, and its old batch is remembered as *abandoned*, to be
canceled by that server's reconciler when it answers again: a run never yields two results.
In a cluster one replica does this (the holder of the ``~rescue`` lease).

A moved run is pending on its new server, then ``run.queued`` again there (with
``backend``). A run that cannot be built elsewhere (an image uploaded to the lost server, a
model no other has) waits for its server.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

from app.core.errors import GatewayError
from app.db import moves, queries
from app.db.tables import Run
from app.runs.dispatcher import Prepared
from app.runs.lanes import Lane, placement_order
from app.runs.registry import Check
from invokeai_py_client.exceptions import InvokeAIError

if TYPE_CHECKING:
    from app.runs.service import RunService

__all__ = ["Rescue"]

logger = logging.getLogger(__name__)


class Rescue:
    """Moves the runs of servers that stopped answering (see the module's docstring)."""

    def __init__(self, service: RunService) -> None:
        self.service = service
        self._down_since: dict[str, float] = {}

    async def run_forever(self) -> None:
        """A round every reconcile interval."""
        while True:
            try:
                await self.round()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("moving runs of unreachable servers failed", exc_info=True)
            await asyncio.sleep(self.service.settings.reconcile_interval_seconds)

    async def round(self) -> None:
        """Note which servers are down; move what may move off each."""
        cluster = self.service.cluster
        if cluster is not None and not cluster.holds_rescue:
            self._down_since.clear()  # another replica does it
            return
        now = time.monotonic()
        for lane in self.service.lanes:
            if lane.healthy:
                self._down_since.pop(lane.name, None)
                continue
            since = self._down_since.setdefault(lane.name, now)
            if since < now:  # down for a whole round at least
                grace_over = now - since >= self.service.settings.backend_grace_seconds
                await self._move_off(lane, grace_over=grace_over)

    async def _move_off(self, lane: Lane, *, grace_over: bool) -> None:
        ctx = lane.ctx
        runs = await ctx.db.run(queries.unfinished_runs, ctx.engine, ctx.owner)
        for run in runs:
            never_got = run.item_id is None and run.id not in ctx.registry.maybe_sent
            if (never_got or grace_over) and not ctx.registry.busy(run.id):
                await self._move(run, lane)

    async def _move(self, run: Run, old: Lane) -> None:
        """Send ``run`` to the first healthy server that can build it (none: it stays)."""
        # Its old batch is canceled there when the server answers again, even when it was
        # surely never sent (a no-op then): another replica's lost enqueue answer is not
        # known here.
        old_batch = run.batch_id
        assert old_batch is not None  # every accepted run has one
        others = [lane for lane in self.service.lanes if lane is not old and lane.healthy]
        for new in placement_order(others):
            run.batch_id = str(uuid.uuid4())
            try:
                prepared = await new.dispatcher.prepare(run)
            except (GatewayError, InvokeAIError):
                continue  # it cannot run there: the next one
            await self._commit_move(run, old, new, prepared, old_batch)
            return
        run.batch_id = old_batch

    async def _commit_move(
        self, run: Run, old: Lane, new: Lane, prepared: Prepared, abandon: str
    ) -> None:
        registry = old.ctx.registry
        registry.begin_enqueue(run.id)  # the old lane leaves it alone meanwhile
        try:
            assert run.batch_id is not None
            moved = await old.ctx.db.run(
                moves.move_run,
                old.ctx.engine,
                run.id,
                old.ctx.owner,
                self.service.backend_of(new),
                run.batch_id,
                run.board_id,
                (abandon, old.name),
            )
            if not moved:
                return  # it finished or moved meanwhile
            tracked = registry.by_run(run.id)
            if tracked is not None:
                registry.unfollow(tracked)  # its old queue item is no longer this run
                tracked.inbox.put_nowait(Check())  # ends its follower (changes no longer apply)
            registry.maybe_sent.pop(run.id, None)
        finally:
            registry.end_enqueue(run.id)
        logger.warning("run %s moved from InvokeAI server %s to %s", run.id, old.name, new.name)
        run.backend, run.item_id, run.session_id = self.service.backend_of(new), None, None
        if new.active:
            new.dispatcher.dispatch(run, prepared)
        else:  # only the replica following a server sends to it: once, after a look-up
            assert self.service.cluster is not None
            self.service.cluster.wake(new)
