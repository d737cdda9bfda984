"""Database side of sweeps: claiming a sweep with all its runs at once, and reading it back.

A sweep and its runs are inserted in one transaction, after the cap on unfinished runs is
checked for all of them: a sweep is accepted whole or not at all. The unique constraint on the
sweep's ``idempotency_key`` decides which of several requests with one key wins.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table, func, insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.db.claims import Claim, count_unfinished
from app.db.tables import Run, RunStatus, Sweep

__all__ = [
    "batch_position",
    "claim_sweep",
    "find_sweep",
    "find_sweep_by_key",
    "rebatch",
    "sweep_runs",
]

_RUNS: Table = Run.__table__  # type: ignore[attr-defined]
_SWEEPS: Table = Sweep.__table__  # type: ignore[attr-defined]


def claim_sweep(engine: Engine, sweep: Sweep, runs: Sequence[Run], cap: int | None) -> Claim:
    """Insert ``sweep`` and its ``runs`` unless they would pass ``cap`` unfinished runs or the
    sweep's Idempotency-Key is held."""
    with engine.connect() as connection:
        if cap is not None and count_unfinished(connection) + len(runs) > cap:
            return Claim.FULL
        try:
            connection.execute(insert(_SWEEPS), _row(_SWEEPS, sweep))
            connection.execute(insert(_RUNS), [_row(_RUNS, run) for run in runs])
            connection.commit()
        except IntegrityError:
            connection.rollback()
            return Claim.KEY_HELD
    return Claim.CLAIMED


def _row(table: Table, model: Sweep | Run) -> dict[str, object]:
    return {column.name: getattr(model, column.name) for column in table.columns}


def find_sweep(engine: Engine, sweep_id: str) -> Sweep | None:
    """The sweep, or None."""
    with Session(engine, expire_on_commit=False) as session:
        return session.get(Sweep, sweep_id)


def find_sweep_by_key(engine: Engine, key: str) -> Sweep | None:
    """The sweep holding ``key``, if any."""
    with Session(engine, expire_on_commit=False) as session:
        return session.exec(select(Sweep).where(Sweep.idempotency_key == key)).first()


def sweep_runs(engine: Engine, sweep_id: str) -> Sequence[Run]:
    """The sweep's runs in run order."""
    query = select(Run).where(Run.sweep_id == sweep_id).order_by(col(Run.sweep_index))
    with Session(engine, expire_on_commit=False) as session:
        return session.exec(query).all()


def batch_position(engine: Engine, run: Run) -> int:
    """Where ``run`` is among the queue items of its InvokeAI batch: its rank, by place in the
    sweep, among the runs sent under its batch id."""
    query = (
        select(func.count())
        .select_from(_RUNS)
        .where(_RUNS.c.batch_id == run.batch_id, _RUNS.c.sweep_index < run.sweep_index)
    )
    with engine.connect() as connection:
        return int(connection.execute(query).scalar_one())


def rebatch(engine: Engine, run_ids: Sequence[str], batch_id: str) -> int:
    """Give pending runs a new batch id, before they are sent under it; how many changed."""
    statement = (
        update(_RUNS)
        .where(
            _RUNS.c.id.in_(list(run_ids)),
            _RUNS.c.status == RunStatus.queued.value,
            _RUNS.c.item_id.is_(None),
        )
        .values(batch_id=batch_id)
    )
    with engine.begin() as connection:
        return int(connection.execute(statement).rowcount or 0)
