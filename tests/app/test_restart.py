"""Every accepted run reaches its final status, even when the service is killed mid-run.

The gateway runs as a real subprocess (``python -m app serve``) and is killed with SIGKILL while
its run waits in InvokeAI's paused queue; the run then finishes with nobody watching. A new
process on the same database reconciles it from the queue item, outputs included.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select

from app.db.engine import make_engine
from app.db.tables import RunEvent
from invokeai_py_client import InvokeAIClient
from tests.app.conftest import load_json, run_on_queue, wait_until
from tests.app.live_server import free_port, gateway_process, gateway_up

pytestmark = pytest.mark.invokeai


async def test_run_finishes_with_outputs_across_a_killed_service(
    tmp_path: Path, invokeai_url: str, aclient: InvokeAIClient, workflows_dir: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        with gateway_process(tmp_path, invokeai_url, port) as first:
            await wait_until(lambda: gateway_up(http))
            workflow = (
                await http.post(
                    "/workflows",
                    json=load_json(workflows_dir / "join_three_strings_exposed_fields.json"),
                )
            ).json()
            await aclient.queue_repo.apause_processor()
            try:
                response = await http.post(
                    f"/workflows/{workflow['id']}/runs",
                    json={"inputs": {"0": "before", "2": "restart"}},
                )
                assert response.status_code == 202, response.text
                assert response.json()["status"] == "queued"
                # Killed once InvokeAI holds the run (a kill before: tests/app/test_recovery.py).
                run: dict[str, Any] = await wait_until(
                    lambda: run_on_queue(http, response.json()["id"])
                )
                first.send_signal(signal.SIGKILL)
                first.wait(10)
            finally:
                await aclient.queue_repo.aresume_processor()

        async def item_done() -> bool:
            item = await aclient.queue_repo.aget_item(run["item_id"])
            return str(item.status) == "completed"

        await wait_until(item_done)  # finished while no gateway was running

        with gateway_process(tmp_path, invokeai_url, port):
            await wait_until(lambda: gateway_up(http))

            async def finished() -> dict[str, Any] | None:
                body: dict[str, Any] = (await http.get(f"/runs/{run['id']}")).json()
                return body if body["status"] == "succeeded" else None

            done = await wait_until(finished)
    assert done["outputs"][0]["values"] == ["beforegreenrestart"]
    assert done["started_at"] and done["finished_at"]
    engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
    with Session(engine) as session:
        query = select(RunEvent).where(RunEvent.run_id == run["id"]).order_by(col(RunEvent.id))
        types = [e.event_type for e in session.exec(query)]
    assert types[0] == "run.queued" and types[-1] == "run.succeeded"
    assert "run.started" in types
