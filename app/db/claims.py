"""Database side of submitting: claiming a run (and its Idempotency-Key) before enqueueing.

A run row is written *before* InvokeAI is asked, holding the batch id minted for it. The
unique constraint on ``idempotency_key`` decides which of several concurrent requests with
one key enqueues; the others return the winner's run. A claim is one of two kinds:

* *pending*: ``queued`` with no item id yet. The run was accepted (202) and is on its way to
  InvokeAI; one left behind by a crash is looked up by its batch id, and enqueued when
  InvokeAI does not have it (``app.runs.reconciler``).
* *submitting*: an internal status, for a request that is answered only once InvokeAI took
  the run (while InvokeAI's events are not followed, so its reachability is unknown).
  ``submitting`` rows are invisible in the API (``GET /runs`` lists only the public
  statuses; ``GET /runs/{id}`` answers 404); one left behind is looked up by its batch id,
  and forgotten when InvokeAI never got it (nobody was told it was accepted).

A claim becomes a queued run (and a pending one a failed or canceled one) through
``app.runs.transition``, with its event, in one transaction.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, func, insert, literal_column, or_, true, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.db.tables import Run, RunStatus, Sweep, utcnow

__all__ = [
    "PUBLIC_STATUSES",
    "SUBMITTING",
    "Claim",
    "claim_run",
    "count_unfinished",
    "delete_claim",
    "find_by_key",
    "list_due",
    "list_pending",
    "list_submitting",
    "owned_by",
    "release_expired_keys",
    "request_hash",
]

SUBMITTING = "submitting"
PUBLIC_STATUSES = [s.value for s in RunStatus]
_UNFINISHED = [SUBMITTING, *(s.value for s in RunStatus if not s.terminal)]

# The submission path's statements, built once (Core, not the ORM's unit of work: each POST
# runs two of them). The count walks the status index over unfinished rows only, so it does
# not grow with the history.
_RUNS: Table = Run.__table__  # type: ignore[attr-defined]
_COUNT_UNFINISHED = (
    select(func.count())
    .select_from(_RUNS)
    # Literal values: an IN of bound parameters is re-rendered on every execution.
    .where(_RUNS.c.status.in_([literal_column(f"'{status}'") for status in _UNFINISHED]))
)
_INSERT_RUN = insert(_RUNS)
_PENDING = (_RUNS.c.status == RunStatus.queued.value, _RUNS.c.item_id.is_(None))


def owned_by(backend: str, *, first: bool) -> ColumnElement[bool]:
    """Runs of one InvokeAI backend; the first one listed also owns runs recorded without
    one (those from before there were several)."""
    column = col(Run.backend)
    return or_(column == backend, column.is_(None)) if first else column == backend


def request_hash(workflow_id: str, body: dict[str, Any]) -> str:
    """A fingerprint of what a request asks for (key order and whitespace do not matter)."""
    canonical = json.dumps({"workflow_id": workflow_id, "body": body}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


class Claim(enum.Enum):
    """What became of a claim."""

    CLAIMED = "claimed"
    KEY_HELD = "key held"  # another row holds the Idempotency-Key
    FULL = "full"  # the cap on unfinished runs is reached


def count_unfinished(connection: Connection) -> int:
    """How many runs are unfinished (claims included)."""
    return int(connection.execute(_COUNT_UNFINISHED).scalar_one())


def claim_run(engine: Engine, run: Run, cap: int | None = None) -> Claim:
    """Insert ``run`` unless ``cap`` runs are unfinished or its Idempotency-Key is held.

    The count and the insert share one short transaction (one connection, one commit).
    """
    values = {column.name: getattr(run, column.name) for column in _RUNS.columns}
    with engine.connect() as connection:
        if cap is not None and count_unfinished(connection) >= cap:
            return Claim.FULL
        try:
            connection.execute(_INSERT_RUN, values)
            connection.commit()
        except IntegrityError:
            connection.rollback()
            return Claim.KEY_HELD
    return Claim.CLAIMED


def find_by_key(engine: Engine, key: str) -> Run | None:
    """The run holding ``key``, if any."""
    with Session(engine, expire_on_commit=False) as session:
        return session.exec(select(Run).where(Run.idempotency_key == key)).first()


def delete_claim(engine: Engine, run_id: str) -> None:
    """Forget a run that was never enqueued (only ``submitting`` rows are deleted)."""
    with Session(engine) as session:
        session.execute(delete(Run).where(col(Run.id) == run_id, col(Run.status) == SUBMITTING))
        session.commit()


def list_submitting(engine: Engine, owner: ColumnElement[bool] | None = None) -> Sequence[Run]:
    """Rows claimed but not (yet) known to be enqueued (of one backend: ``owned_by``)."""
    query = select(Run).where(Run.status == SUBMITTING, true() if owner is None else owner)
    with Session(engine, expire_on_commit=False) as session:
        return session.exec(query).all()


def list_pending(engine: Engine, owner: ColumnElement[bool] | None = None) -> Sequence[Run]:
    """Runs accepted but not (yet) known to be on InvokeAI's queue, oldest first (of one
    backend: ``owned_by``)."""
    where = (*_PENDING, true() if owner is None else owner)
    query = select(Run).where(*where).order_by(col(Run.created_at))
    with Session(engine, expire_on_commit=False) as session:
        return session.exec(query).all()


def list_due(
    engine: Engine, now: datetime, owner: ColumnElement[bool] | None = None
) -> Sequence[Run]:
    """Accepted runs still unfinished whose deadline passed (pending ones included; of one
    backend: ``owned_by``)."""
    query = select(Run).where(
        true() if owner is None else owner,
        col(Run.cancel_at).is_not(None),
        col(Run.cancel_at) <= now,
        col(Run.status).in_([RunStatus.queued.value, RunStatus.running.value]),
    )
    with Session(engine, expire_on_commit=False) as session:
        return session.exec(query).all()


def release_expired_keys(engine: Engine, ttl_seconds: float, *, key: str | None = None) -> int:
    """Clear the Idempotency-Key of runs and sweeps older than the TTL (one key, or all); the
    rows stay."""
    cutoff = utcnow() - timedelta(seconds=ttl_seconds)
    released = 0
    with Session(engine) as session:
        for table in (Run, Sweep):
            statement = update(table).where(
                col(table.idempotency_key).is_not(None), col(table.created_at) < cutoff
            )
            if key is not None:
                statement = statement.where(col(table.idempotency_key) == key)
            result = session.execute(statement.values(idempotency_key=None))
            released += int(getattr(result, "rowcount", 0) or 0)
        session.commit()
    return released
