"""Standard Webhooks signing: our signer against the standardwebhooks library and the spec."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from invokeai_py_client.exceptions import InvalidWebhookSignatureError, InvokeAIError
from invokeai_py_client.webhooks import (
    generate_secret,
    parse_secrets,
    sign,
    verify_signature,
    webhook_headers,
)

# The example of the Standard Webhooks specification (secret, id, timestamp, body, signature).
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_sign_matches_the_specification_example() -> None:
    assert sign(SPEC_BODY, SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP) == SPEC_SIGNATURE


def test_sign_is_hmac_sha256_over_id_timestamp_and_body() -> None:
    key = base64.b64decode(SPEC_SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{SPEC_ID}.{SPEC_TIMESTAMP}.".encode() + SPEC_BODY, hashlib.sha256)
    assert sign(SPEC_BODY, SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP) == (
        "v1," + base64.b64encode(digest.digest()).decode()
    )


def test_headers_verify_with_the_standardwebhooks_library() -> None:
    secret = generate_secret()
    body = json.dumps({"type": "run.succeeded", "run_id": "r1"}).encode()
    headers = webhook_headers(body, secret, msg_id="d1", timestamp=int(time.time()))
    assert Webhook(secret).verify(body, headers) == {"type": "run.succeeded", "run_id": "r1"}
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(body, headers)


def test_verify_accepts_a_signature_made_by_the_library() -> None:
    secret = generate_secret()
    body = b'{"a": 1}'
    now = int(time.time())
    signature = Webhook(secret).sign("m1", datetime.fromtimestamp(now, tz=UTC), body.decode())
    headers = {"Webhook-Id": "m1", "Webhook-Timestamp": str(now), "Webhook-Signature": signature}
    verify_signature(body, headers, secret)  # header names in any case


def test_rotation_signs_with_each_secret_and_verifies_with_any() -> None:
    old, new = generate_secret(), generate_secret()
    body = b"{}"
    headers = webhook_headers(body, f"{new},{old}", msg_id="m", timestamp=100)
    assert len(headers["webhook-signature"].split(" ")) == 2
    verify_signature(body, headers, old, now=100)
    verify_signature(body, headers, [new], now=100)
    only_new = webhook_headers(body, new, msg_id="m", timestamp=100)
    verify_signature(body, only_new, f"{old}, {new}", now=100)
    with pytest.raises(InvalidWebhookSignatureError):
        verify_signature(body, only_new, old, now=100)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"body": b'{"test": 2432232315}'}, "no signature matches"),
        ({"webhook-id": "msg_other"}, "no signature matches"),
        ({"webhook-timestamp": str(SPEC_TIMESTAMP + 1)}, "no signature matches"),
        ({"webhook-signature": "v1,bm90IGl0"}, "no signature matches"),
        ({"webhook-signature": "v2," + SPEC_SIGNATURE[3:]}, "no signature matches"),
        ({"webhook-signature": "v1,@@@"}, "no signature matches"),
        ({"webhook-timestamp": "soon"}, "not an integer"),
        ({"webhook-id": None}, "missing header webhook-id"),
        ({"webhook-signature": None}, "missing header webhook-signature"),
    ],
)
def test_verify_refuses_tampering(change: dict[str, object], reason: str) -> None:
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    body = SPEC_BODY
    for key, value in change.items():
        if key == "body":
            assert isinstance(value, bytes)
            body = value
        elif value is None:
            del headers[key]
        else:
            assert isinstance(value, str)
            headers[key] = value
    with pytest.raises(InvalidWebhookSignatureError, match=reason) as caught:
        verify_signature(body, headers, SPEC_SECRET, now=SPEC_TIMESTAMP)
    assert isinstance(caught.value, InvokeAIError)


def test_verify_accepts_one_good_signature_among_several() -> None:
    headers = {
        "webhook-id": SPEC_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": f"v1a,xyz v1,bm90IGl0 {SPEC_SIGNATURE}",
    }
    verify_signature(SPEC_BODY, headers, SPEC_SECRET, now=SPEC_TIMESTAMP)


def test_verify_refuses_old_and_future_timestamps() -> None:
    headers = webhook_headers(SPEC_BODY, SPEC_SECRET, msg_id=SPEC_ID, timestamp=SPEC_TIMESTAMP)
    verify_signature(SPEC_BODY, headers, SPEC_SECRET, now=SPEC_TIMESTAMP + 300)
    with pytest.raises(InvalidWebhookSignatureError, match="away from now"):
        verify_signature(SPEC_BODY, headers, SPEC_SECRET, now=SPEC_TIMESTAMP + 301)
    with pytest.raises(InvalidWebhookSignatureError, match="away from now"):
        verify_signature(SPEC_BODY, headers, SPEC_SECRET, now=SPEC_TIMESTAMP - 301)
    verify_signature(SPEC_BODY, headers, SPEC_SECRET, tolerance=10**10)


def test_bad_or_missing_secrets_are_value_errors_that_do_not_leak_the_secret() -> None:
    with pytest.raises(ValueError, match="not a valid webhook secret") as caught:
        sign(b"{}", "whsec_not*base64*at-all", "m", 1)
    assert "not*base64" not in str(caught.value)
    with pytest.raises(ValueError, match="no webhook secret"):
        webhook_headers(b"{}", " , ", msg_id="m", timestamp=1)
    headers = webhook_headers(b"{}", SPEC_SECRET, msg_id="m", timestamp=1)
    with pytest.raises(ValueError, match="no webhook secret"):
        verify_signature(b"{}", headers, [], now=1)


def test_parse_secrets_and_generate_secret() -> None:
    assert parse_secrets(" a ,b,, ") == ["a", "b"]
    assert parse_secrets(["a", " "]) == ["a"]
    secret = generate_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret != generate_secret()


def test_a_body_that_is_not_utf8_is_a_signature_error_in_a_real_receiver() -> None:
    """A receiver that relies on ``verify_signature`` refuses the body instead of crashing."""
    import httpx

    from tests.support.webhook_receiver import WebhookReceiver

    secret = generate_secret()
    body = b'{"type": "run.succeeded", "x": "\xff\xfe"}'
    headers = webhook_headers(b"{}", secret, msg_id="msg_1", timestamp=int(time.time()))
    with WebhookReceiver(secrets=[secret]) as receiver:
        response = httpx.post(receiver.url, content=body, headers=headers, timeout=10)
        assert response.status_code == 200  # the receiver answered (it did not crash)
        (got,) = receiver.snapshot()
    assert not got.verified and got.error == "the body is not UTF-8 text"
    with pytest.raises(InvalidWebhookSignatureError, match="UTF-8"):
        verify_signature(body, headers, secret)
