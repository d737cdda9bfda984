"""Settling claims left behind: runs accepted but not known to be on InvokeAI's queue.

On start and every reconcile interval, each claim this process is not sending right now is
looked up on InvokeAI by the batch id minted for it (the pending runs of a sweep sent as one
batch are looked up together, each given the item at its place, or sent again together under
a new batch id)::

    pending (answered 202)   found ─ item id + run.queued (synthetic) ─ follow
                             not there ─ enqueued (again, or at last) by the dispatcher
    submitting (unanswered)  found ─ queued + run.queued (synthetic) ─ follow
                             not there ─ deleted (nobody was told it was accepted)

An enqueue whose answer was lost may still land: for ``CLAIM_SETTLE_SECONDS`` such a claim is
only looked up, never sent again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Iterable

from app.db import claims, moves, sweeps
from app.db.tables import Run, RunStatus, utcnow
from app.runs.context import RunContext
from app.runs.dispatcher import Dispatcher, queued_change
from app.runs.follower import Follower
from invokeai_py_client.exceptions import InvokeAIError

__all__ = ["CLAIM_SETTLE_SECONDS", "Reconciler"]

logger = logging.getLogger(__name__)

CLAIM_SETTLE_SECONDS = 60.0


def _by_batch(runs: Iterable[Run]) -> list[list[Run]]:
    """Pending runs grouped by batch id, in order (a sweep's runs in one batch go together)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.batch_id or run.id, []).append(run)
    for group in groups.values():
        group.sort(key=lambda r: r.sweep_index or 0)
    return list(groups.values())


class Reconciler:
    """Looks up leftover claims on InvokeAI and settles them."""

    def __init__(self, ctx: RunContext, follower: Follower, dispatcher: Dispatcher) -> None:
        self.ctx = ctx
        self.follower = follower
        self.dispatcher = dispatcher
        self._born = utcnow()
        self._kicked = asyncio.Event()
        follower.connected_hooks.append(self.cancel_abandoned)

    async def run_forever(self) -> None:
        """Settle leftover claims now, every reconcile interval, and when kicked."""
        while True:
            try:
                await self.resolve_leftovers()
            except InvokeAIError as exc:  # down: the follower reports it; try next round
                logger.debug("reconcile round on %s: %s", self.ctx.backend, exc)
            except Exception:  # a bug or the database: say so, and keep going
                logger.exception("reconcile round on %s failed", self.ctx.backend)
            with contextlib.suppress(TimeoutError):
                interval = self.ctx.settings.reconcile_interval_seconds
                await asyncio.wait_for(self._kicked.wait(), interval)
            self._kicked.clear()

    def kick(self) -> None:
        """A round now (another replica accepted a run for this server: send it)."""
        self._kicked.set()

    async def cancel_abandoned(self) -> None:
        """Cancel the batches this server held for runs moved to another while it did not
        answer (``app.runs.rescue``): each of those runs has one result, the other server's."""
        if len(self.ctx.clients) < 2 or not self.follower.events_connected:
            return
        engine = self.ctx.engine
        batch_ids = await self.ctx.db.run(moves.abandoned_batches, engine, self.ctx.backend)
        if not batch_ids:
            return
        try:
            canceled = await self.ctx.client.queue_repo.acancel_by_batch_ids(batch_ids)
        except InvokeAIError:
            return  # next round
        logger.info("canceled %d items of %d abandoned batches", canceled, len(batch_ids))
        await self.ctx.db.run(moves.forget_abandoned, engine, batch_ids)

    async def resolve_leftovers(self) -> None:
        """Settle every claim not being sent by this process right now (and cancel what was
        abandoned here)."""
        await self.cancel_abandoned()
        for run in await self.ctx.db.run(claims.list_submitting, self.ctx.engine, self.ctx.owner):
            if not self.ctx.registry.enqueueing(run.id):
                await self.resolve_submitting(run)
        pending = await self.ctx.db.run(claims.list_pending, self.ctx.engine, self.ctx.owner)
        for group in _by_batch(r for r in pending if not self.ctx.registry.enqueueing(r.id)):
            if group[0].sweep_id is None:
                await self._resolve_pending(group[0])
            else:
                await self._resolve_sweep_batch(group)

    async def _resolve_pending(self, run: Run) -> None:
        """Find a pending run on InvokeAI by its batch, or send it (again, or at last)."""
        if run.batch_id is None:
            return
        lost_at = self.ctx.registry.maybe_sent.get(run.id)
        settling = lost_at is not None and time.monotonic() - lost_at < CLAIM_SETTLE_SECONDS
        self.ctx.registry.begin_enqueue(run.id)  # nobody else sends it meanwhile
        try:
            items = await self.ctx.client.queue_repo.aget_items_by_batch(run.batch_id)
        except InvokeAIError:
            items = None  # unreachable: next round
        if items != [] or settling:  # found, unknown, or a lost enqueue that may still land
            try:
                if items:
                    logger.info("run %s found on InvokeAI as item %s", run.id, items[0].item_id)
                    await self.dispatcher.record_enqueued(run, items[0].item_id, synthetic=True)
            finally:
                self.ctx.registry.end_enqueue(run.id)
            return
        self.ctx.registry.maybe_sent.pop(run.id, None)
        await self.dispatcher.send(run, None)

    async def _resolve_sweep_batch(self, runs: list[Run]) -> None:
        """Find pending runs of a sweep on InvokeAI by their shared batch, or send them again
        under a new one (so that the i-th item of a batch is always its i-th run)."""
        batch_id = runs[0].batch_id
        if batch_id is None:
            return
        now = time.monotonic()
        lost = [self.ctx.registry.maybe_sent.get(r.id) for r in runs]
        settling = any(t is not None and now - t < CLAIM_SETTLE_SECONDS for t in lost)
        for run in runs:
            self.ctx.registry.begin_enqueue(run.id)
        sent = False
        try:
            try:
                items = await self.ctx.client.queue_repo.aget_items_by_batch(batch_id)
            except InvokeAIError:
                return  # unreachable: next round
            if items:
                await self._record_found(runs, sorted(item.item_id for item in items))
            elif not settling:
                fresh = str(uuid.uuid4())
                await self.ctx.db.run(sweeps.rebatch, self.ctx.engine, [r.id for r in runs], fresh)
                for run in runs:
                    run.batch_id = fresh
                    self.ctx.registry.maybe_sent.pop(run.id, None)
                sent = True
                await self.dispatcher.send_batch(runs, None)  # ends the in-flight marks
        finally:
            if not sent:
                for run in runs:
                    self.ctx.registry.end_enqueue(run.id)

    async def _record_found(self, runs: list[Run], item_ids: list[int]) -> None:
        """Give each run the item at its place in the batch; runs past the items InvokeAI
        took get a new batch id and are sent next round."""
        left = []
        for run in runs:
            position = await self.ctx.db.run(sweeps.batch_position, self.ctx.engine, run)
            if position < len(item_ids):
                logger.info("run %s found on InvokeAI as item %s", run.id, item_ids[position])
                await self.dispatcher.record_enqueued(run, item_ids[position], synthetic=True)
            else:
                left.append(run.id)
        if left:
            await self.ctx.db.run(sweeps.rebatch, self.ctx.engine, left, str(uuid.uuid4()))

    async def resolve_submitting(self, run: Run) -> bool:
        """Settle a ``submitting`` row left behind from InvokeAI; False when it cannot tell."""
        if self.ctx.registry.busy(run.id) or run.batch_id is None:
            return False
        age = (utcnow() - run.created_at).total_seconds()
        if run.created_at >= self._born and age < CLAIM_SETTLE_SECONDS:
            return False  # an enqueue whose answer broke may still land: look later
        self.ctx.registry.resolving.add(run.id)
        try:
            items = await self.ctx.client.queue_repo.aget_items_by_batch(run.batch_id)
        except InvokeAIError:
            return False
        finally:
            self.ctx.registry.resolving.discard(run.id)
        if not items:
            logger.info("run %s was never enqueued (batch %s): forgotten", run.id, run.batch_id)
            await self.ctx.db.run(claims.delete_claim, self.ctx.engine, run.id)
            return True
        item_id = items[0].item_id
        if await self.ctx.transitions.apply(queued_change(run, item_id, synthetic=True)) is None:
            return True  # settled meanwhile by another caller
        logger.info("run %s found on InvokeAI as item %s", run.id, item_id)
        run.status, run.item_id = RunStatus.queued.value, item_id
        self.follower.follow_new(run)
        return True
