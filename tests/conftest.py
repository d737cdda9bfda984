"""Shared fixtures: a clean environment, the real InvokeAI server, and clients on it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from invokeai_py_client import InvokeAIClient
from tests.support import invokeai_server

SHARED_WORKFLOWS = Path(__file__).resolve().parents[2] / "shared" / "workflows"
OWN_WORKFLOWS = Path(__file__).resolve().parent / "workflows"


@pytest.fixture(autouse=True)
def _clean_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxies would route loopback traffic away from the test server."""
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def invokeai_url() -> Iterator[str]:
    """URL of a real InvokeAI 6.14.2: ``INVOKEAI_TEST_URL`` or one this session starts."""
    with invokeai_server.running_server() as url:
        yield url


@pytest.fixture(scope="session")
def shipped_workflows_dir() -> Path:
    return invokeai_server.shipped_workflows_dir()


@pytest.fixture(scope="session")
def shared_workflows_dir() -> Path:
    path = Path(os.environ.get("SHARED_WORKFLOWS_DIR", SHARED_WORKFLOWS))
    assert path.is_dir(), f"example workflows not found at {path}"
    return path


@pytest.fixture
def client(invokeai_url: str) -> Iterator[InvokeAIClient]:
    """A sync-facade client on the real server."""
    with InvokeAIClient.from_url(invokeai_url) as c:
        yield c


@pytest.fixture
async def aclient(invokeai_url: str) -> AsyncIterator[InvokeAIClient]:
    """A client used from the test's event loop."""
    c = InvokeAIClient.from_url(invokeai_url)
    try:
        yield c
    finally:
        await c.aclose()
