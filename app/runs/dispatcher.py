"""Getting accepted runs onto InvokeAI's queue exactly once.

While InvokeAI's events are followed, a run is answered 202 as soon as its claim is committed
(``queued``, no queue item yet: *pending*, see ``app.db.claims``); the dispatcher then enqueues
it in the background. The caller does not wait for InvokeAI, and no accepted run depends on
this process staying up: the claim holds everything needed to send it again::

    claim (pending) ─ 202 ─ enqueue batch ─ item id + run.queued ─ follow
                                ├ InvokeAI refused it (422) ─ run.failed, the problem named
                                └ unreachable ─ stays pending, retried every reconcile round

Otherwise (InvokeAI's reachability unknown) the claim is ``submitting`` and the request waits
for ``enqueue_claimed``. A run being enqueued is *in flight* in the registry: nobody else sends,
cancels or settles it meanwhile; an enqueue whose answer was lost is looked up by its batch id
(the reconciler), never re-sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.core.errors import GatewayError, InvokeAIUnavailable, ServerRefused, WorkflowInvalid
from app.db import claims, queries, sweeps
from app.db.tables import Run, RunStatus, utcnow
from app.runs import errors
from app.runs.boards import board_on
from app.runs.context import RunContext
from app.runs.enqueue import Enqueued, QueueFull, build_body, nothing_sent, send_body
from app.runs.follower import Follower
from app.runs.inputs import apply_inputs
from app.runs.sweep_plan import one_batch_body
from app.runs.transition import Change, Guard
from app.schemas.events import RunEventType
from app.workflows import load_handle
from invokeai_py_client import WorkflowHandle
from invokeai_py_client.exceptions import (
    APIConnectionError,
    APIStatusError,
    InvokeAIError,
    ServerError,
)

__all__ = ["Dispatcher", "Prepared", "closing_change", "queued_change", "sweep_targets"]

logger = logging.getLogger(__name__)

# Enqueues at once. One: runs reach InvokeAI's queue in the order they were accepted, and
# InvokeAI takes enqueues one at a time anyway (6-15 ms each here, far faster than it runs).
DISPATCH_CONCURRENCY = 1
# On stop, dispatches under way get this long to finish before they are cut.
STOP_DRAIN_SECONDS = 5.0


@dataclass(frozen=True)
class Prepared:
    """A run ready to send: the handle with its values, and the ``enqueue_batch`` body."""

    handle: WorkflowHandle
    body: dict[str, Any]
    recorded_inputs: dict[str, Any]


def sweep_targets(handle: WorkflowHandle, vary: dict[str, Any]) -> list[tuple[str, str]]:
    """The (node id, field) each varied input index of a sweep sets, in ``vary``'s order."""
    by_index = {str(i.input_index): (i.node_id, i.field_name) for i in handle.list_inputs()}
    return [by_index[key.strip()] for key in vary]


def _graph(prepared: Prepared) -> dict[str, Any]:
    graph: dict[str, Any] = prepared.body["batch"]["graph"]
    return graph


def _ids(runs: Sequence[Run]) -> str:
    return ", ".join(run.id for run in runs)


def queued_change(run: Run, item_id: int, *, synthetic: bool = False) -> Change:
    """The change that gives a claim (pending or ``submitting``) its queue item."""
    guard = Guard.PENDING if run.status == RunStatus.queued.value else Guard.SUBMITTING
    columns = {"status": RunStatus.queued.value, "item_id": item_id}
    data: dict[str, Any] = {"item_id": item_id, "batch_id": run.batch_id}
    if run.backend is not None:
        data["backend"] = run.backend  # several servers: which one (again, if it moved)
    if synthetic:
        data["synthetic"] = True  # found on InvokeAI's queue, not answered by the enqueue
    row = run.model_dump() | columns
    # Guarded by its batch too: a run moved to another server meanwhile is not this item's.
    return Change(
        run.id,
        run.workflow_id,
        RunEventType.run_queued,
        data,
        columns,
        guard,
        row,
        batch_id=run.batch_id,
    )


def closing_change(run: Run, status: RunStatus, error: dict[str, Any] | None) -> Change:
    """The change that ends a pending run which never reached InvokeAI."""
    columns: dict[str, Any] = {"status": status.value, "finished_at": utcnow(), "error": error}
    data: dict[str, Any] = {"synthetic": True} | ({"error": error} if error else {})
    event = RunEventType(f"run.{status.value}")
    return Change(
        run.id, run.workflow_id, event, data, columns, Guard.PENDING, batch_id=run.batch_id
    )


class Dispatcher:
    """Sends claimed runs to InvokeAI (now, or in the background) and records the answer."""

    def __init__(self, ctx: RunContext, follower: Follower) -> None:
        self.ctx = ctx
        self.follower = follower
        self._slots = asyncio.Semaphore(DISPATCH_CONCURRENCY)

    async def stop(self) -> None:
        """Let dispatches under way finish (briefly)."""
        await self.ctx.registry.wait_all_enqueued(STOP_DRAIN_SECONDS)

    # -- a request waiting for InvokeAI -----------------------------------------------------

    async def enqueue_claimed(self, run: Run, prepared: Prepared) -> Run:
        """Enqueue a ``submitting`` claim and return once InvokeAI took it (or raise 503)."""
        self.ctx.registry.begin_enqueue(run.id)
        try:
            try:
                enqueued = await send_body(prepared.handle, prepared.body)
            except APIConnectionError as exc:
                if nothing_sent(exc):
                    await self.ctx.db.run(claims.delete_claim, self.ctx.engine, run.id)
                    raise ServerRefused(f"InvokeAI is unreachable: {exc}") from exc
                # InvokeAI may hold the batch; the row stays hidden until resolved.
                raise InvokeAIUnavailable(f"InvokeAI is unreachable: {exc}") from exc
            except Exception:
                await self.ctx.db.run(claims.delete_claim, self.ctx.engine, run.id)
                raise
            # Cancelled mid-enqueue: the row stays hidden until resolved by its batch id.
            if await self.ctx.transitions.apply(queued_change(run, enqueued.item_id)) is None:
                raise InvokeAIUnavailable(f"run {run.id} vanished while it was enqueued")
            run.status, run.item_id = RunStatus.queued.value, enqueued.item_id
            self.follower.follow_new(run, _graph(prepared))
            return run
        finally:
            self.ctx.registry.end_enqueue(run.id)

    # -- pending runs, in the background ----------------------------------------------------

    def dispatch(self, run: Run, prepared: Prepared | None) -> None:
        """Enqueue the pending ``run`` in the background (rebuilt from storage when None)."""
        # In flight from now on: waiting, canceling and resolving all see it at once.
        self.ctx.registry.begin_enqueue(run.id)
        self.follower.spawn(self.send(run, prepared))

    async def send(self, run: Run, prepared: Prepared | None) -> None:
        """Enqueue a pending run the caller marked in flight (``begin_enqueue``), in turn;
        its in-flight mark ends here."""
        try:
            async with self._slots:
                if prepared is None:
                    prepared = await self._rebuild(run)
                if prepared is not None:
                    await self._send_pending(run, prepared)
        except asyncio.CancelledError:
            raise
        except Exception:  # the run stays pending: the next round tries again
            logger.exception("dispatching run %s", run.id)
        finally:
            self.ctx.registry.end_enqueue(run.id)

    async def _send_pending(self, run: Run, prepared: Prepared) -> None:
        enqueued = await self._try_send([run], prepared)
        if enqueued is not None:
            await self.record_enqueued(run, enqueued.item_id, graph=_graph(prepared))

    async def _try_send(self, runs: Sequence[Run], prepared: Prepared) -> Enqueued | None:
        """Send the body of pending ``runs``; None when they stay pending or were refused."""
        try:
            return await send_body(prepared.handle, prepared.body)
        except APIConnectionError as exc:
            if not nothing_sent(exc):
                self._maybe_sent(runs)
            logger.warning(
                "runs %s did not reach InvokeAI yet (%s); retried later", _ids(runs), exc
            )
        except QueueFull:  # nothing enqueued: sent again next round
            logger.warning("InvokeAI's queue is full: runs %s wait for a place", _ids(runs))
        except GatewayError as exc:  # InvokeAI refused it: it will never run
            await self._fail_pending(runs, errors.refusal_error(exc))
        except ServerError as exc:  # InvokeAI's own fault; it may have taken the batch
            self._maybe_sent(runs)
            logger.warning("InvokeAI failed to enqueue %s (%s); looked up later", _ids(runs), exc)
        except APIStatusError as exc:  # any other refusal is final too
            await self._fail_pending(runs, errors.status_error(exc))
        return None

    def _maybe_sent(self, runs: Sequence[Run]) -> None:
        now = time.monotonic()
        for run in runs:
            self.ctx.registry.maybe_sent[run.id] = now

    # -- the runs of a sweep, as one InvokeAI batch -----------------------------------------

    def dispatch_batch(self, runs: Sequence[Run], prepared: Prepared | None) -> None:
        """Enqueue pending runs that share one batch id in the background, in one batch
        (``prepared.body`` runs them all, in order; rebuilt from storage when None)."""
        for run in runs:
            self.ctx.registry.begin_enqueue(run.id)
        self.follower.spawn(self.send_batch(runs, prepared))

    async def send_batch(self, runs: Sequence[Run], prepared: Prepared | None) -> None:
        """Enqueue pending runs sharing a batch id, marked in flight by the caller; their
        in-flight marks end here. The i-th queue item is the i-th run's."""
        try:
            async with self._slots:
                if prepared is None:
                    prepared = await self._rebuild_batch(runs)
                if prepared is not None:
                    enqueued = await self._try_send(runs, prepared)
                    if enqueued is not None:
                        await self._record_batch(runs, enqueued.item_ids, _graph(prepared))
        except asyncio.CancelledError:
            raise
        except Exception:  # the runs stay pending: the next round looks them up or sends them
            logger.exception("dispatching runs %s", _ids(runs))
        finally:
            for run in runs:
                self.ctx.registry.end_enqueue(run.id)

    async def _record_batch(
        self, runs: Sequence[Run], item_ids: Sequence[int], graph: dict[str, Any]
    ) -> None:
        for run, item_id in zip(runs, item_ids, strict=False):
            await self.record_enqueued(run, item_id, graph=graph)
        left = [run.id for run in runs[len(item_ids) :]]
        if left:  # a nearly full queue took only the first ones: the rest go as a new batch
            logger.warning("InvokeAI's queue took %d of %d runs", len(item_ids), len(runs))
            await self.ctx.db.run(sweeps.rebatch, self.ctx.engine, left, str(uuid.uuid4()))

    async def record_enqueued(
        self,
        run: Run,
        item_id: int,
        *,
        synthetic: bool = False,
        graph: dict[str, Any] | None = None,
    ) -> None:
        """Store the pending run's queue item with its ``run.queued`` event, then follow it
        (``graph``: the graph sent, when known)."""
        self.ctx.registry.maybe_sent.pop(run.id, None)
        if (
            await self.ctx.transitions.apply(queued_change(run, item_id, synthetic=synthetic))
            is None
        ):
            # Canceled on its way: InvokeAI must not run it either.
            logger.info("run %s was canceled while enqueued: canceling item %s", run.id, item_id)
            with contextlib.suppress(InvokeAIError):
                await self.ctx.client.queue_repo.acancel_item(item_id)
            return
        run.status, run.item_id = RunStatus.queued.value, item_id
        self.follower.follow_new(run, graph)

    async def _fail_pending(self, runs: Sequence[Run], error: dict[str, Any]) -> None:
        for run in runs:
            logger.info("run %s was refused: %s", run.id, error["error_message"])
            await self.ctx.transitions.apply(closing_change(run, RunStatus.failed, error))

    async def _rebuild(self, run: Run) -> Prepared | None:
        """The body of a pending run from its stored version and inputs (None: retry later)."""
        try:
            return await self.prepare(run)
        except APIConnectionError:
            return None
        except GatewayError as exc:
            await self._fail_pending([run], errors.refusal_error(exc))
            return None

    async def prepare(self, run: Run) -> Prepared:
        """The body of a stored run for this server, from its version and recorded inputs.

        Raises:
            Unplaceable: it names a model or an image this server lacks.
            GatewayError: it can never be sent (its version is gone, a value is refused).
            APIConnectionError: this server is unreachable.
        """
        version = await self.ctx.db.run(
            queries.find_workflow_version, self.ctx.engine, run.workflow_id, run.workflow_version
        )
        if version is None:
            raise WorkflowInvalid(
                f"version {run.workflow_version} of workflow {run.workflow_id} is gone"
            )
        key = (run.workflow_id, run.workflow_version)
        handle = await load_handle(self.ctx.client, dict(version.definition), key)
        await apply_inputs(self.ctx.client, handle, run.inputs, others=self.ctx.others)
        if run.board_id is not None:  # this server's board of that name (a run moved here)
            run.board_id = await board_on(self.ctx.client, self.ctx.others, run.board_id)
        assert run.batch_id is not None
        body = build_body(
            handle,
            board_id=run.board_id,
            destination=run.sweep_id or run.id,
            batch_id=run.batch_id,
        )
        return Prepared(handle, body, run.inputs)

    async def _rebuild_batch(self, runs: Sequence[Run]) -> Prepared | None:
        """One body for pending runs of a sweep sharing a batch id (None: retry later)."""
        if len(runs) == 1:  # its own body, its values in the graph (whatever their kind)
            return await self._rebuild(runs[0])
        sweep_id = runs[0].sweep_id
        sweep = await self.ctx.db.run(sweeps.find_sweep, self.ctx.engine, sweep_id or "")
        each = [await self._rebuild(run) for run in runs]
        if sweep is None or any(p is None for p in each):
            return None
        built = [p for p in each if p is not None]
        targets = sweep_targets(built[0].handle, sweep.vary)
        body = one_batch_body([p.body for p in built], targets)
        if body is None:  # the server's fields changed since: one batch per run from now on
            for run in runs:
                await self.ctx.db.run(sweeps.rebatch, self.ctx.engine, [run.id], str(uuid.uuid4()))
            return None
        return Prepared(built[0].handle, body, {})

    async def cancel_pending(self, run: Run, wait_seconds: float) -> Run:
        """Cancel a run not yet on InvokeAI (waiting briefly for a dispatch under way)."""
        await self.ctx.registry.wait_enqueued(run.id, wait_seconds)
        current = await self.ctx.db.run(queries.load_run, self.ctx.engine, run.id)
        if current.item_id is None and not RunStatus(current.status).terminal:
            await self.ctx.transitions.apply(closing_change(current, RunStatus.canceled, None))
            current = await self.ctx.db.run(queries.load_run, self.ctx.engine, run.id)
        return current
