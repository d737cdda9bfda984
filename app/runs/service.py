"""The run service: submit a run exactly once, wait for it, cancel it.

``RunService`` is what the routes use; it composes the collaborators of a run's life, one
set per InvokeAI server (a ``Lane``, see ``app.runs.lanes``), which share one ``InFlight``
registry per server and change runs only through ``Transitions``: ``Dispatcher`` (enqueue),
``Follower`` (InvokeAI's events and queue), ``Reconciler`` (claims left behind),
``Deadlines`` (Cancel-After, key expiry).

Submitting, in order::

    Idempotency-Key known? ─ same body: the original run; other body: 409
    place it: the least loaded healthy server that has its models and images
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
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.engine import Engine

from app.backends.spec import BackendSpec
from app.cluster.coordinator import Cluster
from app.core.config import Settings
from app.core.errors import GatewayError, InvokeAIUnavailable, NotFound, ServerRefused
from app.db import claims, queries
from app.db.claims import SUBMITTING, Claim
from app.db.tables import Run, RunStatus, Workflow, utcnow
from app.db.thread import DatabaseThread
from app.runs.boards import board_on
from app.runs.context import RunContext
from app.runs.dispatcher import Prepared
from app.runs.enqueue import build_body
from app.runs.inputs import apply_inputs
from app.runs.lanes import Lane, lane_named, place
from app.runs.registry import InFlight
from app.runs.rescue import Rescue
from app.runs.transition import Transitions
from app.streaming.broker import EventBroker
from app.streaming.previews import PreviewHub, previews_of
from app.workflows import load_handle
from invokeai_py_client import InvokeAIClient
from invokeai_py_client.exceptions import APIConnectionError

__all__ = ["IdempotencyConflict", "RunService", "Submission", "TooManyRuns"]

CANCEL_WAIT_SECONDS = 5.0
STORED_POLL_SECONDS = 0.1
CLAIM_ATTEMPTS = 5


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
    webhook_url: str | None = None
    webhook_events: list[str] | None = None


class RunService:
    """Submits runs and answers for them; its collaborators keep them moving."""

    def __init__(
        self,
        *,
        engine: Engine,
        db: DatabaseThread,
        backends: Sequence[tuple[BackendSpec, InvokeAIClient]],
        broker: EventBroker,
        settings: Settings,
    ) -> None:
        self.engine = engine
        self.db = db
        self.settings = settings
        clustered = settings.cluster
        self.transitions = Transitions(engine=engine, db=db, broker=broker, clustered=clustered)
        previews = previews_of(broker)
        clients = tuple(client for _, client in backends)
        self.lanes = [
            Lane(
                spec,
                self._context(client, previews, spec.name, i == 0, clients),
                active=not clustered,  # in a cluster: once this replica holds its lease
            )
            for i, (spec, client) in enumerate(backends)
        ]
        self.rescue = Rescue(self)
        self.cluster = Cluster(self, broker) if clustered else None
        self._tasks: set[asyncio.Task[None]] = set()

    def _context(
        self,
        client: InvokeAIClient,
        previews: PreviewHub,
        name: str,
        first: bool,
        clients: tuple[InvokeAIClient, ...],
    ) -> RunContext:
        registry, t = InFlight(), self.transitions
        return RunContext(
            self.engine, self.db, client, t, registry, self.settings, previews, name, first, clients
        )

    @property
    def clients(self) -> list[InvokeAIClient]:
        """Every InvokeAI server's client, in the order listed."""
        return [lane.ctx.client for lane in self.lanes]

    def backend_of(self, lane: Lane) -> str | None:
        """What a run placed on ``lane`` records: its name when there are several servers
        (with one, runs belong to whichever is configured, as before there were several)."""
        return lane.name if len(self.lanes) > 1 else None

    def lane_of(self, run: Run) -> Lane:
        """The lane of a stored run (``InvokeAIUnavailable``: its server is gone from the
        configuration)."""
        return lane_named(self.lanes, run.backend)

    async def start(self) -> None:
        """Follow unfinished runs, settle leftover claims, and start the deadline checks, on
        every server."""
        if self.cluster is not None:
            await self.cluster.start()  # each lane starts once its lease is held
        else:
            for lane in self.lanes:
                await lane.start()
        if len(self.lanes) > 1:
            task = asyncio.create_task(self.rescue.run_forever())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Let dispatches under way finish (briefly), then stop every task."""
        for task in list(self._tasks):
            task.cancel()
        if self.cluster is not None:
            await self.cluster.stop()
        else:
            await asyncio.gather(*(lane.stop() for lane in self.lanes))

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
        return await place(self.lanes, lambda lane: self._submit_on(lane, run, sub))

    async def _submit_on(self, lane: Lane, run: Run, sub: Submission) -> tuple[Run, bool]:
        prepared = await self._prepare(lane, run, sub)
        run.inputs = prepared.recorded_inputs
        run.backend = self.backend_of(lane)
        # Followed events mean InvokeAI answers: accept now, enqueue in the background. A
        # server another replica follows is sent its runs by that replica (or by whoever
        # takes its lease over, when that replica is gone): accepted unless known down.
        pending = lane.accepts_pending
        if not lane.active and not pending:
            raise ServerRefused(f"InvokeAI server {lane.name} is unreachable")
        run.status = RunStatus.queued.value if pending else SUBMITTING
        for _attempt in range(CLAIM_ATTEMPTS):
            cap = self.settings.max_unfinished_runs
            claim = await self.db.run(claims.claim_run, self.engine, run, cap)
            if claim is Claim.FULL:
                raise self.too_many()
            if claim is Claim.CLAIMED:
                if pending and lane.active:
                    lane.dispatcher.dispatch(run, prepared)
                    return run, False
                if pending:
                    assert self.cluster is not None
                    self.cluster.wake(lane)  # the replica following it sends it
                    return run, False
                return await lane.dispatcher.enqueue_claimed(run, prepared), False
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
            webhook_url=sub.webhook_url,
            webhook_events=sub.webhook_events,
        )

    async def _prepare(self, lane: Lane, run: Run, sub: Submission) -> Prepared:
        """Check the values, upload data URLs, and build the enqueue body (before any claim),
        for ``lane``'s server."""
        version_key = (sub.workflow.id, sub.workflow.version)
        client, others = lane.ctx.client, lane.ctx.others
        try:
            handle = await load_handle(client, sub.workflow.definition, version_key)
            recorded = await apply_inputs(client, handle, sub.inputs, others=others)
            if sub.board_id is not None:  # this server's board of that name
                run.board_id = await board_on(client, others, sub.board_id)
        except APIConnectionError as exc:  # before any claim: nothing recorded
            raise ServerRefused(f"InvokeAI is unreachable: {exc}") from exc
        assert run.batch_id is not None
        body = build_body(handle, board_id=run.board_id, destination=run.id, batch_id=run.batch_id)
        return Prepared(handle, body, recorded)

    def too_many(self) -> TooManyRuns:
        """The 429 of a full cap on unfinished runs."""
        cap = self.settings.max_unfinished_runs
        return TooManyRuns(
            f"{cap} runs are unfinished (GATEWAY_MAX_UNFINISHED_RUNS); try again later",
            headers={"Retry-After": str(self.settings.retry_after_seconds)},
        )

    async def _replay(self, key: str, wanted_hash: str | None) -> Run | None:
        """The run holding ``key`` once it is accepted, or None (free key, or its claim fell)."""
        ttl = self.settings.idempotency_ttl_seconds
        await self.db.run(claims.release_expired_keys, self.engine, ttl, key=key)
        while True:
            held = await self.db.run(claims.find_by_key, self.engine, key)
            if held is None:
                return None
            if held.request_hash != wanted_hash:
                raise IdempotencyConflict(
                    f"Idempotency-Key {key!r} was used with another request (run {held.id})"
                )
            if held.status != SUBMITTING:
                return held
            lane = self.lane_of(held)
            if lane.ctx.registry.enqueueing(held.id):
                # The winner is enqueueing it right now.
                await lane.ctx.registry.wait_enqueued(held.id, None)
                continue
            if not await lane.reconciler.resolve_submitting(held):
                raise InvokeAIUnavailable(
                    f"run {held.id} of this Idempotency-Key awaits InvokeAI; try again"
                )

    # -- answering for a run ----------------------------------------------------------------

    async def wait(self, run_id: str, timeout: float) -> None:
        """Return when the run is terminal or ``timeout`` seconds passed (dispatch included)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (lane := self._holding(run_id)) is not None:
            registry = lane.ctx.registry
            await registry.wait_enqueued(run_id, max(0.0, deadline - loop.time()))
            await lane.follower.wait(run_id, max(0.0, deadline - loop.time()))
            if loop.time() >= deadline:
                return
            # Ended here: finished, or moved to another server (then wait for it there).
        if self.cluster is not None:  # another replica may follow it: watch its row
            await self._stored_end(run_id, max(0.0, deadline - loop.time()))

    async def _stored_end(self, run_id: str, timeout: float) -> None:
        """Return once the stored run is terminal, or after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            run = await self.db.run(queries.find_run, self.engine, run_id)
            if run is None or (run.status != SUBMITTING and RunStatus(run.status).terminal):
                return
            await asyncio.sleep(STORED_POLL_SECONDS)

    def _holding(self, run_id: str) -> Lane | None:
        """The lane sending or following the run in this process, if any."""
        for lane in self.lanes:
            registry = lane.ctx.registry
            if registry.enqueueing(run_id) or registry.by_run(run_id) is not None:
                return lane
        return None

    async def cancel(self, run_id: str) -> Run:
        """Ask InvokeAI to cancel the run; a run already finished is returned unchanged."""
        run = await self.load(run_id)
        lane = self.lane_of(run)
        if run.item_id is None and not RunStatus(run.status).terminal:
            run = await lane.dispatcher.cancel_pending(run, CANCEL_WAIT_SECONDS)
        if RunStatus(run.status).terminal or run.item_id is None:
            return run
        try:
            await lane.ctx.client.queue_repo.acancel_item(run.item_id)
        except APIConnectionError as exc:
            raise InvokeAIUnavailable(f"InvokeAI is unreachable: {exc}") from exc
        if lane.active:
            await lane.follower.recheck(run_id, CANCEL_WAIT_SECONDS)
        else:  # the replica following the server records the end
            await self._stored_end(run_id, CANCEL_WAIT_SECONDS)
        return await self.load(run_id)

    async def load(self, run_id: str) -> Run:
        """The stored run, or ``NotFound`` (also for a run still being submitted)."""
        run = await self.db.run(queries.find_run, self.engine, run_id)
        if run is None or run.status == SUBMITTING:
            raise NotFound(f"no run with id {run_id!r}")
        return run
