"""Subscriptions over the API, their filters, secret rotation, and the outbound URL policy.

Against the real InvokeAI and a real receiver on loopback; the policy tests run the gateway
without ``GATEWAY_WEBHOOK_ALLOW_PRIVATE`` to prove loopback and private targets are refused,
at registration and again at send time.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from invokeai_py_client.webhooks import generate_secret
from tests.app.conftest import register, wait_until
from tests.app.test_webhooks_delivery import (
    SECRET,
    deliveries,
    gateway,
    join_three,
    settled,
    start_run,
    words,
)
from tests.support.webhook_receiver import Received, WebhookReceiver
from tests.support.workflow_factory import tiny_blur_workflow

pytestmark = pytest.mark.invokeai


def tag(received: Received) -> str:
    return parse_qs(urlsplit(received.path).query)["s"][0]


async def subscribe(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    response = await http.post("/webhooks", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    assert response.headers["location"] == f"/webhooks/{created['id']}"
    return created


async def ids(http: httpx.AsyncClient, **params: str) -> set[str]:
    response = await http.get("/webhooks", params=params)
    assert response.status_code == 200, response.text
    return {s["id"] for s in response.json()["data"]}


async def test_standing_subscriptions_filter_by_workflow_and_event(
    tmp_path: Path, invokeai_url: str, workflows_dir: Path
) -> None:
    with WebhookReceiver(secrets=[SECRET]) as receiver:
        async with gateway(tmp_path, invokeai_url) as http:
            a = await join_three(http, workflows_dir)
            b = await register(http, tiny_blur_workflow())
            s1 = await subscribe(
                http, url=receiver.url + "?s=1", workflow_id=a["id"], event_types=["completed"]
            )
            s2 = await subscribe(http, url=receiver.url + "?s=2", event_types=["queued"])
            s3 = await subscribe(http, url=receiver.url + "?s=3", workflow_id=b["id"])
            s4 = await subscribe(http, url=receiver.url + "?s=4", event_types=["failed"])
            assert s3["event_types"] == ["completed", "failed", "canceled"]
            assert (await http.get(f"/webhooks/{s1['id']}")).json() == s1
            assert await ids(http) == {s1["id"], s2["id"], s3["id"], s4["id"]}
            assert await ids(http, workflow_id=a["id"]) == {s1["id"], s2["id"], s4["id"]}
            assert await ids(http, event_type="queued") == {s2["id"]}
            assert await ids(http, workflow_id=b["id"], event_type="completed") == {s3["id"]}

            run_a = await start_run(http, a["id"], {"inputs": words()})
            run_b = await start_run(http, b["id"], {"inputs": {"1": 1.25}})
            log_a = await settled(http, run_a["id"], 2)
            log_b = await settled(http, run_b["id"], 2)
            got = await receiver.until(lambda g: len(g) >= 4)

            deleted = await http.delete(f"/webhooks/{s2['id']}")
            again = await http.delete(f"/webhooks/{s2['id']}")
            run_c = await start_run(http, a["id"], {"inputs": words()})
            log_c = await settled(http, run_c["id"], 1)
            bad_workflow = await http.post(
                "/webhooks", json={"url": receiver.url, "workflow_id": "nope"}
            )
            bad_event = await http.post(
                "/webhooks", json={"url": receiver.url, "event_types": ["done"]}
            )
    seen = sorted((tag(r), r.payload["data"]["run_id"], r.payload["type"]) for r in got)
    assert seen == sorted(
        [
            ("1", run_a["id"], "run.succeeded"),
            ("2", run_a["id"], "run.queued"),
            ("2", run_b["id"], "run.queued"),
            ("3", run_b["id"], "run.succeeded"),
        ]
    )
    assert all(r.verified for r in got)
    assert {d["subscription_id"] for d in log_a} == {s1["id"], s2["id"]}
    assert {d["subscription_id"] for d in log_b} == {s2["id"], s3["id"]}
    assert deleted.status_code == 204 and again.status_code == 404
    assert [d["subscription_id"] for d in log_c] == [s1["id"]]
    assert bad_workflow.status_code == 422 and bad_event.status_code == 422


async def test_rotation_signs_with_the_first_secret_and_old_receivers_can_tell(
    tmp_path: Path, invokeai_url: str, workflows_dir: Path
) -> None:
    old, new = generate_secret(), generate_secret()
    with (
        WebhookReceiver(secrets=[old, new]) as rotated,
        WebhookReceiver(secrets=[old]) as stale,
    ):
        async with gateway(tmp_path / "one", invokeai_url, webhook_secret=f"{new}, {old}") as http:
            join = await join_three(http, workflows_dir)
            await subscribe(http, url=stale.url)
            run = await start_run(http, join["id"], {"inputs": words(), "webhook_url": rotated.url})
            await settled(http, run["id"], 2)
        # Before the rotation: a gateway still on the old secret; rotated receivers accept it.
        async with gateway(tmp_path / "two", invokeai_url, webhook_secret=old) as http:
            join = await join_three(http, workflows_dir)
            run = await start_run(http, join["id"], {"inputs": words(), "webhook_url": rotated.url})
            await settled(http, run["id"], 1)
        got_rotated = rotated.snapshot()
        got_stale = stale.snapshot()
    assert len(got_rotated) == 2 and all(r.verified for r in got_rotated)
    [first, _] = got_rotated
    assert Webhook(new).verify(first.body, first.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(first.body, first.headers)
    [refused] = got_stale
    assert not refused.verified and refused.error and "no signature matches" in refused.error


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:{port}/hook",
        "http://localhost:{port}/hook",
        "http://[::1]:{port}/hook",
        "http://10.0.0.7/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:127.0.0.1]:{port}/hook",
        "ftp://93.184.215.14/hook",
    ],
)
async def test_policy_refuses_loopback_and_private_targets(
    tmp_path: Path, invokeai_url: str, workflows_dir: Path, url: str
) -> None:
    with WebhookReceiver(secrets=[SECRET]) as receiver:
        target = url.format(port=urlsplit(receiver.url).port)
        async with gateway(tmp_path, invokeai_url, webhook_allow_private=False) as http:
            join = await join_three(http, workflows_dir)
            subscription = await http.post("/webhooks", json={"url": target})
            run = await http.post(
                f"/workflows/{join['id']}/runs", json={"inputs": words(), "webhook_url": target}
            )
            history = (await http.get("/runs")).json()
            listed = (await http.get("/webhooks")).json()
    for refused in (subscription, run):
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["title"] == "Webhook URL refused"
    assert history["count"] == 0 and listed["count"] == 0  # nothing recorded, nothing sent
    assert receiver.snapshot() == []


async def test_policy_accepts_a_public_address(tmp_path: Path, invokeai_url: str) -> None:
    async with gateway(tmp_path, invokeai_url, webhook_allow_private=False) as http:
        created = await subscribe(http, url="https://93.184.215.14/hooks/invokeai")
        assert (await http.delete(f"/webhooks/{created['id']}")).status_code == 204


async def test_policy_is_checked_again_at_send_time(
    tmp_path: Path, invokeai_url: str, workflows_dir: Path
) -> None:
    with WebhookReceiver(secrets=[SECRET]) as receiver:
        async with gateway(tmp_path, invokeai_url) as http:  # private targets allowed
            join = await join_three(http, workflows_dir)
            await subscribe(http, url=receiver.url)
        # The same database, now with the policy on: the stored URL is not trusted.
        async with gateway(tmp_path, invokeai_url, webhook_allow_private=False) as http:
            run = await start_run(http, join["id"], {"inputs": words()})
            [delivery] = await settled(http, run["id"], 1)
            assert (await deliveries(http, run["id"])) == [delivery]
    assert delivery["status"] == "failed" and delivery["attempt_count"] == 1
    [attempt] = delivery["attempts"]
    assert attempt["status_code"] is None
    assert "refused by the URL policy" in attempt["error"] and "loopback" in attempt["error"]
    assert receiver.snapshot() == []


async def test_without_a_secret_one_is_generated_once_and_kept(
    tmp_path: Path, invokeai_url: str, workflows_dir: Path
) -> None:
    secret_file = tmp_path / "webhook-secret"
    async with gateway(tmp_path, invokeai_url, webhook_secret="") as http:
        join = await join_three(http, workflows_dir)
        secret = secret_file.read_text().strip()
        listed = (await http.get("/webhooks")).text
    assert secret.startswith("whsec_") and secret not in listed
    assert secret_file.stat().st_mode & 0o777 == 0o600
    with WebhookReceiver(secrets=[secret]) as receiver:
        async with gateway(tmp_path, invokeai_url, webhook_secret="") as http:  # restarted
            run = await start_run(
                http, join["id"], {"inputs": words(), "webhook_url": receiver.url}
            )
            await settled(http, run["id"], 1)
        [message] = receiver.snapshot()
    assert message.verified and secret_file.read_text().strip() == secret


async def test_the_secret_never_reaches_the_logs(
    tmp_path: Path,
    invokeai_url: str,
    workflows_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with WebhookReceiver(secrets=[SECRET]) as receiver:
        receiver.status = 500  # failed attempts are logged: they must not carry the secret
        async with gateway(tmp_path, invokeai_url) as http:
            join = await join_three(http, workflows_dir)
            run = await start_run(
                http, join["id"], {"inputs": words(), "webhook_url": receiver.url}
            )

            async def retried() -> bool:
                log = await deliveries(http, run["id"])
                return bool(log) and log[0]["attempt_count"] >= 2

            await wait_until(retried)
            receiver.status = 200
            await settled(http, run["id"], 1)
            openapi = (await http.get("/openapi.json")).text
    assert "webhook delivery" in caplog.text  # the failed attempts were logged
    key = SECRET.removeprefix("whsec_")
    assert key not in caplog.text and key not in openapi
