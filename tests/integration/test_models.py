"""The model repository: against the real (model-free) server, and over a fake body."""

from __future__ import annotations

import httpx
import pytest

from invokeai_py_client import InvokeAIClient, NotFoundError
from invokeai_py_client.dnn_model import BaseModelEnum, ModelNotFoundError, ModelType
from invokeai_py_client.dnn_model.repo import models_api_prefix


@pytest.mark.invokeai
def test_list_models_filters_on_the_real_server(client: InvokeAIClient) -> None:
    # The session's server holds only the tests' tiny models (none before a test installs them).
    repo = client.dnn_model_repo
    every = repo.list_models()
    assert all(model.name.startswith("tiny-") for model in every)
    sdxl_main = repo.list_models(base=BaseModelEnum.SDXL, type=ModelType.MAIN)
    assert sdxl_main == [m for m in every if (m.base, m.type) == ("sdxl", "main")]
    # An unknown base is no error (the server itself would refuse it with 422).
    assert repo.list_models(base="sd-99") == []
    assert repo.find_models(name="juggernaut") == []


@pytest.mark.invokeai
def test_get_model_by_key_not_found(client: InvokeAIClient) -> None:
    with pytest.raises(NotFoundError) as info:
        client.dnn_model_repo.get_model_by_key("no-such-key")
    assert info.value.status_code == 404
    assert "model not found" in str(info.value)


@pytest.mark.invokeai
async def test_async_twins(aclient: InvokeAIClient) -> None:
    listed = await aclient.dnn_model_repo.alist_models()
    assert all(model.name.startswith("tiny-") for model in listed)  # the tests' own only
    assert await aclient.dnn_model_repo.afind_models("no-model-is-named-so", type="vae") == []
    with pytest.raises(NotFoundError):
        await aclient.dnn_model_repo.aget_model_by_key("no-such-key")


# -- without a server: the shapes a server with models would send ---------------------------

MODELS_BODY = {
    "models": [
        {"key": "a", "hash": "blake3:a", "name": "Juggernaut XL", "base": "sdxl", "type": "main"},
        {"key": "b", "hash": "blake3:b", "name": "Future", "base": "sd-9", "type": "hologram"},
        {"key": "c", "hash": "blake3:c", "name": "XL VAE", "base": "sdxl", "type": "vae"},
    ]
}


def fake_client(seen: list[httpx.Request]) -> InvokeAIClient:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/v2/models/":
            return httpx.Response(200, json=MODELS_BODY)
        if request.url.path == "/api/v2/models/i/a":
            return httpx.Response(200, json=MODELS_BODY["models"][0])
        return httpx.Response(404, json={"detail": "model not found"})

    return InvokeAIClient("test", 9090, transport=httpx.MockTransport(handler))


async def test_unknown_bases_and_types_are_listed_and_filtered() -> None:
    seen: list[httpx.Request] = []
    client = fake_client(seen)
    repo = client.dnn_model_repo
    models = await repo.alist_models()
    assert [m.key for m in models] == ["a", "b", "c"]
    assert models[1].base == "sd-9" and models[1].type == "hologram"
    assert [m.key for m in await repo.alist_models(base="sd-9")] == ["b"]
    assert [m.key for m in await repo.alist_models(base="sdxl", type="vae")] == ["c"]
    assert [m.key for m in await repo.afind_models("xl")] == ["a", "c"]
    assert [m.key for m in await repo.afind_models("xl vae", exact=True)] == ["c"]
    assert (await repo.aget_model_by_key("a")).name == "Juggernaut XL"
    with pytest.raises(NotFoundError):
        await repo.aget_model_by_key("zzz")
    assert all(r.url.path.startswith("/api/v2/models") for r in seen)
    assert "base_models" not in seen[0].url.params  # filtering stays on our side
    await client.aclose()


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [("/api/v1", "/api/v2/models"), ("/invoke/api/v1", "/invoke/api/v2/models")],
)
def test_models_api_prefix(prefix: str, expected: str) -> None:
    assert models_api_prefix(prefix) == expected


async def test_a_name_shared_by_two_models_needs_its_base() -> None:
    shared = {  # two models called "XL", one main, one VAE
        "models": [{**m, "name": "XL"} for m in MODELS_BODY["models"] if m["base"] == "sdxl"]
    }
    transport = httpx.MockTransport(lambda _request: httpx.Response(200, json=shared))
    client = InvokeAIClient("test", 9090, transport=transport)
    with pytest.raises(ModelNotFoundError, match="2 models are named 'XL'") as caught:
        await client.dnn_model_repo.aresolve_model("XL")
    assert "sdxl/main" in str(caught.value) and "sdxl/vae" in str(caught.value)
    assert (await client.dnn_model_repo.aresolve_model("XL", type="vae")).key == "c"
    assert (await client.dnn_model_repo.aresolve_model("a")).key == "a"  # a key wins
