"""Standard Webhooks signing and verification, for the gateway and for webhook receivers.

A message is signed as ``HMAC-SHA256(key, f"{webhook-id}.{webhook-timestamp}.{body}")`` with
the key taken from a ``whsec_<base64>`` secret, and sent as
``webhook-signature: v1,<base64 signature>`` (several space-separated signatures during a
secret rotation). The HMAC itself comes from the maintained ``standardwebhooks`` package
(imported lazily: only signing and verifying need it).

Example:
    >>> secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    >>> body = b'{"type":"run.succeeded"}'
    >>> headers = webhook_headers(body, [secret], msg_id="msg_1", timestamp=1700000000)
    >>> headers["webhook-signature"].startswith("v1,")
    True
    >>> verify_signature(body, headers, secret, now=1700000010)
"""

from __future__ import annotations

import base64
import hmac
import secrets as _secrets
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ._retry import parse_retry_after
from .exceptions import InvalidWebhookSignatureError

__all__ = [
    "DEFAULT_TOLERANCE",
    "SECRET_PREFIX",
    "generate_secret",
    "parse_retry_after",  # a sender honours the Retry-After of a receiver that answers 429/503
    "parse_secrets",
    "sign",
    "verify_signature",
    "webhook_headers",
]

SECRET_PREFIX = "whsec_"
DEFAULT_TOLERANCE = 300  # seconds a timestamp may differ from now (the spec's 5 minutes)


def generate_secret(nbytes: int = 32) -> str:
    """A new random ``whsec_`` secret."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(nbytes)).decode()


def parse_secrets(value: str | Sequence[str]) -> list[str]:
    """Secrets from one string (comma-separated during rotation) or a list; blanks dropped.

    Example:
        >>> parse_secrets("whsec_AAAA, whsec_BBBB")
        ['whsec_AAAA', 'whsec_BBBB']
    """
    items = value.split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item.strip()]


def _signer(secret: str) -> Any:
    from standardwebhooks.webhooks import Webhook

    encoded = secret.strip().removeprefix(SECRET_PREFIX)
    try:
        # Strict decoding: the library skips stray characters, which would hide a typo.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except ValueError:
        key = b""
    if not key:
        # The secret itself must never reach a log or a message.
        raise ValueError("not a valid webhook secret (expected whsec_<base64>)")
    return Webhook(key)


def sign(payload: bytes, secret: str, msg_id: str, timestamp: int) -> str:
    """The ``v1,<base64>`` signature of ``payload`` for ``msg_id`` sent at ``timestamp``.

    Raises:
        ValueError: ``secret`` is not a valid ``whsec_`` secret.
    """
    stamp = datetime.fromtimestamp(int(timestamp), tz=UTC)
    signature: str = _signer(secret).sign(msg_id, stamp, payload.decode())
    return signature


def webhook_headers(
    payload: bytes, secrets: str | Sequence[str], *, msg_id: str, timestamp: int
) -> dict[str, str]:
    """The three Standard Webhooks headers, one signature per secret (space-separated)."""
    signatures = [sign(payload, s, msg_id, timestamp) for s in parse_secrets(secrets)]
    if not signatures:
        raise ValueError("no webhook secret to sign with")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": " ".join(signatures),
    }


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    raise InvalidWebhookSignatureError(f"missing header {name}")


def _timestamp(raw: str, tolerance: float, now: float | None) -> int:
    try:
        stamp = int(raw)
    except ValueError as exc:
        raise InvalidWebhookSignatureError("webhook-timestamp is not an integer") from exc
    current = time.time() if now is None else now
    if abs(current - stamp) > tolerance:
        raise InvalidWebhookSignatureError(
            f"webhook-timestamp is {int(current - stamp)} s away from now (tolerance {tolerance})"
        )
    return stamp


def _offered(header: str) -> list[bytes]:
    offered = []
    for part in header.split():
        version, _, value = part.partition(",")
        if version != "v1":
            continue  # other schemes (v1a: asymmetric) are not ours to check
        try:
            offered.append(base64.b64decode(value, validate=True))
        except ValueError:
            continue
    return offered


def verify_signature(
    payload: bytes,
    headers: Mapping[str, str],
    secret: str | Sequence[str],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> None:
    """Check that ``payload`` came with a valid signature by one of the accepted secrets.

    Args:
        payload: The raw request body, exactly as received.
        headers: The request headers (names in any case).
        secret: One ``whsec_`` secret, a comma-separated string of them, or a list (rotation).
        tolerance: Seconds the ``webhook-timestamp`` may be away from now (replay guard).
        now: The current Unix time (tests); default the clock.

    Raises:
        InvalidWebhookSignatureError: a header is missing, the timestamp is off, the body
            is not UTF-8, or no signature matches any secret.
        ValueError: a configured secret is not a valid ``whsec_`` secret.
    """
    msg_id = _header(headers, "webhook-id")
    stamp = _timestamp(_header(headers, "webhook-timestamp"), tolerance, now)
    offered = _offered(_header(headers, "webhook-signature"))
    accepted = parse_secrets(secret)
    if not accepted:
        raise ValueError("no webhook secret to verify with")
    try:
        payload.decode()
    except UnicodeDecodeError as exc:  # what we sign is UTF-8 JSON: this is not from us
        raise InvalidWebhookSignatureError("the body is not UTF-8 text") from exc
    for candidate in accepted:
        expected = base64.b64decode(sign(payload, candidate, msg_id, stamp).partition(",")[2])
        # Compare against every offered signature; constant time per comparison.
        if any(hmac.compare_digest(expected, given) for given in offered):
            return
    raise InvalidWebhookSignatureError("no signature matches an accepted secret")
