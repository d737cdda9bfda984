"""Runs over real HTTP against the real InvokeAI: index-keyed inputs, outputs, history, errors."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlmodel import Session, col, select

from app.core.config import Settings
from app.db.engine import make_engine
from app.db.tables import RunEvent
from invokeai_py_client import InvokeAIClient
from tests.app.conftest import load_json, register, wait_until

pytestmark = pytest.mark.invokeai

WAIT = {"Prefer": "wait=60"}


def png_bytes(size: tuple[int, int] = (96, 80), color: str = "orange") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def sample_value(item: dict[str, Any], salt: int) -> Any:
    """A value for an input that the workflow accepts (None: leave the workflow's value)."""
    kind = item["type"]
    if kind == "image":
        return data_url(png_bytes(color=("red", "green", "blue")[salt % 3]))
    if kind == "string":
        return f"word{salt}-{item['index']}"
    if kind == "integer" and item["field_name"] == "seed":
        return 1000 + salt
    return None


def events_of(settings: Settings, run_id: str) -> list[RunEvent]:
    with Session(make_engine(settings.database_url)) as session:
        query = select(RunEvent).where(RunEvent.run_id == run_id).order_by(col(RunEvent.id))
        return list(session.exec(query).all())


async def run_and_wait(
    http: httpx.AsyncClient, workflow_id: str, inputs: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    response = await http.post(
        f"/workflows/{workflow_id}/runs", json={"inputs": inputs, **extra}, headers=WAIT
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_run_every_example_workflow_with_index_keyed_inputs(
    http: httpx.AsyncClient, example_workflows: list[Path], gateway_settings: Settings
) -> None:
    for salt, path in enumerate(example_workflows):
        workflow = await register(http, load_json(path))
        inputs = {
            str(i["index"]): value
            for i in workflow["inputs"]
            if (value := sample_value(i, salt)) is not None
        }
        run = await run_and_wait(http, workflow["id"], inputs)
        assert run["status"] == "succeeded", (path.name, run["error"])
        assert run["outputs"], path.name
        for output in run["outputs"]:
            assert output["images"] or output["values"]
            for image in output["images"]:
                assert image["url"] == f"/images/{image['image_name']}"
        # Data URLs were uploaded: the history keeps the image name, not the bytes.
        for key, value in run["inputs"].items():
            assert not str(value).startswith("data:"), key
        types = [e.event_type for e in events_of(gateway_settings, run["id"])]
        assert types[0] == "run.queued" and types[1] == "run.started"
        assert types[-1] == "run.succeeded" and "node.completed" in types


async def test_values_reach_the_graph(http: httpx.AsyncClient, workflows_dir: Path) -> None:
    join = await register(http, load_json(workflows_dir / "join_three_strings_exposed_fields.json"))
    run = await run_and_wait(http, join["id"], {"0": "sun", "2": "moon"})
    assert run["outputs"][0]["values"] == ["sungreenmoon"]


async def test_image_input_by_name_and_board_for_outputs(
    http: httpx.AsyncClient, aclient: InvokeAIClient, workflows_dir: Path
) -> None:
    image = await aclient.board_repo.get_uncategorized_handle().aupload_image_data(
        png_bytes((120, 90)), "in.png"
    )
    board = await aclient.board_repo.acreate_board("gateway-test-board")
    try:
        crop = await register(http, load_json(workflows_dir / "crop_uploaded_image.json"))
        run = await run_and_wait(
            http, crop["id"], {"0": image.image_name, "3": 40, "4": 30}, board_id=board.board_id
        )
        assert run["status"] == "succeeded" and run["board_id"] == board.board_id
        output = run["outputs"][0]
        assert output["board_id"] == board.board_id
        data = await aclient.board_repo.adownload_image(output["image_names"][0])
        assert Image.open(io.BytesIO(data)).size == (40, 30)
    finally:
        await aclient.board_repo.adelete_board(board.board_id, delete_images=True)


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


async def test_every_bad_input_is_named_with_its_label_and_nothing_is_recorded(
    http: httpx.AsyncClient, workflows_dir: Path
) -> None:
    noise = await register(http, load_json(workflows_dir / "noise_on_blank_canvas.json"))
    by_field = {i["field_name"]: i for i in noise["inputs"]}
    bad = {
        str(by_field["width"]["index"]): 7.5,  # wrong kind
        str(by_field["amount"]["index"]): 3.0,  # above the maximum 1
        str(by_field["noise_type"]["index"]): "plaid",  # not a choice
        "42": 1,  # unknown index
    }
    body = _problem(await http.post(f"/workflows/{noise['id']}/runs", json={"inputs": bad}), 422)
    errors = {str(e["index"]): e for e in body["errors"]}
    assert set(errors) == set(bad)
    for field in ("width", "amount", "noise_type"):
        entry = errors[str(by_field[field]["index"])]
        assert entry["label"] == by_field[field]["label"] and entry["reason"]
        assert entry["label"] in body["detail"]
    assert "unknown input index" in errors["42"]["reason"]
    crop = await register(http, load_json(workflows_dir / "crop_uploaded_image.json"))
    for value, reason in (
        ("no-such-image.png", "does not exist"),
        ("data:image/png;base64,%%", "base64"),
    ):
        body = _problem(
            await http.post(f"/workflows/{crop['id']}/runs", json={"inputs": {"0": value}}), 422
        )
        assert body["errors"][0]["index"] == 0 and body["errors"][0]["label"] == "Picture"
        assert reason in body["errors"][0]["reason"]
    body = _problem(await http.post(f"/workflows/{crop['id']}/runs", json={"inputs": {}}), 422)
    assert "required" in body["errors"][0]["reason"]
    _problem(await http.post(f"/workflows/{crop['id']}/runs", json={"inputs": [1]}), 422)
    assert (await http.get("/runs")).json()["count"] == 0


async def test_unknown_model_is_named(http: httpx.AsyncClient, shipped_workflows_dir: Path) -> None:
    sd15 = await register(http, load_json(shipped_workflows_dir / "Text to Image - SD1.5.json"))
    model = next(i for i in sd15["inputs"] if i["type"] == "model")
    response = await http.post(
        f"/workflows/{sd15['id']}/runs", json={"inputs": {str(model["index"]): "no-such-model"}}
    )
    body = _problem(response, 422)
    assert body["errors"][0]["index"] == model["index"]
    assert "no installed model" in body["errors"][0]["reason"]


async def test_unknown_workflow_and_run_are_404(http: httpx.AsyncClient) -> None:
    _problem(await http.post("/workflows/nope/runs", json={"inputs": {}}), 404)
    _problem(await http.get("/runs/nope"), 404)
    _problem(await http.post("/runs/nope/cancel"), 404)


async def test_oversized_run_body_is_413(
    http: httpx.AsyncClient, workflows_dir: Path, gateway_settings: Settings
) -> None:
    crop = await register(http, load_json(workflows_dir / "crop_uploaded_image.json"))
    huge = "data:image/png;base64," + "A" * gateway_settings.max_upload_bytes
    _problem(await http.post(f"/workflows/{crop['id']}/runs", json={"inputs": {"0": huge}}), 413)


async def test_history_filters_and_cursor_paging(
    http: httpx.AsyncClient, workflows_dir: Path
) -> None:
    join = await register(http, load_json(workflows_dir / "join_three_strings_exposed_fields.json"))
    noise = await register(http, load_json(workflows_dir / "noise_on_blank_canvas.json"))
    ids = [(await run_and_wait(http, join["id"], {"0": f"w{n}"}))["id"] for n in range(5)]
    other = await run_and_wait(http, noise["id"], {})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"workflow_id": join["id"], "limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await http.get("/runs", params=params)).json()
        seen += [r["id"] for r in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    everything = (await http.get("/runs", params={"status": "succeeded"})).json()
    assert {r["id"] for r in everything["data"]} == {*ids, other["id"]}
    assert (await http.get("/runs", params={"status": "failed"})).json()["count"] == 0
    first = (await http.get(f"/runs/{ids[0]}")).json()
    after = (await http.get("/runs", params={"created_after": first["created_at"]})).json()
    assert len(after["data"]) == 6
    before = (await http.get("/runs", params={"created_before": first["created_at"]})).json()
    assert before["count"] == 0
    _problem(await http.get("/runs", params={"cursor": "garbage"}), 400)
    _problem(await http.get("/runs", params={"status": "sleeping"}), 422)


async def test_cancel_a_queued_run(
    http: httpx.AsyncClient,
    aclient: InvokeAIClient,
    workflows_dir: Path,
    gateway_settings: Settings,
) -> None:
    join = await register(http, load_json(workflows_dir / "join_three_strings_exposed_fields.json"))
    await aclient.queue_repo.apause_processor()
    try:
        response = await http.post(
            f"/workflows/{join['id']}/runs",
            json={"inputs": {"0": "c"}},
            headers={"Prefer": "wait=1"},
        )
        # Still queued after the wait: 202 with the run as it is.
        assert response.status_code == 202 and response.json()["status"] == "queued"
        assert response.headers["preference-applied"] == "wait=1"
        run_id = response.json()["id"]
        assert response.headers["location"] == f"/runs/{run_id}"
        canceled = await http.post(f"/runs/{run_id}/cancel")
        assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    finally:
        await aclient.queue_repo.aresume_processor()
    assert (await http.get(f"/runs/{run_id}")).json()["finished_at"]
    assert events_of(gateway_settings, run_id)[-1].event_type == "run.canceled"
    again = await http.post(f"/runs/{run_id}/cancel")
    assert again.status_code == 200 and again.json()["status"] == "canceled"


async def test_failed_run_names_the_failing_node(
    http: httpx.AsyncClient,
    aclient: InvokeAIClient,
    workflows_dir: Path,
    gateway_settings: Settings,
) -> None:
    crop = await register(http, load_json(workflows_dir / "crop_uploaded_image.json"))
    image = await aclient.board_repo.get_uncategorized_handle().aupload_image_data(
        png_bytes(), "gone.png"
    )
    await aclient.queue_repo.apause_processor()
    try:
        response = await http.post(
            f"/workflows/{crop['id']}/runs", json={"inputs": {"0": image.image_name}}
        )
        assert response.status_code == 202, response.text
        # The image vanishes after it was checked: InvokeAI fails the run at the image node.
        await aclient.board_repo.get_uncategorized_handle().adelete_image(image.image_name)
    finally:
        await aclient.queue_repo.aresume_processor()
    run_id = response.json()["id"]

    async def finished() -> dict[str, Any] | None:
        run: dict[str, Any] = (await http.get(f"/runs/{run_id}")).json()
        return run if run["status"] != "queued" and run["status"] != "running" else None

    run = await wait_until(finished)
    assert run["status"] == "failed"
    assert run["error"]["error_type"] == "ImageRecordNotFoundException"
    assert run["error"]["node_id"] == crop["inputs"][0]["node_id"]
    types = [e.event_type for e in events_of(gateway_settings, run_id)]
    assert types[-1] == "run.failed" and "node.failed" in types
