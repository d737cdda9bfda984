"""The pure part of webhooks: event names, payloads, retry timing, the outbound URL policy."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest

from app.schemas.events import WEBHOOK_EVENT_NAMES, run_event_type_for_webhook
from app.webhooks.policy import (
    Target,
    WebhookTargetRefused,
    address_refusal,
    build_payload,
    check_target,
    event_name_for,
    next_attempt,
    retry_delay,
    wants,
)
from app.webhooks.worker import body_bytes
from invokeai_py_client.webhooks import generate_secret, verify_signature, webhook_headers

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
RUN = {
    "id": "r1",
    "workflow_id": "w1",
    "workflow_version": 2,
    "status": "succeeded",
    "created_at": T0,
    "started_at": T0 + timedelta(seconds=1),
    "finished_at": T0 + timedelta(seconds=3),
    "outputs": [
        {"node_id": "n1", "label": "Out", "image_names": ["a b.png"], "values": [], "x": 1}
    ],
    "error": None,
    "inputs": {"0": "a long prompt that a slim payload does not repeat"},
}


def test_event_names_map_to_run_event_types() -> None:
    mapping = {name: run_event_type_for_webhook(name).value for name in WEBHOOK_EVENT_NAMES}
    assert mapping == {
        "queued": "run.queued",
        "started": "run.started",
        "progress": "node.progress",
        "completed": "run.succeeded",
        "failed": "run.failed",
        "canceled": "run.canceled",
    }
    assert event_name_for("run.succeeded") == "completed"
    assert event_name_for("node.started") is None
    assert event_name_for("node.completed") is None


def test_default_events_are_the_terminal_ones() -> None:
    assert [n for n in WEBHOOK_EVENT_NAMES if wants(n, None)] == ["completed", "failed", "canceled"]
    assert wants("progress", ["progress"]) and not wants("completed", ["progress"])
    assert not wants("completed", [])


def test_terminal_payload_is_slim_with_output_urls() -> None:
    payload = build_payload(
        event_type="run.succeeded", event_id=7, event_time=T0, event_data={}, run=RUN
    )
    assert payload["type"] == "run.succeeded"
    assert payload["timestamp"] == T0.isoformat()
    data = payload["data"]
    assert data["event"] == "completed" and data["event_id"] == 7
    assert (data["run_id"], data["workflow_id"], data["status"]) == ("r1", "w1", "succeeded")
    assert data["finished_at"] == (T0 + timedelta(seconds=3)).isoformat()
    assert data["outputs"] == [
        {
            "node_id": "n1",
            "label": "Out",
            "images": [{"image_name": "a b.png", "url": "/images/a%20b.png"}],
            "values": [],
        }
    ]
    assert data["error"] is None
    assert "inputs" not in data and "progress" not in data
    assert data["links"]["run"] == "/runs/r1"


def test_progress_payload_carries_the_progress_only() -> None:
    event = {"node_id": "d", "node_type": "denoise", "percentage": 0.5, "message": "", "x": 1}
    payload = build_payload(
        event_type="node.progress",
        event_id=3,
        event_time=T0,
        event_data=event,
        run={**RUN, "status": "running"},
    )
    assert payload["data"]["progress"] == {
        "node_id": "d",
        "node_type": "denoise",
        "percentage": 0.5,
        "message": "",
    }
    assert "outputs" not in payload["data"]


def test_failed_payload_carries_the_error() -> None:
    error = {"error_type": "E", "error_message": "m", "node_id": "n", "node_type": "t"}
    run = {**RUN, "status": "failed", "outputs": None, "error": error}
    payload = build_payload(
        event_type="run.failed", event_id=1, event_time=T0, event_data={}, run=run
    )
    assert payload["data"]["error"] == error and payload["data"]["outputs"] == []


def test_signed_bytes_verify() -> None:
    secret = generate_secret()
    payload = build_payload(
        event_type="run.succeeded", event_id=7, event_time=T0, event_data={}, run=RUN
    )
    body = body_bytes(payload)
    headers = webhook_headers(body, secret, msg_id="d1", timestamp=100)
    verify_signature(body, headers, secret, now=100)


def test_retry_delay_doubles_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(1)
    delays = [retry_delay(n, base=1.0, cap=8.0, rng=rng) for n in range(1, 8)]
    ceilings = [1, 2, 4, 8, 8, 8, 8]
    for delay, ceiling in zip(delays, ceilings, strict=True):
        assert 0.75 * ceiling <= delay <= ceiling
    assert len(set(delays)) == len(delays)  # jittered


def test_next_attempt_gives_up_after_the_window() -> None:
    rng = random.Random(2)
    attempt = partial(next_attempt, created_at=T0, window=60.0, base=10.0, cap=40.0, rng=rng)
    first = attempt(attempts=1, now=T0)
    assert first is not None
    assert T0 + timedelta(seconds=7.5) <= first <= T0 + timedelta(seconds=10)
    assert attempt(attempts=3, now=T0 + timedelta(seconds=55)) is None


def test_next_attempt_honors_retry_after_within_the_cap() -> None:
    rng = random.Random(3)
    attempt = partial(next_attempt, created_at=T0, window=3600.0, base=1.0, cap=30.0, rng=rng)
    assert attempt(attempts=1, now=T0, retry_after=20.0) == T0 + timedelta(seconds=20)
    assert attempt(attempts=1, now=T0, retry_after=999.0) == T0 + timedelta(seconds=30)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.5.6.7",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2001:db8::1",
    ],
)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses_pass(address: str) -> None:
    assert address_refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost/hook", "loopback"),  # resolved, not trusted by name
        ("http://[::1]/hook", "loopback"),
        ("http://10.0.0.5/hook", "private"),
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://0x7f000001/hook", "cannot resolve|loopback"),
        ("ftp://example.com/hook", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("http:///hook", "needs a host"),
        ("http://user:pw@93.184.215.14/hook", "credentials"),
        ("http://93.184.215.14:99999/hook", "not a valid URL"),
        ("http://no-such-host.invalid/hook", "cannot resolve"),
    ],
)
async def test_policy_refuses(url: str, reason: str) -> None:
    with pytest.raises(WebhookTargetRefused, match=reason) as caught:
        await check_target(url, allow_private=False)
    assert caught.value.status_code == 422


async def test_policy_passes_public_and_allows_private_when_told() -> None:
    target = await check_target("https://93.184.215.14:8443/h?x=1", allow_private=False)
    assert target.address == "93.184.215.14"
    allowed = await check_target("http://127.0.0.1:9/hook", allow_private=True)
    assert allowed.address is None and allowed.pinned_url() == "http://127.0.0.1:9/hook"
    with pytest.raises(WebhookTargetRefused, match="http:// or https://"):
        await check_target("gopher://127.0.0.1/", allow_private=True)


def test_pinned_url_connects_to_the_checked_address_and_keeps_the_host() -> None:
    target = Target(
        url="https://hooks.example.com:8443/a/b?c=d",
        host="hooks.example.com",
        address="93.184.215.14",
    )
    assert target.pinned_url() == "https://93.184.215.14:8443/a/b?c=d"
    assert target.host_header() == "hooks.example.com:8443"
    v6 = Target(url="http://h.example/x", host="h.example", address="2606:4700::1")
    assert v6.pinned_url() == "http://[2606:4700::1]/x"
    assert v6.host_header() == "h.example"


@pytest.mark.parametrize("host", ["a" * 70 + ".com", "a..b", "exa\u00e4mple.invalid", "a\x00b"])
async def test_policy_refuses_names_that_cannot_resolve(host: str) -> None:
    with pytest.raises(WebhookTargetRefused, match="cannot resolve"):
        await check_target(f"http://{host}/hook", allow_private=False)


def test_an_event_nobody_wants_is_stored_without_reading_the_run(tmp_path: Path) -> None:
    """The follower passes the run's own webhook: a node event that no target wants is stored
    alone; one its webhook wants still gets its delivery (the run read for the payload)."""
    from sqlmodel import Session, select

    from app.db.engine import make_engine, run_migrations
    from app.db.outbox import add_run_event_with_deliveries
    from app.db.tables import Run, Workflow
    from app.db.webhook_tables import WebhookDelivery

    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    run_migrations(url)
    engine = make_engine(url)
    hook = "https://hooks.example/run"
    with Session(engine) as session:
        session.add(Workflow(id="w", definition={}, inputs=[]))
        session.commit()  # the workflow before its run (no ORM relationship orders them)
        session.add(Run(id="r", workflow_id="w", workflow_version=1, inputs={}, webhook_url=hook,
                        webhook_events=["progress"]))  # fmt: skip
        session.commit()
    cases = [((None, None), 0), ((hook, None), 0), ((hook, ["progress"]), 1)]
    for webhook, deliveries in cases:
        with engine.begin() as connection:
            add_run_event_with_deliveries(
                connection=connection,
                run_id="r",
                workflow_id="w",
                event_type="node.progress",
                data={"percentage": 0.5},
                webhook=webhook,
            )
        with Session(engine) as session:
            found = session.exec(select(WebhookDelivery)).all()
            assert len(found) == deliveries, webhook
    assert found[0].url == hook and found[0].event_type == "node.progress"
