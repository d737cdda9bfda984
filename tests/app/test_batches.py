"""Batches (sweeps) over real HTTP against the real InvokeAI: one request, one InvokeAI batch,
each run at its place; the whole reported, streamed, replayed by key, refused with reasons."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import aconnect_sse
from PIL import Image, ImageColor

from app.db.claims import Claim
from app.db.engine import make_engine
from app.db.sweeps import claim_sweep
from app.db.tables import Run, RunStatus, Sweep
from invokeai_py_client import InvokeAIClient
from tests.app.conftest import load_json, register, wait_until
from tests.app.live_server import Served, free_port, gateway_process, gateway_up, serve_gateway
from tests.app.test_runs_api import data_url, png_bytes

pytestmark = pytest.mark.invokeai

TIMEOUT = httpx.Timeout(60.0)
# noise_on_blank_canvas: 0 width, 1 height, 3 seed, 5 amount, 6 colour noise (a boolean)
SMALL = {"0": 24, "1": 16}


@pytest.fixture(scope="module")
async def gw(
    invokeai_url: str, tmp_path_factory: pytest.TempPathFactory, module_database: dict[str, Any]
) -> AsyncIterator[Served]:
    settings = {"max_batch_runs": 12, **module_database}
    async with serve_gateway(tmp_path_factory.mktemp("batches"), invokeai_url, **settings) as s:
        yield s


@pytest.fixture
async def http(gw: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gw.url, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture(scope="module")
async def noise_id(gw: Served, workflows_dir: Path) -> str:
    async with httpx.AsyncClient(base_url=gw.url, timeout=TIMEOUT) as http:
        workflow = load_json(workflows_dir / "noise_on_blank_canvas.json")
        response = await http.post("/workflows", json=workflow)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def unique_seeds(count: int) -> list[int]:
    """Seeds no earlier run used: no output comes from InvokeAI's node cache."""
    start = uuid.uuid4().int % 1_000_000
    return [start + i for i in range(count)]


async def finished(http: httpx.AsyncClient, batch_id: str) -> dict[str, Any] | None:
    batch: dict[str, Any] = (await http.get(f"/batches/{batch_id}")).json()
    return batch if batch["finished"] else None


async def seeds_on_invokeai(
    aclient: InvokeAIClient, item_ids: list[int]
) -> list[tuple[int, float]]:
    """The (seed, amount) each queue item's own graph ran with, as InvokeAI stored it."""
    found = []
    for item_id in item_ids:
        item = await aclient.queue_repo.aget_item(item_id)
        assert item.session is not None
        noise = next(n for n in item.session["graph"]["nodes"].values() if n["type"] == "img_noise")
        found.append((noise["seed"], noise["amount"]))
    return found


async def test_a_product_sweep_is_one_invokeai_batch_with_each_run_at_its_place(
    http: httpx.AsyncClient, noise_id: str, aclient: InvokeAIClient
) -> None:
    seeds = unique_seeds(3)
    body = {"inputs": SMALL, "vary": {"3": seeds, "5": [0.1, 0.25]}}
    response = await http.post(f"/workflows/{noise_id}/batches", json=body)
    assert response.status_code == 202, response.text
    batch = response.json()
    assert batch["size"] == 6 and batch["mode"] == "product" and batch["one_batch"] is True
    assert response.headers["location"] == f"/batches/{batch['id']}"
    wanted = [(s, a) for s in seeds for a in (0.1, 0.25)]  # the first index varies slowest
    assert [(r["values"]["3"], r["values"]["5"]) for r in batch["runs"]] == wanted

    done = await wait_until(lambda: finished(http, batch["id"]), timeout=120)
    assert done["status"] == "succeeded"
    assert done["counts"] == {"queued": 0, "running": 0, "succeeded": 6, "failed": 0, "canceled": 0}
    runs = [(await http.get(f"/runs/{r['run_id']}")).json() for r in done["runs"]]
    assert len({run["batch_id"] for run in runs}) == 1  # one InvokeAI batch
    assert [run["batch"] for run in runs] == [
        {"id": batch["id"], "index": i, "url": f"/batches/{batch['id']}"} for i in range(6)
    ]
    item_ids = [run["item_id"] for run in runs]
    assert item_ids == sorted(item_ids) and len(set(item_ids)) == 6
    assert await seeds_on_invokeai(aclient, item_ids) == wanted  # each item is its run's
    names = [r["outputs"][0]["image_names"][0] for r in done["runs"]]
    assert len(set(names)) == 6  # an image per run, in order


async def test_a_zipped_sweep_pairs_the_lists_and_streams_every_run_to_its_end(
    http: httpx.AsyncClient, noise_id: str
) -> None:
    seeds = unique_seeds(3)
    body = {"inputs": SMALL, "vary": {"3": seeds, "5": [0.1, 0.2, 0.3]}, "mode": "zip"}
    response = await http.post(f"/workflows/{noise_id}/batches", json=body)
    assert response.status_code == 202, response.text
    batch = response.json()
    assert [(r["values"]["3"], r["values"]["5"]) for r in batch["runs"]] == list(
        zip(seeds, [0.1, 0.2, 0.3], strict=True)
    )
    run_ids = {r["run_id"] for r in batch["runs"]}
    terminal: list[str] = []
    async with aconnect_sse(http, "GET", f"/batches/{batch['id']}/events") as source:
        async for sse in source.aiter_sse():  # the stream ends after the last terminal event
            event = json.loads(sse.data)
            assert event["run_id"] in run_ids
            if event["event"] in ("run.succeeded", "run.failed", "run.canceled"):
                terminal.append(event["run_id"])
    assert sorted(terminal) == sorted(run_ids)


async def test_a_value_batches_cannot_vary_sends_one_batch_per_run_in_order(
    http: httpx.AsyncClient, noise_id: str, aclient: InvokeAIClient
) -> None:
    seed = unique_seeds(1)
    body = {"inputs": {**SMALL, "3": seed[0]}, "vary": {"6": [True, False, True]}}
    response = await http.post(f"/workflows/{noise_id}/batches", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["one_batch"] is False  # InvokeAI's batch data takes no booleans
    done = await wait_until(lambda: finished(http, response.json()["id"]), timeout=120)
    assert done["status"] == "succeeded", done
    item_ids = [r["item_id"] for r in done["runs"]]
    assert item_ids == sorted(item_ids)
    colour = []
    for item_id in item_ids:
        item = await aclient.queue_repo.aget_item(item_id)
        assert item.session is not None
        nodes = item.session["graph"]["nodes"].values()
        colour.append(next(n for n in nodes if n["type"] == "img_noise")["noise_color"])
    assert colour == [True, False, True]


async def test_a_sweep_over_uploaded_images_is_one_batch_each_run_cropping_its_own(
    http: httpx.AsyncClient, workflows_dir: Path
) -> None:
    crop = await register(http, load_json(workflows_dir / "crop_uploaded_image.json"))
    colours = ["red", "green", "blue"]
    images = [data_url(png_bytes((40 + i, 30), colour)) for i, colour in enumerate(colours)]
    body = {"inputs": {"3": 16, "4": 8}, "vary": {"0": images}}  # 0 image, 3 width, 4 height
    response = await http.post(f"/workflows/{crop['id']}/batches", json=body)
    assert response.status_code == 202, response.text
    batch = response.json()
    assert batch["one_batch"] is True  # uploaded images are names InvokeAI's batches carry
    uploaded = [r["values"]["0"] for r in batch["runs"]]
    assert len(set(uploaded)) == 3 and all(not v.startswith("data:") for v in uploaded)
    done = await wait_until(lambda: finished(http, batch["id"]), timeout=120)
    assert done["status"] == "succeeded", done
    for run, colour in zip(done["runs"], colours, strict=True):
        (name,) = [n for out in run["outputs"] for n in out["image_names"]]
        image = Image.open(io.BytesIO((await http.get(f"/images/{name}")).content)).convert("RGB")
        assert image.size == (16, 8)
        assert image.getpixel((0, 0)) == ImageColor.getrgb(colour)  # cropped from its own


async def test_shapes_that_make_no_sense_are_refused_naming_the_index(
    http: httpx.AsyncClient, noise_id: str
) -> None:
    url = f"/workflows/{noise_id}/batches"
    cases = [
        ({"vary": {"3": [1, 2], "5": [0.1]}, "mode": "zip"}, "zip needs lists of one length"),
        ({"inputs": {"3": 5}, "vary": {"3": [1, 2]}}, "both in inputs and in vary"),
        ({"vary": {"3": []}}, "empty"),
        ({"vary": {}}, "vary names no input"),
        ({"vary": {"3": list(range(4)), "5": [0.1, 0.2, 0.3, 0.4]}}, "16 runs; at most 12"),
    ]
    for body, reason in cases:
        response = await http.post(url, json=body)
        assert response.status_code == 422, (body, response.text)
        assert reason in response.json()["detail"], (body, response.json())


async def test_a_bad_value_in_one_run_names_its_place_and_records_nothing(
    http: httpx.AsyncClient, noise_id: str
) -> None:
    before = (await http.get("/runs", params={"workflow_id": noise_id, "limit": 500})).json()
    body = {"inputs": SMALL, "vary": {"5": [0.1, "lots", 0.3]}}
    response = await http.post(f"/workflows/{noise_id}/batches", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["detail"].startswith("run 1 of the batch: input 5 (Amount)")
    assert problem["errors"][0]["run_index"] == 1 and problem["errors"][0]["index"] == 5
    after = (await http.get("/runs", params={"workflow_id": noise_id, "limit": 500})).json()
    assert after["count"] == before["count"]


async def test_an_idempotency_key_returns_the_same_batch(
    http: httpx.AsyncClient, noise_id: str
) -> None:
    key = {"Idempotency-Key": f"sweep-{uuid.uuid4()}"}
    body = {"inputs": SMALL, "vary": {"3": unique_seeds(2)}}
    first = await http.post(f"/workflows/{noise_id}/batches", json=body, headers=key)
    again = await http.post(f"/workflows/{noise_id}/batches", json=body, headers=key)
    assert first.status_code == again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert [r["run_id"] for r in again.json()["runs"]] == [
        r["run_id"] for r in first.json()["runs"]
    ]
    other = {"inputs": SMALL, "vary": {"3": unique_seeds(2)}}
    conflict = await http.post(f"/workflows/{noise_id}/batches", json=other, headers=key)
    assert conflict.status_code == 409, conflict.text
    await wait_until(lambda: finished(http, first.json()["id"]), timeout=120)


async def test_canceling_a_batch_cancels_its_unfinished_runs(
    http: httpx.AsyncClient, noise_id: str
) -> None:
    body = {"inputs": {"0": 2048, "1": 2048}, "vary": {"3": unique_seeds(4)}}
    response = await http.post(f"/workflows/{noise_id}/batches", json=body)
    assert response.status_code == 202, response.text
    canceled = await http.post(f"/batches/{response.json()['id']}/cancel")
    assert canceled.status_code in (200, 202), canceled.text
    done = await wait_until(lambda: finished(http, response.json()["id"]), timeout=120)
    assert done["counts"]["canceled"] >= 3, done["counts"]  # the first may have been quick
    assert done["status"] == "canceled"


async def test_unknown_batch_is_404(http: httpx.AsyncClient) -> None:
    assert (await http.get("/batches/nope")).status_code == 404
    assert (await http.get("/batches/nope/events")).status_code == 404


def _pending_sweep(
    workflow_id: str, index: str, values: list[Any], *, one_batch: bool = True
) -> tuple[Sweep, list[Run]]:
    """A sweep accepted by a gateway that died before sending it: its runs all pending."""
    vary = {index: values}
    sweep = Sweep(workflow_id=workflow_id, workflow_version=1, fixed=SMALL, vary=vary)
    sweep.size, sweep.one_batch = len(values), one_batch
    shared = str(uuid.uuid4())
    runs = [
        Run(
            workflow_id=workflow_id,
            workflow_version=1,
            inputs={**SMALL, index: value},
            batch_id=shared if one_batch else str(uuid.uuid4()),
            status=RunStatus.queued.value,
            sweep_id=sweep.id,
            sweep_index=position,
        )
        for position, value in enumerate(values)
    ]
    return sweep, runs


async def test_a_sweep_left_unsent_by_a_dead_gateway_is_sent_after_restart(
    tmp_path: Path, invokeai_url: str, workflows_dir: Path, aclient: InvokeAIClient
) -> None:
    port = free_port()
    fast = {"GATEWAY_RECONCILE_INTERVAL": "1"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
        with gateway_process(tmp_path, invokeai_url, port, **fast):
            await wait_until(lambda: gateway_up(http))
            workflow = load_json(workflows_dir / "noise_on_blank_canvas.json")
            noise = (await http.post("/workflows", json=workflow)).json()
        seeds = unique_seeds(3)
        one = _pending_sweep(noise["id"], "3", seeds)  # sent as one batch
        each = _pending_sweep(noise["id"], "6", [True, False], one_batch=False)  # a boolean
        engine = make_engine(f"sqlite:///{tmp_path / 'gateway.db'}")
        for sweep, runs in (one, each):
            assert claim_sweep(engine, sweep, runs, cap=None) is Claim.CLAIMED
        engine.dispose()
        with gateway_process(tmp_path, invokeai_url, port, **fast):
            await wait_until(lambda: gateway_up(http))
            done = await wait_until(lambda: finished(http, one[0].id), timeout=120)
            done_each = await wait_until(lambda: finished(http, each[0].id), timeout=120)
    assert done["status"] == done_each["status"] == "succeeded", (done, done_each)
    item_ids = [r["item_id"] for r in done["runs"]]
    assert item_ids == sorted(item_ids)
    assert [s for s, _ in await seeds_on_invokeai(aclient, item_ids)] == seeds
    assert len({r["item_id"] for r in done_each["runs"]}) == 2
