"""Reading and writing OpenAI mappings, and finding the workflow an OpenAI ``model`` names.

Blocking SQLite calls: the routes run them on a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from app.db import queries as crud
from app.db.openai_tables import OpenAIMapping
from app.db.tables import Run, Workflow, utcnow
from app.openai_images.mapping import MappedInput, Role, effective_roles

__all__ = [
    "ServedWorkflow",
    "find_model",
    "load_run",
    "load_served",
    "save_mapping",
    "served_workflows",
]


@dataclass(frozen=True)
class ServedWorkflow:
    """A workflow as the OpenAI API sees it: its roles in force and whether it is listed."""

    workflow: Workflow
    roles: dict[Role, MappedInput]
    explicit: frozenset[Role]
    exposed: bool

    def public(self) -> dict[str, Any]:
        return {
            "workflow_id": self.workflow.id,
            "model": self.workflow.name,
            "exposed": self.exposed,
            "explicit": sorted(role.value for role in self.explicit),
            "inputs": {
                role.value: (self.roles[role].public() if role in self.roles else None)
                for role in Role
            },
        }


def _served(workflow: Workflow, row: OpenAIMapping | None) -> ServedWorkflow:
    explicit = row.roles if row is not None else None
    roles = effective_roles(workflow.inputs, explicit)
    # Listed when the mapping says so, or (no say) when there is a prompt to set.
    exposed = row.exposed if row is not None else Role.prompt in roles
    return ServedWorkflow(
        workflow=workflow,
        roles=roles,
        explicit=frozenset(Role(r) for r in (explicit or {}) if r in Role.__members__),
        exposed=exposed,
    )


def load_served(engine: Engine, workflow_id: str) -> ServedWorkflow | None:
    """One workflow (not deleted) with its mapping in force, or None."""
    with Session(engine, expire_on_commit=False) as session:
        workflow = crud.get_workflow(session=session, workflow_id=workflow_id)
        if workflow is None:
            return None
        return _served(workflow, session.get(OpenAIMapping, workflow_id))


def served_workflows(engine: Engine) -> list[ServedWorkflow]:
    """Every workflow (not deleted) with its mapping in force, oldest first."""
    with Session(engine, expire_on_commit=False) as session:
        rows = {m.workflow_id: m for m in session.exec(select(OpenAIMapping)).all()}
        workflows = crud.list_workflows(session=session)
        return [_served(w, rows.get(w.id)) for w in workflows]


def find_model(engine: Engine, model: str) -> ServedWorkflow | None:
    """The exposed workflow an OpenAI ``model`` names: by id, else by name.

    Names are not unique: among exposed workflows of that name, the one registered or
    updated last wins (what ``GET /v1/models`` lists under the name).
    """
    by_id = load_served(engine, model)
    if by_id is not None and by_id.exposed:
        return by_id
    named = [s for s in served_workflows(engine) if s.exposed and s.workflow.name == model]
    if not named:
        return None
    return max(named, key=lambda s: (s.workflow.updated_at, s.workflow.created_at))


def save_mapping(engine: Engine, workflow_id: str, *, exposed: bool, roles: dict[str, Any]) -> None:
    """Store (or replace) the explicit mapping of a workflow."""
    with Session(engine) as session:
        row = session.get(OpenAIMapping, workflow_id)
        if row is None:
            row = OpenAIMapping(workflow_id=workflow_id, roles=roles, exposed=exposed)
        else:
            row.roles, row.exposed, row.updated_at = roles, exposed, utcnow()
        session.add(row)
        session.commit()


def load_run(engine: Engine, run_id: str) -> Run | None:
    """The run with this id, or None."""
    with Session(engine, expire_on_commit=False) as session:
        return crud.get_run(session=session, run_id=run_id)
