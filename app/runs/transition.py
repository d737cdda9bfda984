"""Every change of a run's state: the row, its event and its webhook deliveries, ONE transaction.

Whoever moves a run (the dispatcher, the follower, cancel, deadlines, the reconciler) goes
through ``Transitions.apply``::

    BEGIN
      UPDATE run SET <changes> WHERE id = :run AND <guard>     (0 rows: the run moved on; stop)
      INSERT runevent                                          (its id is the SSE id)
      INSERT webhookdelivery ...                               (one per target that wants it)
    COMMIT ──> broker.publish (SSE readers)

so a crash at any point leaves either none of the three or all of them, and the reconciler
never meets a finished run without its terminal event or its deliveries. The guard makes each
change happen at most once when two parties race (a dispatch and a cancel, say).
"""

from __future__ import annotations

import enum
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Table, Update, bindparam, text, update
from sqlalchemy.engine import Connection, Engine

from app.db.claims import SUBMITTING
from app.db.outbox import StoredEvent, add_run_event_with_deliveries
from app.db.tables import Run, RunStatus
from app.db.thread import DatabaseThread
from app.schemas.events import RunEventType
from app.streaming.broker import EventBroker

__all__ = ["CRASH_AFTER_ENV", "Change", "Guard", "Transitions", "commit_change"]

_RUNS: Table = Run.__table__  # type: ignore[attr-defined]
_TERMINAL = [s.value for s in RunStatus if s.terminal]

# The durability test's fault point: with this set to an event type, the process kills itself
# (SIGKILL) right after a transaction storing that event commits, before anything is published.
CRASH_AFTER_ENV = "GATEWAY_CRASH_AFTER_COMMIT"
_CRASH_AFTER = os.environ.get(CRASH_AFTER_ENV)


class Guard(enum.Enum):
    """Which state a run must be in for a change to apply."""

    NONE = "none"  # no row change: the event only (node events)
    SUBMITTING = "submitting"  # a claim answered only once InvokeAI took it
    PENDING = "pending"  # accepted (queued), not yet on InvokeAI's queue
    QUEUED = "queued"  # queued (on InvokeAI or not)
    UNFINISHED = "unfinished"  # not terminal

    def clauses(self) -> list[ColumnElement[bool]]:
        """The WHERE clauses besides the run's id."""
        status = _RUNS.c.status
        if self is Guard.SUBMITTING:
            return [status == SUBMITTING]
        if self is Guard.PENDING:
            return [status == RunStatus.queued.value, _RUNS.c.item_id.is_(None)]
        if self is Guard.QUEUED:
            return [status == RunStatus.queued.value]
        if self is Guard.UNFINISHED:
            return [status.not_in(_TERMINAL)]
        return []


@dataclass(frozen=True)
class Change:
    """One step of one run: new column values (under a guard) and the event that tells it."""

    run_id: str
    workflow_id: str
    event: RunEventType
    data: dict[str, Any]
    columns: dict[str, Any] = field(default_factory=dict)
    guard: Guard = Guard.NONE
    # The run's columns after the change, when the caller has them (saves a read for the
    # webhook payload; the submission path passes them).
    run: Mapping[str, Any] | None = None
    # The run's own webhook (url, events), when the caller knows it: an event no target
    # wants is then stored without reading the run (most node events of most runs).
    webhook: tuple[str | None, list[str] | None] | None = None
    # The batch the change is about, when the run must still be in it: a run moved to another
    # InvokeAI server (``app.runs.rescue``) has a new one, and its old item no longer counts.
    batch_id: str | None = None


# Statements by (guard, columns set, batch checked), built once: a submission runs one.
_STATEMENTS: dict[tuple[Guard, tuple[str, ...], bool], Update] = {}


def _statement(guard: Guard, columns: tuple[str, ...], same_batch: bool) -> Update:
    found = _STATEMENTS.get((guard, columns, same_batch))
    if found is None:
        batch = [_RUNS.c.batch_id == bindparam("guard_batch_id")] if same_batch else []
        found = _STATEMENTS[(guard, columns, same_batch)] = (
            update(_RUNS)
            .where(_RUNS.c.id == bindparam("run_id"), *guard.clauses(), *batch)
            .values({name: bindparam(f"new_{name}") for name in columns})
        )
    return found


def _update(connection: Connection, change: Change) -> bool:
    if change.guard is Guard.NONE or not change.columns:
        return True
    same_batch = change.batch_id is not None
    statement = _statement(change.guard, tuple(change.columns), same_batch)
    params = {"run_id": change.run_id} | {f"new_{k}": v for k, v in change.columns.items()}
    if same_batch:
        params["guard_batch_id"] = change.batch_id
    return bool(getattr(connection.execute(statement, params), "rowcount", 0))


# A cluster's replicas learn of each stored event from this, sent on commit (app.cluster).
_NOTIFY_EVENTS = text("SELECT pg_notify('gateway_events', '')")


def commit_change(engine: Engine, change: Change, notify: bool = False) -> StoredEvent | None:
    """Apply ``change`` in one transaction; None when the guard did not hold (nothing written).
    ``notify``: tell the other replicas of a cluster (PostgreSQL) when it commits."""
    with engine.connect() as connection:
        if not _update(connection, change):
            connection.rollback()
            return None
        if notify:
            connection.execute(_NOTIFY_EVENTS)
        row = add_run_event_with_deliveries(
            connection=connection,
            run_id=change.run_id,
            workflow_id=change.workflow_id,
            event_type=change.event.value,
            data=change.data,
            run=change.run,
            webhook=change.webhook,
        )
        connection.commit()
    if change.event.value == _CRASH_AFTER:
        os.kill(os.getpid(), signal.SIGKILL)
    return row


class Transitions:
    """Commits run changes (``commit_change``) and publishes their events to live readers.

    In a cluster (``clustered``), events are not published here: every replica's event tail
    publishes them from the database, in id order (``app.cluster.tail``).
    """

    def __init__(
        self, *, engine: Engine, db: DatabaseThread, broker: EventBroker, clustered: bool = False
    ) -> None:
        self.engine = engine
        self.db = db
        self.broker = broker
        self.clustered = clustered

    async def apply(self, change: Change) -> StoredEvent | None:
        """Commit ``change``, then publish its event; None when its guard did not hold."""
        row = await self.db.run(commit_change, self.engine, change, self.clustered)
        if row is not None and not self.clustered:
            await self.broker.publish(row.as_event())
        return row
