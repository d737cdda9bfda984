"""Serve an ASGI app with uvicorn on a free loopback port, inside the test's event loop.

Endless responses (SSE) need a real server: httpx's ASGITransport buffers whole bodies.
Running uvicorn on the test's own loop lets a test publish to the app's broker directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serve(app: FastAPI, port: int | None = None) -> AsyncIterator[str]:
    """Run ``app`` until the block ends (on ``port`` or a free one); yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    # Signal handlers belong to the test runner, not to this embedded server.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # startup failed: raise its error
                raise RuntimeError("uvicorn exited during startup")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def serve_gateway(
    data_dir: Path, invokeai_url: str, **settings: Any
) -> AsyncIterator[Served]:
    """The real gateway app (``create_app``) on a temporary database, served by uvicorn."""
    from app.core.config import Settings
    from app.main import create_app

    app = create_app(Settings(invokeai_url=invokeai_url, data_dir=data_dir, **settings))
    async with serve(app) as url:
        yield Served(url=url, app=app)


@dataclass
class Served:
    url: str
    app: FastAPI


@contextlib.contextmanager
def gateway_process(
    data_dir: Path, invokeai_url: str, port: int, **env: str
) -> Iterator[subprocess.Popen[bytes]]:
    """The gateway as a real process (``python -m app serve``), for kill-and-restart tests.

    ``env`` adds ``GATEWAY_*`` settings; the machine's own are left out. The process is
    killed (SIGKILL) if it is still running when the block ends.
    """
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    command = [sys.executable, "-m", "app", "serve", "--port", str(port)]
    command += ["--data-dir", str(data_dir), "--invokeai-url", invokeai_url]
    process = subprocess.Popen(
        [*command, "--log-level", "warning"],
        cwd=ROOT,
        env={**clean, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


async def gateway_up(http: httpx.AsyncClient) -> bool:
    """Whether the gateway behind ``http`` answers ``/livez``."""
    try:
        return (await http.get("/livez")).status_code == 200
    except httpx.TransportError:
        return False
