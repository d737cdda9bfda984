"""One event vocabulary: the OpenAPI schema, the webhook names, the docs and the events really
emitted all agree with ``RunEventType`` and ``EVENT_SPECS``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse

from app.core.config import Settings
from app.main import create_app
from app.schemas.events import (
    DEFAULT_WEBHOOK_EVENTS,
    EVENT_SPECS,
    TERMINAL_EVENT_TYPES,
    WEBHOOK_EVENT_NAMES,
    RunEventPublic,
    RunEventType,
    event_table_markdown,
    webhook_table_markdown,
)
from tests.app.conftest import load_json, register

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"
WEBHOOK_DOCS = DOCS.with_name("webhooks.md")
REF = {"$ref": "#/components/schemas/RunEventPublic"}


def test_every_type_has_its_spec_and_the_terminal_set_is_the_runs_end() -> None:
    assert set(EVENT_SPECS) == set(RunEventType)
    assert {"run.succeeded", "run.failed", "run.canceled"} == TERMINAL_EVENT_TYPES
    assert DEFAULT_WEBHOOK_EVENTS == ("completed", "failed", "canceled")


def test_the_docs_table_is_the_one_made_from_the_enum() -> None:
    text = DOCS.read_text()
    table = re.search(r"^\| `event` \|.*?(?=\n\n)", text, re.M | re.S)
    assert table is not None, "docs/events.md has no event table"
    assert table.group(0) == event_table_markdown()


def test_openapi_documents_the_sse_routes_with_run_event_public(tmp_path: Path) -> None:
    schema = create_app(Settings(data_dir=tmp_path)).openapi()
    for path in ("/runs/{run_id}/events", "/events"):
        content = schema["paths"][path]["get"]["responses"]["200"]["content"]
        assert content["text/event-stream"]["schema"]["$ref"] == REF["$ref"]
    components = schema["components"]["schemas"]
    assert components["RunEventType"]["enum"] == [t.value for t in RunEventType]
    assert "RunEventPublic" in components
    events = components["SubscriptionCreate"]["properties"]["event_types"]["anyOf"][0]
    assert events["items"]["enum"] == list(WEBHOOK_EVENT_NAMES)


@pytest.mark.invokeai
async def test_every_event_of_a_real_run_matches_its_payload_model(
    http: httpx.AsyncClient, workflows_dir: Path
) -> None:
    workflow = await register(
        http, load_json(workflows_dir / "join_three_strings_exposed_fields.json")
    )
    response = await http.post(
        f"/workflows/{workflow['id']}/runs", json={"inputs": {"0": "a", "2": "b"}}
    )
    assert response.status_code in (200, 202), response.text
    seen: list[dict[str, Any]] = []
    async with aconnect_sse(http, "GET", f"/runs/{response.json()['id']}/events") as source:
        seen = [sse.json() async for sse in source.aiter_sse()]
    kinds = [RunEventPublic.model_validate(event).event for event in seen]
    for event in seen:
        RunEventType(event["event"]).spec.payload.model_validate(event["data"])  # extra: forbid
    assert kinds[0] is RunEventType.run_queued and kinds[-1] is RunEventType.run_succeeded
    assert RunEventType.node_completed in kinds


def test_the_webhook_docs_table_is_the_one_made_from_the_specs() -> None:
    text = WEBHOOK_DOCS.read_text()
    table = re.search(r"^\| event name \(what you send\) \|.*?(?=\n\n)", text, re.M | re.S)
    assert table is not None, "docs/webhooks.md has no event-name table"
    assert table.group(0) == webhook_table_markdown()
