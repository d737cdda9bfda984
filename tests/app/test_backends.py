"""Several InvokeAI servers behind one gateway (``INVOKEAI_URL`` lists them).

Two real InvokeAI servers: the session's, and a second one this module starts. Runs spread
over both, each run's data-URL image is uploaded to the server that runs it, a model is
named by the key one server gave it and still runs on the other, a model only one server
has sends its runs there, outputs are served whichever server made them, and a server that
does not answer gets no run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from app.core.config import Settings
from app.core.errors import InputInvalid, ServerRefused
from app.main import create_app
from app.runs.inputs import Unplaceable
from app.runs.lanes import Lane, place, placement_order
from invokeai_py_client import InvokeAIClient, IvkDnnModel
from tests.app.conftest import (
    TIMEOUT,
    load_json,
    make_settings,
    register,
    run_if,
    submit_run,
    wait_until,
)
from tests.app.live_server import free_port, serve
from tests.conftest import install_tiny
from tests.support import tiny_models

pytestmark = pytest.mark.invokeai

DONE = {"succeeded", "failed", "canceled"}
# noise_on_blank_canvas: 0 width, 1 height, 3 seed
NOISE = "noise_on_blank_canvas.json"


@pytest.fixture
def database_url() -> None:
    """SQLite: where runs are placed does not depend on the database."""
    return None


async def _gateway(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=TIMEOUT) as http,
    ):
        await wait_until(lambda: _all_healthy(http), timeout=30)
        yield http


async def _all_healthy(http: httpx.AsyncClient) -> bool:
    backends = (await http.get("/backends")).json()["data"]
    return all(b["healthy"] for b in backends if b["name"] != "dead")


@pytest.fixture
async def two(
    tmp_path: Path, invokeai_url: str, second_invokeai: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A gateway in front of both servers, named a and b."""
    settings = make_settings(tmp_path, f"a={invokeai_url}, b={second_invokeai}")
    async for http in _gateway(settings):
        yield http


async def _finished(http: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = await wait_until(lambda: run_if(http, run_id, DONE), timeout=120)
    return run


def _image_names(run: dict[str, Any]) -> list[str]:
    return [name for out in run["outputs"] for name in out["image_names"]]


async def test_runs_spread_over_both_servers_and_their_images_are_served(
    two: httpx.AsyncClient,
    workflows_dir: Path,
    invokeai_url: str,
    second_invokeai: str,
) -> None:
    workflow = await register(two, load_json(workflows_dir / NOISE))
    ids = await asyncio.gather(
        *(submit_run(two, workflow["id"], {"0": 32, "1": 32, "3": seed}) for seed in range(8))
    )
    runs = [await _finished(two, run_id) for run_id in ids]
    assert {r["status"] for r in runs} == {"succeeded"}, [r["error"] for r in runs]
    by_backend = {name: [r for r in runs if r["backend"] == name] for name in ("a", "b")}
    assert by_backend["a"] and by_backend["b"], [r["backend"] for r in runs]

    urls = {"a": invokeai_url, "b": second_invokeai}
    for name, placed in by_backend.items():
        other = urls["b" if name == "a" else "a"]
        async with (
            InvokeAIClient.from_url(urls[name]) as here,
            InvokeAIClient.from_url(other) as there,
        ):
            for run in placed:
                (image_name,) = _image_names(run)
                assert await here.board_repo.aimage_exists(image_name)  # made where it ran
                assert not await there.board_repo.aimage_exists(image_name)
                png = (await two.get(f"/images/{image_name}")).content  # either way
                assert Image.open(io.BytesIO(png)).size == (32, 32)
                thumbnail = await two.get(f"/images/{image_name}", params={"thumbnail": 1})
                assert thumbnail.status_code == 200
    assert (await two.get("/images/00000000-0000-0000-0000-000000000000.png")).status_code == 404


async def test_a_data_url_is_uploaded_to_the_server_that_runs_the_run(
    two: httpx.AsyncClient, workflows_dir: Path
) -> None:
    workflow = await register(two, load_json(workflows_dir / "crop_uploaded_image.json"))
    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), "red").save(buffer, format="PNG")
    data_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    inputs = {"0": data_url, "1": 0, "2": 0, "3": 16, "4": 16}
    ids = await asyncio.gather(*(submit_run(two, workflow["id"], inputs) for _ in range(4)))
    runs = [await _finished(two, run_id) for run_id in ids]
    assert {r["status"] for r in runs} == {"succeeded"}, [r["error"] for r in runs]
    assert {r["backend"] for r in runs} == {"a", "b"}
    for run in runs:  # the recorded input is the image uploaded where the run ran
        uploaded = run["inputs"]["0"]
        assert (await two.get(f"/images/{uploaded}")).status_code == 200


async def test_a_model_key_of_one_server_runs_on_the_other(
    two: httpx.AsyncClient,
    tiny_sd1: IvkDnnModel,
    second_invokeai: str,
    shipped_workflows_dir: Path,
) -> None:
    theirs = install_tiny(second_invokeai, tiny_models.SD1_NAME, "sd-1", "main")
    assert theirs.key != tiny_sd1.key  # each server gives its own keys
    workflow = await register(two, load_json(shipped_workflows_dir / "Text to Image - SD1.5.json"))
    index = {inp["label"]: str(inp["index"]) for inp in workflow["inputs"]}
    inputs = {index["model"]: tiny_sd1.key, index["Width"]: 64, index["Height"]: 64}
    ids = await asyncio.gather(*(submit_run(two, workflow["id"], inputs) for _ in range(2)))
    runs = [await _finished(two, run_id) for run_id in ids]
    assert {r["status"] for r in runs} == {"succeeded"}, [r["error"] for r in runs]
    assert {r["backend"] for r in runs} == {"a", "b"}

    models = (await two.get("/models", params={"type": "main"})).json()["data"]
    tiny = next(m for m in models if m["name"] == tiny_models.SD1_NAME)
    assert tiny["backends"] == ["a", "b"] and tiny["key"] == tiny_sd1.key


async def test_a_model_only_one_server_has_sends_every_run_there(
    two: httpx.AsyncClient,
    tiny_sd1: IvkDnnModel,
    tiny_sd1_lora: IvkDnnModel,
    shipped_workflows_dir: Path,
) -> None:
    # The LoRA is installed on the session's server (a) only: runs sent together, which
    # would otherwise spread over both, all go to a.
    workflow = await register(
        two, load_json(shipped_workflows_dir / "Text to Image with LoRA.json")
    )
    index = {inp["label"]: str(inp["index"]) for inp in workflow["inputs"]}
    inputs = {
        index["model"]: tiny_sd1.key,
        index["LoRA"]: tiny_sd1_lora.name,
        index["Width"]: 64,
        index["Height"]: 64,
    }
    ids = await asyncio.gather(*(submit_run(two, workflow["id"], inputs) for _ in range(2)))
    runs = [await _finished(two, run_id) for run_id in ids]
    assert [(r["status"], r["backend"]) for r in runs] == [("succeeded", "a")] * 2

    unknown = await two.post(
        f"/workflows/{workflow['id']}/runs",
        json={"inputs": inputs | {index["LoRA"]: "no-such-lora"}},
    )
    assert unknown.status_code == 422, unknown.text
    (problem,) = unknown.json()["errors"]
    assert problem["index"] == int(index["LoRA"]) and problem["label"] == "LoRA"
    assert "no-such-lora" in problem["reason"] and "servers a, b" in problem["reason"]


async def test_each_server_is_listed_with_its_health_queue_and_models(
    two: httpx.AsyncClient, tiny_sd1: IvkDnnModel
) -> None:
    listed = (await two.get("/backends")).json()
    assert [b["name"] for b in listed["data"]] == ["a", "b"] and listed["count"] == 2
    a, b = listed["data"]
    assert a["healthy"] and a["reachable"] and a["queue"]["pending"] >= 0
    assert any(tiny_models.SD1_NAME in m for m in a["models"])
    assert b["reachable"] and isinstance(b["models"], list)
    assert (await two.get("/readyz")).status_code == 200


async def test_a_server_that_does_not_answer_gets_no_run(
    tmp_path: Path, invokeai_url: str, workflows_dir: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(tmp_path, f"dead={dead}, live={invokeai_url}")
    async for http in _gateway(settings):
        workflow = await register(http, load_json(workflows_dir / NOISE))
        ids = await asyncio.gather(
            *(submit_run(http, workflow["id"], {"0": 32, "1": 32, "3": s}) for s in range(3))
        )
        runs = [await _finished(http, run_id) for run_id in ids]
        assert {(r["status"], r["backend"]) for r in runs} == {("succeeded", "live")}
        listed = {b["name"]: b for b in (await http.get("/backends")).json()["data"]}
        assert not listed["dead"]["healthy"] and not listed["dead"]["reachable"]
        assert listed["dead"]["queue"] is None and listed["live"]["healthy"]
        assert (await http.get("/readyz")).status_code == 200  # one server is enough
        samples = _samples((await http.get("/metrics")).text, "gateway_invokeai_up")
        assert samples == {"dead": 0.0, "live": 1.0}


def _samples(exposition: str, name: str) -> dict[str, float]:
    """The ``backend`` label and value of each sample of ``name``."""
    found = {}
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name:
                found[sample.labels["backend"]] = sample.value
    return found


def test_a_malformed_list_stops_the_gateway_naming_the_entry() -> None:
    with pytest.raises(ValueError, match="repeated: a"):
        Settings(invokeai_url="a=http://127.0.0.1:1, a=http://127.0.0.1:2")
    with pytest.raises(ValueError, match="weight"):
        Settings(invokeai_url="a=http://127.0.0.1:1;weight=0")


async def test_a_board_of_the_first_server_is_used_by_name_on_the_other(
    two: httpx.AsyncClient, workflows_dir: Path, second_invokeai: str
) -> None:
    board = (await two.post("/boards", json={"name": "spread-board"})).json()
    workflow = await register(two, load_json(workflows_dir / NOISE))
    body = {"inputs": {"0": 32, "1": 32}, "board_id": board["board_id"]}
    responses = await asyncio.gather(
        *(two.post(f"/workflows/{workflow['id']}/runs", json=body) for _ in range(6))
    )
    runs = [await _finished(two, r.json()["id"]) for r in responses]
    assert {r["status"] for r in runs} == {"succeeded"}, [r["error"] for r in runs]
    assert {r["backend"] for r in runs} == {"a", "b"}
    async with InvokeAIClient.from_url(second_invokeai) as b:
        named = [x for x in await b.board_repo.alist_boards() if x.board_name == "spread-board"]
        assert len(named) == 1  # made once, however many runs went there together
        theirs = named[0].board_id
        for run in runs:
            (output,) = run["outputs"]
            wanted = board["board_id"] if run["backend"] == "a" else theirs
            assert output["board_id"] == wanted and run["board_id"] == wanted
            if run["backend"] == "b":
                (name,) = output["image_names"]
                on_board = await (await b.board_repo.aget_board_handle(theirs)).alist_image_names()
                assert name in on_board


class _Lane:
    """What placement reads of a lane."""

    active = False  # followed elsewhere: placement does not wait for its events

    def __init__(self, name: str, weight: int, unfinished: int, healthy: bool = True) -> None:
        self.name, self.weight, self.count, self.healthy = name, weight, unfinished, healthy

    def load(self) -> float:
        return self.count / self.weight

    @contextlib.contextmanager
    def placing(self) -> Iterator[None]:
        yield


def test_placement_takes_the_least_loaded_healthy_server_for_its_weight() -> None:
    def order(*lanes: _Lane) -> list[str]:
        return [lane.name for lane in placement_order(cast(list[Lane], list(lanes)))]

    assert order(_Lane("a", 1, 0), _Lane("b", 1, 0)) == ["a", "b"]  # ties: as listed
    assert order(_Lane("a", 1, 1), _Lane("b", 1, 0)) == ["b", "a"]
    assert order(_Lane("a", 3, 2), _Lane("b", 1, 1)) == ["a", "b"]  # 2/3 < 1/1
    assert order(_Lane("a", 3, 3), _Lane("b", 1, 0)) == ["b", "a"]
    assert order(_Lane("a", 1, 0, healthy=False), _Lane("b", 1, 5)) == ["b"]
    assert order(_Lane("a", 1, 0, False), _Lane("b", 1, 0, False)) == ["a", "b"]  # all down


async def test_a_refused_server_passes_the_run_on_and_outranks_a_missing_model() -> None:
    """A server refusing the connection (dead since last seen, or not followed yet while a
    replica takes its lease over) sends the run on; a 503 only when every server refused."""
    lanes = cast(list[Lane], [_Lane("a", 1, 0, False), _Lane("b", 1, 0, False)])

    def answers(**by_lane: Exception | None) -> Callable[[Lane], Awaitable[str]]:
        async def attempt(lane: Lane) -> str:
            if (error := by_lane[lane.name]) is not None:
                raise error
            return lane.name

        return attempt

    refused, missing = ServerRefused("refused"), Unplaceable("no model", errors=[])
    assert await place(lanes, answers(a=refused, b=None)) == "b"
    assert await place(lanes, answers(a=missing, b=None)) == "b"
    with pytest.raises(ServerRefused):
        await place(lanes, answers(a=refused, b=refused))
    with pytest.raises(ServerRefused):  # b might have had the model: try again later
        await place(lanes, answers(a=refused, b=missing))
    with pytest.raises(InputInvalid, match="on none of the InvokeAI servers a, b"):
        await place(lanes, answers(a=missing, b=missing))
