"""The run service: submit a run exactly once, wait for it, cancel it, enforce deadlines.

Submitting, in order (sending in the background is in ``dispatch``, following the run
afterwards in ``follower``)::

    Idempotency-Key known? ─ same body: the original run; other body: 409
    check inputs, build the enqueue body ─ 422, nothing recorded
    cap on unfinished runs ─ 429 + Retry-After
    claim: insert Run(minted batch id, key)   ← the unique key decides races
    InvokeAI's events followed: Run(queued, pending) ─ 202; dispatched in the background
    otherwise (InvokeAI's reachability unknown): Run(submitting) ─ enqueue batch
        ─ refused connection: claim deleted, 503 ─ Run(queued, item id) ─ run.queued ─ 202

A ``submitting`` row is invisible in the API. One left behind (a crash, or an enqueue whose
fate InvokeAI could not tell) is resolved from InvokeAI by its batch id: found, it becomes
``queued``; not there, it is deleted (nobody was told it was accepted).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import Session

from app.core.errors import GatewayError, InvokeAIUnavailable, NotFound
from app.db import claims
from app.db import queries as crud
from app.db.claims import SUBMITTING, Claim
from app.db.tables import Run, RunStatus, Workflow, utcnow
from app.runs.dispatcher import Prepared, RunDispatcher
from app.runs.enqueue import build_body, nothing_sent, send_body
from app.runs.inputs import apply_inputs
from app.runs.registry import deadline_error
from app.workflows import load_handle
from invokeai_py_client.exceptions import APIConnectionError, InvokeAIError, NotFoundError

__all__ = ["IdempotencyConflict", "RunService", "Submission", "TooManyRuns"]

logger = logging.getLogger(__name__)

CANCEL_WAIT_SECONDS = 5.0
CLAIM_ATTEMPTS = 5
DEADLINE_TICK_SECONDS = 1.0
KEY_SWEEP_SECONDS = 60.0


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


class RunService(RunDispatcher):
    """Submits runs and keeps their state, events and outputs in the database."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._deadline_asked: set[str] = set()

    # -- submitting -------------------------------------------------------------------------

    async def submit(self, sub: Submission) -> tuple[Run, bool]:
        """Accept a run once; returns it and whether it is a replay of an earlier request.

        Raises:
            IdempotencyConflict: the key was used with another request.
            TooManyRuns: too many unfinished runs.
            InputInvalid: bad values (each bad index named); nothing is recorded.
            InvokeAIUnavailable: InvokeAI cannot be reached; the run is not submitted.
        """
        if sub.key is not None:
            earlier = await self._replay(sub.key, sub.request_hash)
            if earlier is not None:
                return earlier, True
        run = self._new_claim(sub)
        prepared = await self._prepare(run, sub)
        run.inputs = prepared.recorded_inputs
        await self.await_events()
        # Followed events mean InvokeAI answers: accept now, enqueue in the background.
        pending = self.events_connected
        run.status = RunStatus.queued.value if pending else SUBMITTING
        for _attempt in range(CLAIM_ATTEMPTS):
            claim = claims.claim_run(self.engine, run, self.settings.max_unfinished_runs)
            if claim is Claim.FULL:
                raise self._too_many()
            if claim is Claim.CLAIMED:
                if pending:
                    self.dispatch(run, prepared)
                    return run, False
                return await self._enqueue_claimed(run, prepared), False
            assert sub.key is not None  # only the key is unique among the claim's columns
            earlier = await self._replay(sub.key, sub.request_hash)
            if earlier is not None:  # another request holds the key: its run
                return earlier, True
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

    async def _prepare(self, run: Run, sub: Submission) -> Prepared:
        """Check the values, upload data URLs, and build the enqueue body (before any claim)."""
        version_key = (sub.workflow.id, sub.workflow.version)
        try:
            handle = await load_handle(self.client, sub.workflow.definition, version_key)
            recorded = await apply_inputs(self.client, handle, sub.inputs)
        except APIConnectionError as exc:
            raise InvokeAIUnavailable(f"InvokeAI is unreachable: {exc}") from exc
        assert run.batch_id is not None
        body = build_body(handle, board_id=sub.board_id, destination=run.id, batch_id=run.batch_id)
        return Prepared(handle, body, recorded)

    def _too_many(self) -> TooManyRuns:
        cap = self.settings.max_unfinished_runs
        return TooManyRuns(
            f"{cap} runs are unfinished (GATEWAY_MAX_UNFINISHED_RUNS); try again later",
            headers={"Retry-After": str(self.settings.retry_after_seconds)},
        )

    async def _enqueue_claimed(self, run: Run, prepared: Prepared) -> Run:
        """Enqueue a ``submitting`` claim and answer once InvokeAI took it (or 503)."""
        done = self._inflight[run.id] = asyncio.Event()
        try:
            try:
                enqueued = await send_body(prepared.handle, prepared.body)
            except APIConnectionError as exc:
                if nothing_sent(exc):
                    claims.delete_claim(self.engine, run.id)
                # else: InvokeAI may hold the batch; the row stays hidden until resolved.
                raise InvokeAIUnavailable(f"InvokeAI is unreachable: {exc}") from exc
            except Exception:
                claims.delete_claim(self.engine, run.id)
                raise
            # Cancelled mid-enqueue: the row stays hidden until resolved by its batch id.
            # Queued status and run.queued event: one transaction, then published.
            data = {"item_id": enqueued.item_id, "batch_id": run.batch_id}
            row = claims.mark_queued_with_event(self.engine, run, enqueued.item_id, None, data)
            if row is None:
                raise InvokeAIUnavailable(f"run {run.id} vanished while it was enqueued")
            await self.publish_row(row)
            self.follow_new(run)
            return run
        finally:
            self._inflight.pop(run.id, None)
            done.set()

    async def _replay(self, key: str, wanted_hash: str | None) -> Run | None:
        """The run holding ``key`` once it is accepted, or None (free key, or its claim fell)."""
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

    # -- deadlines and key expiry -----------------------------------------------------------

    async def start(self) -> None:
        """Follow unfinished runs, resolve leftover claims, and start the deadline scheduler."""
        await super().start()
        self._spawn(self.resolve_forever())
        self._spawn(self._deadlines_forever())

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
        now = utcnow()
        due = claims.list_due(self.engine, now)
        self._deadline_asked &= {run.id for run in due}  # forget runs that ended
        for run in due:
            if run.id in self._deadline_asked or run.id in self._inflight:
                continue
            if run.item_id is None:  # never reached InvokeAI: ended here
                await self._close_pending_at_deadline(run, now)
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

    async def _close_pending_at_deadline(self, run: Run, now: datetime) -> None:
        row = claims.close_pending(
            self.engine, run, RunStatus.canceled, deadline_error(run.cancel_at, now)
        )
        if row is not None:
            logger.info("run %s reached its deadline before InvokeAI took it", run.id)
            await self.publish_row(row)

    # -- other calls ------------------------------------------------------------------------

    async def cancel(self, run_id: str) -> Run:
        """Ask InvokeAI to cancel the run; a run already finished is returned unchanged."""
        run = self.load(run_id)
        if run.item_id is None and not RunStatus(run.status).terminal:
            run = await self.cancel_pending(run, CANCEL_WAIT_SECONDS)
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
