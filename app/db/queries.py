"""Workflows and runs in the database: each function one short transaction (the run
state changes are in ``app.runs.transition``, the claims in ``claims``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from app.db.tables import Run, RunStatus, Workflow, WorkflowVersion, utcnow

__all__ = [
    "add_workflow_version",
    "create_workflow",
    "decode_cursor",
    "delete_workflow",
    "encode_cursor",
    "find_run",
    "find_workflow_version",
    "get_run",
    "get_workflow",
    "get_workflow_version",
    "list_runs",
    "list_unfinished_runs",
    "list_workflows",
    "load_run",
    "unfinished_runs",
]

TERMINAL = [s.value for s in RunStatus if s.terminal]


# -- workflows ------------------------------------------------------------------------------


def create_workflow(
    *,
    session: Session,
    name: str,
    description: str,
    definition: dict[str, Any],
    inputs: list[dict[str, Any]],
    fingerprint: str,
) -> Workflow:
    """Store a new workflow at version 1."""
    workflow = Workflow(
        name=name,
        description=description,
        definition=definition,
        inputs=inputs,
        fingerprint=fingerprint,
    )
    session.add(workflow)
    session.flush()
    session.add(_version_row(workflow))
    session.commit()
    session.refresh(workflow)
    return workflow


def _version_row(workflow: Workflow) -> WorkflowVersion:
    return WorkflowVersion(
        workflow_id=workflow.id,
        version=workflow.version,
        definition=workflow.definition,
        inputs=workflow.inputs,
        fingerprint=workflow.fingerprint,
    )


def add_workflow_version(
    *,
    session: Session,
    workflow: Workflow,
    name: str,
    description: str,
    definition: dict[str, Any],
    inputs: list[dict[str, Any]],
    fingerprint: str,
) -> Workflow:
    """Make a new current version of ``workflow`` (the old one stays in ``WorkflowVersion``)."""
    workflow.version += 1
    workflow.name = name
    workflow.description = description
    workflow.definition = definition
    workflow.inputs = inputs
    workflow.fingerprint = fingerprint
    workflow.updated_at = utcnow()
    session.add(workflow)
    session.add(_version_row(workflow))
    session.commit()
    session.refresh(workflow)
    return workflow


def get_workflow(*, session: Session, workflow_id: str) -> Workflow | None:
    """The workflow, or None when unknown or deleted."""
    workflow = session.get(Workflow, workflow_id)
    if workflow is None or workflow.deleted_at is not None:
        return None
    return workflow


def get_workflow_version(
    *, session: Session, workflow_id: str, version: int
) -> WorkflowVersion | None:
    """One stored version of a workflow."""
    query = select(WorkflowVersion).where(
        WorkflowVersion.workflow_id == workflow_id, WorkflowVersion.version == version
    )
    return session.exec(query).first()


def list_workflows(*, session: Session) -> Sequence[Workflow]:
    """Every workflow not deleted, oldest first."""
    query = select(Workflow).where(col(Workflow.deleted_at).is_(None))
    return session.exec(query.order_by(col(Workflow.created_at), col(Workflow.id))).all()


def delete_workflow(*, session: Session, workflow: Workflow) -> None:
    """Hide a workflow; its runs stay in the history."""
    workflow.deleted_at = utcnow()
    session.add(workflow)
    session.commit()


# -- runs -----------------------------------------------------------------------------------


def get_run(*, session: Session, run_id: str) -> Run | None:
    """The run, or None."""
    return session.get(Run, run_id)


def find_run(engine: Engine, run_id: str) -> Run | None:
    """The stored run (its own short session), or None."""
    with Session(engine, expire_on_commit=False) as session:
        return session.get(Run, run_id)


def find_workflow_version(engine: Engine, workflow_id: str, version: int) -> WorkflowVersion | None:
    """One stored version of a workflow (its own short session)."""
    with Session(engine, expire_on_commit=False) as session:
        return get_workflow_version(session=session, workflow_id=workflow_id, version=version)


def unfinished_runs(engine: Engine, owner: ColumnElement[bool] | None = None) -> Sequence[Run]:
    """Runs whose status is not terminal, oldest first (its own short session; of one
    backend: ``app.db.claims.owned_by``)."""
    with Session(engine, expire_on_commit=False) as session:
        runs = list_unfinished_runs(session=session, owner=owner)
    return runs


def load_run(engine: Engine, run_id: str) -> Run:
    """A run known to exist (runs are never deleted once accepted)."""
    run = find_run(engine, run_id)
    assert run is not None, f"run {run_id} vanished"
    return run


def list_unfinished_runs(
    *, session: Session, owner: ColumnElement[bool] | None = None
) -> Sequence[Run]:
    """Runs whose status is not terminal (reconciled on start)."""
    query = select(Run).where(col(Run.status).not_in(TERMINAL))
    if owner is not None:
        query = query.where(owner)
    return session.exec(query.order_by(col(Run.created_at))).all()


def encode_cursor(run: Run) -> str:
    """An opaque cursor pointing after ``run`` in newest-first order."""
    raw = json.dumps([run.created_at.isoformat(), run.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The position a cursor encodes; raises ValueError when it is not ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, run_id = json.loads(raw)
        return datetime.fromisoformat(stamp), str(run_id)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a valid cursor: {cursor!r}") from exc


def list_runs(
    *,
    session: Session,
    workflow_id: str | None = None,
    status: Sequence[str] | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    cursor: tuple[datetime, str] | None = None,
    limit: int = 50,
) -> list[Run]:
    """Runs, newest first, filtered; ``limit + 1`` rows tell the caller whether more exist."""
    query = select(Run)
    if workflow_id is not None:
        query = query.where(Run.workflow_id == workflow_id)
    if status:
        query = query.where(col(Run.status).in_(list(status)))
    if created_after is not None:
        query = query.where(col(Run.created_at) >= created_after)
    if created_before is not None:
        query = query.where(col(Run.created_at) < created_before)
    if cursor is not None:
        stamp, run_id = cursor
        query = query.where(
            or_(
                col(Run.created_at) < stamp,
                (col(Run.created_at) == stamp) & (col(Run.id) < run_id),
            )
        )
    query = query.order_by(col(Run.created_at).desc(), col(Run.id).desc()).limit(limit + 1)
    return list(session.exec(query).all())
