"""Dependencies: typed access to what the lifespan put on ``app.state``, and row loaders."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Table, bindparam, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from app import crud
from app.core.config import Settings
from app.core.db import open_session
from app.core.errors import NotFound
from app.events import EventBroker
from app.models import Run, Workflow
from app.services.claims import SUBMITTING
from app.services.runs import RunService
from invokeai_py_client import InvokeAIClient

__all__ = [
    "BrokerDep",
    "ClientDep",
    "RunDep",
    "RunServiceDep",
    "SessionDep",
    "SettingsDep",
    "WorkflowDep",
    "WorkflowToRunDep",
]


def get_session(request: Request) -> Iterator[Session]:
    engine: Engine = request.app.state.engine
    yield from open_session(engine)


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_client(request: Request) -> InvokeAIClient:
    client: InvokeAIClient = request.app.state.client
    return client


async def get_broker(request: Request) -> EventBroker:
    broker: EventBroker = request.app.state.broker
    return broker


async def get_run_service(request: Request) -> RunService:
    service: RunService = request.app.state.run_service
    return service


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ClientDep = Annotated[InvokeAIClient, Depends(get_client)]
BrokerDep = Annotated[EventBroker, Depends(get_broker)]
RunServiceDep = Annotated[RunService, Depends(get_run_service)]


def _release(session: Session) -> None:
    # End the read transaction so the pooled connection is not held while the route awaits
    # InvokeAI (many concurrent runs would exhaust the pool); loaded rows stay usable.
    session.commit()


def valid_workflow(workflow_id: str, session: SessionDep) -> Workflow:
    """The workflow named in the path, or 404."""
    workflow = crud.get_workflow(session=session, workflow_id=workflow_id)
    _release(session)
    if workflow is None:
        raise NotFound(f"no workflow with id {workflow_id!r}")
    return workflow


def valid_run(run_id: str, session: SessionDep) -> Run:
    """The run named in the path, or 404."""
    run = crud.get_run(session=session, run_id=run_id)
    _release(session)
    if run is None or run.status == SUBMITTING:  # not enqueued (yet): not a run of the API
        raise NotFound(f"no run with id {run_id!r}")
    return run


_WORKFLOWS: Table = Workflow.__table__  # type: ignore[attr-defined]
# Built once: this read is on the path of every run submission.
_HEAD = select(_WORKFLOWS.c.version, _WORKFLOWS.c.deleted_at).where(
    _WORKFLOWS.c.id == bindparam("workflow_id")
)


class WorkflowCache:
    """Workflows by (id, version): a version's content never changes, so an entry never goes
    stale; which version is current (and whether the workflow was deleted) is read each time.
    """

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._rows: dict[tuple[str, int], Workflow] = {}

    def load(self, engine: Engine, workflow_id: str) -> Workflow | None:
        """The current, not deleted workflow, reading its (large) definition only once."""
        with engine.connect() as connection:
            head = connection.execute(_HEAD, {"workflow_id": workflow_id}).first()
        if head is None or head[1] is not None:
            return None
        key = (workflow_id, int(head[0]))
        workflow = self._rows.get(key)
        if workflow is None:
            with Session(engine, expire_on_commit=False) as session:
                workflow = crud.get_workflow(session=session, workflow_id=workflow_id)
            if workflow is None or workflow.version != key[1]:
                return workflow  # changed meanwhile: use it, do not keep it
            if len(self._rows) >= self.size:
                del self._rows[next(iter(self._rows))]
            self._rows[key] = workflow
        return workflow


async def workflow_to_run(workflow_id: str, request: Request) -> Workflow:
    """The workflow named in the path, or 404, read on the event loop.

    One small read on SQLite takes less time than the hops to a worker thread that sync
    dependencies cost (the session and the loader), and the definition comes from memory:
    this is on the path of every ``POST /workflows/{id}/runs``.
    """
    state = request.app.state
    cache: WorkflowCache | None = getattr(state, "workflow_cache", None)
    if cache is None:
        cache = state.workflow_cache = WorkflowCache()
    workflow = cache.load(state.engine, workflow_id)
    if workflow is None:
        raise NotFound(f"no workflow with id {workflow_id!r}")
    return workflow


WorkflowDep = Annotated[Workflow, Depends(valid_workflow)]
WorkflowToRunDep = Annotated[Workflow, Depends(workflow_to_run)]
RunDep = Annotated[Run, Depends(valid_run)]
