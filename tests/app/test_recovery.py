"""No accepted run is lost: a SIGKILLed service, and claims left between enqueue and record.

* The gateway runs as a real process and is killed with SIGKILL while its runs wait in
  InvokeAI's paused queue (one with a deadline); a new process on the same database finds
  every run, cancels the one whose deadline passed, and follows the others to their end.
* A crash between the enqueue and its record leaves a ``submitting`` row holding the minted
  batch id: on start the gateway looks the batch up, and the run is recovered (or forgotten
  when InvokeAI never got it).
"""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select

from app.api.routes.runs import RunRequest
from app.db.claims import SUBMITTING, request_hash
from app.db.engine import make_engine
from app.db.tables import Run, RunEvent, Workflow
from app.main import create_app
from app.runs.inputs import apply_inputs
from app.workflows import load_handle
from invokeai_py_client import InvokeAIClient
from tests.app.conftest import TIMEOUT, enqueue_run, load_json, make_settings, run_if, wait_until
from tests.app.live_server import free_port, gateway_process, gateway_up, serve

pytestmark = pytest.mark.invokeai

FAST_RECONCILE = {"GATEWAY_RECONCILE_INTERVAL": "1"}
TERMINAL = {"succeeded", "failed", "canceled"}


async def _all_runs(http: httpx.AsyncClient) -> list[dict[str, Any]]:
    body: dict[str, Any] = (await http.get("/runs", params={"limit": 500})).json()
    return list(body["data"])


async def test_sigkilled_service_loses_no_accepted_run(
    tmp_path: Path, invokeai_url: str, aclient: InvokeAIClient, workflows_dir: Path
) -> None:
    port = free_port()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as http:
        await aclient.queue_repo.apause_processor()
        try:
            with gateway_process(tmp_path, invokeai_url, port, **FAST_RECONCILE) as first:
                await wait_until(lambda: gateway_up(http))
                workflow = load_json(workflows_dir / "join_three_strings_exposed_fields.json")
                workflow_id = (await http.post("/workflows", json=workflow)).json()["id"]
                url = f"/workflows/{workflow_id}/runs"
                accepted = []
                for i in range(5):
                    response = await http.post(url, json={"inputs": {"0": f"kill{i}", "2": "x"}})
                    assert response.status_code == 202, response.text
                    accepted.append(response.json())
                late = await http.post(url, json={"inputs": {"0": "late"}, "cancel_after": 2})
                assert late.status_code == 202, late.text
                first.send_signal(signal.SIGKILL)
                first.wait(10)
            with gateway_process(tmp_path, invokeai_url, port, **FAST_RECONCILE):
                await wait_until(lambda: gateway_up(http))
                # Still paused: only the restarted gateway can cancel the late run.
                late_done = await wait_until(
                    lambda: run_if(http, late.json()["id"], TERMINAL), timeout=30
                )
                await aclient.queue_repo.aresume_processor()
                finished = [await _finished(http, run["id"]) for run in accepted]
                listed = {r["id"] for r in await _all_runs(http)}
        finally:
            await aclient.queue_repo.aresume_processor()
    assert late_done["status"] == "canceled"
    assert late_done["error"]["error_type"] == "DeadlineExceeded"
    assert [r["status"] for r in finished] == ["succeeded"] * 5
    assert [r["outputs"][0]["values"] for r in finished] == [[f"kill{i}greenx"] for i in range(5)]
    assert listed == {r["id"] for r in accepted} | {late.json()["id"]}
    for run in finished:
        item = await aclient.queue_repo.aget_item(run["item_id"])
        assert str(item.status) == "completed"


async def _finished(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    found: dict[str, Any] = await wait_until(lambda: run_if(http, run_id, TERMINAL), timeout=90)
    return found


async def test_claims_left_by_a_crash_are_resolved_by_batch(
    tmp_path: Path, invokeai_url: str, aclient: InvokeAIClient, workflows_dir: Path
) -> None:
    settings = make_settings(tmp_path, invokeai_url)
    definition = load_json(workflows_dir / "join_three_strings_exposed_fields.json")
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        workflow_id = (await http.post("/workflows", json=definition)).json()["id"]
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        workflow = session.get(Workflow, workflow_id)
        assert workflow is not None
        stored = workflow.definition
    body = {"inputs": {"0": "crash", "2": "recovered"}}
    fields = RunRequest.model_validate(body).model_dump(mode="json")
    enqueued_run = _claim(workflow_id, body["inputs"], key="crash-key")
    enqueued_run.request_hash = request_hash(workflow_id, fields)
    never_sent = _claim(workflow_id, {"0": "never"})
    with Session(engine, expire_on_commit=False) as session:
        session.add(enqueued_run)
        session.add(never_sent)
        session.commit()
    # The crash happened right after InvokeAI took the batch, before its answer was recorded.
    handle = await load_handle(aclient, stored)
    await apply_inputs(aclient, handle, body["inputs"])
    await enqueue_run(
        handle, board_id=None, destination=enqueued_run.id, batch_id=enqueued_run.batch_id
    )

    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as http:
        done = await wait_until(lambda: run_if(http, enqueued_run.id, TERMINAL), timeout=60)
        # A retry with the key of the recovered run gets that run, not a second one.
        again = await http.post(
            f"/workflows/{workflow_id}/runs", json=body, headers={"Idempotency-Key": "crash-key"}
        )
        assert again.status_code == 200, again.text
        assert again.json()["id"] == enqueued_run.id
        gone = (await http.get(f"/runs/{never_sent.id}")).status_code
    assert done["status"] == "succeeded"
    assert done["outputs"][0]["values"] == ["crashgreenrecovered"]
    assert gone == 404
    with Session(engine) as session:
        assert session.get(Run, never_sent.id) is None  # nothing was enqueued: forgotten
        query = select(RunEvent).where(RunEvent.run_id == enqueued_run.id)
        events = list(session.exec(query.order_by(col(RunEvent.id))))
    assert events[0].event_type == "run.queued" and events[0].data["synthetic"] is True
    assert events[-1].event_type == "run.succeeded"
    items = await aclient.queue_repo.alist_all_items(destination=enqueued_run.id)
    assert len(items) == 1


def _claim(workflow_id: str, inputs: dict[str, Any], key: str | None = None) -> Run:
    return Run(
        workflow_id=workflow_id,
        workflow_version=1,
        inputs=inputs,
        batch_id=str(uuid.uuid4()),
        status=SUBMITTING,
        idempotency_key=key,
    )


class AnswerDroppingProxy:
    """A TCP proxy to InvokeAI that lets ``enqueue_batch`` through but drops its answer.

    Requests on one connection are sequential, so once an enqueue request has passed, the
    next bytes from InvokeAI are its answer: they are swallowed and the connection is cut.
    Everything else (other routes, the Socket.IO stream) is piped unchanged.
    """

    def __init__(self, upstream: str) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.dropped = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        doomed = asyncio.Event()

        async def to_upstream() -> None:
            while data := await reader.read(65536):
                if b"/enqueue_batch " in data:
                    doomed.set()
                up_writer.write(data)
                await up_writer.drain()

        async def to_client() -> None:
            while data := await up_reader.read(65536):
                if doomed.is_set():
                    self.dropped += 1
                    return  # the answer is lost
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(to_upstream()), asyncio.create_task(to_client())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for stream in (writer, up_writer):
            stream.close()


async def test_lost_enqueue_answer_is_looked_up_not_resent(
    tmp_path: Path, invokeai_url: str, aclient: InvokeAIClient, workflows_dir: Path
) -> None:
    proxy = AnswerDroppingProxy(invokeai_url)
    settings = make_settings(tmp_path, await proxy.start())
    try:
        async with (
            serve(create_app(settings)) as url,
            httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
        ):
            definition = load_json(workflows_dir / "join_three_strings_exposed_fields.json")
            workflow_id = (await http.post("/workflows", json=definition)).json()["id"]
            response = await http.post(
                f"/workflows/{workflow_id}/runs",
                json={"inputs": {"0": "lost", "2": "answer"}},
                headers={"Idempotency-Key": f"lost-{uuid.uuid4()}", "Prefer": "wait=30"},
            )
            assert response.status_code == 200, response.text
            run = response.json()
    finally:
        await proxy.close()
    assert proxy.dropped == 1  # the enqueue's answer really was lost
    assert run["status"] == "succeeded"
    assert run["outputs"][0]["values"] == ["lostgreenanswer"]
    items = await aclient.queue_repo.alist_all_items(destination=run["id"])
    assert [item.item_id for item in items] == [run["item_id"]]  # enqueued once
