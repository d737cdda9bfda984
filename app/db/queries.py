"""Database functions, keyword-only, one small transaction each."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, or_, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from app.db.tables import Run, RunEvent, RunStatus, Workflow, WorkflowVersion, utcnow

__all__ = [
    "add_run_event",
    "add_workflow_version",
    "create_run",
    "create_workflow",
    "decode_cursor",
    "delete_workflow",
    "encode_cursor",
    "get_run",
    "get_workflow",
    "get_workflow_version",
    "list_run_events",
    "list_runs",
    "list_unfinished_runs",
    "list_workflows",
    "set_run_columns",
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


def create_run(*, session: Session, run: Run) -> Run:
    """Store a run that InvokeAI accepted."""
    session.add(run)
    session.commit()
    session.refresh(run)
    return run


def get_run(*, session: Session, run_id: str) -> Run | None:
    """The run, or None."""
    return session.get(Run, run_id)


def set_run_columns(engine: Engine, run_id: str, **changes: Any) -> None:
    """Set columns of a run in one UPDATE (the follower's status changes: no read back)."""
    runs: Table = Run.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(update(runs).where(runs.c.id == run_id).values(**changes))


def list_unfinished_runs(*, session: Session) -> Sequence[Run]:
    """Runs whose status is not terminal (reconciled on start)."""
    query = select(Run).where(col(Run.status).not_in(TERMINAL))
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


# -- events ---------------------------------------------------------------------------------


def add_run_event(
    *, session: Session, run_id: str, workflow_id: str, event_type: str, data: dict[str, Any]
) -> RunEvent:
    """Persist one event; its id is the SSE id."""
    row = RunEvent(run_id=run_id, workflow_id=workflow_id, event_type=event_type, data=data)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def list_run_events(
    *,
    session: Session,
    after_id: int = 0,
    run_id: str | None = None,
    workflow_id: str | None = None,
    limit: int = 1000,
) -> Sequence[RunEvent]:
    """Events with an id above ``after_id`` (for Last-Event-ID replay), oldest first."""
    query = select(RunEvent).where(col(RunEvent.id) > after_id)
    if run_id is not None:
        query = query.where(RunEvent.run_id == run_id)
    if workflow_id is not None:
        query = query.where(RunEvent.workflow_id == workflow_id)
    return session.exec(query.order_by(col(RunEvent.id)).limit(limit)).all()
