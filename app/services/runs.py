"""The run service: submit a run exactly once, wait for it, cancel it, enforce deadlines.

Submitting, in order (following the run afterwards is in ``follower``)::

    Idempotency-Key known? ─ same body: the original run; other body: 409
    cap on unfinished runs ─ 429 + Retry-After
    claim: insert Run(submitting, minted batch id, key)   ← the unique key decides races
    check inputs ─ 422: claim deleted
    enqueue batch (lost answer: looked up by batch id) ─ refused connection: claim deleted, 503
    Run(queued, item id) ─ run.queued ─ follow

A ``submitting`` row is invisible in the API. One left behind (a crash, or an enqueue whose
fate InvokeAI could not tell) is resolved from InvokeAI by its batch id: found, it becomes
``queued``; not there, it is deleted (nobody was told it was accepted).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlmodel import Session

from app import crud
from app.core.errors import GatewayError, InvokeAIUnavailable, NotFound
from app.models import Run, RunStatus, Workflow, utcnow
from app.services import claims
from app.services.claims import SUBMITTING, Claim
from app.services.follower import RunFollower
from app.services.inputs import apply_inputs
from app.services.submit import enqueue_run, nothing_sent
from app.services.workflows import load_handle
from invokeai_py_client.exceptions import APIConnectionError, InvokeAIError, NotFoundError

__all__ = ["IdempotencyConflict", "RunService", "Submission", "TooManyRuns"]

logger = logging.getLogger(__name__)

CANCEL_WAIT_SECONDS = 5.0
CLAIM_ATTEMPTS = 5
DEADLINE_TICK_SECONDS = 1.0
KEY_SWEEP_SECONDS = 60.0
# A claim of this process younger than this may still be on its way to InvokeAI: not resolved.
CLAIM_SETTLE_SECONDS = 60.0


class IdempotencyConflict(GatewayError):
    """An Idempotency-Key reused with a different request."""

    status_code = 409
    title = "Idempotency-Key reused"


class TooManyRuns(GatewayError):
    """The cap on unfinished runs is reached."""

    status_code = 429
    title = "Too many unfinished runs"


@dataclass(frozen=True)
class Submission:
    """What ``POST /workflows/{id}/runs`` asks for, already parsed."""

    workflow: Workflow
    inputs: dict[str, Any]
    board_id: str | None = None
    key: str | None = None
    request_hash: str | None = None
    cancel_after: float | None = None
    columns: dict[str, Any] | None = None  # further Run columns (per-run webhook, ...)


class RunService(RunFollower):
    """Submits runs and keeps their state, events and outputs in the database."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._inflight: dict[str, asyncio.Event] = {}  # run id -> set when its submit ends
        self._resolving: set[str] = set()
        self._deadline_asked: set[str] = set()
        self._born = utcnow()

    # -- submitting -------------------------------------------------------------------------

    async def submit(self, sub: Submission) -> tuple[Run, bool]:
        """Enqueue a run once; returns it and whether it is a replay of an earlier request.

        Raises:
            IdempotencyConflict: the key was used with another request.
            TooManyRuns: too many unfinished runs.
            InputInvalid: bad values (each bad index named); nothing is recorded.
            InvokeAIUnavailable: InvokeAI cannot be reached; the run is not submitted.
        """
        for _attempt in range(CLAIM_ATTEMPTS):
            if sub.key is not None:
                earlier = await self._replay(sub.key, sub.request_hash)
                if earlier is not None:
                    return earlier, True
            run = self._new_claim(sub)
            claim = claims.claim_run(self.engine, run, self.settings.max_unfinished_runs)
            if claim is Claim.FULL:
                raise self._too_many()
            if claim is Claim.CLAIMED:
                return await self._enqueue_claimed(run, sub), False
            # Another request holds the key: the next round returns its run.
        raise InvokeAIUnavailable("the run could not be submitted; try again")

    def _new_claim(self, sub: Submission) -> Run:
        cancel_at = None
        if sub.cancel_after is not None:
            cancel_at = utcnow() + timedelta(seconds=sub.cancel_after)
        return Run(
            id=str(uuid.uuid4()),
            workflow_id=sub.workflow.id,
            workflow_version=sub.workflow.version,
            inputs=sub.inputs,
            board_id=sub.board_id,
            batch_id=str(uuid.uuid4()),  # minted now: a lost enqueue answer is looked up by it
            status=SUBMITTING,
            idempotency_key=sub.key,
            request_hash=sub.request_hash,
            cancel_at=cancel_at,
            **(sub.columns or {}),
        )

    def _too_many(self) -> TooManyRuns:
        cap = self.settings.max_unfinished_runs
        return TooManyRuns(
            f"{cap} runs are unfinished (GATEWAY_MAX_UNFINISHED_RUNS); try again later",
            headers={"Retry-After": str(self.settings.retry_after_seconds)},
        )

    async def _enqueue_claimed(self, run: Run, sub: Submission) -> Run:
        done = self._inflight[run.id] = asyncio.Event()
        try:
            try:
                version_key = (sub.workflow.id, sub.workflow.version)
                handle = await load_handle(self.client, sub.workflow.definition, version_key)
                recorded = await apply_inputs(self.client, handle, sub.inputs)
                await self.await_events()
                enqueued = await enqueue_run(
                    handle, board_id=sub.board_id, destination=run.id, batch_id=run.batch_id
                )
            except APIConnectionError as exc:
                if nothing_sent(exc) or run.batch_id is None:
                    claims.delete_claim(self.engine, run.id)
                # else: InvokeAI may hold the batch; the row stays hidden until resolved.
                raise InvokeAIUnavailable(f"InvokeAI is unreachable: {exc}") from exc
            except Exception:
                claims.delete_claim(self.engine, run.id)
                raise
            # Cancelled mid-enqueue: the row stays hidden until resolved by its batch id.
            # Queued status and run.queued event: one transaction, then published.
            data = {"item_id": enqueued.item_id, "batch_id": run.batch_id}
            row = claims.mark_queued_with_event(self.engine, run, enqueued.item_id, recorded, data)
            if row is None:
                raise InvokeAIUnavailable(f"run {run.id} vanished while it was enqueued")
            await self.publish_row(row)
            self.follow_new(run)
            return run
        finally:
            self._inflight.pop(run.id, None)
            done.set()

    async def _announce(self, run: Run, **extra: Any) -> None:
        data = {"item_id": run.item_id, "batch_id": run.batch_id, **extra}
        await self.emit_for(run.id, run.workflow_id, "run.queued", data)
        self.follow_new(run)

    async def _replay(self, key: str, wanted_hash: str | None) -> Run | None:
        """The run holding ``key`` once it is enqueued, or None (free key, or its claim fell)."""
        claims.release_expired_keys(self.engine, self.settings.idempotency_ttl_seconds, key=key)
        while True:
            held = claims.find_by_key(self.engine, key)
            if held is None:
                return None
            if held.request_hash != wanted_hash:
                raise IdempotencyConflict(
                    f"Idempotency-Key {key!r} was used with another request (run {held.id})"
                )
            if held.status != SUBMITTING:
                return held
            waiting = self._inflight.get(held.id)
            if waiting is not None:
                await waiting.wait()  # the winner is enqueueing it right now
                continue
            if not await self._resolve_submitting(held):
                raise InvokeAIUnavailable(
                    f"run {held.id} of this Idempotency-Key awaits InvokeAI; try again"
                )

    async def _resolve_submitting(self, run: Run) -> bool:
        """Settle a ``submitting`` row left behind from InvokeAI; False when it cannot tell."""
        if run.id in self._inflight or run.id in self._resolving or run.batch_id is None:
            return False
        age = (utcnow() - run.created_at).total_seconds()
        if run.created_at >= self._born and age < CLAIM_SETTLE_SECONDS:
            return False  # an enqueue whose answer broke may still land: look later
        self._resolving.add(run.id)
        try:
            items = await self.client.queue_repo.aget_items_by_batch(run.batch_id)
        except InvokeAIError:
            return False
        finally:
            self._resolving.discard(run.id)
        if not items:
            logger.info("run %s was never enqueued (batch %s): forgotten", run.id, run.batch_id)
            claims.delete_claim(self.engine, run.id)
            return True
        queued = claims.mark_queued(self.engine, run.id, items[0].item_id)
        if queued is None:
            return True  # settled meanwhile by another caller
        logger.info("run %s found on InvokeAI as item %s", run.id, queued.item_id)
        await self._announce(queued, synthetic=True)
        return True

    async def resolve_leftovers(self) -> None:
        """Resolve every ``submitting`` row not being submitted by this process."""
        for run in claims.list_submitting(self.engine):
            if run.id not in self._inflight:
                await self._resolve_submitting(run)

    # -- deadlines and key expiry -----------------------------------------------------------

    async def start(self) -> None:
        """Follow unfinished runs, resolve leftover claims, and start the deadline scheduler."""
        await super().start()
        self._spawn(self._resolve_forever())
        self._spawn(self._deadlines_forever())

    async def _resolve_forever(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.resolve_leftovers()
            await asyncio.sleep(self.settings.reconcile_interval_seconds)

    async def _deadlines_forever(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()
        while True:
            try:
                await self.cancel_due()
                if loop.time() >= next_sweep:
                    next_sweep = loop.time() + KEY_SWEEP_SECONDS
                    ttl = self.settings.idempotency_ttl_seconds
                    claims.release_expired_keys(self.engine, ttl)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("deadline scheduler round failed", exc_info=True)
            await asyncio.sleep(DEADLINE_TICK_SECONDS)

    async def cancel_due(self) -> None:
        """Cancel on InvokeAI every unfinished run whose ``cancel_at`` passed."""
        due = claims.list_due(self.engine, utcnow())
        self._deadline_asked &= {run.id for run in due}  # forget runs that ended
        for run in due:
            if run.id in self._deadline_asked or run.item_id is None:
                continue
            try:
                await self.client.queue_repo.acancel_item(run.item_id)
            except NotFoundError:
                pass  # the item is gone: the follower's check ends the run
            except InvokeAIError:
                continue  # unreachable: next round
            logger.info("run %s reached its deadline: canceled item %s", run.id, run.item_id)
            self._deadline_asked.add(run.id)
            self.nudge(run.id)

    # -- other calls ------------------------------------------------------------------------

    async def cancel(self, run_id: str) -> Run:
        """Ask InvokeAI to cancel the run; a run already finished is returned unchanged."""
        run = self.load(run_id)
        if RunStatus(run.status).terminal or run.item_id is None:
            return run
        try:
            await self.client.queue_repo.acancel_item(run.item_id)
        except APIConnectionError as exc:
            raise InvokeAIUnavailable(f"InvokeAI is unreachable: {exc}") from exc
        await self.recheck(run_id, CANCEL_WAIT_SECONDS)
        return self.load(run_id)

    def load(self, run_id: str) -> Run:
        """The stored run, or ``NotFound`` (also for a run still being submitted)."""
        with Session(self.engine, expire_on_commit=False) as session:
            run = crud.get_run(session=session, run_id=run_id)
        if run is None or run.status == SUBMITTING:
            raise NotFound(f"no run with id {run_id!r}")
        return run
