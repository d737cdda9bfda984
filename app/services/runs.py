"""The run service: submit a run, wait for it, cancel it (following is in ``follower``).

A run is recorded only once InvokeAI accepted it: bad inputs (422) and an unreachable
InvokeAI (503) leave no trace in the history.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlmodel import Session

from app import crud
from app.core.errors import InvokeAIUnavailable, NotFound
from app.models import Run, RunStatus, Workflow
from app.services.follower import RunFollower
from app.services.inputs import apply_inputs
from app.services.submit import enqueue_run
from app.services.workflows import load_handle
from invokeai_py_client.exceptions import APIConnectionError

__all__ = ["RunService"]

CANCEL_WAIT_SECONDS = 5.0


class RunService(RunFollower):
    """Submits runs and keeps their state, events and outputs in the database."""

    async def submit(
        self, *, workflow: Workflow, inputs: dict[str, Any], board_id: str | None
    ) -> Run:
        """Check the inputs, enqueue the run on InvokeAI, record it and start following it.

        Raises:
            InputInvalid: bad values (each bad index named); nothing is recorded.
            InvokeAIUnavailable: InvokeAI cannot be reached; nothing is recorded.
        """
        run_id = str(uuid.uuid4())
        try:
            handle = await load_handle(self.client, workflow.definition)
            recorded = await apply_inputs(self.client, handle, inputs)
            await self.await_events()
            enqueued = await enqueue_run(handle, board_id=board_id, destination=run_id)
        except APIConnectionError as exc:
            raise InvokeAIUnavailable(f"InvokeAI is unreachable: {exc}") from exc
        run = Run(
            id=run_id,
            workflow_id=workflow.id,
            workflow_version=workflow.version,
            inputs=recorded,
            board_id=board_id,
            batch_id=enqueued.batch_id,
            item_id=enqueued.item_id,
            status=RunStatus.queued.value,
        )
        with Session(self.engine, expire_on_commit=False) as session:
            run = crud.create_run(session=session, run=run)
        data = {"item_id": run.item_id, "batch_id": run.batch_id}
        await self.emit_for(run.id, run.workflow_id, "run.queued", data)
        self.follow_new(run)
        return run

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
        """The stored run, or ``NotFound``."""
        with Session(self.engine, expire_on_commit=False) as session:
            run = crud.get_run(session=session, run_id=run_id)
        if run is None:
            raise NotFound(f"no run with id {run_id!r}")
        return run
