"""Runs accepted before InvokeAI took them: answered at once, sent in the background, never lost.

Against the real InvokeAI. Where a test needs InvokeAI to refuse or be unreachable for one
enqueue while its events still flow (a state the real server holds only for an instant), the
gateway's ``send_body`` is replaced for that test; everything else is the real path.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select

from app.core.errors import InputInvalid
from app.db.engine import make_engine
from app.db.tables import Run, RunEvent, RunStatus, Workflow
from app.main import create_app
from app.runs import dispatcher as dispatch
from app.runs import reconciler
from app.runs.enqueue import QueueFull
from app.runs.inputs import apply_inputs
from app.workflows import load_handle
from invokeai_py_client import InvokeAIClient
from invokeai_py_client.exceptions import APIConnectionError, PermissionDeniedError, ServerError
from tests.app.conftest import (
    TIMEOUT,
    enqueue_run,
    load_json,
    make_settings,
    run_if,
    run_on_queue,
    wait_until,
)
from tests.app.live_server import serve

pytestmark = pytest.mark.invokeai

TERMINAL = {"succeeded", "failed", "canceled"}


@asynccontextmanager
async def gateway(tmp_path: Path, invokeai_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(tmp_path, invokeai_url)
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
    ):
        http.database_url = settings.database_url  # type: ignore[attr-defined]
        yield http


async def _runs_url(http: httpx.AsyncClient, workflows_dir: Path) -> str:
    workflow = load_json(workflows_dir / "join_three_strings_exposed_fields.json")
    response = await http.post("/workflows", json=workflow)
    assert response.status_code == 201, response.text
    return f"/workflows/{response.json()['id']}/runs"


def _events(database_url: str, run_id: str) -> list[str]:
    with Session(make_engine(database_url)) as session:
        query = select(RunEvent).where(RunEvent.run_id == run_id).order_by(col(RunEvent.id))
        return [event.event_type for event in session.exec(query)]


def _unreachable(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every background enqueue fails as if InvokeAI refused the connection; returns the
    destinations (run ids) of the attempts."""
    attempts: list[str] = []

    async def refused(handle: Any, body: dict[str, Any]) -> Any:
        attempts.append(str(handle.destination))
        try:
            raise httpx.ConnectError("connection refused")
        except httpx.ConnectError as cause:
            raise APIConnectionError("cannot connect to InvokeAI") from cause

    monkeypatch.setattr(dispatch, "send_body", refused)
    return attempts


async def test_accepted_runs_reach_the_queue_in_order_with_one_item_each(
    tmp_path: Path, invokeai_url: str, aclient: InvokeAIClient, workflows_dir: Path
) -> None:
    async with gateway(tmp_path, invokeai_url) as http:
        runs_url = await _runs_url(http, workflows_dir)
        await aclient.queue_repo.apause_processor()
        try:
            accepted = []
            for i in range(6):
                response = await http.post(runs_url, json={"inputs": {"0": f"order{i}"}})
                assert response.status_code == 202, response.text
                assert response.json()["status"] == "queued"
                accepted.append(response.json()["id"])
            queued = [
                await wait_until(lambda: run_on_queue(http, run_id))  # noqa: B023
                for run_id in accepted
            ]
        finally:
            await aclient.queue_repo.aresume_processor()
        done = [await wait_until(lambda: run_if(http, r, TERMINAL)) for r in accepted]  # noqa: B023
    item_ids = [run["item_id"] for run in queued]
    assert item_ids == sorted(item_ids)  # InvokeAI's queue holds them in the accepted order
    assert [run["status"] for run in done] == ["succeeded"] * 6
    for run_id in accepted:
        items = await aclient.queue_repo.alist_all_items(destination=run_id)
        assert len(items) == 1
        assert _events(http.database_url, run_id)[0] == "run.queued"  # type: ignore[attr-defined]


async def test_a_run_invokeai_refuses_ends_failed_with_the_problem_named(
    tmp_path: Path, invokeai_url: str, workflows_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refuse(handle: Any, body: dict[str, Any]) -> Any:
        problem = {"index": 0, "label": "a", "node_id": "node-x", "reason": "InvokeAI refused"}
        raise InputInvalid("InvokeAI refused the run: bad value", errors=[problem])

    async with gateway(tmp_path, invokeai_url) as http:
        runs_url = await _runs_url(http, workflows_dir)
        monkeypatch.setattr(dispatch, "send_body", refuse)
        response = await http.post(runs_url, json={"inputs": {"0": "refused"}})
        assert response.status_code == 202, response.text
        run = await wait_until(lambda: run_if(http, response.json()["id"], TERMINAL))
        events = _events(http.database_url, run["id"])  # type: ignore[attr-defined]
    assert run["status"] == "failed"
    assert run["error"]["error_type"] == "InputInvalid"
    assert run["error"]["node_id"] == "node-x"
    assert "bad value" in run["error"]["error_message"]
    assert events == ["run.failed"]


async def test_unreachable_runs_wait_pending_and_can_be_canceled_or_expire(
    tmp_path: Path,
    invokeai_url: str,
    aclient: InvokeAIClient,
    workflows_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with gateway(tmp_path, invokeai_url) as http:
        runs_url = await _runs_url(http, workflows_dir)
        attempts = _unreachable(monkeypatch)
        kept, canceled, expiring = [
            (await http.post(runs_url, json=body)).json()
            for body in (
                {"inputs": {"0": "kept"}},
                {"inputs": {"0": "canceled"}},
                {"inputs": {"0": "expiring"}, "cancel_after": 1},
            )
        ]
        await wait_until(lambda: attempts.count(kept["id"]) >= 2)  # retried each round
        pending = (await http.get(f"/runs/{kept['id']}")).json()
        assert pending["status"] == "queued" and pending["item_id"] is None
        cancel = await http.post(f"/runs/{canceled['id']}/cancel")
        assert cancel.status_code == 200, cancel.text
        assert cancel.json()["status"] == "canceled"
        expired = await wait_until(lambda: run_if(http, expiring["id"], TERMINAL))
        monkeypatch.undo()  # InvokeAI is reachable again: the kept run goes through
        done = await wait_until(lambda: run_if(http, kept["id"], TERMINAL))
        after = (await http.get(f"/runs/{canceled['id']}")).json()
        database_url: str = http.database_url  # type: ignore[attr-defined]
    assert expired["status"] == "canceled"
    assert expired["error"]["error_type"] == "DeadlineExceeded"
    assert done["status"] == "succeeded" and done["outputs"]
    assert after["status"] == "canceled" and after["item_id"] is None
    assert _events(database_url, canceled["id"]) == ["run.canceled"]
    for never_sent in (canceled, expired):
        assert await aclient.queue_repo.alist_all_items(destination=never_sent["id"]) == []


async def test_pending_claims_left_by_a_crash_are_sent_or_failed_on_start(
    tmp_path: Path, invokeai_url: str, aclient: InvokeAIClient, workflows_dir: Path
) -> None:
    settings = make_settings(tmp_path, invokeai_url)
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        runs_url = await _runs_url(http, workflows_dir)
    workflow_id = runs_url.split("/")[2]
    never_sent = _pending(workflow_id, {"0": "left", "2": "behind"})
    sent = _pending(workflow_id, {"0": "sent", "2": "once"})
    bad = _pending(workflow_id, {"9": "no such input"})
    with Session(make_engine(settings.database_url), expire_on_commit=False) as session:
        session.add_all([never_sent, sent, bad])
        session.commit()
        stored = session.get(Workflow, workflow_id)
        assert stored is not None
        definition = stored.definition
    # One was sent right before the crash, its item id never recorded.
    handle = await load_handle(aclient, definition)
    await apply_inputs(aclient, handle, sent.inputs)
    await enqueue_run(handle, board_id=None, destination=sent.id, batch_id=sent.batch_id)

    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
    ):
        late = await wait_until(lambda: run_if(http, never_sent.id, TERMINAL))
        found = await wait_until(lambda: run_if(http, sent.id, TERMINAL))
        failed = await wait_until(lambda: run_if(http, bad.id, TERMINAL))
    assert late["status"] == found["status"] == "succeeded"
    assert late["outputs"][0]["values"] == ["leftgreenbehind"]
    assert found["outputs"][0]["values"] == ["sentgreenonce"]
    for run in (never_sent, sent):
        assert len(await aclient.queue_repo.alist_all_items(destination=run.id)) == 1
    assert _events(settings.database_url, sent.id)[0] == "run.queued"
    assert failed["status"] == "failed"
    assert failed["error"]["error_type"] == "InputInvalid"
    assert "9" in failed["error"]["error_message"]


def _pending(workflow_id: str, inputs: dict[str, Any]) -> Run:
    """A run as accepted (202) but not yet sent when the service died."""
    return Run(
        workflow_id=workflow_id,
        workflow_version=1,
        inputs=inputs,
        batch_id=str(uuid.uuid4()),
        status=RunStatus.queued.value,
    )


def _answer(status: int) -> httpx.Response:
    request = httpx.Request("POST", "http://invokeai/api/v1/queue/default/enqueue_batch")
    return httpx.Response(status, json={"detail": "no"}, request=request)


async def test_a_5xx_enqueue_is_looked_up_then_sent_and_a_4xx_fails_the_run(
    tmp_path: Path,
    invokeai_url: str,
    aclient: InvokeAIClient,
    workflows_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def server_error(handle: Any, body: dict[str, Any]) -> Any:
        raise ServerError("InvokeAI failed", response=_answer(500), body={"detail": "no"})

    async def forbidden(handle: Any, body: dict[str, Any]) -> Any:
        raise PermissionDeniedError("not yours", response=_answer(403), body={"detail": "no"})

    monkeypatch.setattr(reconciler, "CLAIM_SETTLE_SECONDS", 0.0)  # re-send once not found
    async with gateway(tmp_path, invokeai_url) as http:
        runs_url = await _runs_url(http, workflows_dir)
        with monkeypatch.context() as patched:
            patched.setattr(dispatch, "send_body", server_error)
            after_5xx = (await http.post(runs_url, json={"inputs": {"0": "five"}})).json()
        with monkeypatch.context() as patched:
            patched.setattr(dispatch, "send_body", forbidden)
            after_4xx = (await http.post(runs_url, json={"inputs": {"0": "four"}})).json()
            refused = await wait_until(lambda: run_if(http, after_4xx["id"], TERMINAL))
        sent = await wait_until(lambda: run_if(http, after_5xx["id"], TERMINAL))
    assert sent["status"] == "succeeded"
    assert len(await aclient.queue_repo.alist_all_items(destination=sent["id"])) == 1
    assert refused["status"] == "failed"
    assert refused["error"]["error_type"] == "EnqueueRefused"
    assert "not yours" in refused["error"]["error_message"]


async def test_a_run_waits_while_invokeais_queue_is_full(
    tmp_path: Path, invokeai_url: str, workflows_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts: list[str] = []

    async def full(handle: Any, body: dict[str, Any]) -> Any:
        attempts.append(str(handle.destination))
        raise QueueFull("InvokeAI's queue is full")

    async with gateway(tmp_path, invokeai_url) as http:
        runs_url = await _runs_url(http, workflows_dir)
        monkeypatch.setattr(dispatch, "send_body", full)
        run = (await http.post(runs_url, json={"inputs": {"0": "full"}})).json()
        await wait_until(lambda: attempts.count(run["id"]) >= 2)  # tried again, not failed
        waiting = (await http.get(f"/runs/{run['id']}")).json()
        monkeypatch.undo()
        done = await wait_until(lambda: run_if(http, run["id"], TERMINAL))
    assert waiting["status"] == "queued" and waiting["item_id"] is None
    assert done["status"] == "succeeded"
