"""The short submission path: one transaction per step, the workflow's definition from memory."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from app.api import deps
from app.api.deps import WorkflowCache
from app.db import claims, outbox, queries
from app.db.claims import SUBMITTING, Claim
from app.db.engine import make_engine
from app.db.tables import Run, RunEvent, RunStatus, Workflow
from app.db.webhook_tables import WebhookDelivery, WebhookSubscription
from app.runs.dispatcher import queued_change
from app.runs.transition import commit_change


def database(tmp_path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    SQLModel.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Workflow(id="wf", name="t", definition={"nodes": []}, inputs=[]))
        session.commit()
    return engine


def claim(key: str | None = None, **columns: Any) -> Run:
    return Run(
        id=str(uuid.uuid4()),
        workflow_id="wf",
        workflow_version=1,
        inputs={},
        batch_id=str(uuid.uuid4()),
        status=SUBMITTING,
        idempotency_key=key,
        **columns,
    )


def test_the_cap_and_the_key_are_checked_in_the_claim(tmp_path: Path) -> None:
    engine = database(tmp_path)
    assert claims.claim_run(engine, claim("k"), cap=2) is Claim.CLAIMED
    assert claims.claim_run(engine, claim("k"), cap=2) is Claim.KEY_HELD
    assert claims.claim_run(engine, claim(), cap=2) is Claim.CLAIMED
    assert claims.claim_run(engine, claim(), cap=2) is Claim.FULL  # nothing inserted
    with Session(engine) as session:
        assert len(session.exec(select(Run)).all()) == 2
    assert claims.claim_run(engine, claim()) is Claim.CLAIMED  # no cap given


def test_queued_status_event_and_deliveries_are_written_together(tmp_path: Path) -> None:
    engine = database(tmp_path)
    run = claim(webhook_url="https://example.com/hook", webhook_events=["queued"])
    assert claims.claim_run(engine, run) is Claim.CLAIMED
    row = commit_change(engine, queued_change(run, 7))
    assert row is not None and row.id is not None
    with Session(engine) as session:
        stored = session.get(Run, run.id)
        assert stored is not None
        assert (stored.status, stored.item_id) == (RunStatus.queued.value, 7)
        events = session.exec(select(RunEvent)).all()
        assert [(e.id, e.event_type, e.data) for e in events] == [
            (row.id, "run.queued", {"item_id": 7, "batch_id": run.batch_id})
        ]
        deliveries = session.exec(select(WebhookDelivery)).all()
        assert [(d.run_event_id, d.url) for d in deliveries] == [
            (row.id, "https://example.com/hook")
        ]
    # Already queued (settled by someone else): nothing more is written.
    assert commit_change(engine, queued_change(run, 8)) is None
    with Session(engine) as session:
        assert len(session.exec(select(RunEvent)).all()) == 1
        stored = session.get(Run, run.id)
        assert stored is not None and stored.item_id == 7


def test_cached_workflows_follow_new_versions_and_deletes(tmp_path: Path) -> None:
    engine = database(tmp_path)
    cache = WorkflowCache(size=1)
    first = cache.load(engine, "wf")
    assert first is not None and cache.load(engine, "wf") is first
    assert cache.load(engine, "nope") is None
    with Session(engine, expire_on_commit=False) as session:
        workflow = queries.get_workflow(session=session, workflow_id="wf")
        assert workflow is not None
        queries.add_workflow_version(
            session=session,
            workflow=workflow,
            name="t2",
            description="",
            definition={"nodes": [], "v": 2},
            inputs=[],
            fingerprint="",
        )
    # Within the TTL the version in memory is used, until the change is told (the routes do).
    assert cache.load(engine, "wf") is first
    cache.forget("wf")
    second = cache.load(engine, "wf")
    assert second is not None and second.version == 2
    assert second.definition == {"nodes": [], "v": 2}
    with Session(engine, expire_on_commit=False) as session:
        current = queries.get_workflow(session=session, workflow_id="wf")
        assert current is not None
        queries.delete_workflow(session=session, workflow=current)
    cache.forget("wf")
    assert cache.load(engine, "wf") is None


def test_a_change_by_another_process_is_seen_after_the_ttl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = database(tmp_path)
    cache = WorkflowCache()
    assert cache.load(engine, "wf") is not None
    with Session(engine, expire_on_commit=False) as session:
        current = queries.get_workflow(session=session, workflow_id="wf")
        assert current is not None
        queries.delete_workflow(session=session, workflow=current)  # nobody tells the cache
    monkeypatch.setattr(deps, "HEAD_TTL_SECONDS", 0.0)
    assert cache.load(engine, "wf") is None


def _deliveries(engine: Engine) -> list[tuple[str, str | None, str]]:
    with Session(engine) as session:
        rows = session.exec(select(WebhookDelivery)).all()
        return [(d.url, d.subscription_id, d.event_type) for d in rows]


def _emit(engine: Engine, run: Run, event_type: str) -> int:
    with engine.begin() as connection:
        row = outbox.add_run_event_with_deliveries(
            connection=connection,
            run_id=run.id,
            workflow_id=run.workflow_id,
            event_type=event_type,
            data={"percentage": 0.5},
        )
    return row.id


def test_standing_subscriptions_are_seen_at_once_after_each_change(tmp_path: Path) -> None:
    engine = database(tmp_path)
    run = claim()
    assert claims.claim_run(engine, run) is Claim.CLAIMED
    _emit(engine, run, "run.succeeded")  # no subscription yet: no delivery
    with Session(engine, expire_on_commit=False) as session:
        everything = outbox.create_subscription(
            session=session, url="https://a.example/hook", event_types=None, workflow_id=None
        )
        outbox.create_subscription(
            session=session, url="https://b.example/hook", event_types=None, workflow_id="other"
        )
        outbox.create_subscription(
            session=session,
            url="https://c.example/hook",
            event_types=["progress"],
            workflow_id="wf",
        )
    event_id = _emit(engine, run, "run.succeeded")
    assert _deliveries(engine) == [("https://a.example/hook", everything.id, "run.succeeded")]
    _emit(engine, run, "node.progress")
    assert [d[0] for d in _deliveries(engine)][1:] == ["https://c.example/hook"]
    _emit(engine, run, "node.completed")  # never delivered
    assert len(_deliveries(engine)) == 2
    with Session(engine) as session:
        stored = session.get(WebhookSubscription, everything.id)
        assert stored is not None
        outbox.delete_subscription(session=session, subscription=stored)
    _emit(engine, run, "run.succeeded")  # the deleted subscription is not used any more
    assert len(_deliveries(engine)) == 2
    with Session(engine) as session:
        first = session.exec(select(WebhookDelivery)).first()
        assert first is not None and first.run_event_id == event_id
        assert first.payload["data"]["run_id"] == run.id
