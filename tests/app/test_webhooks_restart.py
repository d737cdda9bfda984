"""The outbox survives SIGKILL: a killed gateway's runs finish and their webhooks arrive.

The gateway runs as a real subprocess (``python -m app serve``). It is killed with SIGKILL
while its runs wait in InvokeAI's paused queue and the receiver is down, so each run has a
``run.queued`` delivery that failed once and is still pending. The runs then finish with no
gateway running; a new process on the same database reconciles them, writes their terminal
events with their deliveries, and sends everything once the receiver is back.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from invokeai_py_client import InvokeAIClient
from invokeai_py_client.webhooks import generate_secret
from tests.app.conftest import load_json, wait_until
from tests.app.live_server import free_port, gateway_process, gateway_up
from tests.app.test_webhooks_delivery import deliveries, words
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.invokeai

RUNS = 3


def fast_settings(secret: str) -> dict[str, str]:
    """Short backoff and reconcile so the test sees retries and recovery in seconds."""
    return {
        "GATEWAY_WEBHOOK_SECRET": secret,
        "GATEWAY_WEBHOOK_ALLOW_PRIVATE": "true",
        "GATEWAY_WEBHOOK_BACKOFF_BASE": "0.2",
        "GATEWAY_WEBHOOK_BACKOFF_CAP": "0.5",
        "GATEWAY_RECONCILE_INTERVAL": "1",
    }


async def test_webhooks_are_delivered_across_a_killed_gateway(
    tmp_path: Path, invokeai_url: str, aclient: InvokeAIClient, workflows_dir: Path
) -> None:
    secret = generate_secret()
    port = free_port()
    receiver = WebhookReceiver(secrets=[secret])
    receiver.up()
    receiver.down()
    runs: list[dict[str, Any]] = []
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            with gateway_process(tmp_path, invokeai_url, port, **fast_settings(secret)) as first:
                await wait_until(lambda: gateway_up(http))
                workflow = load_json(workflows_dir / "join_three_strings_exposed_fields.json")
                join = (await http.post("/workflows", json=workflow)).json()
                await aclient.queue_repo.apause_processor()
                try:
                    for _ in range(RUNS):
                        body = {
                            "inputs": words(),
                            "webhook_url": receiver.url,
                            "webhook_events": ["queued", "completed"],
                        }
                        response = await http.post(f"/workflows/{join['id']}/runs", json=body)
                        assert response.status_code == 202, response.text
                        runs.append(response.json())

                    async def tried() -> bool:
                        logs = [await deliveries(http, r["id"]) for r in runs]
                        return all(log and log[0]["attempt_count"] >= 1 for log in logs)

                    await wait_until(tried)  # each run.queued delivery failed at least once
                    runs = [(await http.get(f"/runs/{r['id']}")).json() for r in runs]
                    first.send_signal(signal.SIGKILL)
                    first.wait(10)
                finally:
                    await aclient.queue_repo.aresume_processor()

            async def items_done() -> bool:
                for run in runs:
                    item = await aclient.queue_repo.aget_item(run["item_id"])
                    if str(item.status) != "completed":
                        return False
                return True

            await wait_until(items_done)  # finished while no gateway was running
            receiver.up()
            with gateway_process(tmp_path, invokeai_url, port, **fast_settings(secret)):
                await wait_until(lambda: gateway_up(http))

                async def all_delivered() -> list[list[dict[str, Any]]] | None:
                    logs = [await deliveries(http, r["id"]) for r in runs]
                    done = all(
                        len(log) == 2 and all(d["status"] == "delivered" for d in log)
                        for log in logs
                    )
                    return logs if done else None

                logs = await wait_until(all_delivered)
                finished = [(await http.get(f"/runs/{r['id']}")).json() for r in runs]
            got = receiver.snapshot()
    finally:
        receiver.down()
    assert all(run["status"] == "succeeded" for run in finished)
    expected = {d["id"] for log in logs for d in log}
    arrived = {r.msg_id for r in got if r.answered == 200}
    assert arrived == expected and all(r.verified for r in got)
    for log in logs:
        queued, succeeded = log
        assert queued["event_type"] == "run.queued" and succeeded["event_type"] == "run.succeeded"
        assert queued["attempts"][0]["status_code"] is None  # refused before the kill
        assert queued["attempts"][-1]["status_code"] == 200
    types = sorted(r.payload["type"] for r in got if r.answered == 200)
    assert types == ["run.queued"] * RUNS + ["run.succeeded"] * RUNS
    print(
        f"\nFIGURES sigkill: runs={RUNS} finished={len(finished)} deliveries={len(expected)} "
        f"arrived={len(arrived)} lost={len(expected - arrived)} "
        f"requests_received={len(got)}"
    )
