"""A workflow naming a node type the server lacks must not download ``/openapi.json`` each time.

The fake server is the one of ``test_schema`` (it counts schema downloads); what is tested is
the client's caching, not server behaviour.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from invokeai_py_client import InvokeAIClient
from invokeai_py_client.fields._schema_cache import clear_memory_cache
from tests.support.workflow_factory import WorkflowBuilder

from .test_schema import FakeServer, _node

ABSENT = "canny_image_processor"


class CountingServer(FakeServer):
    """Also counts every request, to show a cached answer asks the server nothing."""

    def __init__(self) -> None:
        super().__init__()
        self.requests = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return super().handler(request)


def workflow_with(*node_types: str) -> dict[str, Any]:
    b = WorkflowBuilder(name="mixed")
    for node_type in node_types:
        b.node(node_type, {})
    return b.build()


@pytest.fixture(autouse=True)
def _isolated_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INVOKEAI_PY_CLIENT_CACHE_DIR", str(tmp_path))
    clear_memory_cache()


@pytest.fixture
def server() -> CountingServer:
    return CountingServer()


@pytest.fixture
async def client(server: CountingServer) -> AsyncIterator[InvokeAIClient]:
    client = InvokeAIClient(host="fake-invokeai", transport=httpx.MockTransport(server.handler))
    yield client
    await client.aclose()


async def test_absent_type_downloads_the_schema_once(
    client: InvokeAIClient, server: CountingServer
) -> None:
    wf = workflow_with("img_blur", ABSENT)
    await client.workflow_repo.acreate_workflow(wf)
    assert server.downloads == 1
    before = server.requests
    await client.workflow_repo.acreate_workflow(wf)
    await client.workflow_repo.acreate_workflow(wf)
    assert server.downloads == 1
    assert server.requests == before, "a known-absent type must not even ask for the version"

    # Another client of the same server and version in this process: still no download.
    other = InvokeAIClient(host="fake-invokeai", transport=httpx.MockTransport(server.handler))
    schemas = await other.workflow_repo.aget_schemas({"img_blur", ABSENT})
    await other.aclose()
    assert server.downloads == 1
    assert schemas is not None and ABSENT not in schemas.node_types


async def test_a_new_absent_type_is_checked_once_more(
    client: InvokeAIClient, server: CountingServer
) -> None:
    await client.workflow_repo.acreate_workflow(workflow_with("img_blur", ABSENT))
    # A type never asked for before is looked for afresh (it may have been installed since).
    await client.workflow_repo.acreate_workflow(workflow_with("img_blur", "other_missing"))
    assert server.downloads == 2
    await client.workflow_repo.acreate_workflow(workflow_with(ABSENT, "other_missing"))
    assert server.downloads == 2


async def test_clearing_the_memory_cache_sees_an_installed_node_pack(
    client: InvokeAIClient, server: CountingServer
) -> None:
    await client.workflow_repo.acreate_workflow(workflow_with("img_blur", ABSENT))
    assert server.downloads == 1
    server.document["components"]["schemas"]["CannyInvocation"] = _node(
        ABSENT, "ImageOutput", low_threshold={"type": "integer", "default": 100}
    )
    clear_memory_cache()
    fresh = InvokeAIClient(host="fake-invokeai", transport=httpx.MockTransport(server.handler))
    schemas = await fresh.workflow_repo.aget_schemas({ABSENT})
    await fresh.aclose()
    assert server.downloads == 2
    assert schemas is not None and schemas.field(ABSENT, "low_threshold") is not None


async def test_absent_types_are_remembered_per_server_version(
    client: InvokeAIClient, server: CountingServer
) -> None:
    wf = workflow_with("img_blur", ABSENT)
    await client.workflow_repo.acreate_workflow(wf)
    server.version = "10.0.0"
    other = InvokeAIClient(host="fake-invokeai", transport=httpx.MockTransport(server.handler))
    await other.workflow_repo.acreate_workflow(wf)
    await other.workflow_repo.acreate_workflow(wf)
    await other.aclose()
    assert server.downloads == 2
