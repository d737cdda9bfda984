"""Who is calling: whether a request carries one of the configured API keys.

For routes open to everyone (``/readyz``) that show more to an authenticated caller.
"""

from __future__ import annotations

from starlette.requests import Request

from app.core.config import Settings
from app.core.security import key_matches

__all__ = ["is_trusted_caller"]


def is_trusted_caller(request: Request, settings: Settings) -> bool:
    """True for a request with a valid ``Authorization: Bearer`` key, or any request when no
    keys are set (the gateway then answers only local programs)."""
    keys = settings.api_key_list
    if not keys:
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip()) and key_matches(token.strip(), keys)
