"""Idempotency-Key, Cancel-After deadlines and the cap on unfinished runs, on the real InvokeAI.

The queue is checked on InvokeAI itself: every gateway run is enqueued with its run id as
the item's ``destination``, so "one queue item" is counted there, not in the gateway.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from app.db.engine import make_engine
from app.db.tables import Run
from app.main import create_app
from invokeai_py_client import InvokeAIClient
from tests.app.conftest import TIMEOUT, load_json, make_settings, register, wait_until
from tests.app.live_server import free_port, serve

pytestmark = pytest.mark.invokeai

WORKFLOW = "join_three_strings_exposed_fields.json"


@asynccontextmanager
async def gateway_http(
    tmp_path: Path, invokeai_url: str, **extra: Any
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(tmp_path, invokeai_url, **extra)
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
    ):
        http.settings = settings  # type: ignore[attr-defined]
        yield http


@pytest.fixture
def paused(client: InvokeAIClient) -> Iterator[None]:
    """InvokeAI's processor paused for the test (resumed whatever happens)."""
    client.queue_repo.pause_processor()
    try:
        yield
    finally:
        client.queue_repo.resume_processor()


async def _workflow(http: httpx.AsyncClient, workflows_dir: Path) -> str:
    body = await register(http, load_json(workflows_dir / WORKFLOW))
    return str(body["id"])


async def _items_of(aclient: InvokeAIClient, run_id: str) -> list[Any]:
    return list(await aclient.queue_repo.alist_all_items(destination=run_id))


async def test_twenty_concurrent_retries_make_one_queue_item(
    tmp_path: Path, invokeai_url: str, aclient: InvokeAIClient, workflows_dir: Path
) -> None:
    async with gateway_http(tmp_path, invokeai_url) as http:
        workflow_id = await _workflow(http, workflows_dir)
        key = f"retry-{uuid.uuid4()}"
        body = {"inputs": {"0": "once", "2": key}}

        async def post() -> httpx.Response:
            return await http.post(
                f"/workflows/{workflow_id}/runs", json=body, headers={"Idempotency-Key": key}
            )

        responses = await asyncio.gather(*(post() for _ in range(20)))
        assert all(r.status_code in (200, 202) for r in responses), [r.text for r in responses]
        ids = {r.json()["id"] for r in responses}
        assert len(ids) == 1
        run_id = ids.pop()
        replays = [r.headers.get("idempotent-replayed") for r in responses]
        assert replays.count(None) == 1 and replays.count("true") == 19
        items = await _items_of(aclient, run_id)
        assert len(items) == 1
        batch = await aclient.queue_repo.aget_batch_status(items[0].batch_id)
        assert batch.total == 1
        assert all(r.json()["batch_id"] == items[0].batch_id for r in responses)
        runs = (await http.get("/runs")).json()
        assert runs["count"] == 1

        # Once finished, the same request still answers with the original run (now 200).
        await wait_until(lambda: _status(http, run_id, "succeeded"), timeout=60)
        again = await post()
        assert again.status_code == 200 and again.json()["id"] == run_id
        assert again.json()["status"] == "succeeded"
        assert len(await _items_of(aclient, run_id)) == 1


async def _status(http: httpx.AsyncClient, run_id: str, wanted: str) -> bool:
    return bool((await http.get(f"/runs/{run_id}")).json()["status"] == wanted)


async def test_same_key_other_body_is_409(
    tmp_path: Path, invokeai_url: str, workflows_dir: Path
) -> None:
    async with gateway_http(tmp_path, invokeai_url) as http:
        workflow_id = await _workflow(http, workflows_dir)
        headers = {"Idempotency-Key": "k-409"}
        url = f"/workflows/{workflow_id}/runs"
        first = await http.post(url, json={"inputs": {"0": "a"}}, headers=headers)
        assert first.status_code == 202, first.text
        # Key order and whitespace do not make another request; another value does.
        same = await http.post(
            url, content=b'{ "inputs" : {"0":"a"} }', headers=headers | _json_type()
        )
        assert same.status_code in (200, 202) and same.json()["id"] == first.json()["id"]
        other = await http.post(url, json={"inputs": {"0": "b"}}, headers=headers)
        assert other.status_code == 409
        assert other.headers["content-type"] == "application/problem+json"
        assert first.json()["id"] in other.json()["detail"]
        deadline = await http.post(
            url, json={"inputs": {"0": "a"}}, headers=headers | {"Cancel-After": "30"}
        )
        assert deadline.status_code == 409  # a deadline is part of the request
        assert (await http.get("/runs")).json()["count"] == 1


def _json_type() -> dict[str, str]:
    return {"Content-Type": "application/json"}


async def test_keys_expire_after_the_ttl(
    tmp_path: Path, invokeai_url: str, workflows_dir: Path
) -> None:
    async with gateway_http(tmp_path, invokeai_url, idempotency_ttl_seconds=1.0) as http:
        workflow_id = await _workflow(http, workflows_dir)
        url = f"/workflows/{workflow_id}/runs"
        headers = {"Idempotency-Key": "short-lived"}
        first = (await http.post(url, json={"inputs": {"0": "t"}}, headers=headers)).json()
        await asyncio.sleep(1.5)
        second = await http.post(url, json={"inputs": {"0": "other"}}, headers=headers)
        assert second.status_code == 202, second.text
        assert second.json()["id"] != first["id"]
        assert (await http.get(f"/runs/{first['id']}")).status_code == 200  # the run stays


async def test_key_with_invokeai_down_is_503_and_not_recorded(
    tmp_path: Path, workflows_dir: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    async with gateway_http(tmp_path, down, retry_after_seconds=3) as http:
        workflow_id = await _workflow(http, workflows_dir)
        url = f"/workflows/{workflow_id}/runs"
        for _ in range(2):  # a retry with the key meets no leftover claim
            response = await http.post(url, json={"inputs": {}}, headers={"Idempotency-Key": "d"})
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "3"
        assert (await http.get("/runs")).json()["count"] == 0
        engine = make_engine(getattr(http, "settings").database_url)  # noqa: B009
        with Session(engine) as session:
            assert session.exec(select(Run)).all() == []


async def test_cap_on_unfinished_runs_answers_429(
    tmp_path: Path, invokeai_url: str, workflows_dir: Path, paused: None
) -> None:
    async with gateway_http(
        tmp_path, invokeai_url, max_unfinished_runs=2, retry_after_seconds=4
    ) as http:
        workflow_id = await _workflow(http, workflows_dir)
        url = f"/workflows/{workflow_id}/runs"
        accepted = [await http.post(url, json={"inputs": {"0": str(i)}}) for i in range(2)]
        assert [r.status_code for r in accepted] == [202, 202]
        refused = await http.post(url, json={"inputs": {"0": "third"}})
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "4"
        assert refused.headers["content-type"] == "application/problem+json"
        assert (await http.get("/runs")).json()["count"] == 2
        for response in accepted:
            await http.post(f"/runs/{response.json()['id']}/cancel")
        after = await http.post(url, json={"inputs": {"0": "fourth"}})
        assert after.status_code == 202, after.text
        await http.post(f"/runs/{after.json()['id']}/cancel")


@pytest.mark.parametrize("how", ["header", "body"])
async def test_deadline_cancels_an_unfinished_run(
    tmp_path: Path,
    invokeai_url: str,
    aclient: InvokeAIClient,
    workflows_dir: Path,
    paused: None,
    how: str,
) -> None:
    async with gateway_http(tmp_path, invokeai_url) as http:
        workflow_id = await _workflow(http, workflows_dir)
        body: dict[str, Any] = {"inputs": {"0": f"deadline-{how}"}}
        headers = {}
        if how == "header":
            headers["Cancel-After"] = "1"
        else:
            body["cancel_after"] = 1
        response = await http.post(f"/workflows/{workflow_id}/runs", json=body, headers=headers)
        assert response.status_code == 202, response.text
        run = response.json()

        async def ended() -> dict[str, Any] | None:
            got: dict[str, Any] = (await http.get(f"/runs/{run['id']}")).json()
            return got if got["status"] != "queued" else None

        done = await wait_until(ended, timeout=30)
        assert done["status"] == "canceled"
        assert done["error"]["error_type"] == "DeadlineExceeded"
        item = await aclient.queue_repo.aget_item(done["item_id"])
        assert str(item.status) == "canceled"


async def test_bad_deadline_and_key_are_422(
    tmp_path: Path, invokeai_url: str, workflows_dir: Path
) -> None:
    async with gateway_http(tmp_path, invokeai_url) as http:
        workflow_id = await _workflow(http, workflows_dir)
        url = f"/workflows/{workflow_id}/runs"
        for headers, body in (
            ({"Cancel-After": "soon"}, {}),
            ({"Cancel-After": "-1"}, {}),
            ({}, {"cancel_after": 0}),
            ({"Idempotency-Key": "x" * 300}, {}),
        ):
            response = await http.post(url, json=body, headers=headers)
            assert response.status_code == 422, (headers, body, response.text)
        assert (await http.get("/runs")).json()["count"] == 0
