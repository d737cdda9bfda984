"""The web console: static files served at ``/ui`` (no build step, no server-side state).

The page is plain HTML, CSS and JavaScript that uses the gateway's public HTTP API, exactly as
any other client does. Its files hold no data, so they are served without a key; every API
call the page makes carries the key the user entered (kept in ``sessionStorage``, for the tab).
Run events are read with ``fetch()`` and a stream parser rather than ``EventSource``, so the
key travels in the ``Authorization`` header and never in a URL.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

__all__ = ["CONSOLE_PATH", "STATIC_DIR", "mount_console"]

CONSOLE_PATH = "/ui"
STATIC_DIR = Path(__file__).resolve().parent / "static"


def mount_console(app: FastAPI) -> None:
    """Serve the console's files at ``/ui/`` (``index.html`` for the folder itself)."""
    app.mount(CONSOLE_PATH, StaticFiles(directory=STATIC_DIR, html=True), name="console")
