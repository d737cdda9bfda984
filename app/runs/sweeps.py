"""Sweeps: many runs of one workflow asked for in one request (``POST /workflows/{id}/batches``).

Submitting, in order::

    Idempotency-Key known? ─ same body: the original sweep; other body: 409
    shape: lists to vary, no index both fixed and varied, zip lists of one length, size cap ─ 422
    InvokeAI's events not followed ─ 503 (a sweep is only accepted to be sent in the background)
    check the fixed inputs once, then each run's values; build each run's body ─ 422 naming the
        run's place in the sweep, the input index and label; nothing recorded
    one InvokeAI batch for all (its ``data`` carries the varied values), or one per run
    claim: the sweep and all its runs in one transaction (the cap counts them all) ─ 429
    202; the dispatcher sends the batch: the i-th queue item is the i-th run's

Each run is then an ordinary run: followed, stored, streamed and delivered by webhook like any.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from app.core.errors import InputInvalid, InvokeAIUnavailable, NotFound, ServerRefused
from app.db import claims, sweeps
from app.db.claims import Claim
from app.db.tables import Run, RunStatus, Sweep, Workflow, utcnow
from app.runs.boards import board_on
from app.runs.dispatcher import Prepared, sweep_targets
from app.runs.enqueue import build_body
from app.runs.inputs import apply_inputs, parse_index
from app.runs.lanes import Lane, place
from app.runs.service import CLAIM_ATTEMPTS, IdempotencyConflict, RunService
from app.runs.sweep_plan import Mode, expand, one_batch_body, size_of
from app.workflows import load_handle
from invokeai_py_client import InvokeAIClient, WorkflowHandle
from invokeai_py_client.exceptions import APIConnectionError

__all__ = ["SweepRequest", "SweepService"]


@dataclass(frozen=True)
class SweepRequest:
    """What ``POST /workflows/{id}/batches`` asks for, already parsed."""

    workflow: Workflow
    fixed: dict[str, Any]
    vary: dict[str, list[Any]]
    mode: Mode = "product"
    board_id: str | None = None
    key: str | None = None
    request_hash: str | None = None
    cancel_after: float | None = None
    webhook_url: str | None = None
    webhook_events: list[str] | None = None


@dataclass(frozen=True)
class _Planned:
    runs: list[Run]
    prepared: list[Prepared]
    one_batch: Prepared | None  # the body running them all, when InvokeAI can take it


class SweepService:
    """Accepts sweeps and answers for them; their runs live in ``RunService``."""

    def __init__(self, runs: RunService) -> None:
        self.runs = runs

    async def submit(self, req: SweepRequest) -> tuple[Sweep, bool]:
        """Accept a sweep once; returns it and whether it is a replay of an earlier request.

        Raises:
            IdempotencyConflict: the key was used with another request.
            InputInvalid: bad shape or values (the run's place, index and label named).
            TooManyRuns: its runs would pass the cap on unfinished runs.
            InvokeAIUnavailable: no server's events are followed right now.
        """
        if req.key is not None and (earlier := await self._replay(req)) is not None:
            return earlier, True
        self._check_shape(req)
        sweep = self._new_sweep(req)
        return await place(self.runs.lanes, lambda lane: self._submit_on(lane, sweep, req))

    async def _submit_on(self, lane: Lane, sweep: Sweep, req: SweepRequest) -> tuple[Sweep, bool]:
        """Plan and claim every run of the sweep on one server (one batch, in order)."""
        if not lane.accepts_pending:
            raise ServerRefused(f"InvokeAI server {lane.name} is unreachable: not submitted")
        planned = await self._plan(lane, sweep, req)
        sweep.one_batch = planned.one_batch is not None
        for _attempt in range(CLAIM_ATTEMPTS):
            cap = self.runs.settings.max_unfinished_runs
            claim = await self.runs.db.run(
                sweeps.claim_sweep, self.runs.engine, sweep, planned.runs, cap
            )
            if claim is Claim.FULL:
                raise self.runs.too_many()
            if claim is Claim.CLAIMED:
                if lane.active:
                    self._dispatch(lane, planned)
                else:  # the replica following the server sends them (after a look-up)
                    assert self.runs.cluster is not None
                    self.runs.cluster.wake(lane)
                return sweep, False
            if (earlier := await self._replay(req)) is not None:
                return earlier, True
        raise InvokeAIUnavailable("the batch could not be submitted; try again")

    def _dispatch(self, lane: Lane, planned: _Planned) -> None:
        dispatcher = lane.dispatcher
        if planned.one_batch is not None:
            dispatcher.dispatch_batch(planned.runs, planned.one_batch)
            return
        for run, prepared in zip(planned.runs, planned.prepared, strict=True):
            dispatcher.dispatch(run, prepared)  # one slot: they reach InvokeAI in this order

    # -- checking and planning --------------------------------------------------------------

    def _check_shape(self, req: SweepRequest) -> None:
        problems = []
        for key, values in req.vary.items():
            if parse_index(key) is None:
                problems.append(_problem(key, f"{key!r} is not an input index"))
            elif not values:
                problems.append(_problem(key, "the list of values to vary is empty"))
            if key.strip() in {k.strip() for k in req.fixed}:
                problems.append(_problem(key, "this index is both in inputs and in vary"))
        if not req.vary:
            problems.append(_problem(None, "vary names no input: give at least one list"))
        lengths = {len(v) for v in req.vary.values()}
        if req.mode == "zip" and len(lengths) > 1:
            problems.append(_problem(None, f"zip needs lists of one length, not {sorted(lengths)}"))
        if problems:
            raise InputInvalid(_summary(problems), errors=problems)
        size, cap = size_of(req.vary, req.mode), self.runs.settings.max_batch_runs
        if size > cap:
            raise InputInvalid(
                f"the batch would make {size} runs; at most {cap} (GATEWAY_MAX_BATCH_RUNS)",
                errors=[_problem(None, f"{size} runs asked, at most {cap}")],
            )

    def _new_sweep(self, req: SweepRequest) -> Sweep:
        return Sweep(
            id=str(uuid.uuid4()),
            workflow_id=req.workflow.id,
            workflow_version=req.workflow.version,
            mode=req.mode,
            fixed=req.fixed,
            vary=req.vary,
            size=size_of(req.vary, req.mode),
            idempotency_key=req.key,
            request_hash=req.request_hash,
        )

    async def _plan(self, lane: Lane, sweep: Sweep, req: SweepRequest) -> _Planned:
        """Every run with its checked values and body (uploads included) for ``lane``'s
        server, before any claim."""
        version_key = (req.workflow.id, req.workflow.version)
        client, others = lane.ctx.client, lane.ctx.others
        try:
            handle = await load_handle(client, req.workflow.definition, version_key)
            fixed = await apply_inputs(client, handle, req.fixed, others=others)
            board_id = req.board_id and await board_on(client, others, req.board_id)
            batch_id = str(uuid.uuid4())
            runs, prepared = [], []
            for index, values in enumerate(expand(req.vary, req.mode)):
                recorded = await _apply_run_values(handle, index, values, others)
                run = self._new_run(sweep, req, index, fixed | recorded, batch_id)
                run.backend, run.board_id = self.runs.backend_of(lane), board_id
                body = build_body(
                    handle, board_id=board_id, destination=sweep.id, batch_id=batch_id
                )
                runs.append(run)
                prepared.append(Prepared(handle, body, run.inputs))
        except APIConnectionError as exc:  # before any claim: nothing recorded
            raise ServerRefused(f"InvokeAI is unreachable: {exc}") from exc
        combined = one_batch_body([p.body for p in prepared], sweep_targets(handle, req.vary))
        if combined is not None:
            return _Planned(runs, prepared, Prepared(handle, combined, {}))
        for run, each in zip(runs, prepared, strict=True):  # one batch per run
            run.batch_id = str(uuid.uuid4())
            each.body["batch"]["batch_id"] = run.batch_id
        return _Planned(runs, prepared, None)

    def _new_run(
        self, sweep: Sweep, req: SweepRequest, index: int, inputs: dict[str, Any], batch_id: str
    ) -> Run:
        cancel_at = None
        if req.cancel_after is not None:
            cancel_at = utcnow() + timedelta(seconds=req.cancel_after)
        return Run(
            id=str(uuid.uuid4()),
            workflow_id=req.workflow.id,
            workflow_version=req.workflow.version,
            inputs=inputs,
            board_id=req.board_id,
            batch_id=batch_id,
            status=RunStatus.queued.value,  # pending: the dispatcher sends it
            cancel_at=cancel_at,
            webhook_url=req.webhook_url,
            webhook_events=req.webhook_events,
            sweep_id=sweep.id,
            sweep_index=index,
        )

    async def _replay(self, req: SweepRequest) -> Sweep | None:
        assert req.key is not None
        ttl = self.runs.settings.idempotency_ttl_seconds
        db, engine = self.runs.db, self.runs.engine
        await db.run(claims.release_expired_keys, engine, ttl, key=req.key)
        held = await db.run(sweeps.find_sweep_by_key, engine, req.key)
        if held is None:
            return None
        if held.request_hash != req.request_hash:
            raise IdempotencyConflict(
                f"Idempotency-Key {req.key!r} was used with another request (batch {held.id})"
            )
        return held

    # -- answering for a sweep --------------------------------------------------------------

    async def load(self, sweep_id: str) -> tuple[Sweep, list[Run]]:
        """The sweep and its runs in order, or ``NotFound``."""
        sweep = await self.runs.db.run(sweeps.find_sweep, self.runs.engine, sweep_id)
        if sweep is None:
            raise NotFound(f"no batch with id {sweep_id!r}")
        runs = await self.runs.db.run(sweeps.sweep_runs, self.runs.engine, sweep_id)
        return sweep, list(runs)

    async def cancel(self, sweep_id: str) -> tuple[Sweep, list[Run]]:
        """Cancel every unfinished run of the sweep (finished ones stay as they are)."""
        _sweep, runs = await self.load(sweep_id)
        unfinished = [r.id for r in runs if not RunStatus(r.status).terminal]
        await asyncio.gather(*(self.runs.cancel(run_id) for run_id in unfinished))
        return await self.load(sweep_id)


async def _apply_run_values(
    handle: WorkflowHandle,
    index: int,
    values: dict[str, Any],
    others: Sequence[InvokeAIClient],
) -> dict[str, Any]:
    """Set one run's varied values; a bad one is a 422 naming the run's place in the sweep."""
    try:
        return await apply_inputs(handle.client, handle, values, others=others)
    except InputInvalid as exc:
        errors = [error | {"run_index": index} for error in exc.errors or []]
        kind = type(exc)  # Unplaceable stays so: another server may have what it names
        raise kind(f"run {index} of the batch: {exc.detail}", errors=errors) from exc


def _problem(key: str | None, reason: str) -> dict[str, Any]:
    index = parse_index(key) if key is not None else None
    return {"index": index if index is not None else key, "label": None, "reason": reason}


def _summary(problems: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"vary {p['index']}: {p['reason']}" if p["index"] is not None else p["reason"]
        for p in problems
    )
