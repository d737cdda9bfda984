"""Where parsed invocation schemas are kept: in memory per server, on disk per server version.

The server builds ``/openapi.json`` on request (about 2.5 s and 1.7 MB for InvokeAI 6.14.2 on a
CPU machine), so a client process that can reuse the parsed, slim form (a few hundred kB) starts
much faster. Disk files are written atomically, so processes sharing the folder never read a
half-written file; a broken or foreign file is ignored and replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .schema import SLIM_FORMAT, InvocationSchemas, parse_openapi

if TYPE_CHECKING:
    from .._http import HttpCore

__all__ = ["clear_memory_cache", "default_cache_dir", "load_cached_or_fetch", "schema_cache_path"]

CACHE_DIR_ENV = "INVOKEAI_PY_CLIENT_CACHE_DIR"

_MEMORY: dict[tuple[str, str], InvocationSchemas] = {}
# Node types that a fresh download of (server, version) did not have (a node pack that is not
# installed: the shipped ESRGAN, Face Detailer and Multi ControlNet workflows). Without this,
# every workflow naming one would download the whole document again (about 200 ms).
_ABSENT: dict[tuple[str, str], frozenset[str]] = {}


def default_cache_dir() -> Path:
    """``$INVOKEAI_PY_CLIENT_CACHE_DIR/schemas`` or ``~/.cache/invokeai-py-client/schemas``."""
    root = os.environ.get(CACHE_DIR_ENV)
    base = Path(root) if root else Path.home() / ".cache" / "invokeai-py-client"
    return base / "schemas"


def schema_cache_path(cache_dir: Path, version: str) -> Path:
    """File that holds the parsed schemas of one server version."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", version) or "unknown"
    return cache_dir / f"invokeai-{safe}.v{SLIM_FORMAT}.json"


def clear_memory_cache() -> None:
    """Forget every parsed schema held in memory (tests; a server upgraded in place, or a node
    pack installed without a version change, whose types were remembered as absent)."""
    _MEMORY.clear()
    _ABSENT.clear()


def read_disk(path: Path) -> InvocationSchemas | None:
    """The cached schemas in ``path``, or None if missing, unreadable or of another format."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return InvocationSchemas.from_slim(data)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_disk(path: Path, schemas: InvocationSchemas) -> None:
    """Write atomically; a read-only or missing home folder only costs the cache, not the call."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(schemas.to_slim(), handle, separators=(",", ":"))
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


def _parse_document(content: bytes, version: str) -> InvocationSchemas:
    document: Any = json.loads(content)
    return parse_openapi(document, version=version)


async def fetch_version(http: HttpCore) -> str:
    """The server's version string (``GET /api/v1/app/version``)."""
    body = await http.get_json("/app/version")
    version = body.get("version") if isinstance(body, dict) else None
    return str(version) if version else "unknown"


async def fetch_schemas(http: HttpCore, version: str) -> InvocationSchemas:
    """Download and parse ``/openapi.json`` (served at the root, not under the API prefix)."""
    response = await http.request("GET", f"{http.base_url}/openapi.json", absolute=True)
    # Parsing 1.7 MB takes tens of milliseconds: keep it off the caller's event loop.
    return await asyncio.to_thread(_parse_document, response.content, version)


def _covers(
    schemas: InvocationSchemas | None, require: frozenset[str], absent: frozenset[str]
) -> bool:
    """Whether ``schemas`` has every required type not already known to be absent."""
    return schemas is not None and require - absent <= schemas.node_types


def absent_after_download(
    downloaded: InvocationSchemas, require: frozenset[str], known_absent: frozenset[str]
) -> frozenset[str]:
    """The types a fresh download confirms missing: required or known absent, not in it."""
    return (require | known_absent) - downloaded.node_types


async def load_cached_or_fetch(
    http: HttpCore, *, cache_dir: Path | None, require: frozenset[str]
) -> InvocationSchemas:
    """Memory, then disk, then the server; see ``schema.load_invocation_schemas``."""
    version = await fetch_version(http)
    key = (http.base_url, version)
    absent = _ABSENT.get(key, frozenset())
    cached = _MEMORY.get(key)
    if _covers(cached, require, absent):
        assert cached is not None
        return cached
    path = schema_cache_path(cache_dir or default_cache_dir(), version)
    on_disk = await asyncio.to_thread(read_disk, path)
    if not _covers(on_disk, require, absent):
        on_disk = await fetch_schemas(http, version)
        await asyncio.to_thread(write_disk, path, on_disk)
        _ABSENT[key] = absent_after_download(on_disk, require, absent)
    assert on_disk is not None
    _MEMORY[key] = on_disk
    return on_disk
