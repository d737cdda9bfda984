"""Deadlines (``Cancel-After``) and the expiry of Idempotency-Keys, checked every second.

A run still unfinished at its ``cancel_at`` is canceled on InvokeAI (the follower then records
how it ended, with a ``DeadlineExceeded`` error); one that never reached InvokeAI is ended here.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime

from app.db import claims
from app.db.tables import Run, RunStatus, utcnow
from app.runs import errors
from app.runs.context import RunContext
from app.runs.dispatcher import closing_change
from app.runs.follower import Follower
from invokeai_py_client.exceptions import InvokeAIError, NotFoundError

__all__ = ["Deadlines"]

logger = logging.getLogger(__name__)

DEADLINE_TICK_SECONDS = 1.0
KEY_SWEEP_SECONDS = 60.0


class Deadlines:
    """Cancels runs past their deadline; forgets Idempotency-Keys past their TTL."""

    def __init__(self, ctx: RunContext, follower: Follower) -> None:
        self.ctx = ctx
        self.follower = follower

    async def run_forever(self) -> None:
        """Check deadlines every tick, and sweep expired keys every ``KEY_SWEEP_SECONDS``."""
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while True:
            try:
                await self.cancel_due()
                if self.ctx.first and loop.time() >= next_sweep:  # once for all backends
                    next_sweep = loop.time() + KEY_SWEEP_SECONDS
                    ttl = self.ctx.settings.idempotency_ttl_seconds
                    await self.ctx.db.run(claims.release_expired_keys, self.ctx.engine, ttl)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("deadline scheduler round failed", exc_info=True)
            await asyncio.sleep(DEADLINE_TICK_SECONDS)

    async def cancel_due(self) -> None:
        """Cancel on InvokeAI every unfinished run whose ``cancel_at`` passed."""
        now = utcnow()
        due = await self.ctx.db.run(claims.list_due, self.ctx.engine, now, self.ctx.owner)
        asked = self.ctx.registry.deadline_asked
        asked &= {run.id for run in due}  # forget runs that ended
        for run in due:
            if run.id in asked or self.ctx.registry.enqueueing(run.id):
                continue
            if run.item_id is None:  # never reached InvokeAI: ended here
                await self._close_pending(run, now)
                continue
            try:
                await self.ctx.client.queue_repo.acancel_item(run.item_id)
            except NotFoundError:
                pass  # the item is gone: the follower's check ends the run
            except InvokeAIError:
                continue  # unreachable: next round
            logger.info("run %s reached its deadline: canceled item %s", run.id, run.item_id)
            asked.add(run.id)
            self.follower.nudge(run.id)

    async def _close_pending(self, run: Run, now: datetime) -> None:
        error = errors.deadline_error(run.cancel_at, now)
        if await self.ctx.transitions.apply(closing_change(run, RunStatus.canceled, error)):
            logger.info("run %s reached its deadline before InvokeAI took it", run.id)
