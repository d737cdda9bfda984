"""Retry policy as pure functions, so it can be tested without a network.

Follows the SDKs of the field: retry connection errors, 408, 429 and 5xx, only for requests
that are safe to send twice; back off from 0.5 s doubling to 8 s with up to 25 % jitter, and
obey a short ``Retry-After``. A POST is never retried unless the caller says it is safe: an
enqueue sent twice would run twice (the queue repository mints the batch id and looks it up
instead).
"""

from __future__ import annotations

import email.utils
import random
import time

import httpx

from ._constants import INITIAL_RETRY_DELAY, MAX_RETRY_AFTER, MAX_RETRY_DELAY

__all__ = ["backoff", "is_idempotent", "parse_retry_after", "should_retry_status"]

_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
_RETRY_STATUSES = frozenset({408, 429})
_RNG = random.Random()


def is_idempotent(method: str) -> bool:
    """Whether a request with this method may be sent again after an unclear failure."""
    return method.upper() in _IDEMPOTENT_METHODS


def should_retry_status(status_code: int) -> bool:
    """Whether an error status is worth another try (timeouts, rate limits, server errors)."""
    return status_code in _RETRY_STATUSES or status_code >= 500


def parse_retry_after(response: httpx.Response | None, now: float | None = None) -> float | None:
    """Seconds asked for by ``Retry-After`` (delta or HTTP date), or None if absent or silly."""
    if response is None:
        return None
    raw = response.headers.get("retry-after")
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(raw) if raw else None
        if parsed is None:
            return None
        seconds = parsed.timestamp() - (now if now is not None else time.time())
    if 0 <= seconds <= MAX_RETRY_AFTER:
        return seconds
    return None


def backoff(
    attempt: int, retry_after: float | None = None, *, rng: random.Random | None = None
) -> float:
    """Delay before retry number ``attempt`` (0-based)."""
    if retry_after is not None:
        return retry_after
    delay = min(INITIAL_RETRY_DELAY * 2.0**attempt, MAX_RETRY_DELAY)
    jitter = (rng or _RNG).uniform(0, 0.25)
    return delay * (1 - jitter)
