"""Dependencies: typed access to what the lifespan put on ``app.state``, and row loaders."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
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
]


def get_session(request: Request) -> Iterator[Session]:
    engine: Engine = request.app.state.engine
    yield from open_session(engine)


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_client(request: Request) -> InvokeAIClient:
    client: InvokeAIClient = request.app.state.client
    return client


def get_broker(request: Request) -> EventBroker:
    broker: EventBroker = request.app.state.broker
    return broker


def get_run_service(request: Request) -> RunService:
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


WorkflowDep = Annotated[Workflow, Depends(valid_workflow)]
RunDep = Annotated[Run, Depends(valid_run)]
