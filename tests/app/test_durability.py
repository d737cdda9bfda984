"""A run's end, its terminal event and its webhook deliveries are one commit: a crash cannot
split them.

The gateway runs as a real process (``python -m app serve``) with its fault hook set
(``GATEWAY_CRASH_AFTER_COMMIT=run.succeeded``): it kills itself with SIGKILL the moment the
transaction that makes a run ``succeeded`` has committed, before anything is published or
sent. That is the point where a state change committed apart from its event would leave a
finished run with no ``run.succeeded`` and no deliveries, which no reconciliation repairs
(it only looks at unfinished runs). After a restart the event and the delivery must be there,
the stream must end with the event, and the receiver must get it.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from sqlmodel import Session, select

from app.db.engine import make_engine
from app.db.tables import Run, RunEvent
from app.db.webhook_tables import WebhookDelivery
from app.runs.transition import CRASH_AFTER_ENV
from invokeai_py_client.webhooks import generate_secret
from tests.app.conftest import load_json, wait_until
from tests.app.live_server import free_port, gateway_process, gateway_up
from tests.app.test_webhooks_delivery import deliveries, words
from tests.app.test_webhooks_restart import fast_settings
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.invokeai


def stored(data_dir: Path, run_id: str) -> tuple[Run, list[RunEvent], list[WebhookDelivery]]:
    engine = make_engine(f"sqlite:///{data_dir / 'gateway.db'}")
    try:
        with Session(engine) as session:
            run = session.get(Run, run_id)
            assert run is not None
            events = list(session.exec(select(RunEvent).where(RunEvent.run_id == run_id)))
            sent = list(
                session.exec(select(WebhookDelivery).where(WebhookDelivery.run_id == run_id))
            )
            return run, events, sent
    finally:
        engine.dispose()


async def test_a_crash_right_after_a_run_ends_keeps_its_event_and_deliveries(
    tmp_path: Path, invokeai_url: str, workflows_dir: Path
) -> None:
    secret = generate_secret()
    port = free_port()
    receiver = WebhookReceiver(secrets=[secret])
    receiver.up()
    settings = fast_settings(secret)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            crashing = {**settings, CRASH_AFTER_ENV: "run.succeeded"}
            with gateway_process(tmp_path, invokeai_url, port, **crashing) as first:
                await wait_until(lambda: gateway_up(http))
                workflow = load_json(workflows_dir / "join_three_strings_exposed_fields.json")
                join = (await http.post("/workflows", json=workflow)).json()
                body = {"inputs": words(), "webhook_url": receiver.url}
                response = await http.post(f"/workflows/{join['id']}/runs", json=body)
                assert response.status_code == 202, response.text
                run_id = response.json()["id"]
                assert first.wait(120) == -signal.SIGKILL  # killed itself at the fault point

            run, events, sent = stored(tmp_path, run_id)
            assert run.status == "succeeded" and run.outputs
            assert [e.event_type for e in events][-1] == "run.succeeded"
            assert [(d.event_type, d.status) for d in sent] == [("run.succeeded", "pending")]
            assert receiver.snapshot() == []  # nothing was sent before the crash

            with gateway_process(tmp_path, invokeai_url, port, **settings):
                await wait_until(lambda: gateway_up(http))

                async def delivered() -> list[dict[str, Any]] | None:
                    log = await deliveries(http, run_id)
                    return log if log and log[0]["status"] == "delivered" else None

                log = await wait_until(delivered)
                async with aconnect_sse(http, "GET", f"/runs/{run_id}/events") as source:
                    streamed = [sse.event async for sse in source.aiter_sse()]
        got = receiver.snapshot()
    finally:
        receiver.down()
    assert [d["id"] for d in log] == [sent[0].id]  # the delivery committed with the run's end
    assert [r.msg_id for r in got if r.answered == 200] == [sent[0].id]
    assert all(r.verified for r in got)
    assert streamed[0] == "run.queued" and streamed[-1] == "run.succeeded"
    assert streamed.count("run.succeeded") == 1
