"""Two gateway replicas on one PostgreSQL database, in front of two real InvokeAI servers.

Both replicas are real processes (``python -m app serve`` with ``GATEWAY_CLUSTER=1``).
Runs are submitted to both in turn; each is sent once, to one server, and each of its
events reaches an SSE reader on the other replica, in order; each webhook delivery is made
once. Then the replica following the servers is SIGKILLed mid-run together with one of the
servers: the other replica takes the leases over, moves the lost server's runs, and every run
still ends, having run once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from sqlalchemy import create_engine, text

from invokeai_py_client import InvokeAIClient
from invokeai_py_client.webhooks import generate_secret
from tests.app.conftest import TIMEOUT, load_json, servers_followed, submit_run, wait_until
from tests.app.live_server import free_port, gateway_process, gateway_up
from tests.support import invokeai_server
from tests.support.postgres_server import PostgresServer
from tests.support.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.invokeai

DONE = {"succeeded", "failed", "canceled"}
NOISE = "noise_on_blank_canvas.json"  # 0 width, 1 height, 3 seed
RUNS = 200


@pytest.fixture
def database(postgres: PostgresServer) -> str:
    return postgres.fresh_database()


@contextlib.contextmanager
def _replica(
    tmp_path: Path, name: str, servers: str, database: str, secret: str, **extra: str
) -> Iterator[tuple[str, Any]]:
    port = free_port()
    env = extra | {
        "GATEWAY_CLUSTER": "1",
        "GATEWAY_DATABASE_URL": database,
        "GATEWAY_LEASE_SECONDS": "3",
        "GATEWAY_RECONCILE_INTERVAL": "0.5",
        "GATEWAY_MAX_UNFINISHED_RUNS": "2000",
        "GATEWAY_WEBHOOK_SECRET": secret,
        "GATEWAY_WEBHOOK_ALLOW_PRIVATE": "1",
    }
    with gateway_process(tmp_path / name, servers, port, **env) as process:
        yield f"http://127.0.0.1:{port}", process


@contextlib.asynccontextmanager
async def _clients(*urls: str) -> AsyncIterator[list[httpx.AsyncClient]]:
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=TIMEOUT))
            for url in urls
        ]
        for http in clients:
            await wait_until(lambda http=http: gateway_up(http), timeout=60)
        yield clients


async def _collect(http: httpx.AsyncClient, into: list[dict[str, Any]]) -> None:
    async with aconnect_sse(http, "GET", "/events") as source:
        async for sse in source.aiter_sse():
            if sse.event.startswith(("run.", "node.")):
                into.append({"id": int(sse.id)} | json.loads(sse.data))


async def _all_done(http: httpx.AsyncClient, ids: list[str]) -> list[dict[str, Any]] | None:
    runs = []
    for run_id in ids:
        run = (await http.get(f"/runs/{run_id}")).json()
        if run["status"] not in DONE:
            return None
        runs.append(run)
    return runs


async def _one_sweep_each(
    one: httpx.AsyncClient, two: httpx.AsyncClient, workflow_id: str
) -> list[dict[str, Any]]:
    """A sweep of three seeds posted to each replica; each, once all its runs are over."""
    body = {"inputs": {"0": 32, "1": 32}, "vary": {"3": [1011, 1012, 1013]}}
    posted = [
        await http.post(f"/workflows/{workflow_id}/batches", json=body) for http in (one, two)
    ]
    assert all(p.status_code == 202 for p in posted), [p.text for p in posted]

    async def over(batch_id: str) -> dict[str, Any] | None:
        batch: dict[str, Any] = (await one.get(f"/batches/{batch_id}")).json()
        return batch if batch["status"] in DONE else None

    return [await wait_until(lambda p=p: over(p.json()["id"]), timeout=60) for p in posted]


def _stored_events(database: str) -> dict[str, list[tuple[int, str]]]:
    engine = create_engine(database)
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, run_id, event_type FROM runevent ORDER BY id"))
        by_run: dict[str, list[tuple[int, str]]] = {}
        for event_id, run_id, event_type in rows:
            by_run.setdefault(run_id, []).append((event_id, event_type))
    engine.dispose()
    return by_run


async def _items_per_batch(urls: dict[str, str], runs: list[dict[str, Any]]) -> list[int]:
    counts = []
    for name, url in urls.items():
        async with InvokeAIClient.from_url(url) as direct:
            for run in runs:
                if run["backend"] == name:
                    counts.append(len(await direct.queue_repo.aget_items_by_batch(run["batch_id"])))
    return counts


async def _one_key_and_one_deadline(
    one: httpx.AsyncClient, two: httpx.AsyncClient, workflow_id: str
) -> tuple[list[str], str]:
    url = f"/workflows/{workflow_id}/runs"
    body = {"inputs": {"0": 32, "3": 7}}
    headers = {"Idempotency-Key": "same-key-both-replicas"}
    answers = await asyncio.gather(
        *(http.post(url, json=body, headers=headers) for http in (one, two, one, two))
    )
    assert all(a.status_code in (200, 202) for a in answers), [a.text for a in answers]
    slow = {"inputs": {"0": 4096, "1": 4096, "3": 8}}
    late = await two.post(url, json=slow, headers={"Cancel-After": "1"})
    assert late.status_code == 202, late.text
    run_id: str = late.json()["id"]
    await wait_until(lambda: _all_done(one, [run_id]), timeout=60)
    await asyncio.sleep(2.0)  # a second firing, from the other replica, would show now
    return [a.json()["id"] for a in answers], run_id


async def test_two_replicas_send_each_run_once_and_share_its_events(
    tmp_path: Path,
    invokeai_url: str,
    second_invokeai: str,
    database: str,
    workflows_dir: Path,
) -> None:
    servers = f"a={invokeai_url},b={second_invokeai}"
    secret = generate_secret()
    with (
        WebhookReceiver(secrets=[secret]) as receiver,
        _replica(tmp_path, "one", servers, database, secret) as (url_a, _),
        _replica(tmp_path, "two", servers, database, secret) as (url_b, _),
    ):
        async with _clients(url_a, url_b) as (one, two):
            await wait_until(lambda: servers_followed(one), timeout=30)
            await wait_until(lambda: servers_followed(two), timeout=30)
            hook = {"url": receiver.url, "event_types": ["completed"]}
            assert (await one.post("/webhooks", json=hook)).status_code == 201
            workflow = (await one.post("/workflows", json=load_json(workflows_dir / NOISE))).json()
            seen_on_two: list[dict[str, Any]] = []
            reader = asyncio.create_task(_collect(two, seen_on_two))
            await asyncio.sleep(0.5)  # the stream is open

            ids: list[str] = []
            via_one: list[str] = []
            for start in range(0, RUNS, 20):  # round-robin, 20 at a time
                chunk = range(start, start + 20)
                submitted = await asyncio.gather(
                    *(
                        submit_run(one if i % 2 == 0 else two, workflow["id"], {"0": 32, "3": i})
                        for i in chunk
                    )
                )
                ids += submitted
                via_one += [
                    run_id for i, run_id in zip(chunk, submitted, strict=True) if i % 2 == 0
                ]
            runs = await wait_until(lambda: _all_done(one, ids), timeout=300, interval=1.0)
            keyed, deadline = await _one_key_and_one_deadline(one, two, workflow["id"])
            sweeps = await _one_sweep_each(one, two, workflow["id"])
            swept = [r["run_id"] for sweep in sweeps for r in sweep["runs"]]
            wanted = RUNS + 1 + len(swept)
            await wait_until(lambda: len(receiver.snapshot()) >= wanted, timeout=60)
            await asyncio.sleep(1.0)  # anything late (a second delivery) would show now
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    assert {r["status"] for r in runs} == {"succeeded"}, [r["error"] for r in runs]
    spread = {name: sum(r["backend"] == name for r in runs) for name in ("a", "b")}
    assert spread["a"] > 0 and spread["b"] > 0, spread
    # Sent once: one queue item per run's batch, and one end per run.
    counts = await _items_per_batch({"a": invokeai_url, "b": second_invokeai}, runs)
    assert counts == [1] * RUNS
    stored = _stored_events(database)
    for run_id in ids:
        kinds = [kind for _, kind in stored[run_id]]
        assert kinds.count("run.queued") == 1 and kinds.count("run.succeeded") == 1, kinds
    # Each delivery made once (each is its own webhook-id), all signed alike: one per run
    # that succeeded (the 200, the one of the Idempotency-Key, and the sweeps').
    received = receiver.snapshot()
    delivered = sorted(json.loads(r.body)["data"]["run_id"] for r in received)
    assert delivered == sorted([*ids, keyed[0], *swept]) and all(r.verified for r in received)
    assert len({r.headers["webhook-id"] for r in received}) == len(received)
    # One Idempotency-Key sent to both replicas at once: one run. A Cancel-After deadline
    # set through either replica fires once.
    assert len(set(keyed)) == 1
    kinds = [kind for _, kind in stored[deadline]]
    assert kinds[-1] == "run.canceled" and kinds.count("run.canceled") == 1, kinds
    # A sweep accepted by either replica (one of them follows no server) runs once, in order.
    for sweep in sweeps:
        assert sweep["counts"]["succeeded"] == 3, sweep
        sweep_runs = [r["run_id"] for r in sweep["runs"]]
        assert [[k for _, k in stored[r]].count("run.queued") for r in sweep_runs] == [1, 1, 1]
        assert [len(r["outputs"][0]["image_names"]) for r in sweep["runs"]] == [1, 1, 1]
    # The reader on replica two saw every event of the runs sent to replica one, in order.
    for run_id in via_one:
        live = [(e["id"], e["event"]) for e in seen_on_two if e["run_id"] == run_id]
        assert live == stored[run_id], run_id


async def test_a_replica_and_a_server_killed_mid_run_lose_no_run(
    tmp_path: Path, invokeai_url: str, database: str, workflows_dir: Path
) -> None:
    """The replica following both servers and one server (its queue paused, so nothing of
    it ran: whether a run that ended there unseen ran twice is not knowable) die together."""
    root, port = tmp_path / "invokeai-root", free_port()
    lost = invokeai_server.start(root=root, port=port, extra_config="node_cache_size: 0\n")
    servers = f"a={invokeai_url},k={lost.url}"
    secret = generate_secret()
    extra = {"GATEWAY_BACKEND_GRACE": "2"}
    try:
        with _replica(tmp_path, "one", servers, database, secret, **extra) as (url_a, first):
            async with _clients(url_a) as (one,):
                await wait_until(lambda: servers_followed(one), timeout=30)  # one holds both
            async with InvokeAIClient.from_url(lost.url) as direct:
                await direct.queue_repo.apause_processor()  # k's runs wait on its queue
            with _replica(tmp_path, "two", servers, database, secret, **extra) as (url_b, _):
                async with _clients(url_a, url_b) as (one, two):
                    workflow = (
                        await one.post("/workflows", json=load_json(workflows_dir / NOISE))
                    ).json()
                    big = {"0": 1024, "1": 1024}
                    ids = [
                        await submit_run(one if i % 2 == 0 else two, workflow["id"], big | {"3": i})
                        for i in range(16)
                    ]
                    first.kill()  # SIGKILL the replica following both servers, mid-run,
                    lost.kill()  # and one of the servers, with runs on its queue
                    # While two takes the leases over, a run placed on the dead server is
                    # refused there and goes to the live one: each is accepted at once.
                    more = [
                        await submit_run(two, workflow["id"], big | {"3": 100 + i})
                        for i in range(4)
                    ]
                    runs = await wait_until(
                        lambda: _all_done(two, ids + more), timeout=300, interval=1.0
                    )
        assert [r["status"] for r in runs] == ["succeeded"] * 20, [r["error"] for r in runs]
        assert {r["backend"] for r in runs} == {"a"}  # k's runs moved after the grace
        # Executed once: each run's batches (its last, and the one it left on the killed
        # server if it moved) hold one completed item across both servers. The killed
        # server's own queue is read from its database file (it is not running).
        stored = _stored_batches(database)
        left_on_k = _completed_by_batch(root / "databases" / "invokeai.db")
        async with InvokeAIClient.from_url(invokeai_url) as on_a:
            for run in runs:
                completed = 0
                for backend, batch_id in stored[run["id"]]:
                    if backend == "k":
                        completed += left_on_k.get(batch_id, 0)
                    else:
                        items = await on_a.queue_repo.aget_items_by_batch(batch_id)
                        completed += sum(str(item.status) == "completed" for item in items)
                assert completed == 1, (run["id"], stored[run["id"]])
        assert any(backend == "k" for run in runs for backend, _ in stored[run["id"]])
    finally:
        lost.stop()


def _completed_by_batch(path: Path) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path)) as connection:
        rows = connection.execute(
            "SELECT batch_id, count(*) FROM session_queue WHERE status = 'completed' GROUP BY 1"
        )
        return {batch_id: count for batch_id, count in rows}


def _stored_batches(database: str) -> dict[str, list[tuple[str, str]]]:
    """Each run's (backend, batch id) as its ``run.queued`` events told them, in order."""
    engine = create_engine(database)
    query = text("SELECT run_id, data FROM runevent WHERE event_type = 'run.queued' ORDER BY id")
    with engine.connect() as connection:
        found: dict[str, list[tuple[str, str]]] = {}
        for run_id, data in connection.execute(query):
            data = json.loads(data) if isinstance(data, str) else data
            found.setdefault(run_id, []).append((data["backend"], data["batch_id"]))
    engine.dispose()
    return found
