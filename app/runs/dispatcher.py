"""Getting accepted runs onto InvokeAI's queue exactly once, in the background.

While InvokeAI's events are followed, a run is answered 202 as soon as its claim is committed
(``queued``, no queue item yet: *pending*, see ``claims``); a dispatch task then enqueues it.
The caller does not wait for InvokeAI's enqueue, and no accepted run depends on this process
staying up: the claim holds everything needed to send it again::

    claim (pending) ─ 202 ─ enqueue batch ─ item id + run.queued ─ follow
                                ├ InvokeAI refused it (422) ─ run.failed, the problem named
                                └ unreachable ─ stays pending, retried every reconcile round
    after a crash ─ batch found on InvokeAI ─ item id + run.queued (synthetic)
                  └ not there ─ rebuilt from the stored workflow version and inputs, enqueued

A pending run is never sent twice: while its dispatch runs it is *in flight* (nobody else
touches it), and a dispatch whose answer was lost is looked up by its batch id, not re-sent,
until ``CLAIM_SETTLE_SECONDS`` have passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from app.core.errors import GatewayError, WorkflowInvalid
from app.db import claims
from app.db import queries as crud
from app.db.tables import Run, RunStatus, utcnow
from app.runs.enqueue import QueueFull, build_body, nothing_sent, send_body
from app.runs.follower import RunFollower
from app.runs.inputs import apply_inputs
from app.workflows import load_handle
from invokeai_py_client.exceptions import (
    APIConnectionError,
    APIStatusError,
    InvokeAIError,
    ServerError,
)
from invokeai_py_client.workflow.handle import WorkflowHandle

__all__ = ["Prepared", "RunDispatcher", "refusal_error", "status_error"]

logger = logging.getLogger(__name__)

# Enqueues at once. One: runs reach InvokeAI's queue in the order they were accepted, and
# InvokeAI takes enqueues one at a time anyway (6-15 ms each here, far faster than it runs).
DISPATCH_CONCURRENCY = 1
# On stop, dispatches under way get this long to finish before they are cut.
STOP_DRAIN_SECONDS = 5.0
# An enqueue whose answer was lost may still land: its batch is only looked up, never re-sent,
# for this long.
CLAIM_SETTLE_SECONDS = 60.0


@dataclass(frozen=True)
class Prepared:
    """A run ready to send: the handle with its values, and the ``enqueue_batch`` body."""

    handle: WorkflowHandle
    body: dict[str, Any]
    recorded_inputs: dict[str, Any]


def refusal_error(exc: GatewayError) -> dict[str, Any]:
    """The run error of a pending run that InvokeAI (or its stored workflow) refused."""
    problems = list(getattr(exc, "errors", None) or [])
    node_id = next((p.get("node_id") for p in problems if p.get("node_id")), None)
    return {
        "error_type": "WorkflowInvalid" if isinstance(exc, WorkflowInvalid) else "InputInvalid",
        "error_message": str(exc),
        "node_id": node_id,
        "node_type": None,
    }


def status_error(exc: APIStatusError) -> dict[str, Any]:
    """The run error of a pending run whose enqueue InvokeAI answered with an error status."""
    return {
        "error_type": "EnqueueRefused",
        "error_message": f"InvokeAI refused the enqueue: {exc}",
        "node_id": None,
        "node_type": None,
    }


class RunDispatcher(RunFollower):
    """Sends pending runs to InvokeAI and settles claims left behind by a crash."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._inflight: dict[str, asyncio.Event] = {}  # run id -> set when its enqueue ends
        self._resolving: set[str] = set()
        self._maybe_sent: dict[str, float] = {}  # run id -> when an enqueue answer was lost
        self._slots = asyncio.Semaphore(DISPATCH_CONCURRENCY)
        self._born = utcnow()

    async def stop(self) -> None:
        """Let dispatches under way finish (briefly), then stop following."""
        under_way = [done.wait() for done in self._inflight.values()]
        if under_way:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*under_way), STOP_DRAIN_SECONDS)
        await super().stop()

    # -- dispatching ------------------------------------------------------------------------

    def dispatch(self, run: Run, prepared: Prepared) -> None:
        """Enqueue the pending ``run`` in the background (its caller was answered 202)."""
        # In flight from now on: waiting, canceling and resolving all see it at once.
        self._inflight[run.id] = asyncio.Event()
        self._spawn(self._dispatch(run, prepared))

    async def _dispatch(self, run: Run, prepared: Prepared | None) -> None:
        done = self._inflight[run.id]
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
            self._inflight.pop(run.id, None)
            done.set()

    async def _send_pending(self, run: Run, prepared: Prepared) -> None:
        try:
            enqueued = await send_body(prepared.handle, prepared.body)
        except APIConnectionError as exc:
            if not nothing_sent(exc):
                self._maybe_sent[run.id] = time.monotonic()
            logger.warning("run %s did not reach InvokeAI yet (%s); retried later", run.id, exc)
            return
        except QueueFull:  # nothing enqueued: sent again next round
            logger.warning("InvokeAI's queue is full: run %s waits for a place", run.id)
            return
        except GatewayError as exc:  # InvokeAI refused it: it will never run
            await self._fail_pending(run, refusal_error(exc))
            return
        except ServerError as exc:  # InvokeAI's own fault; it may have taken the batch
            self._maybe_sent[run.id] = time.monotonic()
            logger.warning("InvokeAI failed to enqueue run %s (%s); looked up later", run.id, exc)
            return
        except APIStatusError as exc:  # any other refusal is final too
            await self._fail_pending(run, status_error(exc))
            return
        await self.record_enqueued(run, enqueued.item_id)

    async def record_enqueued(self, run: Run, item_id: int, **extra: Any) -> None:
        """Store the pending run's queue item with its ``run.queued`` event, then follow it."""
        self._maybe_sent.pop(run.id, None)
        data = {"item_id": item_id, "batch_id": run.batch_id, **extra}
        row = claims.mark_queued_with_event(self.engine, run, item_id, None, data)
        if row is None:  # canceled on its way: InvokeAI must not run it either
            logger.info("run %s was canceled while enqueued: canceling item %s", run.id, item_id)
            with contextlib.suppress(InvokeAIError):
                await self.client.queue_repo.acancel_item(item_id)
            return
        await self.publish_row(row)
        self.follow_new(run)

    async def _fail_pending(self, run: Run, error: dict[str, Any]) -> None:
        logger.info("run %s was refused: %s", run.id, error["error_message"])
        row = claims.close_pending(self.engine, run, RunStatus.failed, error)
        if row is not None:
            await self.publish_row(row)

    async def _rebuild(self, run: Run) -> Prepared | None:
        """The body of a pending run from its stored version and inputs (None: retry later)."""
        with Session(self.engine) as session:
            version = crud.get_workflow_version(
                session=session, workflow_id=run.workflow_id, version=run.workflow_version
            )
        try:
            if version is None:
                raise WorkflowInvalid(
                    f"version {run.workflow_version} of workflow {run.workflow_id} is gone"
                )
            key = (run.workflow_id, run.workflow_version)
            handle = await load_handle(self.client, dict(version.definition), key)
            await apply_inputs(self.client, handle, run.inputs)
            assert run.batch_id is not None
            body = build_body(
                handle, board_id=run.board_id, destination=run.id, batch_id=run.batch_id
            )
        except APIConnectionError:
            return None
        except GatewayError as exc:
            await self._fail_pending(run, refusal_error(exc))
            return None
        return Prepared(handle, body, run.inputs)

    async def wait(self, run_id: str, timeout: float) -> None:
        """Return when the run is terminal or ``timeout`` seconds passed (dispatch included)."""
        dispatching = self._inflight.get(run_id)
        if dispatching is not None:
            loop = asyncio.get_running_loop()
            start = loop.time()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dispatching.wait(), timeout)
            timeout = max(0.0, timeout - (loop.time() - start))
        await super().wait(run_id, timeout)

    async def cancel_pending(self, run: Run, wait_seconds: float) -> Run:
        """Cancel a run not yet on InvokeAI (waiting briefly for a dispatch under way)."""
        dispatching = self._inflight.get(run.id)
        if dispatching is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(dispatching.wait(), wait_seconds)
        current = self._stored(run.id)
        if current.item_id is None and not RunStatus(current.status).terminal:
            row = claims.close_pending(self.engine, current, RunStatus.canceled, None)
            if row is not None:
                await self.publish_row(row)
            current = self._stored(run.id)
        return current

    def _stored(self, run_id: str) -> Run:
        with Session(self.engine, expire_on_commit=False) as session:
            run = crud.get_run(session=session, run_id=run_id)
        assert run is not None  # runs are never deleted once accepted
        return run

    # -- claims left behind -----------------------------------------------------------------

    async def resolve_leftovers(self) -> None:
        """Settle every claim not being sent by this process right now."""
        for run in claims.list_submitting(self.engine):
            if run.id not in self._inflight:
                await self._resolve_submitting(run)
        for run in claims.list_pending(self.engine):
            if run.id not in self._inflight:
                await self._resolve_pending(run)

    async def _resolve_pending(self, run: Run) -> None:
        """Find a pending run on InvokeAI by its batch, or send it (again, or at last)."""
        if run.batch_id is None:
            return
        lost_at = self._maybe_sent.get(run.id)
        settling = lost_at is not None and time.monotonic() - lost_at < CLAIM_SETTLE_SECONDS
        done = self._inflight[run.id] = asyncio.Event()  # nobody else sends it meanwhile
        try:
            items = await self.client.queue_repo.aget_items_by_batch(run.batch_id)
        except InvokeAIError:
            items = None  # unreachable: next round
        if items != [] or settling:  # found, unknown, or a lost enqueue that may still land
            try:
                if items:
                    logger.info("run %s found on InvokeAI as item %s", run.id, items[0].item_id)
                    await self.record_enqueued(run, items[0].item_id, synthetic=True)
            finally:
                self._inflight.pop(run.id, None)
                done.set()
            return
        self._maybe_sent.pop(run.id, None)
        await self._dispatch(run, None)

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
        data = {"item_id": queued.item_id, "batch_id": queued.batch_id, "synthetic": True}
        await self.emit_for(queued.id, queued.workflow_id, "run.queued", data)
        self.follow_new(queued)
        return True

    async def resolve_forever(self) -> None:
        """Settle leftover claims now and every reconcile interval."""
        while True:
            with contextlib.suppress(Exception):
                await self.resolve_leftovers()
            await asyncio.sleep(self.settings.reconcile_interval_seconds)
