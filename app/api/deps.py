"""Dependencies: typed access to what the lifespan put on ``app.state`` (the only place that
reads it), and row loaders."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from sqlalchemy import Table, bindparam, select
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from app.core.byte_cache import ByteBoundedCache, json_size
from app.core.config import Settings
from app.core.errors import NotFound
from app.db import queries
from app.db.claims import SUBMITTING
from app.db.engine import open_session
from app.db.tables import Run, Workflow
from app.runs.service import RunService
from app.streaming.broker import EventBroker
from app.webhooks.worker import WebhookWorker
from invokeai_py_client import InvokeAIClient
from invokeai_py_client.exceptions import NotFoundError

T = TypeVar("T")

__all__ = [
    "BrokerDep",
    "ClientDep",
    "RunDep",
    "RunServiceDep",
    "SessionDep",
    "SettingsDep",
    "WorkflowDep",
    "WorkflowToRunDep",
    "broker_of",
    "client_of",
    "clients_of",
    "engine_of",
    "from_any_server",
    "run_service_of",
    "settings_of",
    "webhook_worker_of",
    "workflow_cache",
]


# -- what the lifespan put on app.state: the one way routes reach it ---------------------------


def settings_of(request: Request) -> Settings:
    """The application's settings."""
    settings: Settings = request.app.state.settings
    return settings


def engine_of(request: Request) -> Engine:
    """The database engine."""
    engine: Engine = request.app.state.engine
    return engine


def client_of(request: Request) -> InvokeAIClient:
    """The InvokeAI client (used async)."""
    client: InvokeAIClient = request.app.state.client
    return client


def clients_of(request: Request) -> list[InvokeAIClient]:
    """Every InvokeAI server's client, in ``INVOKEAI_URL``'s order."""
    clients: list[InvokeAIClient] = request.app.state.clients
    return clients


async def from_any_server(
    request: Request, fetch: Callable[[InvokeAIClient], Awaitable[T]], *, what: str
) -> T:
    """``fetch`` from each InvokeAI server in turn until one has it (an image's name is a
    fresh UUID, so only the server that made or took it has one by that name).

    Raises:
        NotFound: no server has ``what``.
    """
    for client in clients_of(request):
        with contextlib.suppress(NotFoundError):
            return await fetch(client)
    raise NotFound(f"{what} not found")


def broker_of(request: Request) -> EventBroker:
    """The broker of live run events."""
    broker: EventBroker = request.app.state.broker
    return broker


def run_service_of(request: Request) -> RunService:
    """The run service."""
    service: RunService = request.app.state.run_service
    return service


def webhook_worker_of(request: Request) -> WebhookWorker | None:
    """The webhook outbox worker (None in an application built without one)."""
    worker: WebhookWorker | None = getattr(request.app.state, "webhook_worker", None)
    return worker


def get_session(request: Request) -> Iterator[Session]:
    yield from open_session(engine_of(request))


async def get_settings(request: Request) -> Settings:
    return settings_of(request)


async def get_client(request: Request) -> InvokeAIClient:
    return client_of(request)


async def get_run_service(request: Request) -> RunService:
    return run_service_of(request)


async def get_broker(request: Request) -> EventBroker:
    return broker_of(request)


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ClientDep = Annotated[InvokeAIClient, Depends(get_client)]
RunServiceDep = Annotated[RunService, Depends(get_run_service)]
BrokerDep = Annotated[EventBroker, Depends(get_broker)]


def _release(session: Session) -> None:
    # End the read transaction so the pooled connection is not held while the route awaits
    # InvokeAI (many concurrent runs would exhaust the pool); loaded rows stay usable.
    session.commit()


def valid_workflow(workflow_id: str, session: SessionDep) -> Workflow:
    """The workflow named in the path, or 404."""
    workflow = queries.get_workflow(session=session, workflow_id=workflow_id)
    _release(session)
    if workflow is None:
        raise NotFound(f"no workflow with id {workflow_id!r}")
    return workflow


def valid_run(run_id: str, session: SessionDep) -> Run:
    """The run named in the path, or 404."""
    run = queries.get_run(session=session, run_id=run_id)
    _release(session)
    if run is None or run.status == SUBMITTING:  # not enqueued (yet): not a run of the API
        raise NotFound(f"no run with id {run_id!r}")
    return run


_WORKFLOWS: Table = Workflow.__table__  # type: ignore[attr-defined]
# Built once: this read is on the path of every run submission.
_HEAD = select(_WORKFLOWS.c.version, _WORKFLOWS.c.deleted_at).where(
    _WORKFLOWS.c.id == bindparam("workflow_id")
)


# Definitions kept in memory, in bytes of their JSON (a definition may be 50 MiB).
WORKFLOW_CACHE_BYTES = 32 * 1024 * 1024

# How long the current version of a workflow is taken from memory. Changes made through
# this process (PUT, DELETE) are seen at once; this bounds how late one made by another
# process on the same database is seen.
HEAD_TTL_SECONDS = 1.0


class WorkflowCache:
    """Workflows by (id, version): a version's content never changes, so an entry never goes
    stale. Which version is current (and whether the workflow was deleted) is read from the
    database at most every ``HEAD_TTL_SECONDS``, and again at once after ``forget``.
    """

    def __init__(self, size: int = 256, max_bytes: int = WORKFLOW_CACHE_BYTES) -> None:
        self.size = size
        self._rows: ByteBoundedCache[tuple[str, int], Workflow] = ByteBoundedCache(
            max_entries=size, max_bytes=max_bytes
        )
        self._heads: dict[str, tuple[float, int]] = {}  # id -> (read at, current version)

    @property
    def held_bytes(self) -> int:
        """The size of the definitions kept, in bytes of their JSON."""
        return self._rows.total_bytes

    def forget(self, workflow_id: str) -> None:
        """Read the current version again next time (the workflow changed or was deleted)."""
        self._heads.pop(workflow_id, None)

    def _version(self, engine: Engine, workflow_id: str) -> int | None:
        """The current version of a workflow not deleted, or None."""
        now = time.monotonic()
        cached = self._heads.get(workflow_id)
        if cached is not None and now - cached[0] < HEAD_TTL_SECONDS:
            return cached[1]
        with engine.connect() as connection:
            head = connection.execute(_HEAD, {"workflow_id": workflow_id}).first()
        if head is None or head[1] is not None:
            self._heads.pop(workflow_id, None)
            return None
        if len(self._heads) >= self.size:
            del self._heads[next(iter(self._heads))]
        self._heads[workflow_id] = (now, int(head[0]))
        return int(head[0])

    def fresh(self, workflow_id: str) -> Workflow | None:
        """The workflow from memory when its current version was read within the TTL (no
        I/O); None when it must be ``load``-ed."""
        cached = self._heads.get(workflow_id)
        if cached is None or time.monotonic() - cached[0] >= HEAD_TTL_SECONDS:
            return None
        return self._rows.get((workflow_id, cached[1]))

    def load(self, engine: Engine, workflow_id: str) -> Workflow | None:
        """The current, not deleted workflow, reading its (large) definition only once."""
        version = self._version(engine, workflow_id)
        if version is None:
            return None
        key = (workflow_id, version)
        workflow = self._rows.get(key)
        if workflow is None:
            with Session(engine, expire_on_commit=False) as session:
                workflow = queries.get_workflow(session=session, workflow_id=workflow_id)
            if workflow is None or workflow.version != version:
                self.forget(workflow_id)
                return workflow  # changed meanwhile: use it, do not keep it
            self._rows.put(key, workflow, size=json_size(workflow.definition))
        return workflow


def workflow_cache(request: Request) -> WorkflowCache:
    """The application's cache of workflows to run (made on first use)."""
    state = request.app.state
    cache: WorkflowCache | None = getattr(state, "workflow_cache", None)
    if cache is None:
        cache = state.workflow_cache = WorkflowCache()
    return cache


async def workflow_to_run(workflow_id: str, request: Request) -> Workflow:
    """The workflow named in the path, or 404.

    On the path of every ``POST /workflows/{id}/runs``: from memory while its current version
    is known (``WorkflowCache``), with no thread hop; otherwise read in a worker thread.
    """
    cache = workflow_cache(request)
    workflow = cache.fresh(workflow_id)
    if workflow is None:
        workflow = await run_in_threadpool(cache.load, engine_of(request), workflow_id)
    if workflow is None:
        raise NotFound(f"no workflow with id {workflow_id!r}")
    return workflow


WorkflowDep = Annotated[Workflow, Depends(valid_workflow)]
WorkflowToRunDep = Annotated[Workflow, Depends(workflow_to_run)]
RunDep = Annotated[Run, Depends(valid_run)]
