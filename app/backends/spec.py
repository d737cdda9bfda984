"""The InvokeAI servers the gateway sends runs to, as ``INVOKEAI_URL`` lists them.

``INVOKEAI_URL`` is one URL or a comma-separated list. Each entry may carry a name (before an
``=``) and a weight (after a ``;``), so the first of these is the plain one-server case::

    http://127.0.0.1:9090
    gpu1=http://10.0.0.5:9090;weight=2, gpu2=http://10.0.0.6:9090

A backend without a name is called by its ``host:port``. Names are what the history records
(``run.backend``), so they should stay stable when a URL moves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["BackendSpec", "parse_backends"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclass(frozen=True)
class BackendSpec:
    """One InvokeAI server: what runs are recorded under (``name``), where it answers, and its
    share of the work relative to the others (``weight``)."""

    name: str
    url: str
    weight: int = 1


def _weight(entry: str, text: str) -> int:
    key, _, value = text.partition("=")
    if key.strip() != "weight" or not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"{entry!r}: expected ';weight=N' with N a whole number >= 1")
    return int(value)


def _one(entry: str) -> BackendSpec:
    head, *params = entry.split(";")
    name, url = head.split("=", 1) if "=" in head.split("://", 1)[0] else ("", head)
    name, url = name.strip(), url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{entry!r}: {url!r} is not an http(s) URL")
    if not name:
        name = parts.netloc
    elif not _NAME.match(name):
        raise ValueError(f"{entry!r}: a name is letters, digits, '.', '_' and '-' (<= 63)")
    weight = 1
    for param in params:
        weight = _weight(entry, param)
    return BackendSpec(name=name, url=url, weight=weight)


def parse_backends(value: str) -> list[BackendSpec]:
    """The backends of an ``INVOKEAI_URL`` value, in its order.

    Raises:
        ValueError: an entry is malformed, or two share a name (each named in the message).

    Example:
        >>> [b.name for b in parse_backends("a=http://h:1;weight=2, http://h:2")]
        ['a', 'h:2']
    """
    specs = [_one(entry) for entry in value.split(",") if entry.strip()]
    if not specs:
        raise ValueError("no InvokeAI URL is given")
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"backend names must differ; repeated: {', '.join(repeated)}")
    return specs
