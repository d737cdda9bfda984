"""Webhooks, the pure part: event names, payloads, retry timing, and the outbound URL policy.

Webhook event names (a run's ``webhook_events``, a subscription's ``event_types``) are those
of ``app.schemas.events``: each names one run event type (the ``type`` of the payload).
Without a choice, the terminal ones are delivered. A payload is slim (Standard Webhooks'
``{type, timestamp, data}``): ids, status, timestamps, output image URLs, error, progress.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from app.core.errors import GatewayError
from app.runs.outputs import outputs_with_urls
from app.schemas.events import DEFAULT_WEBHOOK_EVENTS, TERMINAL_EVENT_TYPES, RunEventType

__all__ = [
    "Target",
    "TargetUnresolved",
    "WebhookTargetRefused",
    "address_refusal",
    "build_payload",
    "check_target",
    "event_name_for",
    "next_attempt",
    "parse_target",
    "retry_delay",
    "wants",
]


def event_name_for(run_event_type: str) -> str | None:
    """The webhook event name of a run event type (None: never delivered, or unknown)."""
    try:
        return RunEventType(run_event_type).spec.webhook_name
    except ValueError:
        return None


def wants(name: str, selected: Iterable[str] | None) -> bool:
    """Whether a target that chose ``selected`` (None: the default) wants event ``name``."""
    return name in (DEFAULT_WEBHOOK_EVENTS if selected is None else tuple(selected))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _slim_outputs(outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "node_id": out.get("node_id"),
            "label": out.get("label"),
            "images": [{"image_name": i["image_name"], "url": i["url"]} for i in out["images"]],
            "values": out.get("values") or [],
        }
        for out in outputs_with_urls(outputs)
    ]


def build_payload(
    *,
    event_type: str,
    event_id: int,
    event_time: datetime,
    event_data: Mapping[str, Any],
    run: Mapping[str, Any],
) -> dict[str, Any]:
    """The JSON body of one delivery: the event, and the run as it stands at that event.

    ``run`` holds the run's columns (id, workflow_id, status, timestamps, outputs, error).
    ``data.event_id`` is the run event's id: redeliveries carry it too, so receivers can
    drop a notice they already handled.
    """
    data: dict[str, Any] = {
        "event": event_name_for(event_type),
        "event_id": event_id,
        "run_id": run["id"],
        "workflow_id": run["workflow_id"],
        "workflow_version": run.get("workflow_version"),
        "status": run.get("status"),
        "created_at": _iso(run.get("created_at")),
        "started_at": _iso(run.get("started_at")),
        "finished_at": _iso(run.get("finished_at")),
        "links": {"run": f"/runs/{run['id']}", "events": f"/runs/{run['id']}/events"},
    }
    if event_type == "node.progress":
        keys = ("node_id", "node_type", "percentage", "message")
        data["progress"] = {k: event_data.get(k) for k in keys}
    if event_type in TERMINAL_EVENT_TYPES:
        data["outputs"] = _slim_outputs(list(run.get("outputs") or []))
        data["error"] = run.get("error")
    return {"type": event_type, "timestamp": event_time.isoformat(), "data": data}


# -- retry timing ---------------------------------------------------------------------------


def retry_delay(attempts: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before the next try after ``attempts`` failed ones (>= 1).

    Exponential (base, 2 base, 4 base, ...) up to ``cap``, minus up to 25 % jitter so many
    deliveries failing together do not come back together.
    """
    delay = min(base * 2.0 ** max(attempts - 1, 0), cap)
    return delay * (1 - rng.uniform(0, 0.25))


def next_attempt(
    *,
    attempts: int,
    created_at: datetime,
    now: datetime,
    window: float,
    base: float,
    cap: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> datetime | None:
    """When to try a failed delivery again, or None when its retry window is over."""
    delay = retry_delay(attempts, base=base, cap=cap, rng=rng)
    if retry_after is not None:
        delay = min(max(delay, retry_after), cap)  # honor the receiver, within our cap
    due = now + timedelta(seconds=delay)
    return due if due <= created_at + timedelta(seconds=window) else None


# -- outbound URL policy --------------------------------------------------------------------


class WebhookTargetRefused(GatewayError):
    """A webhook URL the policy does not allow (scheme, host, or a non-public address)."""

    status_code = 422
    title = "Webhook URL refused"


def address_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why a delivery may not go to ``ip`` (None: a public unicast address)."""
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address: judge the address they lead to.
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is None and ip in ipaddress.IPv6Network("64:ff9b::/96"):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)  # NAT64
        if embedded is not None:
            reason = address_refusal(embedded)
            return f"{reason} (inside {ip})" if reason else None
        if ip.is_site_local:  # fec0::/10: deprecated, still routed inside some networks
            return f"{ip} is a site-local address"  # (some Python versions call it global)
    for flag in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
        if getattr(ip, f"is_{flag}"):
            return f"{ip} is a {flag.replace('_', '-')} address"
    if not ip.is_global:
        return f"{ip} is not a public address"
    return None


class TargetUnresolved(WebhookTargetRefused):
    """The host did not resolve (now): refused for a new URL, retried for a delivery."""


@dataclass(frozen=True)
class Target:
    """Where a delivery is sent: the URL, and the checked address to connect to."""

    url: str
    host: str
    address: str | None = None  # None: connect by name (private targets allowed)

    def pinned_url(self) -> str:
        """The URL with its host replaced by the checked address (no second DNS lookup)."""
        if self.address is None:
            return self.url
        parts = urlsplit(self.url)
        host = f"[{self.address}]" if ":" in self.address else self.address
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))

    def host_header(self) -> str:
        """The ``Host`` header of the original URL."""
        return urlsplit(self.url).netloc.rpartition("@")[2]


def parse_target(url: str) -> tuple[str, int]:
    """The host and port of an http(s) URL; ``WebhookTargetRefused`` when it is not one."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookTargetRefused(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise WebhookTargetRefused("a webhook URL must be http:// or https://")
    if not parts.hostname:
        raise WebhookTargetRefused("a webhook URL needs a host")
    if parts.username is not None or parts.password is not None:
        raise WebhookTargetRefused("a webhook URL must not carry credentials")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def _addresses(host: str, port: int) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError as exc:  # not a valid IDNA name: it never will be
        raise WebhookTargetRefused(f"cannot resolve {host!r}: not a valid name ({exc})") from exc
    except OSError as exc:
        raise TargetUnresolved(f"cannot resolve {host!r}: {exc}") from exc
    # Drop an IPv6 zone (fe80::1%eth0): the address itself is what the policy judges.
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


async def check_target(url: str, *, allow_private: bool) -> Target:
    """Check ``url`` against the outbound policy; resolve its host (every address must pass).

    Raises:
        WebhookTargetRefused: a bad URL, an unresolvable host, or (unless ``allow_private``)
            a loopback, private, link-local, reserved or otherwise non-public address.
    """
    host, port = parse_target(url)
    if allow_private:
        return Target(url=url, host=host)
    addresses = await _addresses(host, port)
    for address in addresses:
        reason = address_refusal(ipaddress.ip_address(address))
        if reason:
            raise WebhookTargetRefused(
                f"webhook URL host {host!r} resolves to a refused address: {reason} "
                "(set GATEWAY_WEBHOOK_ALLOW_PRIVATE=true to allow)"
            )
    return Target(url=url, host=host, address=addresses[0])
