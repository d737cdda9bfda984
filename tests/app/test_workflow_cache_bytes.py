"""The workflows kept in memory for runs are bounded by bytes, not only by count.

Each registered workflow here is 6 MiB (a long ``notes`` field, as a file may have); running
each once puts it in the gateway's caches (its row and its parsed definition). Seven of them
would be 42 MiB; the caches keep at most their byte budgets.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from app.api.deps import WORKFLOW_CACHE_BYTES, WorkflowCache
from app.core.config import Settings
from app.workflows import PARSED_CACHE_BYTES, parsed_cache_bytes
from tests.app.conftest import load_json
from tests.app.live_server import serve_gateway

pytestmark = pytest.mark.invokeai

NOTES_BYTES = 6 * 1024 * 1024
WORKFLOWS = 7


async def test_big_workflows_do_not_pile_up_in_memory(
    gateway_settings: Settings, workflows_dir: Path
) -> None:
    workflow = load_json(workflows_dir / "join_three_strings_exposed_fields.json")
    async with (
        serve_gateway(gateway_settings.data_dir, gateway_settings.invokeai_url) as served,
        httpx.AsyncClient(base_url=served.url, timeout=60) as http,
    ):
        for number in range(WORKFLOWS):
            workflow["notes"] = f"{number}" + "x" * NOTES_BYTES
            registered = await http.post("/workflows", json=workflow)
            assert registered.status_code == 201, registered.text[:300]
            # A refused run still loads the workflow (and parses it) for checking the inputs.
            run = await http.post(
                f"/workflows/{registered.json()['id']}/runs", json={"inputs": {"99": 1}}
            )
            assert run.status_code == 422, run.text[:300]
        cache: WorkflowCache = served.app.state.workflow_cache
        assert 0 < cache.held_bytes <= WORKFLOW_CACHE_BYTES
        assert 0 < parsed_cache_bytes() <= PARSED_CACHE_BYTES
    assert max(WORKFLOW_CACHE_BYTES, PARSED_CACHE_BYTES) < WORKFLOWS * NOTES_BYTES
