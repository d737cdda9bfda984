"""Workflow registration over real HTTP against the real InvokeAI."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.app.conftest import load_json, register

pytestmark = pytest.mark.invokeai

INPUT_KEYS = {
    "index",
    "label",
    "field_name",
    "node_id",
    "type",
    "required",
    "default",
    "choices",
    "minimum",
    "maximum",
}


async def test_register_every_example_workflow(
    http: httpx.AsyncClient, example_workflows: list[Path]
) -> None:
    files = example_workflows
    assert files
    for path in files:
        body = await register(http, load_json(path))
        assert body["version"] == 1 and body["id"]
        assert body["inputs"], path.name
        assert [i["index"] for i in body["inputs"]] == list(range(len(body["inputs"])))
        for item in body["inputs"]:
            assert set(item) >= INPUT_KEYS
    listed = (await http.get("/workflows")).json()
    assert listed["count"] == len(files)


async def test_inputs_are_typed_from_the_server_schema(
    http: httpx.AsyncClient, workflows_dir: Path
) -> None:
    body = await register(http, load_json(workflows_dir / "noise_on_blank_canvas.json"))
    by_field = {i["field_name"]: i for i in body["inputs"]}
    assert by_field["width"]["type"] == "integer"
    assert by_field["amount"]["type"] == "float"
    assert by_field["amount"]["minimum"] == 0 and by_field["amount"]["maximum"] == 1
    assert by_field["noise_type"]["choices"] == ["gaussian", "salt_and_pepper"]


async def test_multipart_upload_and_get_one_with_run_schema(
    http: httpx.AsyncClient, workflows_dir: Path
) -> None:
    path = workflows_dir / "join_three_strings_exposed_fields.json"
    response = await http.post(
        "/workflows", files={"file": (path.name, path.read_bytes(), "application/json")}
    )
    assert response.status_code == 201, response.text
    workflow_id = response.json()["id"]
    one = (await http.get(f"/workflows/{workflow_id}")).json()
    props = one["run_schema"]["properties"]["inputs"]["properties"]
    assert set(props) == {"0", "1", "2"}
    assert props["0"]["type"] == "string" and props["0"]["title"] == one["inputs"][0]["label"]


async def test_put_makes_a_new_version_and_reports_moved_indices(
    http: httpx.AsyncClient, workflows_dir: Path
) -> None:
    original = load_json(workflows_dir / "join_three_strings_exposed_fields.json")
    created = await register(http, original)
    changed = copy.deepcopy(original)
    changed["exposedFields"] = [changed["exposedFields"][i] for i in (1, 0, 2)]
    response = await http.put(f"/workflows/{created['id']}", json=changed)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["version"], body["previous_version"]) == (2, 1)
    moved = {(m["old_index"], m["new_index"]) for m in body["input_changes"]["moved"]}
    assert moved == {(0, 1), (1, 0)}
    assert body["fingerprint"] != created["fingerprint"]
    assert body["input_changes"]["vanished"] == body["input_changes"]["appeared"] == []


async def test_a_new_version_is_run_at_once_after_runs_of_the_old_one(
    http: httpx.AsyncClient, workflows_dir: Path
) -> None:
    original = load_json(workflows_dir / "join_three_strings_exposed_fields.json")
    created = await register(http, original)
    first = await http.post(f"/workflows/{created['id']}/runs", json={"inputs": {}})
    assert first.status_code == 202 and first.json()["workflow_version"] == 1
    assert (await http.put(f"/workflows/{created['id']}", json=original)).status_code == 200
    second = await http.post(f"/workflows/{created['id']}/runs", json={"inputs": {}})
    assert second.status_code == 202 and second.json()["workflow_version"] == 2


async def test_delete_then_unknown(http: httpx.AsyncClient, workflows_dir: Path) -> None:
    created = await register(
        http, load_json(workflows_dir / "join_three_strings_exposed_fields.json")
    )
    ran = await http.post(f"/workflows/{created['id']}/runs", json={"inputs": {}})
    assert ran.status_code == 202, ran.text  # the workflow is now cached for runs
    assert (await http.delete(f"/workflows/{created['id']}")).status_code == 204
    for response in (
        await http.get(f"/workflows/{created['id']}"),
        await http.delete(f"/workflows/{created['id']}"),
        await http.post(f"/workflows/{created['id']}/runs", json={"inputs": {}}),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


async def test_malformed_json_is_422(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/workflows", content=b'{"name": "x", nodes', headers={"content-type": "application/json"}
    )
    assert "not valid JSON" in _problem(response, 422)["detail"]
    _problem(await http.post("/workflows", json=[1, 2]), 422)


async def test_form_naming_a_missing_node_is_422(
    http: httpx.AsyncClient, workflows_dir: Path
) -> None:
    data = load_json(workflows_dir / "noise_on_blank_canvas.json")
    element = next(e for e in data["form"]["elements"].values() if e["type"] == "node-field")
    element["data"]["fieldIdentifier"]["nodeId"] = "no-such-node"
    body = _problem(await http.post("/workflows", json=data), 422)
    assert "no-such-node" in body["detail"]
    assert (await http.get("/workflows")).json()["count"] == 0


async def test_oversized_workflow_is_413(
    http: httpx.AsyncClient, gateway_settings: Any, workflows_dir: Path
) -> None:
    data = load_json(workflows_dir / "join_three_strings_exposed_fields.json")
    data["notes"] = "x" * (gateway_settings.max_upload_bytes + 1)
    body = json.dumps(data).encode()
    json_type = {"content-type": "application/json"}
    _problem(await http.post("/workflows", content=body, headers=json_type), 413)
