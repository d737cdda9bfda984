"""Database side of moving a run to another InvokeAI server (``app.runs.rescue``).

A move is one transaction: the run becomes pending on its new server under a new batch id
(guarded: still unfinished and still the old server's), and its old batch, when the old
server may hold it, is remembered there as *abandoned*, to be canceled when it answers again.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import ColumnElement, delete, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from app.db.tables import AbandonedBatch, Run, RunStatus

__all__ = ["abandoned_batches", "forget_abandoned", "move_run"]

_TERMINAL = [s.value for s in RunStatus if s.terminal]


def move_run(
    engine: Engine,
    run_id: str,
    owner: ColumnElement[bool],
    new_backend: str | None,
    new_batch_id: str,
    board_id: str | None,
    abandon: tuple[str, str] | None,
) -> bool:
    """Make the run pending on ``new_backend`` as batch ``new_batch_id`` (on ``board_id``,
    that server's) unless it finished or moved meanwhile (``owner``: the old server's runs);
    remember ``abandon`` (the old batch id and server) in the same transaction. Returns
    whether the run moved."""
    with Session(engine) as session:
        moved = session.execute(
            update(Run)
            .where(col(Run.id) == run_id, col(Run.status).not_in(_TERMINAL), owner)
            .values(
                backend=new_backend,
                batch_id=new_batch_id,
                board_id=board_id,
                item_id=None,
                session_id=None,
                status=RunStatus.queued.value,
            )
        )
        if not getattr(moved, "rowcount", 0):
            session.rollback()
            return False
        if abandon is not None and session.get(AbandonedBatch, abandon[0]) is None:
            batch_id, backend = abandon  # (a sweep's runs share one: remembered once)
            session.add(AbandonedBatch(batch_id=batch_id, backend=backend))
        session.commit()
    return True


def abandoned_batches(engine: Engine, backend: str) -> Sequence[str]:
    """The batch ids abandoned on one server."""
    query = select(AbandonedBatch.batch_id).where(AbandonedBatch.backend == backend)
    with Session(engine) as session:
        return session.exec(query).all()


def forget_abandoned(engine: Engine, batch_ids: Sequence[str]) -> None:
    """The server canceled these batches: nothing is left to do about them."""
    with Session(engine) as session:
        session.execute(delete(AbandonedBatch).where(col(AbandonedBatch.batch_id).in_(batch_ids)))
        session.commit()
