"""Webhooks against the real InvokeAI and a real receiver on loopback (no mocks).

The gateway is served by uvicorn; the receiver is a threaded HTTP server that checks every
signature with ``invokeai_py_client.webhooks.verify_signature``. Backoff is short here
(0.2 s doubling to 0.5 s) so retries happen within a test.
"""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from invokeai_py_client import InvokeAIClient
from invokeai_py_client.webhooks import generate_secret
from tests.app.conftest import load_json, register, wait_until
from tests.app.live_server import serve_gateway
from tests.support.webhook_receiver import Received, WebhookReceiver
from tests.support.workflow_factory import tiny_blur_workflow

pytestmark = pytest.mark.invokeai

SECRET = generate_secret()
WAIT = {"Prefer": "wait=60"}
FAST: dict[str, Any] = {
    "webhook_allow_private": True,
    "webhook_secret": SECRET,
    "webhook_backoff_base_seconds": 0.2,
    "webhook_backoff_cap_seconds": 0.5,
    "reconcile_interval_seconds": 1.0,
}


@contextlib.asynccontextmanager
async def gateway(
    data_dir: Path, invokeai_url: str, database_url: str | None = None, **extra: Any
) -> AsyncIterator[httpx.AsyncClient]:
    if database_url is not None:
        extra["database_url"] = database_url
    async with (
        serve_gateway(data_dir, invokeai_url, **{**FAST, **extra}) as served,
        httpx.AsyncClient(base_url=served.url, timeout=60) as http,
    ):
        yield http


async def join_three(http: httpx.AsyncClient, workflows_dir: Path) -> dict[str, Any]:
    return await register(http, load_json(workflows_dir / "join_three_strings_exposed_fields.json"))


def words() -> dict[str, str]:
    return {"0": f"w{random.randrange(10**9)}", "2": "x"}


async def start_run(
    http: httpx.AsyncClient, workflow_id: str, body: dict[str, Any], wait: bool = True
) -> dict[str, Any]:
    response = await http.post(
        f"/workflows/{workflow_id}/runs", json=body, headers=WAIT if wait else {}
    )
    assert response.status_code in (200, 202), response.text
    run: dict[str, Any] = response.json()
    return run


async def deliveries(http: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    response = await http.get(f"/runs/{run_id}/deliveries")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["count"] == len(body["data"])
    data: list[dict[str, Any]] = body["data"]
    return data


async def settled(http: httpx.AsyncClient, run_id: str, count: int) -> list[dict[str, Any]]:
    """The run's deliveries once ``count`` exist and none is pending."""

    async def check() -> list[dict[str, Any]] | None:
        found = await deliveries(http, run_id)
        done = len(found) == count and all(d["status"] != "pending" for d in found)
        return found if done else None

    result: list[dict[str, Any]] = await wait_until(check)
    return result


def by_id(received: list[Received]) -> dict[str, Received]:
    return {r.msg_id: r for r in received if 200 <= r.answered < 300}


async def test_terminal_delivery_is_signed_and_verifies(
    database_url: str | None, tmp_path: Path, invokeai_url: str
) -> None:
    with WebhookReceiver(secrets=[SECRET]) as receiver:
        async with gateway(tmp_path, invokeai_url, database_url) as http:
            workflow = await register(http, tiny_blur_workflow())
            radius = round(random.uniform(0.5, 3.0), 3)
            body = {"inputs": {"1": radius}, "webhook_url": receiver.url}
            run = await start_run(http, workflow["id"], body)
            assert run["status"] == "succeeded"
            assert run["webhook_url"] == receiver.url and run["webhook_events"] is None
            [delivery] = await settled(http, run["id"], 1)  # the default: terminal only
            got = await receiver.until(lambda g: len(g) >= 1)
            image_url = got[0].payload["data"]["outputs"][0]["images"][0]["url"]
            image = await http.get(image_url)
    [message] = got
    assert message.verified, message.error  # our verify_signature
    headers = message.headers
    assert Webhook(SECRET).verify(message.body, headers) == message.payload  # the library's
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(message.body, headers)
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["content-type"] == "application/json"
    assert message.msg_id == delivery["id"]
    payload = message.payload
    assert payload["type"] == "run.succeeded"
    data = payload["data"]
    assert (data["run_id"], data["workflow_id"], data["status"]) == (
        run["id"],
        workflow["id"],
        "succeeded",
    )
    assert data["event"] == "completed" and data["error"] is None
    assert data["finished_at"] and data["started_at"]
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert delivery["status"] == "delivered" and delivery["attempt_count"] == 1
    assert delivery["subscription_id"] is None and delivery["payload"] == payload
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] == 200 and attempt["error"] is None
    assert attempt["duration_ms"] is not None and attempt["duration_ms"] >= 0


async def test_chosen_events_failed_and_canceled(
    database_url: str | None,
    tmp_path: Path,
    invokeai_url: str,
    aclient: InvokeAIClient,
    workflows_dir: Path,
) -> None:
    with WebhookReceiver(secrets=[SECRET]) as receiver:
        async with gateway(tmp_path, invokeai_url, database_url) as http:
            join = await join_three(http, workflows_dir)
            chosen = ["queued", "started", "completed", "canceled"]
            body = {"inputs": words(), "webhook_url": receiver.url, "webhook_events": chosen}
            run = await start_run(http, join["id"], body)
            assert run["webhook_events"] == chosen
            log = await settled(http, run["id"], 3)
            assert [d["event_type"] for d in log] == ["run.queued", "run.started", "run.succeeded"]

            await aclient.queue_repo.apause_processor()
            try:
                body = {"inputs": words(), "webhook_url": receiver.url}
                queued = await start_run(http, join["id"], body, wait=False)
                canceled = await http.post(f"/runs/{queued['id']}/cancel")
                assert canceled.json()["status"] == "canceled"
            finally:
                await aclient.queue_repo.aresume_processor()
            [cancel_delivery] = await settled(http, queued["id"], 1)

            crop = await register(http, load_json(workflows_dir / "crop_uploaded_image.json"))
            uncategorized = aclient.board_repo.get_uncategorized_handle()
            image = await uncategorized.aupload_image_data(_png(), "gone.png")
            await aclient.queue_repo.apause_processor()
            try:
                body = {"inputs": {"0": image.image_name}, "webhook_url": receiver.url}
                failing = await start_run(http, crop["id"], body, wait=False)
                await uncategorized.adelete_image(image.image_name)  # fails at the image node
            finally:
                await aclient.queue_repo.aresume_processor()
            [fail_delivery] = await settled(http, failing["id"], 1)
            got = by_id(await receiver.until(lambda g: len(g) >= 5))
    assert all(r.verified for r in got.values())
    assert got[cancel_delivery["id"]].payload["type"] == "run.canceled"
    assert got[cancel_delivery["id"]].payload["data"]["status"] == "canceled"
    failed = got[fail_delivery["id"]].payload
    assert failed["type"] == "run.failed" and failed["data"]["status"] == "failed"
    assert failed["data"]["error"]["error_type"] == "ImageRecordNotFoundException"
    assert [got[d["id"]].payload["type"] for d in log] == [
        "run.queued",
        "run.started",
        "run.succeeded",
    ]
    assert got[log[0]["id"]].payload["data"]["status"] == "queued"


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "teal").save(buffer, format="PNG")
    return buffer.getvalue()


async def test_receiver_down_then_up_every_delivery_arrives(
    database_url: str | None, tmp_path: Path, invokeai_url: str, workflows_dir: Path
) -> None:
    receiver = WebhookReceiver(secrets=[SECRET])
    receiver.up()
    receiver.down()  # the port is known, nothing listens
    try:
        async with gateway(tmp_path, invokeai_url, database_url) as http:
            join = await join_three(http, workflows_dir)
            events = ["queued", "completed"]
            runs = [
                await start_run(
                    http,
                    join["id"],
                    {"inputs": words(), "webhook_url": receiver.url, "webhook_events": events},
                )
                for _ in range(5)
            ]

            async def all_failed_twice() -> bool:
                for run in runs:
                    log = await deliveries(http, run["id"])
                    if len(log) != 2 or any(d["attempt_count"] < 2 for d in log):
                        return False
                return True

            await wait_until(all_failed_twice)
            receiver.up()
            logs = [await settled(http, run["id"], 2) for run in runs]
            got = by_id(await receiver.until(lambda g: len(by_id(g)) >= 10))
    finally:
        receiver.down()
    expected = {d["id"] for log in logs for d in log}
    assert set(got) == expected  # every delivery arrived (at least once)
    assert all(got[i].verified for i in expected)
    failed_attempts = 0
    for log in logs:
        for delivery in log:
            assert delivery["status"] == "delivered"
            *before, last = delivery["attempts"]
            assert last["status_code"] == 200
            assert len(before) >= 2 and all(a["status_code"] is None for a in before)
            assert all("Connect" in (a["error"] or "") for a in before)
            failed_attempts += len(before)
    print(
        f"\nFIGURES receiver-down: deliveries={len(expected)} arrived={len(got)} "
        f"lost={len(expected - set(got))} failed_attempts_logged={failed_attempts}"
    )


async def test_error_answers_are_retried_and_logged(
    database_url: str | None, tmp_path: Path, invokeai_url: str, workflows_dir: Path
) -> None:
    with WebhookReceiver(secrets=[SECRET]) as receiver:
        receiver.status = 500
        async with gateway(tmp_path, invokeai_url, database_url) as http:
            join = await join_three(http, workflows_dir)
            run = await start_run(
                http, join["id"], {"inputs": words(), "webhook_url": receiver.url}
            )

            async def retried() -> bool:
                log = await deliveries(http, run["id"])
                return len(log) == 1 and log[0]["attempt_count"] >= 3

            await wait_until(retried)
            receiver.status = 204
            [delivery] = await settled(http, run["id"], 1)
        got = receiver.snapshot()
    codes = [a["status_code"] for a in delivery["attempts"]]
    assert codes[-1] == 204 and len(codes) >= 4 and set(codes[:-1]) == {500}
    assert delivery["attempts"][0]["error"] == "HTTP 500"
    assert [r.answered for r in got] == codes  # one request per logged attempt
    assert all(r.verified and r.msg_id == delivery["id"] for r in got)  # re-signed each try
    stamps = [r.headers["webhook-timestamp"] for r in got]
    assert stamps == sorted(stamps)


async def test_retry_window_closes_then_redeliver(
    database_url: str | None, tmp_path: Path, invokeai_url: str, workflows_dir: Path
) -> None:
    receiver = WebhookReceiver(secrets=[SECRET])
    receiver.up()
    receiver.down()
    try:
        async with gateway(
            tmp_path, invokeai_url, database_url, webhook_retry_window_seconds=1.5
        ) as http:
            join = await join_three(http, workflows_dir)
            run = await start_run(
                http, join["id"], {"inputs": words(), "webhook_url": receiver.url}
            )
            [failed] = await settled(http, run["id"], 1)
            assert failed["status"] == "failed" and failed["next_attempt_at"] is None
            assert failed["attempt_count"] >= 2 and "Connect" in failed["last_error"]

            receiver.up()
            again = await http.post(f"/runs/{run['id']}/deliveries/{failed['id']}/redeliver")
            assert again.status_code == 202, again.text
            copy = again.json()
            assert copy["id"] != failed["id"] and copy["status"] == "pending"
            log = await settled(http, run["id"], 2)
            got = await receiver.until(lambda g: len(g) >= 1)

            other = await start_run(http, join["id"], {"inputs": words()})
            wrong_run = await http.post(f"/runs/{other['id']}/deliveries/{failed['id']}/redeliver")
            unknown = await http.post(f"/runs/{run['id']}/deliveries/nope/redeliver")
            no_run = await http.get("/runs/nope/deliveries")
    finally:
        receiver.down()
    assert [d["status"] for d in log] == ["failed", "delivered"]
    [message] = got
    assert message.verified and message.msg_id == copy["id"]
    assert message.payload == failed["payload"]  # same event_id: receivers can dedupe
    assert wrong_run.status_code == 404 and unknown.status_code == 404
    assert no_run.status_code == 404
    assert wrong_run.headers["content-type"] == "application/problem+json"


async def test_a_backlog_larger_than_the_worker_takes_at_once_drains(
    database_url: str | None, tmp_path: Path, invokeai_url: str, workflows_dir: Path
) -> None:
    fan_out = 100  # above the worker's in-flight bound (64)
    with WebhookReceiver(secrets=[SECRET]) as receiver:
        async with gateway(tmp_path, invokeai_url, database_url) as http:
            join = await join_three(http, workflows_dir)
            for n in range(fan_out):
                body = {"url": f"{receiver.url}?n={n}", "event_types": ["completed"]}
                assert (await http.post("/webhooks", json=body)).status_code == 201
            run = await start_run(http, join["id"], {"inputs": words()})
            log = await settled(http, run["id"], fan_out)
        got = receiver.snapshot()
    assert all(d["status"] == "delivered" for d in log)
    assert set(by_id(got)) == {d["id"] for d in log}
    assert all(r.verified for r in got)
    print(f"\nFIGURES fan-out: deliveries={fan_out} arrived={len(by_id(got))} requests={len(got)}")
